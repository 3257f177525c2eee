"""``ncbsim demo --auto``: the trainer mode, run end to end against real processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ncbsim.node.matching import DEFAULT_THRESHOLD, name_key, name_similarity
from ncbsim.simulations._demo_steps import misspell
from ncbsim.simulations.network import Network
from ncbsim.workdir import MANIFEST

TITLES = (
    "1. Passport check: a stolen document",
    "2. Person search with a fuzzy name",
    "3. Step-2 fetch denied by the owner's restriction",
    "4. Multi-bureau query with one bureau down",
    "5. A tampered envelope is refused",
)
# A plaintext value in any panel: the asking bureau's query, or what a node decrypted.
_VALUE = re.compile(r"│ (number|surname|given|ref|name|holder) +(\S[^│]*?) *│")
_PID = re.compile(r"^ {2}(?:gateway|[A-Z]{2}) +pid (\d+) ", re.MULTILINE)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int, str]]:
    """One ``ncbsim demo --auto`` run in 80 plain columns: workdir, exit code, output."""
    workdir = tmp_path_factory.mktemp("demo") / "net"
    env = {**os.environ, "COLUMNS": "80", "LINES": "40", "TERM": "dumb", "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ncbsim", "demo", "--auto", "--workdir", str(workdir)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=120)
        yield workdir, proc.returncode, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if (workdir / MANIFEST).exists():  # the demo did not clean up: do it for it
            Network.load(workdir).stop()


def test_misspell_changes_the_typed_name_but_not_beyond_recognition() -> None:
    """The fuzzy step's name loses its accents and case and swaps two letters."""
    typed = misspell("Hölzenbecher")
    assert typed == "holzenebcher"
    assert name_key(typed) != name_key("Hölzenbecher")
    score = name_similarity(name_key(typed), "SILKE", name_key("Hölzenbecher"), "SILKE")
    assert DEFAULT_THRESHOLD < score < 1


@pytest.mark.integration
def test_demo_passes_every_step(demo: tuple[Path, int, str]) -> None:
    """Every step runs against the real network, behaves as narrated, and exit is 0."""
    _, code, out = demo
    print(out)
    assert code == 0, out
    for title in TITLES:
        assert title in out
    assert "FAIL" not in out
    assert out.count("PASS") >= 25
    assert "5 of 5 steps behaved as narrated." in out


@pytest.mark.integration
def test_demo_shows_what_each_party_sees(demo: tuple[Path, int, str]) -> None:
    """The four views appear, with the outcome each step is about."""
    _, _, out = demo
    for words in (
        "asks DE (plaintext)",
        "gateway sees",
        "decrypts (as its node)",
        "gets from",
        "ciphertext",
        "expires",
        "answer      hit",
        "score       0.",
        "step 1 no-hit",
        "fetch       not-found",
        "unknown ref not-found",
        "no-answer",
        "SIGSTOP pid",
        "reason unverified",
        "refused: does not verify",
        "INVALID_ARGUMENT",
        "Network stopped.",
        # The gateway's own event stream, read by the operator (ncbsim.observe)
        "event       query.relayed delivered",
        "the gateway's event stream showed the operator the same metadata",
    ):
        assert words in out, words


@pytest.mark.integration
def test_demo_fits_80_columns(demo: tuple[Path, int, str]) -> None:
    """No line of the output is wider than a plain 80-column terminal."""
    _, _, out = demo
    widths = [len(line) for line in out.splitlines()]
    print(f"{len(widths)} lines, widest {max(widths)}")
    assert max(widths) <= 80


@pytest.mark.integration
def test_gateway_files_hold_no_plaintext(demo: tuple[Path, int, str]) -> None:
    """No query value or record field shown by a bureau is in any of the gateway's files."""
    workdir, _, out = demo
    values = {v.strip() for _, v in _VALUE.findall(out) if len(v.strip()) >= 5}
    print(sorted(values))
    assert len(values) >= 6  # numbers, names and refs of the five steps
    records = b"".join(p.read_bytes() for p in (workdir / "bureaus").glob("*/records.sqlite"))
    gateway = b"".join(p.read_bytes() for p in (workdir / "gateway").iterdir() if p.is_file())
    assert gateway
    for value in values:
        for token in value.replace(",", " ").split():
            if len(token) >= 5 and token.encode() in records:
                assert token.encode() not in gateway, token
                assert token.encode().lower() not in gateway.lower(), token


@pytest.mark.integration
def test_demo_leaves_no_process_behind(demo: tuple[Path, int, str]) -> None:
    """Every process the demo started is gone, and its manifest removed."""
    workdir, _, out = demo
    pids = [int(p) for p in _PID.findall(out)]
    assert len(pids) == 6  # the gateway and five bureaus
    alive = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if os.fsencode(str(workdir)) in cmdline:
            alive.append(pid)
    assert alive == []
    assert not (workdir / MANIFEST).exists()
