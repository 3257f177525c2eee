"""The in-process gateways and the test bureau that tests/gateway's tests share.

Two gateways on real mTLS sockets in the test's event loop: :func:`mailbox_gateway`,
with its mailbox (a real SQLite file) and its deliverer, for Post, Receipts and delivery;
:func:`relay_gateway`, with no mailbox, for the relay's and the control plane's limits.
The bureau is :class:`DeliverServicer`, a small Bureau servicer on 127.0.0.1 with DE's
certificate: it opens each envelope with ncbsim.envelope and signs receipts with
ncbsim.receipts, as a node does (the real node is tested in tests/node).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from support import document_query

from ncbsim import envelope, pki, receipts, transport
from ncbsim.client import seal_query
from ncbsim.directory import Peer
from ncbsim.errors import DirectoryError, EnvelopeError
from ncbsim.gateway.audit import AuditLog, AuditRecord, read_all
from ncbsim.gateway.config import GatewayConfig
from ncbsim.gateway.delivery import Deliverer
from ncbsim.gateway.limits import BureauLimit, RateLimiter
from ncbsim.gateway.mailbox import Mailbox
from ncbsim.gateway.parts import GatewayParts
from ncbsim.gateway.router import Router
from ncbsim.gateway.server import GatewayService, add_to_server
from ncbsim.identity import Identity
from ncbsim.pki import GATEWAY_NAME
from ncbsim.serving import Served, start_server
from ncbsim.v2 import (
    bureau_pb2,
    bureau_pb2_grpc,
    envelope_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
)
from ncbsim.workdir import GatewayFiles

BUREAUS = ["FR", "DE", "IT", "GS"]
SEND_ONLY = "MC"


def now_ms() -> int:
    return int(time.time() * 1000)


def load_identity(directory: pki.PkiDir, code: str) -> Identity:
    return Identity.load(directory, code, now_ms=now_ms())


def seal_post(
    directory: pki.PkiDir,
    sender: str,
    recipient: str,
    *,
    kind: int = envelope.DIFFUSION,
    text: bytes = b"alert",
    ttl_ms: int = 60_000,
) -> envelope.Envelope:
    """A real one-way envelope from ``sender`` to ``recipient``."""
    return envelope.seal_message(
        text,
        sender=load_identity(directory, sender),
        recipient=load_identity(directory, recipient).as_peer(),
        kind=kind,
        post_id=os.urandom(16),
        ttl_ms=ttl_ms,
    )


def forged_post(sender: str = "FR", recipient: str = "DE", **fields: Any) -> envelope.Envelope:
    """An envelope with a header the gateway checks; its body is never opened there."""
    now = now_ms()
    values: dict[str, Any] = {
        "version": 1,
        "message_id": os.urandom(16),
        "sender": sender,
        "recipient": recipient,
        "kind": envelope.DIFFUSION,
        "issued_at_ms": now,
        "expires_at_ms": now + 60_000,
        "correlation_id": os.urandom(16),
    }
    values.update(fields)
    header = envelope_pb2.Header(**values).SerializeToString()
    return envelope.Envelope(header=header, sealed=b"s" * 80, signature=b"g" * 64)


# ----------------------------------------------------------------------------- the bureau


@dataclass
class DeliverServicer(bureau_pb2_grpc.BureauServiceServicer):  # type: ignore[misc]
    """DE's Bureau.Deliver as a node does it: open, dedup by (sender, message id), receipt."""

    directory: pki.PkiDir
    code: str = "DE"
    processed: list[bytes] = field(default_factory=list)
    receipts: dict[tuple[str, bytes], receipts.SignedReceipt] = field(default_factory=dict)
    calls: int = 0
    corrupt_receipts: bool = False
    stop_after: int | None = None
    stall_senders: set[str] = field(default_factory=set)
    """Stop the batch at the first copy from one of these (as a node does when its
    directory does not name the sender's signing key yet)."""
    """Answer only this many results per call (a node that stopped part way)."""
    reject_all: str = ""
    """Reject every envelope with this coarse reason (a node whose clock runs ahead)."""
    max_envelopes: int | None = None
    """Refuse a call with more envelopes as RESOURCE_EXHAUSTED (a node's message limit)."""
    on_call: Callable[[], Awaitable[None]] | None = None
    """Awaited at the start of each call (something happens while a batch is in flight)."""
    batches: list[int] = field(default_factory=list)
    """The number of envelopes of each call."""

    def __post_init__(self) -> None:
        self.identity = load_identity(self.directory, self.code)
        self.peers = {c: load_identity(self.directory, c).as_peer() for c in BUREAUS}

    def _sender(self, code: str) -> Peer:
        try:
            return self.peers[code]
        except KeyError:
            raise DirectoryError(code) from None

    async def Deliver(  # noqa: N802 - gRPC method name
        self, request: bureau_pb2.DeliverRequest, context: grpc.aio.ServicerContext
    ) -> bureau_pb2.DeliverResponse:
        self.calls += 1
        self.batches.append(len(request.envelopes))
        assert transport.peer_is(context, GATEWAY_NAME)
        if self.on_call is not None:
            await self.on_call()
        if self.max_envelopes is not None and len(request.envelopes) > self.max_envelopes:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "message too large")
        reply = bureau_pb2.DeliverResponse()
        for item in request.envelopes:
            if self.stop_after is not None and len(reply.results) >= self.stop_after:
                break
            header = envelope.unverified_header(item)
            if header.sender in self.stall_senders:
                break
            if self.reject_all:
                reply.results.add(
                    message_id=header.message_id,
                    status=bureau_pb2.DELIVER_STATUS_REJECTED,
                    detail=self.reject_all,
                )
                continue
            try:
                opened = envelope.open_message(item, recipient=self.identity, senders=self._sender)
            except EnvelopeError:
                reply.results.add(
                    message_id=header.message_id,
                    status=bureau_pb2.DELIVER_STATUS_REJECTED,
                    detail="unverified",
                )
                continue
            key = (opened.header.sender, opened.header.message_id)
            status = bureau_pb2.DELIVER_STATUS_DUPLICATE
            if key not in self.receipts:
                status = bureau_pb2.DELIVER_STATUS_PROCESSED
                self.processed.append(opened.header.message_id)
            digest = envelope.envelope_digest(item)
            if self.corrupt_receipts:
                digest = bytes(32)
            self.receipts[key] = receipts.sign(self.identity, opened.header, digest, now_ms())
            reply.results.add(
                message_id=header.message_id, status=status, receipt=self.receipts[key]
            )
        return reply


