"""The gateway releases no answer before its audit row is committed: in-process, with a
stand-in for the bureau node, and an audit log that refuses to be written."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import grpc
import pytest

from ncbsim import envelope, pki
from ncbsim.client import seal_query
from ncbsim.gateway.audit import AuditLog, read_all
from ncbsim.gateway.config import GatewayConfig
from ncbsim.gateway.parts import GatewayParts
from ncbsim.gateway.server import GatewayService
from ncbsim.identity import Identity
from ncbsim.v2 import bureau_pb2, gateway_pb2, query_pb2
from ncbsim.workdir import GatewayFiles

ANSWER = envelope.Envelope(sealed=b"sealed answer")


class _AbortedError(Exception):
    def __init__(self, code: grpc.StatusCode, detail: str) -> None:
        super().__init__(f"{code.name}: {detail}")
        self.code = code
        self.detail = detail


class _Context:
    """What Query and MultiQuery read of a gRPC context: FR's mTLS identity, and abort."""

    def peer_identity_key(self) -> str:
        return "x509_subject_alternative_name"

    def peer_identities(self) -> list[bytes]:
        return [pki.bureau_dns_name("FR").encode()]

    def time_remaining(self) -> float | None:
        return None

    async def abort(
        self, code: grpc.StatusCode, detail: str, trailing_metadata: object = ()
    ) -> None:
        raise _AbortedError(code, detail)


class _Node:
    """A bureau node that answers every envelope with ANSWER (and notes each deadline)."""

    timeouts: ClassVar[list[float]] = []

    async def Handle(  # noqa: N802 - the stub's name
        self, request: bureau_pb2.HandleRequest, timeout: float
    ) -> bureau_pb2.HandleResponse:
        self.timeouts.append(timeout)
        return bureau_pb2.HandleResponse(envelope=ANSWER)


@dataclass
class _Route:
    stub: _Node
    handle_raw: Any = None  # no raw Handle: the relay sends and reads messages


class _Router:
    """Every bureau is registered, and routed to the stand-in node."""

    def get(self, bureau: str) -> _Route:
        return _Route(_Node())

    def drop(self, bureau: str) -> None:
        pass


@dataclass
class _Gateway:
    service: GatewayService
    audit_path: Path
    directory: pki.PkiDir
    audit: AuditLog | None = None


@pytest.fixture
def gateway(pki_dir: pki.PkiDir, tmp_path: Path) -> Iterator[_Gateway]:
    config = GatewayConfig(pki=pki_dir, files=GatewayFiles.beside(tmp_path / "audit.sqlite"))
    audit = AuditLog(config.files.audit, batch_wait_s=3600.0)  # only commits write
    router: Any = _Router()
    try:
        yield _Gateway(
            GatewayService(GatewayParts(config, router, audit)), config.files.audit, pki_dir
        )
    finally:
        audit.close()


def _sealed(gateway: _Gateway, to: str) -> envelope.SealedRequest:
    now = int(time.time() * 1000)
    me = Identity.load(gateway.directory, "FR", now_ms=now)
    peer = Identity.load(gateway.directory, to, now_ms=now).as_peer()
    return seal_query(me, peer, query_pb2.Query())


def _refuse_inserts(path: Path) -> None:
    """From now on SQLite refuses every row, as a full disk would."""
    db = sqlite3.connect(path)
    with db:
        db.execute(
            "CREATE TRIGGER full BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'full'); END"
        )
    db.close()


def test_an_answer_leaves_with_its_row_already_committed(gateway: _Gateway) -> None:
    """When Query returns the node's answer, its delivered row is already in the file
    (the log here writes nothing but commits)."""
    sealed = _sealed(gateway, "DE")
    raw = gateway_pb2.QueryRequest(envelope=sealed.envelope).SerializeToString()
    answer = asyncio.run(gateway.service.Query(raw, _Context()))
    assert answer.envelope == ANSWER
    rows = read_all(gateway.audit_path)
    assert [(r.message_id, r.outcome) for r in rows] == [(sealed.header.message_hex, "delivered")]


def test_an_answer_whose_row_cannot_be_written_is_held_back(gateway: _Gateway) -> None:
    """If its audit row cannot be committed, the caller gets UNAVAILABLE, not the answer."""
    _refuse_inserts(gateway.audit_path)
    raw = gateway_pb2.QueryRequest(envelope=_sealed(gateway, "DE").envelope).SerializeToString()
    with pytest.raises(_AbortedError) as held:
        asyncio.run(gateway.service.Query(raw, _Context()))
    assert held.value.code == grpc.StatusCode.UNAVAILABLE
    assert "audit" in held.value.detail


def test_a_multi_query_answer_whose_row_cannot_be_written_is_held_back(
    gateway: _Gateway,
) -> None:
    """Each bureau's answer in a multi-bureau reply is held back, as no answer, if its row
    cannot be committed."""
    _refuse_inserts(gateway.audit_path)
    request = gateway_pb2.MultiQueryRequest(
        envelopes=[_sealed(gateway, to).envelope for to in ("DE", "IT")]
    )
    reply = asyncio.run(gateway.service.MultiQuery(request.SerializeToString(), _Context()))
    assert [(d.bureau, d.status) for d in reply.deliveries] == [
        ("DE", gateway_pb2.DELIVERY_STATUS_NO_ANSWER),
        ("IT", gateway_pb2.DELIVERY_STATUS_NO_ANSWER),
    ]
    assert not any(d.HasField("response") for d in reply.deliveries)


def test_a_refusal_is_committed_before_it_is_sent(gateway: _Gateway) -> None:
    """A refused request (bytes that are no envelope) is in the file by the time the
    caller hears of the refusal."""
    with pytest.raises(_AbortedError) as refused:
        asyncio.run(gateway.service.Query(b"\xff\xff\xff\xff\x00garbage", _Context()))
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [r.outcome for r in read_all(gateway.audit_path)] == ["refused"]


