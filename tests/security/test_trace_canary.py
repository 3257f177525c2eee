"""No span holds a query term or a message text: a canary sent through a traced network
is found in no exported span line of any process, raw, base64 or hex."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import run_ncbsim

pytestmark = pytest.mark.integration

SMALL = Path(__file__).parents[1] / "scenarios" / "small.toml"


def encodings(canary: str) -> set[str]:
    """``canary`` as it could sit in a span line: raw, lower and upper case, hex of its
    bytes, and base64 at each of the three alignments it could start at in a longer
    value (the characters that depend on the neighbours are left out)."""
    raw = canary.encode()
    found = {canary, canary.lower(), canary.upper(), raw.hex(), raw.hex().upper()}
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        start = {0: 0, 1: 2, 2: 3}[offset]
        end = len(encoded) - 4  # the last quantum depends on what follows
        found.add(encoded[start:end])
        found.add(base64.urlsafe_b64encode(b"\0" * offset + raw).decode()[start:end])
    return {f for f in found if len(f) >= 8}


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A small network whose every process writes its spans (`up --trace-dir`)."""
    workdir, traces = tmp_path / "net", tmp_path / "traces"
    up = run_ncbsim(
        "up", str(SMALL), "--workdir", str(workdir), "--detach", "--trace-dir", str(traces)
    )
    try:
        assert up.returncode == 0, up.stderr
        yield workdir, traces
    finally:
        if (workdir / "network.json").exists():
            run_ncbsim("down", "--workdir", str(workdir))


def test_no_span_holds_the_canary(traced: tuple[Path, Path]) -> None:
    """A canary as a document number, a person's names and a message's text and subject
    crosses client, gateway and nodes; every span line of every trace file lacks it."""
    workdir, traces = traced
    canary = f"Cnry{os.urandom(6).hex().upper()}"
    client = traces / "clients.jsonl"
    common = ["--workdir", str(workdir), "--as", "DE", "--trace-file", str(client)]
    runs = [
        ["query", *common, "--to", "FR", "document", "--number", canary, "--issuer", "FR"],
        ["query", *common, "--to", "FR,IT", "document", "--number", canary, "--issuer", "FR"],
        ["query", *common, "--to", "IT", "person", "--surname", canary,
         "--given-names", canary, "--dob", "1980-01-01"],
        ["message", "send", *common, "--to", "FR", "--text", f"see {canary} now",
         "--subject", canary],
    ]  # fmt: skip
    for args in runs:
        done = run_ncbsim(*args)
        assert done.returncode == 0, (args, done.stderr)
    # Wait until FR's node has taken the message (its Deliver span is written).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        hosts = "".join(p.read_text() for p in traces.glob("host-*.jsonl"))
        if '"rpc.method":"Deliver"' in hosts:
            break
        time.sleep(0.2)
    files = sorted(traces.glob("*.jsonl"))
    assert {p.name for p in files} >= {"gateway.jsonl", "clients.jsonl", "host-0.jsonl"}
    lines = [line for p in files for line in p.read_text().splitlines()]
    names = {json.loads(line)["name"] for line in lines}
    for expected in (
        "ncbsim.query",
        "ncbsim.multi_query",
        "ncbsim.v2.GatewayService/Query",
        "ncbsim.v2.GatewayService/MultiQuery",
        "ncbsim.v2.GatewayService/Post",
        "ncbsim.v2.BureauService/Handle",
        "ncbsim.v2.BureauService/Deliver",
        "ncbsim.gateway.deliver",
    ):
        assert expected in names, f"no {expected} span was exported"
    needles = encodings(canary)
    leaks = [(n, line[:200]) for line in lines for n in needles if n in line]
    assert not leaks, leaks[:3]