async def serve_bureau(bureau: DeliverServicer) -> Served:
    served = await start_server(
        bureau.directory.tls(bureau.code),
        "127.0.0.1:0",
        [],
        register=lambda s: bureau_pb2_grpc.add_BureauServiceServicer_to_server(bureau, s),
    )
    await served.set_serving(True)
    return served


# ----------------------------------------------------------------------------- the gateway


@dataclass
class Gateway:
    address: str
    directory: pki.PkiDir
    mailbox: Mailbox
    deliverer: Deliverer | None
    channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)

    def stub(self, caller: str) -> gateway_pb2_grpc.GatewayServiceStub:
        if caller not in self.channels:
            self.channels[caller] = transport.gateway_channel(
                self.address, self.directory.tls(caller)
            )
        return gateway_pb2_grpc.GatewayServiceStub(self.channels[caller])

    async def post(self, caller: str, *items: envelope.Envelope) -> gateway_pb2.PostResponse:
        request = gateway_pb2.PostRequest(envelopes=items)
        reply: gateway_pb2.PostResponse = await self.stub(caller).Post(request, timeout=5)
        return reply

    async def receipts(
        self, caller: str, after: int = 0, limit: int = 0
    ) -> gateway_pb2.ReceiptsResponse:
        request = gateway_pb2.ReceiptsRequest(after_sequence=after, limit=limit)
        reply: gateway_pb2.ReceiptsResponse = await self.stub(caller).Receipts(request, timeout=5)
        return reply

    async def register(self, caller: str, address: str) -> None:
        request = gateway_pb2.RegisterRequest(address=address)
        await self.stub(caller).Register(request, timeout=5)


@contextlib.asynccontextmanager
async def mailbox_gateway(
    tmp_path: Path,
    directory: pki.PkiDir,
    *,
    deliver: bool = True,
    **config: Any,
) -> AsyncIterator[Gateway]:
    """An in-process gateway with a mailbox (and a deliverer) on a real mTLS socket."""
    settings = GatewayConfig(
        pki=directory, files=GatewayFiles.beside(tmp_path / "audit.sqlite"), **config
    )
    audit = AuditLog(settings.files.audit)
    router = Router(directory.tls("gateway"))
    mailbox = await Mailbox.open(
        tmp_path / "mailbox.sqlite",
        max_queue=settings.max_queue,
        max_queue_per_sender=settings.max_queue_per_sender,
    )
    deliverer = None
    if deliver:
        deliverer = Deliverer(
            mailbox,
            router,
            audit,
            batch=settings.delivery_batch,
            backoff_max_s=0.2,
            retention_ms=settings.mailbox_retention_ms,
        )
    service = GatewayService(
        GatewayParts(settings, router, audit, mailbox=mailbox, deliverer=deliverer)
    )
    served = await start_server(
        directory.tls("gateway"), "127.0.0.1:0", [], register=lambda s: add_to_server(service, s)
    )
    gateway = Gateway(served.address, directory, mailbox, deliverer)
    try:
        if deliverer is not None:
            await deliverer.start()
        yield gateway
    finally:
        for channel in gateway.channels.values():
            await channel.close()
        await served.server.stop(0)
        if deliverer is not None:
            await deliverer.stop()
        await router.close()
        await mailbox.close()
        audit.close()