def test_a_refusal_goes_out_even_if_its_row_cannot_be_written(gateway: _Gateway) -> None:
    """A refusal carries nothing, so it is sent even when the audit cannot be written."""
    _refuse_inserts(gateway.audit_path)
    with pytest.raises(_AbortedError) as refused:
        asyncio.run(gateway.service.Query(b"\xff\xff\xff\xff\x00garbage", _Context()))
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT


class _TwoSeconds(_Context):
    def time_remaining(self) -> float | None:
        return 2.0


def test_a_fan_out_keeps_a_fifth_of_the_callers_deadline_for_its_reply(
    gateway: _Gateway,
) -> None:
    """MultiQuery stops waiting for bureaus 400 ms before a 2 s deadline, so the merged
    reply reaches the caller in time even when one bureau never answers (a late reply
    would lose every bureau's answer, not only the silent one's)."""
    _Node.timeouts.clear()
    request = gateway_pb2.MultiQueryRequest(
        envelopes=[_sealed(gateway, to).envelope for to in ("DE", "IT")]
    )
    asyncio.run(gateway.service.MultiQuery(request.SerializeToString(), _TwoSeconds()))
    assert _Node.timeouts == pytest.approx([1.6, 1.6], abs=0.05)


class _RawNode:
    """Bureau.Handle as bytes: notes each request as it came, answers ``answer``."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.requests: list[bytes] = []

    async def __call__(self, request: bytes, timeout: float) -> bytes:
        self.requests.append(request)
        return self.answer


class _RawRouter:
    def __init__(self, node: _RawNode) -> None:
        self.node = node

    def get(self, bureau: str) -> _Route:
        return _Route(_Node(), self.node)

    def drop(self, bureau: str) -> None:
        pass


def _raw_gateway(pki_dir: pki.PkiDir, tmp_path: Path, answer: bytes) -> tuple[_Gateway, _RawNode]:
    config = GatewayConfig(pki=pki_dir, files=GatewayFiles.beside(tmp_path / "audit.sqlite"))
    audit = AuditLog(config.files.audit, batch_wait_s=3600.0)
    node = _RawNode(answer)
    router: Any = _RawRouter(node)
    service = GatewayService(GatewayParts(config, router, audit))
    return _Gateway(service, config.files.audit, pki_dir, audit), node


def test_a_query_is_relayed_as_bytes_and_its_answer_too(
    pki_dir: pki.PkiDir, tmp_path: Path
) -> None:
    """A Query that is exactly one envelope goes to the node in its own bytes (a
    HandleRequest is the same bytes) and the node's answer comes back as it came, with
    its size audited."""
    answer = bureau_pb2.HandleResponse(envelope=ANSWER).SerializeToString()
    gateway, node = _raw_gateway(pki_dir, tmp_path, answer)
    sealed = _sealed(gateway, "DE")
    raw = gateway_pb2.QueryRequest(envelope=sealed.envelope).SerializeToString()
    try:
        reply = asyncio.run(gateway.service.Query(raw, _Context()))
    finally:
        gateway.audit.close()
    assert reply == answer
    assert gateway_pb2.QueryResponse.FromString(reply).envelope == ANSWER
    assert node.requests == [raw]
    assert bureau_pb2.HandleRequest.FromString(node.requests[0]).envelope == sealed.envelope
    [row] = read_all(gateway.audit_path)
    assert (row.outcome, row.response_bytes) == ("delivered", ANSWER.ByteSize())


def test_a_query_with_more_than_its_envelope_sends_the_envelope_alone(
    pki_dir: pki.PkiDir, tmp_path: Path
) -> None:
    """Bytes beyond the envelope in a Query (an unknown field) never reach the node: the
    envelope is serialized again on its own. And a node's answer with more than its
    envelope is parsed and sent back as the envelope alone."""
    extra = b"\x12\x03abc"  # field 2, three bytes: no field of a QueryRequest
    answer = bureau_pb2.HandleResponse(envelope=ANSWER).SerializeToString() + extra
    gateway, node = _raw_gateway(pki_dir, tmp_path, answer)
    sealed = _sealed(gateway, "DE")
    raw = gateway_pb2.QueryRequest(envelope=sealed.envelope).SerializeToString() + extra
    try:
        reply = asyncio.run(gateway.service.Query(raw, _Context()))
    finally:
        gateway.audit.close()
    assert node.requests == [bureau_pb2.HandleRequest(envelope=sealed.envelope).SerializeToString()]
    assert isinstance(reply, gateway_pb2.QueryResponse)
    assert (
        reply.SerializeToString() == gateway_pb2.QueryResponse(envelope=ANSWER).SerializeToString()
    )


def test_an_answer_that_is_no_handle_response_is_refused(
    pki_dir: pki.PkiDir, tmp_path: Path
) -> None:
    """A node's answer that does not parse is not relayed: the caller gets INTERNAL, as
    when gRPC's deserializer fails, and the row says refused."""
    gateway, _ = _raw_gateway(pki_dir, tmp_path, b"\xff\xff\xff\xff\x00garbage")
    raw = gateway_pb2.QueryRequest(envelope=_sealed(gateway, "DE").envelope).SerializeToString()
    try:
        with pytest.raises(_AbortedError) as refused:
            asyncio.run(gateway.service.Query(raw, _Context()))
    finally:
        gateway.audit.close()
    assert refused.value.code == grpc.StatusCode.INTERNAL
    assert [(r.outcome, r.status) for r in read_all(gateway.audit_path)] == [
        ("refused", "INTERNAL")
    ]
