"""Gateway.Post, Gateway.Receipts and delivery to a bureau, in-process on real mTLS sockets.

The gateway service, its mailbox (a real SQLite file) and its deliverer run in the test's
event loop. The bureau is the test's own small Bureau servicer on 127.0.0.1 with DE's
certificate: it opens each envelope with ncbsim.envelope and signs receipts with
ncbsim.receipts, as a node does (the real node is tested in tests/node).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from ncbsim import envelope, pki, receipts, transport
from ncbsim.directory import Peer
from ncbsim.errors import RETRY_AFTER_KEY, DirectoryError, EnvelopeError, is_queue_full
from ncbsim.gateway.audit import AuditLog, AuditRecord, read_all
from ncbsim.gateway.config import GatewayConfig
from ncbsim.gateway.delivery import Deliverer
from ncbsim.gateway.mailbox import Mailbox
from ncbsim.gateway.router import Router
from ncbsim.gateway.server import GatewayService, add_to_server
from ncbsim.identity import Identity
from ncbsim.pki import GATEWAY_NAME
from ncbsim.serving import Served, start_server
from ncbsim.v2 import bureau_pb2, bureau_pb2_grpc, envelope_pb2, gateway_pb2, gateway_pb2_grpc
from ncbsim.workdir import GatewayFiles

BUREAUS = ["FR", "DE", "IT", "GS"]
SEND_ONLY = "MC"


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> pki.PkiDir:
    """One PKI for the module: FR, DE, IT, the General Secretariat, and MC, a send-only
    bureau (it runs no node)."""
    directory = pki.init(tmp_path_factory.mktemp("pki") / "pki", BUREAUS)
    pki.add_bureau(directory, SEND_ONLY, requester_only=True)
    return directory


def _now() -> int:
    return int(time.time() * 1000)


def _identity(directory: pki.PkiDir, code: str) -> Identity:
    return Identity.load(directory, code, now_ms=_now())


def _seal(
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
        sender=_identity(directory, sender),
        recipient=_identity(directory, recipient).as_peer(),
        kind=kind,
        post_id=os.urandom(16),
        ttl_ms=ttl_ms,
    )


def _forged(sender: str = "FR", recipient: str = "DE", **fields: Any) -> envelope.Envelope:
    """An envelope with a header the gateway checks; its body is never opened there."""
    now = _now()
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
        self.identity = _identity(self.directory, self.code)
        self.peers = {c: _identity(self.directory, c).as_peer() for c in BUREAUS}

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
            self.receipts[key] = receipts.sign(self.identity, opened.header, digest, _now())
            reply.results.add(
                message_id=header.message_id, status=status, receipt=self.receipts[key]
            )
        return reply


async def _serve_bureau(bureau: DeliverServicer) -> Served:
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
async def _gateway(
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
    service = GatewayService(settings, router, audit, mailbox=mailbox, deliverer=deliverer)
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


async def _until(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    """Wait until ``check`` holds (polling); fail the test if it never does."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail("the expected state was never reached")
        await asyncio.sleep(0.02)


def _audit(tmp_path: Path, rpc: str) -> list[AuditRecord]:
    return [r for r in read_all(tmp_path / "audit.sqlite") if r.rpc == rpc]


async def _states(gateway: Gateway, sender: str) -> list[int]:
    return [m.state for m in (await gateway.receipts(sender)).messages]