async def wait_until(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    """Wait until ``check`` holds (polling); fail the test if it never does."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail("the expected state was never reached")
        await asyncio.sleep(0.02)


def audit_of(tmp_path: Path, rpc: str) -> list[AuditRecord]:
    return [r for r in read_all(tmp_path / "audit.sqlite") if r.rpc == rpc]


async def receipt_states(gateway: Gateway, sender: str) -> list[int]:
    return [m.state for m in (await gateway.receipts(sender)).messages]


def delivered_check(gateway: Gateway, sender: str, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        states = await receipt_states(gateway, sender)
        return states.count(gateway_pb2.MESSAGE_STATE_DELIVERED) == n

    return check


# ------------------------------------------------------------------ a gateway without a mailbox


@contextlib.asynccontextmanager
async def relay_gateway(
    directory: pki.PkiDir, limiter: RateLimiter | None = None, **fields: int
) -> AsyncIterator[str]:
    """A gateway of ``directory`` (a test's ``pki_dir``) with no mailbox; yields its address.
    Its audit trail is ``audit.sqlite`` beside the PKI's folder (:func:`audit_rows`)."""
    audit_path = directory.root.parent / "audit.sqlite"
    config = GatewayConfig(pki=directory, files=GatewayFiles.beside(audit_path), **fields)  # type: ignore[arg-type]
    audit = AuditLog(config.files.audit, batch_wait_s=0.0)
    router = Router(directory.tls("gateway"))
    service = GatewayService(GatewayParts(config, router, audit, limiter=limiter))
    served = await start_server(
        directory.tls("gateway"), "127.0.0.1:0", [], register=lambda s: add_to_server(service, s)
    )
    try:
        yield served.address
    finally:
        await served.server.stop(0)
        await router.close()
        audit.close()


def seal_query_for(directory: pki.PkiDir, sender: str, recipient: str) -> envelope.SealedRequest:
    now = int(time.time() * 1000)
    me = Identity.load(directory, sender, now_ms=now)
    peer = Identity.load(directory, recipient, now_ms=now).as_peer()
    return seal_query(me, peer, document_query("X1", "DE"))


def query_request(item: envelope.Envelope) -> bytes:
    """The bytes of a QueryRequest holding ``item``."""
    return gateway_pb2.QueryRequest(envelope=item).SerializeToString()


async def raw_call(
    channel: grpc.aio.Channel, method: str, payload: bytes
) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    call = channel.unary_unary(
        f"/ncbsim.v2.GatewayService/{method}", request_serializer=None, response_deserializer=None
    )
    try:
        await call(payload, timeout=5)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or "", dict(exc.trailing_metadata() or ())
    return grpc.StatusCode.OK, "", {}


def audit_rows(tmp_path: Path) -> list[AuditRecord]:
    return read_all(tmp_path / "audit.sqlite")


# ----------------------------------------------------------------------------- a fake clock


NOON_MS = int(datetime(2026, 11, 27, 12, tzinfo=UTC).timestamp() * 1000)


class FakeClock:
    """Monotonic seconds and wall-clock milliseconds that move only when told."""

    def __init__(self, wall_ms: int = NOON_MS) -> None:
        self.mono = 1_000.0
        self.wall = wall_ms

    def monotonic(self) -> float:
        return self.mono

    def wall_ms(self) -> int:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += round(seconds * 1000)


def fake_limiter(
    clock: FakeClock,
    *,
    rate: float = 10.0,
    burst: int = 5,
    quota: int = 1_000,
    overrides: dict[str, BureauLimit] | None = None,
) -> RateLimiter:
    default = BureauLimit(rate_per_s=rate, burst=burst, daily_quota=quota)
    return RateLimiter(default, overrides, monotonic=clock.monotonic, wall_ms=clock.wall_ms)
