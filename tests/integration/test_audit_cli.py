"""On a network started with `ncbsim up`: audit logs verify, tampering is named, search finds."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from support import document_query

from ncbsim import transport
from ncbsim.client import BureauClient, Outcome
from ncbsim.pki import PkiDir
from ncbsim.v2 import bureau_pb2, bureau_pb2_grpc

pytestmark = pytest.mark.integration

SMALL = Path(__file__).parents[1] / "scenarios" / "small.toml"


def _ncbsim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ncbsim", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    """A small network brought up with `ncbsim up --detach`; always brought down."""
    workdir = tmp_path / "net"
    up = _ncbsim("up", str(SMALL), "--workdir", str(workdir), "--detach")
    try:
        assert up.returncode == 0, up.stderr
        yield workdir
    finally:
        if (workdir / "network.json").exists():
            _ncbsim("down", "--workdir", str(workdir))


CANARY = f"Z{os.urandom(6).hex().upper()}"
"""A document number that must never reach an audit file."""


async def _send(workdir: Path, as_: str, count: int) -> None:
    gateway = json.loads((workdir / "network.json").read_text())["gateway"]
    query = document_query(CANARY, "DE")
    async with BureauClient.open(PkiDir(workdir), as_, gateway) as client:
        for _ in range(count):
            answer = await client.query(query, "DE")
            assert answer.outcome is Outcome.NO_HIT


async def _call_node_directly(workdir: Path) -> grpc.StatusCode:
    """FR calls DE's node without the gateway: refused, and audited by DE."""
    procs = json.loads((workdir / "network.json").read_text())["processes"]
    address = next(p["address"] for p in procs if p["bureau"] == "DE")
    channel = transport.bureau_channel(address, PkiDir(workdir).tls("FR"), "DE")
    try:
        await bureau_pb2_grpc.BureauServiceStub(channel).Handle(
            bureau_pb2.HandleRequest(), timeout=5
        )
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    finally:
        await channel.close()
    return grpc.StatusCode.OK


def _search(path: Path, *args: str) -> list[dict[str, object]]:
    result = _ncbsim("audit", "search", str(path), "--json", *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _wait_for(path: Path, count: int, *args: str) -> list[dict[str, object]]:
    """The entries matching ``args`` once there are ``count`` (the writer batches)."""
    deadline = time.monotonic() + 10
    while True:
        rows = _search(path, *args)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_audit_verify_search_and_tamper_detection(workdir: Path) -> None:
    """Gateway and node logs verify; search lists FR's queries; one changed byte is named."""
    since = datetime.now(UTC).isoformat()
    asyncio.run(_send(workdir, "FR", 3))
    asyncio.run(_send(workdir, "IT", 1))
    gateway_log = workdir / "gateway" / "audit.sqlite"
    node_log = workdir / "bureaus" / "DE" / "audit.sqlite"

    found = _wait_for(gateway_log, 3, "--sender", "FR", "--kind", "query", "--since", since)
    assert len(found) == 3
    assert {(r["sender"], r["recipient"], r["kind"], r["outcome"]) for r in found} == {
        ("FR", "DE", "query_request", "delivered")
    }
    at_node = _wait_for(node_log, 3, "--sender", "FR", "--kind", "query", "--since", since)
    assert {r["message_id"] for r in at_node} == {r["message_id"] for r in found}
    assert {(r["outcome"], r["reason"], r["status"]) for r in at_node} == {("answered", "", "OK")}
    assert len(_wait_for(node_log, 1, "--sender", "IT", "--kind", "query")) == 1
    assert asyncio.run(_call_node_directly(workdir)) == grpc.StatusCode.PERMISSION_DENIED
    refused = [r for r in _wait_for(node_log, 5, "--since", since) if r["outcome"] == "refused"]
    assert [(r["reason"], r["status"], r["sender"]) for r in refused] == [
        ("not_gateway", "PERMISSION_DENIED", "")
    ]
    for path in (gateway_log, node_log):  # metadata only: the query's contents are nowhere
        for file in path.parent.glob("audit.sqlite*"):
            assert CANARY.encode() not in file.read_bytes(), file

    for path in (gateway_log, node_log):
        intact = _ncbsim("audit", "verify", str(path))
        assert intact.returncode == 0, intact.stdout + intact.stderr
        assert intact.stdout.startswith("intact: ")

    # One stored byte changed with sqlite3, past the append-only trigger: FR becomes FS.
    target = int(str(found[1]["seq"]))
    db = sqlite3.connect(gateway_log)
    with db:
        db.execute("DROP TRIGGER audit_no_update")
        db.execute("UPDATE audit SET sender = 'FS' WHERE seq = ?", (target,))
    db.close()
    tampered = _ncbsim("audit", "verify", str(gateway_log))
    assert tampered.returncode == 1
    assert tampered.stdout.startswith(f"entry seq={target}: changed")
    assert "audit_no_update is missing" in tampered.stderr
    assert _ncbsim("audit", "verify", str(node_log)).returncode == 0


def test_audit_cli_errors_are_clear(tmp_path: Path) -> None:
    """A missing log or a bad date is a one-line error and exit 2, without a traceback."""
    missing = _ncbsim("audit", "verify", str(tmp_path / "nope.sqlite"))
    assert missing.returncode == 2
    assert "no audit log" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad_date = _ncbsim("audit", "search", str(tmp_path / "x.sqlite"), "--since", "yesterday")
    assert bad_date.returncode == 2
    assert "not an ISO 8601" in bad_date.stderr
