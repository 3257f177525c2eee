"""The network the evil-gateway tests attack (``EvilNet``: the compromised gateway, i.e.
the product's classroom-mode gateway ``ncbsim gateway --classroom-attacks``, and real
DE and NL nodes) and the requester's side of each attack: ask, read the node's audit log,
read the gateway's event record."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support import document_query

from ncbsim import auditread
from ncbsim.client import Answer, BureauClient, Outcome
from ncbsim.pki import PkiDir
from ncbsim.v2 import query_pb2

NODES = ("DE", "NL")
REQUESTERS = ("FR", "IT")
READY_TIMEOUT_S = 30.0
# A document number that exists nowhere: the canary the gateway must never see.
CANARY = "CANARY" + os.urandom(4).hex().upper()


@dataclass
class EvilNet:
    workdir: Path
    address: str
    mode_file: Path
    files: Path  # everything the evil gateway writes
    events: Path  # the gateway's attack record (metadata of what it did)
    capture: Path  # the responses it relayed, as opaque bytes
    known_document: str  # a document DE holds (a hit)

    def set_mode(self, mode: str = "honest", **fields: Any) -> None:
        """Switch the gateway's behaviour; it reads the file on every call."""
        tmp = self.mode_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"mode": mode, **fields}))
        tmp.replace(self.mode_file)

    def event_lines(self) -> list[dict[str, Any]]:
        if not self.events.exists():
            return []
        return [json.loads(line) for line in self.events.read_text().splitlines() if line]

    def node_log(self, bureau: str) -> str:
        return (self.workdir / "bureaus" / bureau / "node.log").read_text(errors="replace")


def _db(workdir: Path, bureau: str) -> Path:
    return workdir / "bureaus" / bureau / "records.sqlite"


def _wait_ready(proc: subprocess.Popen[bytes], ready: Path, log_path: Path) -> dict[str, str]:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready.exists():
            data: dict[str, str] = json.loads(ready.read_text())
            return data
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").splitlines()[-5:]
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}: {tail}")
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args!r} not ready after {READY_TIMEOUT_S}s")


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process we started, by PID, then SIGKILL what is left."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
        )


def _doc(number: str, issuer: str = "DE") -> query_pb2.Query:
    return document_query(number, issuer)


def _ask(
    net: EvilNet,
    query: query_pb2.Query,
    to: str = "DE",
    *,
    as_: str = "FR",
    timeout: float = 5.0,
) -> Answer:
    async def run() -> Answer:
        client = BureauClient.open(PkiDir(net.workdir), as_, net.address)
        async with client:
            # The safety net: a hung call is a failure, never a wait forever.
            return await asyncio.wait_for(client.query(query, to, timeout=timeout), timeout + 30)

    return asyncio.run(run())


def _ask_many(net: EvilNet, query: query_pb2.Query, to: list[str]) -> dict[str, Answer]:
    async def run() -> list[Answer]:
        async with BureauClient.open(PkiDir(net.workdir), "FR", net.address) as client:
            return await asyncio.wait_for(client.multi_query(query, to, timeout=5.0), 35)

    return {a.bureau: a for a in asyncio.run(run())}


def _node_audit(net: EvilNet, bureau: str, message_id: str, count: int = 1) -> list[dict[str, Any]]:
    """The node's audit rows for one message id, waiting for its writer to flush them."""
    path = net.workdir / "bureaus" / bureau / "audit.sqlite"
    deadline = time.monotonic() + 10
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if path.exists():
            columns, found = auditread.search(path, auditread.Query(message_id=message_id))
            rows = [dict(zip(columns, row, strict=True)) for row in found]
            if len(rows) >= count:
                return rows
        time.sleep(0.05)
    return rows


def _node_never_saw(net: EvilNet, bureau: str, message_id: str) -> bool:
    """No audit row for ``message_id`` at ``bureau``, once the node has flushed later rows."""
    # A fresh honest query is written after anything the node handled before it.
    answer = _ask(net, _doc("FLUSH0000"), bureau, as_="IT")
    assert answer.outcome == Outcome.NO_HIT
    assert _node_audit(net, bureau, answer.message_id)
    return not _node_audit(net, bureau, message_id, count=0)


def _new_events(net: EvilNet, before: int) -> list[dict[str, Any]]:
    return net.event_lines()[before:]


def _assert_failed_not_answered(answer: Answer) -> None:
    """What the user relies on: no hit and no no-hit, and no response body to read."""
    assert answer.outcome == Outcome.FAILED, answer
    assert answer.response is None
    assert answer.matches == []