def _delivered(gateway: Gateway, sender: str, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        states = await _states(gateway, sender)
        return states.count(gateway_pb2.MESSAGE_STATE_DELIVERED) == n

    return check


# ----------------------------------------------------------------------------- Post admission

REFUSALS = {
    "send-only-recipient": (
        lambda d: _seal(d, "FR", SEND_ONLY),
        grpc.StatusCode.FAILED_PRECONDITION,
        "MC only sends: it runs no node to deliver to",
    ),
    "wrong-sender": (
        lambda d: _forged(sender="IT"),
        grpc.StatusCode.PERMISSION_DENIED,
        "sender",
    ),
    "query-kind": (
        lambda d: _forged(kind=envelope.QUERY_REQUEST),
        grpc.StatusCode.INVALID_ARGUMENT,
        "envelope rejected",
    ),
    "15-byte-message-id": (
        lambda d: _forged(message_id=os.urandom(15)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "envelope rejected",
    ),
    "15-byte-post-id": (
        lambda d: _forged(correlation_id=os.urandom(15)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "envelope rejected",
    ),
    "notice-not-from-gs": (
        lambda d: _forged(kind=envelope.NOTICE),
        grpc.StatusCode.PERMISSION_DENIED,
        "only GS",
    ),
    "notice-request-not-to-gs": (
        lambda d: _forged(kind=envelope.NOTICE_REQUEST),
        grpc.StatusCode.INVALID_ARGUMENT,
        "GS only",
    ),
    "unknown-recipient": (
        lambda d: _forged(recipient="ZZ"),
        grpc.StatusCode.NOT_FOUND,
        "ZZ",
    ),
    "to-itself": (
        lambda d: _forged(recipient="FR"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "itself",
    ),
    "expired": (
        lambda d: _forged(expires_at_ms=_now() - 1),
        grpc.StatusCode.INVALID_ARGUMENT,
        "expired",
    ),
    "ttl-over-24h": (
        lambda d: _forged(expires_at_ms=_now() + envelope.MAX_TTL_MS + 60_000),
        grpc.StatusCode.INVALID_ARGUMENT,
        "24 h",
    ),
    "issued-in-the-future": (
        lambda d: _forged(
            issued_at_ms=_now() + envelope.CLOCK_SKEW_MS + 60_000,
            expires_at_ms=_now() + envelope.CLOCK_SKEW_MS + 120_000,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "issued in the future",
    ),
    "oversized": (
        lambda d: _seal(d, "FR", "DE", text=b"x" * 5_000),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "exceeds",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
@pytest.mark.attack(
    "a Post with one envelope that breaks a rule: another bureau as sender, a query kind, "
    "bad ids, a NOTICE not from GS, a send-only or unknown recipient, an expired or "
    "future-dated or oversized envelope",
    adversary="rogue bureau",
    expect="the whole call refused with a clear status (PERMISSION_DENIED, INVALID_ARGUMENT, "
    "NOT_FOUND, FAILED_PRECONDITION or RESOURCE_EXHAUSTED); a refused audit row per "
    "envelope; nothing stored",
)
def test_post_refusal_refuses_the_whole_call_and_audits_each_envelope(
    tmp_path: Path, pki_dir: pki.PkiDir, case: str
) -> None:
    """One bad envelope refuses the whole Post with a clear status; each envelope gets a
    refused audit row, and nothing is stored."""
    make, code, detail = REFUSALS[case]
    good = _seal(pki_dir, "FR", "IT")
    bad = make(pki_dir)

    async def main() -> tuple[grpc.StatusCode, str, int]:
        async with _gateway(tmp_path, pki_dir, max_envelope_bytes=4_096) as gateway:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await gateway.post("FR", good, bad)
            return caught.value.code(), caught.value.details() or "", gateway.mailbox.queued()

    got_code, got_detail, queued = asyncio.run(main())
    assert got_code == code
    assert detail in got_detail
    assert queued == 0
    rows = _audit(tmp_path, "Post")
    assert [(r.peer, r.outcome, r.status) for r in rows] == [("FR", "refused", code.name)] * 2
    assert rows[0].recipient == "IT"


def test_post_accepts_and_a_retry_is_a_duplicate_with_the_same_sequence(
    tmp_path: Path, pki_dir: pki.PkiDir
) -> None:
    """Post stores each copy (ACCEPTED, a sequence); the same envelopes again are DUPLICATE
    with the original sequences, and both calls are audited per envelope."""
    items = [_seal(pki_dir, "FR", "DE"), _seal(pki_dir, "FR", "IT")]

    async def main() -> tuple[gateway_pb2.PostResponse, gateway_pb2.PostResponse]:
        async with _gateway(tmp_path, pki_dir, deliver=False) as gateway:
            return await gateway.post("FR", *items), await gateway.post("FR", *items)

    first, again = asyncio.run(main())
    assert [(r.recipient, r.status, r.sequence) for r in first.results] == [
        ("DE", gateway_pb2.POST_STATUS_ACCEPTED, 1),
        ("IT", gateway_pb2.POST_STATUS_ACCEPTED, 2),
    ]
    assert [(r.status, r.sequence) for r in again.results] == [
        (gateway_pb2.POST_STATUS_DUPLICATE, 1),
        (gateway_pb2.POST_STATUS_DUPLICATE, 2),
    ]
    assert [r.accepted_at_ms for r in again.results] == [r.accepted_at_ms for r in first.results]
    rows = _audit(tmp_path, "Post")
    assert [(r.recipient, r.outcome, r.kind) for r in rows] == [
        ("DE", "accepted", "diffusion"),
        ("IT", "accepted", "diffusion"),
        ("DE", "duplicate", "diffusion"),
        ("IT", "duplicate", "diffusion"),
    ]


def test_full_queue_is_resource_exhausted_with_a_retry_hint(
    tmp_path: Path, pki_dir: pki.PkiDir
) -> None:
    """Over max_queue a Post to that bureau alone is RESOURCE_EXHAUSTED with retry-after-ms;
    a Post that also reaches another bureau is OK with QUEUE_FULL for the full one."""

    async def main() -> tuple[grpc.aio.AioRpcError, gateway_pb2.PostResponse]:
        async with _gateway(tmp_path, pki_dir, deliver=False, max_queue=1) as gateway:
            await gateway.post("FR", _seal(pki_dir, "FR", "DE"))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await gateway.post("FR", _seal(pki_dir, "FR", "DE"))
            mixed = await gateway.post("FR", _seal(pki_dir, "FR", "DE"), _seal(pki_dir, "FR", "IT"))
            return caught.value, mixed

    error, mixed = asyncio.run(main())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "queue for DE is full" in (error.details() or "")
    assert dict(error.trailing_metadata() or ())[RETRY_AFTER_KEY] == "1000"
    assert is_queue_full(error)  # told apart from a rate limit by its trailer, not its text
    assert [(r.recipient, r.status, r.sequence) for r in mixed.results] == [
        ("DE", gateway_pb2.POST_STATUS_QUEUE_FULL, 0),
        ("IT", gateway_pb2.POST_STATUS_ACCEPTED, 2),
    ]
    rows = _audit(tmp_path, "Post")
    assert [(r.recipient, r.outcome, r.status) for r in rows] == [
        ("DE", "accepted", "OK"),
        ("DE", "queue_full", "RESOURCE_EXHAUSTED"),
        ("DE", "queue_full", "RESOURCE_EXHAUSTED"),
        ("IT", "accepted", "OK"),
    ]


def test_one_sender_cannot_fill_a_recipients_queue_and_notices_still_get_in(
    tmp_path: Path, pki_dir: pki.PkiDir
) -> None:
    """Over max_queue_per_sender FR's copies to DE are QUEUE_FULL naming that bound, while
    IT still gets in; once DE's total is full, GS's notice still gets in."""

    async def main() -> tuple[str, list[int], list[int]]:
        async with _gateway(
            tmp_path, pki_dir, deliver=False, max_queue=3, max_queue_per_sender=2
        ) as gateway:
            await gateway.post("FR", _seal(pki_dir, "FR", "DE"), _seal(pki_dir, "FR", "DE"))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await gateway.post("FR", _seal(pki_dir, "FR", "DE"))
            it = await gateway.post("IT", _seal(pki_dir, "IT", "DE"), _seal(pki_dir, "IT", "DE"))
            notice = await gateway.post("GS", _seal(pki_dir, "GS", "DE", kind=envelope.NOTICE))
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert it.results[1].detail == "queue for DE is full (3 messages waiting)"
            return (
                caught.value.details() or "",
                [r.status for r in it.results],
                [r.status for r in notice.results],
            )

    detail, it, notice = asyncio.run(main())
    assert detail == "queue from FR to DE is full (2 of FR's messages waiting); retry later"
    assert it == [gateway_pb2.POST_STATUS_ACCEPTED, gateway_pb2.POST_STATUS_QUEUE_FULL]
    assert notice == [gateway_pb2.POST_STATUS_ACCEPTED]


def test_a_message_id_reused_by_another_envelope_refuses_the_whole_call(
    tmp_path: Path, pki_dir: pki.PkiDir
) -> None:
    """A different envelope under a stored message id is INVALID_ARGUMENT for the whole
    call (nothing of it stored, each envelope audited refused); a byte-identical retry is
    still DUPLICATE."""
    first = _seal(pki_dir, "FR", "DE")
    forged = envelope.Envelope(header=first.header, sealed=b"other", signature=first.signature)
    fresh = _seal(pki_dir, "FR", "IT")

    async def main() -> tuple[grpc.aio.AioRpcError, gateway_pb2.PostResponse, int]:
        async with _gateway(tmp_path, pki_dir, deliver=False) as gateway:
            await gateway.post("FR", first)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await gateway.post("FR", fresh, forged)
            retry = await gateway.post("FR", first)
            return caught.value, retry, len((await gateway.receipts("FR")).messages)

    error, retry, stored = asyncio.run(main())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "message id reused by a different envelope"
    assert [(r.status, r.sequence) for r in retry.results] == [
        (gateway_pb2.POST_STATUS_DUPLICATE, 1)
    ]
    assert stored == 1
    rows = _audit(tmp_path, "Post")
    assert [(r.recipient, r.outcome, r.status) for r in rows] == [
        ("DE", "accepted", "OK"),
        ("IT", "refused", "INVALID_ARGUMENT"),
        ("DE", "refused", "INVALID_ARGUMENT"),
        ("DE", "duplicate", "OK"),
    ]


def test_receipts_after_the_largest_sequence_lists_nothing(
    tmp_path: Path, pki_dir: pki.PkiDir
) -> None:
    """An after_sequence at or above 2**63 (past SQLite's integers) is an empty page."""

    async def main() -> list[tuple[int, bool]]:
        async with _gateway(tmp_path, pki_dir, deliver=False) as gateway:
            await gateway.post("FR", _seal(pki_dir, "FR", "DE"))
            pages = []
            for after in (2**63 - 1, 2**63, 2**64 - 1):
                page = await gateway.receipts("FR", after=after)
                pages.append((len(page.messages), page.more))
            return pages

    assert asyncio.run(main()) == [(0, False)] * 3


def test_a_failing_mailbox_call_ends_unavailable_and_is_audited(
    tmp_path: Path, pki_dir: pki.PkiDir
) -> None:
    """Any error of the mailbox (not only SQLite's) ends Post and Receipts UNAVAILABLE,
    never UNKNOWN, with a refused audit row per envelope (one for Receipts)."""

    async def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the mailbox is closed")

    async def main() -> list[grpc.StatusCode]:
        async with _gateway(tmp_path, pki_dir, deliver=False) as gateway:
            gateway.mailbox.accept = boom  # type: ignore[method-assign]
            gateway.mailbox.posted = boom  # type: ignore[method-assign]
            codes = []
            with pytest.raises(grpc.aio.AioRpcError) as post:
                await gateway.post("FR", _seal(pki_dir, "FR", "DE"), _seal(pki_dir, "FR", "IT"))
            codes.append(post.value.code())
            with pytest.raises(grpc.aio.AioRpcError) as listing:
                await gateway.receipts("FR")
            codes.append(listing.value.code())
            return codes

    assert asyncio.run(main()) == [grpc.StatusCode.UNAVAILABLE] * 2
    assert [(r.recipient, r.outcome, r.status) for r in _audit(tmp_path, "Post")] == [
        ("DE", "refused", "UNAVAILABLE"),
        ("IT", "refused", "UNAVAILABLE"),
    ]
    assert [(r.peer, r.outcome, r.status) for r in _audit(tmp_path, "Receipts")][-1] == (
        "FR",
        "refused",
        "UNAVAILABLE",
    )


def test_a_post_stored_but_not_audited_is_held_back_and_a_retry_audits_it(
    tmp_path: Path, pki_dir: pki.PkiDir
) -> None:
    """If the copies are stored but their rows cannot be committed, Post answers no
    receipts (UNAVAILABLE, saying it could not audit them, not that nothing was stored),
    writes no refused rows for stored copies, and the sender's retry gets the original
    sequences as duplicates, audited."""
    items = [_seal(pki_dir, "FR", "DE"), _seal(pki_dir, "FR", "IT")]

    def accepted_rows_refused(on: bool) -> None:
        db = sqlite3.connect(tmp_path / "audit.sqlite")
        with db:
            if on:  # only the accepted rows: a refused row would still get in
                db.execute(
                    "CREATE TRIGGER full BEFORE INSERT ON audit WHEN NEW.outcome = 'accepted' "
                    "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
                )
            else:
                db.execute("DROP TRIGGER full")
        db.close()

    async def main() -> tuple[grpc.aio.AioRpcError, int, list[AuditRecord], Any]:
        async with _gateway(tmp_path, pki_dir, deliver=False) as gateway:
            accepted_rows_refused(True)
            with pytest.raises(grpc.aio.AioRpcError) as held:
                await gateway.post("FR", *items)
            queued = gateway.mailbox.queued()
            rows = _audit(tmp_path, "Post")
            accepted_rows_refused(False)
            return held.value, queued, rows, await gateway.post("FR", *items)

    held, queued, rows_then, retry = asyncio.run(main())
    assert held.code() == grpc.StatusCode.UNAVAILABLE
    assert "could not audit" in (held.details() or "")
    assert "could not store" not in (held.details() or "")
    assert queued == 2
    assert rows_then == []
    assert [(r.status, r.sequence) for r in retry.results] == [
        (gateway_pb2.POST_STATUS_DUPLICATE, 1),
        (gateway_pb2.POST_STATUS_DUPLICATE, 2),
    ]
    assert [(r.recipient, r.outcome) for r in _audit(tmp_path, "Post")] == [
        ("DE", "duplicate"),
        ("IT", "duplicate"),
    ]


def test_receipts_lists_only_the_callers_messages_in_pages(
    tmp_path: Path, pki_dir: pki.PkiDir
) -> None:
    """Receipts pages through the caller's own copies by sequence, with ``more`` set until
    the last page; another bureau sees none of them, and the operator is refused."""

    async def main() -> tuple[list[list[int]], list[bool], int, grpc.StatusCode]:
        async with _gateway(tmp_path, pki_dir, deliver=False) as gateway:
            await gateway.post("FR", *(_seal(pki_dir, "FR", "DE") for _ in range(3)))
            await gateway.post("IT", _seal(pki_dir, "IT", "DE"))
            await gateway.post("FR", _seal(pki_dir, "FR", "IT"), _seal(pki_dir, "FR", "GS"))
            pages, more, after = [], [], 0
            while True:
                page = await gateway.receipts("FR", after=after, limit=2)
                pages.append([m.sequence for m in page.messages])
                more.append(page.more)
                if not page.more:
                    break
                after = page.messages[-1].sequence
            it = len((await gateway.receipts("IT")).messages)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await gateway.receipts("operator")
            return pages, more, it, caught.value.code()

    pages, more, it, operator = asyncio.run(main())
    assert pages == [[1, 2], [3, 5], [6]]
    assert more == [True, True, False]
    assert it == 1
    assert operator == grpc.StatusCode.PERMISSION_DENIED


# ----------------------------------------------------------------------------- delivery


def test_delivery_is_in_order_with_verifiable_receipts(tmp_path: Path, pki_dir: pki.PkiDir) -> None:
    """Copies reach the bureau in the order they were posted, once each, and the sender
    lists them delivered with receipts that verify against the recipient's entry."""
    bureau = DeliverServicer(pki_dir)
    items = [_seal(pki_dir, s, "DE") for s in ("FR", "IT", "FR", "GS", "FR")]

    async def main() -> list[gateway_pb2.PostedMessage]:
        served = await _serve_bureau(bureau)
        try:
            async with _gateway(tmp_path, pki_dir) as gateway:
                await gateway.register("DE", served.address)
                for item in items:
                    await gateway.post(envelope.unverified_header(item).sender, item)
                await _until(_delivered(gateway, "FR", 3))
                await _until(_delivered(gateway, "IT", 1))
                await _until(_delivered(gateway, "GS", 1))
                return list((await gateway.receipts("FR")).messages)
        finally:
            await served.server.stop(0)

    fr = asyncio.run(main())
    assert bureau.processed == [envelope.unverified_header(i).message_id for i in items]
    de = _identity(pki_dir, "DE").as_peer()
    for message in fr:
        receipt = receipts.verify(message.receipt, signer=de, now_ms=_now())
        assert receipt.message_id == message.message_id
        assert message.attempts == 1
    rows = _audit(tmp_path, "Deliver")
    assert sorted((r.sender, r.outcome, r.status) for r in rows) == sorted(
        [(s, "delivered", "OK") for s in ("FR", "IT", "FR", "GS", "FR")]
    )


def test_delivery_retries_after_the_bureau_was_down(tmp_path: Path, pki_dir: pki.PkiDir) -> None:
    """Copies posted while the bureau's node is down stay queued (attempts counted) and are
    delivered, in order, once it registers again."""
    bureau = DeliverServicer(pki_dir)
    items = [_seal(pki_dir, "FR", "DE") for _ in range(3)]

    async def main() -> list[gateway_pb2.PostedMessage]:
        down = await _serve_bureau(bureau)
        await down.server.stop(0)  # registered, then gone: every call fails
        async with _gateway(tmp_path, pki_dir) as gateway:
            await gateway.register("DE", down.address)
            await gateway.post("FR", *items)

            async def attempted() -> bool:
                messages = (await gateway.receipts("FR")).messages
                return all(m.attempts >= 2 for m in messages)

            await _until(attempted)
            assert await _states(gateway, "FR") == [gateway_pb2.MESSAGE_STATE_QUEUED] * 3
            up = await _serve_bureau(bureau)
            try:
                await gateway.register("DE", up.address)
                await _until(_delivered(gateway, "FR", 3))
            finally:
                await up.server.stop(0)
            return list((await gateway.receipts("FR")).messages)

    messages = asyncio.run(main())
    assert bureau.processed == [envelope.unverified_header(i).message_id for i in items]
    assert all(m.attempts >= 3 for m in messages)


def test_rejected_copy_is_settled_and_the_rest_delivered(
    tmp_path: Path, pki_dir: pki.PkiDir
) -> None:
    """A copy the bureau cannot open is REJECTED (with its reason, envelope dropped) and
    never sent again; the copies around it are delivered."""
    bureau = DeliverServicer(pki_dir)
    good = _seal(pki_dir, "FR", "DE")
    # Sealed to IT's key but addressed to DE: it passes the gateway, DE cannot open it.
    wrong_key = dataclasses.replace(_identity(pki_dir, "IT").as_peer(), bureau="DE")
    bad = envelope.seal_message(
        b"x",
        sender=_identity(pki_dir, "FR"),
        recipient=wrong_key,
        kind=envelope.MESSAGE,
        post_id=os.urandom(16),
    )
    after = _seal(pki_dir, "FR", "DE")

    async def main() -> list[gateway_pb2.PostedMessage]:
        served = await _serve_bureau(bureau)
        try:
            async with _gateway(tmp_path, pki_dir) as gateway:
                await gateway.post("FR", good, bad, after)
                await gateway.register("DE", served.address)
                await _until(_delivered(gateway, "FR", 2))
                await asyncio.sleep(0.3)  # a few back-off periods: nothing is sent again
                return list((await gateway.receipts("FR")).messages)
        finally:
            await served.server.stop(0)

    messages = asyncio.run(main())
    assert [(m.state, m.detail) for m in messages] == [
        (gateway_pb2.MESSAGE_STATE_DELIVERED, ""),
        (gateway_pb2.MESSAGE_STATE_REJECTED, "unverified"),
        (gateway_pb2.MESSAGE_STATE_DELIVERED, ""),
    ]
    assert bureau.calls == 1
    assert not messages[1].HasField("receipt")
    rows = _audit(tmp_path, "Deliver")
    assert [r.outcome for r in rows] == ["delivered", "rejected", "delivered"]


def test_a_receipt_that_does_not_match_keeps_the_copy_queued(
    tmp_path: Path, pki_dir: pki.PkiDir
) -> None:
    """A receipt naming another digest is not accepted: the copy stays queued and is sent
    again; once the bureau answers with a true receipt (DUPLICATE) it is delivered."""
    bureau = DeliverServicer(pki_dir, corrupt_receipts=True)
    item = _seal(pki_dir, "FR", "DE")

    async def main() -> list[gateway_pb2.PostedMessage]:
        served = await _serve_bureau(bureau)
        try:
            async with _gateway(tmp_path, pki_dir) as gateway:
                await gateway.register("DE", served.address)
                await gateway.post("FR", item)
                await _until(lambda: _calls_at_least(bureau, 3))
                assert await _states(gateway, "FR") == [gateway_pb2.MESSAGE_STATE_QUEUED]
                bureau.corrupt_receipts = False
                await _until(_delivered(gateway, "FR", 1))
                return list((await gateway.receipts("FR")).messages)
        finally:
            await served.server.stop(0)

    [message] = asyncio.run(main())
    assert bureau.processed == [envelope.unverified_header(item).message_id]  # once only
    receipt = receipts.parse(message.receipt)
    assert receipt.envelope_sha256 == envelope.envelope_digest(item)
    assert message.attempts >= 4


async def _calls_at_least(bureau: DeliverServicer, n: int) -> bool:
    return bureau.calls >= n


def test_a_partial_reply_leaves_the_rest_queued_in_order(
    tmp_path: Path, pki_dir: pki.PkiDir
) -> None:
    """A node that answers only part of a batch gets the rest again, in order."""
    bureau = DeliverServicer(pki_dir, stop_after=2)
    items = [_seal(pki_dir, "FR", "DE") for _ in range(5)]

    async def main() -> None:
        served = await _serve_bureau(bureau)
        try:
            async with _gateway(tmp_path, pki_dir) as gateway:
                await gateway.post("FR", *items)
                await gateway.register("DE", served.address)
                await _until(_delivered(gateway, "FR", 5))
        finally:
            await served.server.stop(0)

    asyncio.run(main())
    assert bureau.processed == [envelope.unverified_header(i).message_id for i in items]
    assert bureau.calls >= 3


def test_a_copy_the_node_cannot_take_yet_holds_back_only_its_sender(
    tmp_path: Path, pki_dir: pki.PkiDir
) -> None:
    """The node stops its batch at FR's copy (it cannot check FR's key yet). FR's copies
    wait, in order, but IT's copies to the same bureau, queued after FR's, are delivered
    meanwhile: one sender's stuck copy does not block a recipient's whole queue."""
    bureau = DeliverServicer(pki_dir, stall_senders={"FR"})
    fr = [_seal(pki_dir, "FR", "DE") for _ in range(2)]
    it = [_seal(pki_dir, "IT", "DE") for _ in range(3)]

    async def main() -> list[int]:
        served = await _serve_bureau(bureau)
        try:
            async with _gateway(tmp_path, pki_dir) as gateway:
                await gateway.post("FR", fr[0])
                await gateway.post("IT", it[0], it[1])
                await gateway.post("FR", fr[1])
                await gateway.post("IT", it[2])
                await gateway.register("DE", served.address)
                await _until(_delivered(gateway, "IT", 3))
                stuck = await _states(gateway, "FR")
                bureau.stall_senders.clear()  # DE's directory caught up
                await _until(_delivered(gateway, "FR", 2))
                return stuck
        finally:
            await served.server.stop(0)

    stuck = asyncio.run(main())
    assert stuck == [gateway_pb2.MESSAGE_STATE_QUEUED] * 2
    ids = [envelope.unverified_header(i).message_id for i in (*it, *fr)]
    assert bureau.processed == ids  # IT's first, then FR's, each sender in its own order


def test_expired_copies_are_settled_and_the_sender_told(
    tmp_path: Path, pki_dir: pki.PkiDir
) -> None:
    """A copy whose TTL passes while its bureau is down expires: EXPIRED in Receipts, an
    expired audit row, and it is never delivered."""
    item = _seal(pki_dir, "FR", "DE", ttl_ms=5_000)

    async def main() -> list[gateway_pb2.PostedMessage]:
        async with _gateway(tmp_path, pki_dir) as gateway:
            await gateway.post("FR", item)
            assert gateway.deliverer is not None
            await gateway.deliverer.sweep(now_ms=_now() + 6_000)
            assert gateway.mailbox.queued() == 0
            return list((await gateway.receipts("FR")).messages)

    [message] = asyncio.run(main())
    assert message.state == gateway_pb2.MESSAGE_STATE_EXPIRED
    assert message.settled_at_ms > 0
    rows = _audit(tmp_path, "Deliver")
    assert [(r.sender, r.recipient, r.outcome, r.status) for r in rows] == [
        ("FR", "DE", "expired", "DEADLINE_EXCEEDED")
    ]


def test_settled_copies_are_listed_until_the_retention_passes(
    tmp_path: Path, pki_dir: pki.PkiDir
) -> None:
    """The sweeper deletes a settled copy's row once ``mailbox_retention_h`` has passed
    since it settled, and not before: until then the sender still lists it."""
    item = _seal(pki_dir, "FR", "DE", ttl_ms=5_000)
    hour = 3_600_000

    async def main() -> tuple[int, int]:
        async with _gateway(tmp_path, pki_dir, mailbox_retention_h=1) as gateway:
            assert gateway.deliverer is not None
            await gateway.post("FR", item)
            now = _now()
            await gateway.deliverer.sweep(now_ms=now + 6_000)  # expires it
            await gateway.deliverer.sweep(now_ms=now + 6_000 + hour - 1_000)
            within = len((await gateway.receipts("FR")).messages)
            await gateway.deliverer.sweep(now_ms=now + 6_000 + hour + 60_000)
            return within, len((await gateway.receipts("FR")).messages)

    assert asyncio.run(main()) == (1, 0)
    assert _rows_left(tmp_path) == 0


def _rows_left(tmp_path: Path) -> int:
    conn = sqlite3.connect(tmp_path / "mailbox.sqlite")
    try:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
    finally:
        conn.close()


def test_a_copy_the_node_finds_expired_is_expired_for_the_sender(
    tmp_path: Path, pki_dir: pki.PkiDir
) -> None:
    """REJECTED with reason "expired" (the node's clock is ahead) settles the copy as
    EXPIRED, so the sender is told it expired, and it is audited so."""
    bureau = DeliverServicer(pki_dir, reject_all="expired")

    async def main() -> list[gateway_pb2.PostedMessage]:
        served = await _serve_bureau(bureau)
        try:
            async with _gateway(tmp_path, pki_dir) as gateway:
                await gateway.register("DE", served.address)
                await gateway.post("FR", _seal(pki_dir, "FR", "DE"))

                async def settled() -> bool:
                    return await _states(gateway, "FR") != [gateway_pb2.MESSAGE_STATE_QUEUED]

                await _until(settled)
                return list((await gateway.receipts("FR")).messages)
        finally:
            await served.server.stop(0)

    [message] = asyncio.run(main())
    assert (message.state, message.detail) == (gateway_pb2.MESSAGE_STATE_EXPIRED, "expired")
    rows = _audit(tmp_path, "Deliver")
    assert [(r.outcome, r.status) for r in rows] == [("expired", "DEADLINE_EXCEEDED")]


def test_a_batch_refused_as_too_large_is_halved_until_it_fits(
    tmp_path: Path, pki_dir: pki.PkiDir
) -> None:
    """A Deliver refused RESOURCE_EXHAUSTED is sent again at once with half the copies,
    so the queue drains in order instead of blocking on one batch forever."""
    bureau = DeliverServicer(pki_dir, max_envelopes=3)
    items = [_seal(pki_dir, "FR", "DE") for _ in range(8)]

    async def main() -> None:
        served = await _serve_bureau(bureau)
        try:
            async with _gateway(tmp_path, pki_dir, delivery_batch=8) as gateway:
                await gateway.post("FR", *items)
                await gateway.register("DE", served.address)
                await _until(_delivered(gateway, "FR", 8))
        finally:
            await served.server.stop(0)

    asyncio.run(main())
    assert bureau.processed == [envelope.unverified_header(i).message_id for i in items]
    assert bureau.batches == [8, 4, 2, 2, 2, 2]
    print("batches", bureau.batches)


def test_a_batch_of_large_copies_stays_under_the_grpc_message_limit(
    tmp_path: Path, pki_dir: pki.PkiDir
) -> None:
    """64 copies of 64 KiB (over gRPC's 4 MiB in one call) go in more than one Deliver call,
    each under the byte budget so none is refused (one attempt each), and a copy queued
    behind them from another sender is delivered."""
    bureau = DeliverServicer(pki_dir)
    overhead = _seal(pki_dir, "FR", "DE", text=b"").ByteSize()
    size = 64 * 1024 - overhead - 2  # 2: the longer length prefix of the sealed bytes
    items = [_seal(pki_dir, "FR", "DE", text=b"x" * size) for _ in range(64)]
    assert {i.ByteSize() for i in items} == {64 * 1024}  # the largest taken by default
    total = bureau_pb2.DeliverRequest(envelopes=items).ByteSize()
    assert total > transport.MAX_MESSAGE_BYTES  # one batch of all would never go

    async def main() -> set[int]:
        served = await _serve_bureau(bureau)
        try:
            async with _gateway(tmp_path, pki_dir) as gateway:
                for start in range(0, 64, 16):
                    await gateway.post("FR", *items[start : start + 16])
                await gateway.post("IT", _seal(pki_dir, "IT", "DE"))
                await gateway.register("DE", served.address)
                await _until(_delivered(gateway, "IT", 1))
                await _until(_delivered(gateway, "FR", 64))
                return {m.attempts for m in (await gateway.receipts("FR")).messages}
        finally:
            await served.server.stop(0)

    assert asyncio.run(main()) == {1}
    assert len(bureau.processed) == 65
    assert len(bureau.batches) >= 2
    assert bureau.batches[0] < 64
    print("envelopes", total, "bytes; batches", bureau.batches)


def test_an_offline_recipient_costs_no_store_reads(tmp_path: Path, pki_dir: pki.PkiDir) -> None:
    """A worker whose recipient has no route does not read the store; once it registers,
    its copies are delivered."""
    bureau = DeliverServicer(pki_dir)
    reads: list[str] = []

    async def main() -> None:
        served = await _serve_bureau(bureau)
        try:
            async with _gateway(tmp_path, pki_dir) as gateway:
                due = gateway.mailbox.due

                async def counted(recipient: str, *args: Any, **kwargs: Any) -> Any:
                    reads.append(recipient)
                    return await due(recipient, *args, **kwargs)

                gateway.mailbox.due = counted  # type: ignore[method-assign]
                await gateway.post("FR", _seal(pki_dir, "FR", "DE"))
                assert gateway.deliverer is not None
                await _until(_worker_running(gateway.deliverer, "DE"))
                await asyncio.sleep(0.5)  # several back-off rounds (at most 0.2 s each)
                assert reads == []
                await gateway.register("DE", served.address)
                await _until(_delivered(gateway, "FR", 1))
        finally:
            await served.server.stop(0)

    asyncio.run(main())
    assert reads
    assert set(reads) == {"DE"}


def _worker_running(deliverer: Deliverer, bureau: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bureau in deliverer.running()

    return check


def test_a_copy_expired_while_in_flight_then_delivered_has_both_audit_rows(
    tmp_path: Path, pki_dir: pki.PkiDir
) -> None:
    """If the sweeper expires a copy while its batch is at the node and the receipt comes
    back, the copy ends delivered (the node did process it) with two audit rows: expired,
    then delivered (docs/delivery.md)."""
    bureau = DeliverServicer(pki_dir)

    async def main() -> list[gateway_pb2.PostedMessage]:
        served = await _serve_bureau(bureau)
        try:
            async with _gateway(tmp_path, pki_dir) as gateway:
                deliverer = gateway.deliverer
                assert deliverer is not None

                async def expire_now() -> None:
                    await deliverer.sweep(now_ms=_now() + 120_000)

                bureau.on_call = expire_now
                await gateway.post("FR", _seal(pki_dir, "FR", "DE"))
                await gateway.register("DE", served.address)
                await _until(_delivered(gateway, "FR", 1))
                return list((await gateway.receipts("FR")).messages)
        finally:
            await served.server.stop(0)

    [message] = asyncio.run(main())
    assert message.state == gateway_pb2.MESSAGE_STATE_DELIVERED
    assert message.HasField("receipt")
    rows = _audit(tmp_path, "Deliver")
    assert [(r.outcome, r.status) for r in rows] == [
        ("expired", "DEADLINE_EXCEEDED"),
        ("delivered", "OK"),
    ]


def test_a_restarted_gateway_resumes_every_queued_copy(tmp_path: Path, pki_dir: pki.PkiDir) -> None:
    """Copies accepted before a gateway restart get a worker at start and are delivered."""
    bureau = DeliverServicer(pki_dir)
    items = [_seal(pki_dir, "FR", "DE") for _ in range(3)]

    async def main() -> list[str]:
        async with _gateway(tmp_path, pki_dir, deliver=False) as gateway:
            await gateway.post("FR", *items)
        served = await _serve_bureau(bureau)
        try:
            async with _gateway(tmp_path, pki_dir) as gateway:
                assert gateway.deliverer is not None
                running = gateway.deliverer.running()
                await gateway.register("DE", served.address)
                await _until(_delivered(gateway, "FR", 3))
                return running
        finally:
            await served.server.stop(0)

    assert asyncio.run(main()) == ["DE"]
    assert bureau.processed == [envelope.unverified_header(i).message_id for i in items]


def test_measure_post_throughput(tmp_path: Path, pki_dir: pki.PkiDir) -> None:
    """Prints accepted copies a second through Gateway.Post (client in the same process)."""
    fr = _identity(pki_dir, "FR")
    to = [_identity(pki_dir, code).as_peer() for code in ("DE", "IT")]
    copies = [
        envelope.seal_message(
            b"alert", sender=fr, recipient=to[i % 2], kind=envelope.DIFFUSION, post_id=bytes(16)
        )
        for i in range(2_048)
    ]
    singles = copies[:512]
    batches = [copies[i : i + 64] for i in range(512, len(copies), 64)]

    async def main() -> dict[str, float]:
        async with _gateway(
            tmp_path, pki_dir, deliver=False, max_queue_per_sender=10_000
        ) as gateway:
            figures: dict[str, float] = {}
            await gateway.post("FR", _seal(pki_dir, "FR", "DE"))  # connect first
            gate = asyncio.Semaphore(32)

            async def one(*items: envelope.Envelope) -> None:
                async with gate:
                    await gateway.post("FR", *items)

            started = time.perf_counter()
            await asyncio.gather(*(one(item) for item in singles))
            figures["1 copy per call, 32 calls in flight"] = len(singles) / (
                time.perf_counter() - started
            )
            started = time.perf_counter()
            await asyncio.gather(*(one(*batch) for batch in batches))
            figures["64 copies per call, up to 32 calls in flight"] = sum(map(len, batches)) / (
                time.perf_counter() - started
            )
            assert gateway.mailbox.queued() == len(copies) + 1
            return figures

    figures = asyncio.run(main())
    print()
    for name, rate in figures.items():
        print(f"gateway Post, {name}: {rate:,.0f} accepted copies/s")
