"""Bureau.Handle in-process: the failure paths that need a broken part to reach."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from support import document_query

from ncbsim import auditread, envelope, pki
from ncbsim.directory import Directory
from ncbsim.identity import Identity
from ncbsim.node import datagen
from ncbsim.node.audit import NodeAuditLog
from ncbsim.node.replay import ReplayCache
from ncbsim.node.server import BureauService
from ncbsim.node.store import RecordStore
from ncbsim.peers import Peers
from ncbsim.v2 import bureau_pb2


class _AbortedError(Exception):
    def __init__(self, code: grpc.StatusCode, detail: str) -> None:
        super().__init__(f"{code.name}: {detail}")
        self.code = code
        self.detail = detail


class _GatewayContext:
    """What Handle reads of a gRPC context: the gateway's mTLS identity, and abort."""

    def peer_identity_key(self) -> str:
        return "x509_subject_alternative_name"

    def peer_identities(self) -> list[bytes]:
        return [pki.GATEWAY_NAME.encode()]

    async def abort(
        self, code: grpc.StatusCode, detail: str, trailing_metadata: object = ()
    ) -> None:
        raise _AbortedError(code, detail)


@dataclass
class _Node:
    service: BureauService
    replay: ReplayCache
    audit: NodeAuditLog
    audit_path: Path
    requester: Identity
    directory: Directory


@pytest.fixture(scope="module")
def pki_bureaus() -> list[str]:
    """DE's node and FR, its requester."""
    return ["FR", "DE"]


@pytest.fixture
def node(pki_dir: pki.PkiDir, tmp_path: Path) -> Iterator[_Node]:
    db = tmp_path / "records.sqlite"
    datagen.generate(db, "DE", seed=1, documents=20, persons=5, vehicles=5)
    now = int(time.time() * 1000)
    verified = Directory.from_pki(pki_dir)
    store = RecordStore(db)
    replay = ReplayCache(tmp_path / "replay.sqlite", clock_skew_ms=30_000)
    audit_path = tmp_path / "audit.sqlite"
    audit = NodeAuditLog(audit_path, batch_wait_s=3600.0)  # rows not committed wait for close
    service = BureauService(
        Identity.load(pki_dir, "DE", now_ms=now),
        Peers(verified, gateway=None),  # every sender is already verified
        store,
        audit,
        replay,
    )
    try:
        yield _Node(
            service, replay, audit, audit_path, Identity.load(pki_dir, "FR", now_ms=now), verified
        )
    finally:
        store.close()
        replay.close()
        audit.close()


def _request(node: _Node) -> bytes:
    key, public = envelope.new_response_key()
    body = document_query("X1", "DE", response_key=public)
    sealed = envelope.seal_request(
        body.SerializeToString(),
        sender=node.requester,
        recipient=node.directory.get("DE"),
        response_key=key,
    )
    return bytes(bureau_pb2.HandleRequest(envelope=sealed.envelope).SerializeToString())


def _handle(node: _Node, raw: bytes) -> envelope.Envelope:
    return asyncio.run(node.service.Handle(raw, _GatewayContext())).envelope


def _reasons(node: _Node) -> list[tuple[str, str]]:
    node.audit.close()  # flushes every queued row
    _, rows = auditread.search(node.audit_path, auditread.Query())
    return [(str(r[-3]), str(r[-4])) for r in rows]  # (status, reason)


def test_a_well_formed_request_is_answered(node: _Node) -> None:
    """Control: the harness reaches the answering path."""
    response = _handle(node, _request(node))
    assert envelope.unverified_header(response).recipient == "FR"
    assert _reasons(node) == [("OK", "")]


def test_replay_cache_failure_is_internal_and_audited(node: _Node) -> None:
    """A replay cache that cannot be written fails closed: INTERNAL with no detail, audited,
    never answered (the node cannot promise to answer only once)."""
    node.replay.close()  # every later use of the cache raises sqlite3.ProgrammingError
    with pytest.raises(_AbortedError) as refused:
        _handle(node, _request(node))
    assert (refused.value.code, refused.value.detail) == (
        grpc.StatusCode.INTERNAL,
        "internal error",
    )
    assert _reasons(node) == [("INTERNAL", "internal")]


def test_an_answer_whose_audit_row_cannot_be_written_is_held_back(node: _Node) -> None:
    """If its audit row cannot be committed, the node answers INTERNAL, not the answer:
    no answer leaves without its trace."""
    db = sqlite3.connect(node.audit_path)
    with db:
        db.execute(
            "CREATE TRIGGER full BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'full'); END"
        )
    db.close()
    with pytest.raises(_AbortedError) as held:
        _handle(node, _request(node))
    assert (held.value.code, held.value.detail) == (grpc.StatusCode.INTERNAL, "internal error")


def test_an_answer_leaves_with_its_audit_row_committed(node: _Node) -> None:
    """When Handle returns the answer, its row is already in the file (this log writes
    nothing but commits before it closes): a crash of the node then would not erase it."""
    raw = _request(node)
    _handle(node, raw)
    columns, rows = auditread.search(node.audit_path, auditread.Query())
    found = [dict(zip(columns, row, strict=True)) for row in rows]
    request = envelope.unverified_header(bureau_pb2.HandleRequest.FromString(raw).envelope)
    assert [(r["message_id"], r["outcome"]) for r in found] == [(request.message_hex, "answered")]
