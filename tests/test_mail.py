"""The mailer: per-recipient sealing, ALL and GS expansion, retries that double nothing, receipts.

The gateway here is a small in-process servicer of this test's own on a real mTLS
loopback socket. It serves directory entries from the PKI folder, records every Post
call, and fails calls on a script, as a gateway that restarts or pushes back would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc
import pytest

from ncbsim import envelope, mail, messages, pki, receipts
from ncbsim.client import BureauClient
from ncbsim.directory import Directory
from ncbsim.errors import ConfigError, NcbsimError, QueueFull
from ncbsim.identity import Identity
from ncbsim.serving import start_server
from ncbsim.v2 import directory_pb2, gateway_pb2, gateway_pb2_grpc, messages_pb2

T = TypeVar("T")

BUREAUS = ["FR", "DE", "IT", "NL", "GS"]


@pytest.fixture(scope="module")
def network_pki(tmp_path_factory: pytest.TempPathFactory) -> pki.PkiDir:
    """One PKI with four bureaus and the General Secretariat, shared by the module."""
    return pki.init(tmp_path_factory.mktemp("pki") / "pki", BUREAUS)


@pytest.fixture(scope="module")
def send_only_pki(tmp_path_factory: pytest.TempPathFactory) -> pki.PkiDir:
    """FR, DE and GS, and MC: a send-only bureau (requester_only), which runs no node."""
    directory = pki.init(tmp_path_factory.mktemp("pki") / "pki", ["FR", "DE", "GS"])
    pki.add_bureau(directory, "MC", requester_only=True)
    return directory


@pytest.fixture(scope="module")
def no_gs_pki(tmp_path_factory: pytest.TempPathFactory) -> pki.PkiDir:
    """A PKI of a network without a General Secretariat."""
    return pki.init(tmp_path_factory.mktemp("pki") / "pki", ["FR", "DE", "IT"])


class FakeGateway(gateway_pb2_grpc.GatewayServiceServicer):
    """Serves directory entries, stores posted envelopes by message id, fails on a script.

    ``script`` holds one action per Post call: ``accept`` (the default), ``unavailable``
    (refuse before storing), ``stall`` (hang past the caller's deadline),
    ``store_then_unavailable`` (store, then fail the reply, as a gateway that crashed
    after its commit), ``queue_full`` and ``rate_limited``.
    """

    def __init__(self, directory: pki.PkiDir, *, script: list[str] | None = None) -> None:
        self.pki = directory
        self.script = list(script or [])
        self.calls: list[list[bytes]] = []
        self.stored: dict[bytes, tuple[int, envelope.Envelope]] = {}
        self.posted: list[gateway_pb2.PostedMessage] = []
        self.page_size = 2
        self.directory_calls: list[list[str]] = []

    async def GetDirectory(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.GetDirectoryRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GetDirectoryResponse:
        self.directory_calls.append(list(request.bureaus))
        signed = self.pki.signed_entries(list(request.bureaus) or None)
        return gateway_pb2.GetDirectoryResponse(
            entries=[directory_pb2.SignedDirectoryEntry.FromString(s) for s in signed]
        )

    def _store(self, request: gateway_pb2.PostRequest) -> list[gateway_pb2.PostResult]:
        results = []
        for env in request.envelopes:
            header = envelope.Header.parse(env.header)
            status = gateway_pb2.POST_STATUS_DUPLICATE
            if header.message_id not in self.stored:
                status = gateway_pb2.POST_STATUS_ACCEPTED
                self.stored[header.message_id] = (len(self.stored) + 1, env)
            results.append(
                gateway_pb2.PostResult(
                    message_id=header.message_id,
                    recipient=header.recipient,
                    status=status,
                    sequence=self.stored[header.message_id][0],
                    accepted_at_ms=int(time.time() * 1000),
                )
            )
        return results

    async def Post(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.PostRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.PostResponse:
        self.calls.append([e.SerializeToString() for e in request.envelopes])
        action = self.script.pop(0) if self.script else "accept"
        if action == "unavailable":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "gateway restarting")
        if action == "stall":  # a gateway that hangs: the caller's deadline ends the call
            await asyncio.sleep(2)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "too late")
        if action == "store_then_unavailable":
            self._store(request)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset")
        if action == "queue_full":  # as the gateway refuses it: QueueFull's trailers
            full = QueueFull("queue for DE is full (3 messages waiting); retry later", 500)
            context.set_trailing_metadata(full.trailing_metadata())
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(full))
        if action == "rate_limited":
            context.set_trailing_metadata((("retry-after-ms", "30"),))
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "rate limit for FR: retry after 30 ms"
            )
        return gateway_pb2.PostResponse(results=self._store(request))

    async def Receipts(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.ReceiptsRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.ReceiptsResponse:
        rows = [m for m in self.posted if m.sequence > request.after_sequence]
        page = rows[: self.page_size]
        return gateway_pb2.ReceiptsResponse(messages=page, more=len(rows) > len(page))


@contextlib.asynccontextmanager
async def _mailer(
    directory: pki.PkiDir, fake: FakeGateway, bureau: str = "FR"
) -> AsyncIterator[mail.Mailer]:
    """``fake`` served on an mTLS loopback socket, and a mailer of ``bureau`` connected to it."""
    served = await start_server(
        directory.tls("gateway"),
        "127.0.0.1:0",
        [],
        register=lambda s: gateway_pb2_grpc.add_GatewayServiceServicer_to_server(fake, s),
    )
    try:
        async with BureauClient.open(directory, bureau, served.address) as client:
            yield mail.Mailer(client)
    finally:
        await served.server.stop(0)


def _run(directory: pki.PkiDir, fake: FakeGateway, use: Callable[[mail.Mailer], Awaitable[T]]) -> T:
    async def main() -> T:
        async with _mailer(directory, fake) as mailer:
            return await use(mailer)

    return asyncio.run(main())


def _open(directory: pki.PkiDir, raw: bytes) -> tuple[envelope.Header, messages_pb2.Diffusion]:
    """Open one posted copy as its recipient would."""
    env = envelope.Envelope.FromString(raw)
    header = envelope.Header.parse(env.header)
    now = int(time.time() * 1000)
    opened = envelope.open_message(
        env,
        recipient=Identity.load(directory, header.recipient, now_ms=now),
        senders=Directory.from_pki(directory).get,
    )
    body = messages.unpack(header.kind, opened.plaintext)
    assert isinstance(body, messages_pb2.Diffusion)
    return header, body


def test_diffusion_to_all_seals_one_copy_per_bureau_gs_included(
    network_pki: pki.PkiDir,
) -> None:
    """ALL reaches every other bureau and GS; each copy opens only for its recipient."""
    fake = FakeGateway(network_pki)
    outcome = _run(network_pki, fake, lambda m: m.diffuse(["ALL"], "Alert", "Armed robbery"))
    assert sorted(outcome.recipients) == ["DE", "GS", "IT", "NL"]
    assert outcome.stored
    assert outcome.attempts == 1
    assert len({c.message_id for c in outcome.copies}) == 4
    (call,) = fake.calls
    for raw in call:
        header, body = _open(network_pki, raw)
        assert header.sender == "FR"
        assert header.kind == envelope.DIFFUSION
        assert header.correlation_id == outcome.post_id
        assert (body.subject, body.text) == ("Alert", "Armed robbery")
        assert sorted(body.distribution) == ["DE", "GS", "IT", "NL"]
    # The copy for DE does not open for IT.
    env = envelope.Envelope.FromString(call[0])
    header = envelope.Header.parse(env.header)
    other = next(b for b in BUREAUS if b not in ("FR", header.recipient))
    with pytest.raises(envelope.EnvelopeError):
        envelope.open_message(
            env,
            recipient=Identity.load(network_pki, other, now_ms=int(time.time() * 1000)),
            senders=Directory.from_pki(network_pki).get,
        )


def test_diffusion_to_a_list_adds_gs(network_pki: pki.PkiDir) -> None:
    """A diffusion to named bureaus also goes to GS, once, listed in the distribution."""
    fake = FakeGateway(network_pki)
    outcome = _run(network_pki, fake, lambda m: m.diffuse(["de", "IT", "DE"], "S", "T"))
    assert outcome.recipients == ["DE", "IT", "GS"]
    _, body = _open(network_pki, fake.calls[0][0])
    assert list(body.distribution) == ["DE", "IT", "GS"]


def test_diffusion_without_gs_in_the_network(no_gs_pki: pki.PkiDir) -> None:
    """Where the directory has no GS, a diffusion goes to the named bureaus only."""
    fake = FakeGateway(no_gs_pki)
    outcome = _run(no_gs_pki, fake, lambda m: m.diffuse(["DE"], "S", "T"))
    assert outcome.recipients == ["DE"]
    assert outcome.stored


def test_retry_after_unavailable_resends_the_same_envelopes(network_pki: pki.PkiDir) -> None:
    """A gateway that is restarting gets the very same bytes again; each copy is stored once."""
    fake = FakeGateway(network_pki, script=["unavailable", "unavailable"])
    outcome = _run(network_pki, fake, lambda m: m.diffuse(["DE", "IT"], "S", "T"))
    assert outcome.attempts == 3
    assert len(fake.calls) == 3
    assert fake.calls[0] == fake.calls[1] == fake.calls[2]
    assert [c.status for c in outcome.copies] == ["accepted"] * 3
    assert len(fake.stored) == 3


def test_retry_after_a_lost_reply_finds_the_copies_stored(network_pki: pki.PkiDir) -> None:
    """Stored but the reply lost: the retry is a duplicate with the original sequence."""
    fake = FakeGateway(network_pki, script=["store_then_unavailable"])
    outcome = _run(network_pki, fake, lambda m: m.message("DE", "Call me"))
    (copy,) = outcome.copies
    assert copy.status == "duplicate"
    assert copy.stored
    assert copy.sequence == fake.stored[copy.message_id][0] == 1
    assert len(fake.stored) == 1
    assert fake.calls[0] == fake.calls[1]


def test_rate_limit_with_a_hint_is_retried(network_pki: pki.PkiDir) -> None:
    """A rate limit that clears before the deadline is waited out, not reported."""
    fake = FakeGateway(network_pki, script=["rate_limited"])
    outcome = _run(network_pki, fake, lambda m: m.message("DE", "hello"))
    assert outcome.stored
    assert outcome.attempts == 2


def test_queue_full_is_reported_not_retried(network_pki: pki.PkiDir) -> None:
    """A full recipient queue is back-pressure for the caller: queue_full, one attempt."""
    fake = FakeGateway(network_pki, script=["queue_full"])
    outcome = _run(network_pki, fake, lambda m: m.message("DE", "hello"))
    (copy,) = outcome.copies
    assert copy.status == "queue_full"
    assert not outcome.stored
    assert "queue for DE is full" in copy.detail
    assert outcome.attempts == 1
    assert fake.stored == {}


def test_gateway_down_until_the_deadline_fails_every_copy(network_pki: pki.PkiDir) -> None:
    """When the gateway never comes back within timeout_s the copies are failed, not lost."""
    fake = FakeGateway(network_pki, script=["unavailable"] * 100)

    async def use(mailer: mail.Mailer) -> mail.PostOutcome:
        return await mailer.diffuse(["DE"], "S", "T", timeout_s=0.6)

    outcome = _run(network_pki, fake, use)
    assert [c.status for c in outcome.copies] == ["failed", "failed"]
    assert "UNAVAILABLE" in outcome.copies[0].detail
    assert outcome.attempts >= 3
    print(f"attempts within 0.6 s: {outcome.attempts}")


def test_large_posts_go_in_batches(
    network_pki: pki.PkiDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More copies than one Post may carry are split into several calls, all stored."""
    monkeypatch.setattr(mail, "POST_BATCH", 2)
    fake = FakeGateway(network_pki)
    outcome = _run(network_pki, fake, lambda m: m.diffuse(["ALL"], "S", "T"))
    assert [len(c) for c in fake.calls] == [2, 2]
    assert outcome.stored
    assert len(fake.stored) == 4


def test_unknown_recipient_fails_alone(network_pki: pki.PkiDir) -> None:
    """A bureau not in the directory gets a failed copy; the others are still posted."""
    fake = FakeGateway(network_pki)
    outcome = _run(network_pki, fake, lambda m: m.diffuse(["DE", "ZZ"], "S", "T"))
    status = {c.recipient: c.status for c in outcome.copies}
    assert status == {"DE": "accepted", "ZZ": "failed", "GS": "accepted"}
    _, body = _open(network_pki, fake.calls[0][0])
    assert "ZZ" not in body.distribution


def test_a_send_only_bureau_gets_no_copy(send_only_pki: pki.PkiDir) -> None:
    """ALL leaves a send-only bureau out; named, it gets a failed copy saying why (it runs
    no node, so a stored copy could only expire) and the others are still posted."""
    fake = FakeGateway(send_only_pki)
    everyone = _run(send_only_pki, fake, lambda m: m.diffuse(["ALL"], "S", "T"))
    assert sorted(everyone.recipients) == ["DE", "GS"]
    named = _run(send_only_pki, fake, lambda m: m.diffuse(["DE", "MC"], "S", "T"))
    copies = {c.recipient: (c.status, c.detail) for c in named.copies}
    assert copies["MC"] == ("failed", "only sends: it runs no node to deliver to")
    assert (copies["DE"][0], copies["GS"][0]) == ("accepted", "accepted")
    assert "MC" not in {envelope.Header.parse(e.header).recipient for _, e in fake.stored.values()}


def test_strict_mailer_sends_nothing_to_a_send_only_bureau(send_only_pki: pki.PkiDir) -> None:
    """The CLI's mailer refuses a post naming a send-only bureau before any copy is stored."""
    fake = FakeGateway(send_only_pki)

    async def use(mailer: mail.Mailer) -> None:
        await mail.Mailer(mailer.client, strict=True).message("MC", "hello")

    with pytest.raises(ConfigError, match=r"cannot send to MC: only sends.*nothing was sent"):
        _run(send_only_pki, fake, use)
    assert fake.calls == []


def test_notice_request_goes_to_gs_with_its_notice_id(network_pki: pki.PkiDir) -> None:
    """A notice request is one copy, to GS, carrying the draft and the returned notice id."""
    fake = FakeGateway(network_pki)
    subject = messages_pb2.NoticeSubject(surname="DOE", date_of_birth="1980-01-02")
    notice_id = _run(network_pki, fake, lambda m: m.request_notice("red", subject, "fraud"))
    (call,) = fake.calls
    assert len(call) == 1
    env = envelope.Envelope.FromString(fake.calls[0][0])
    opened = envelope.open_message(
        env,
        recipient=Identity.load(network_pki, "GS", now_ms=int(time.time() * 1000)),
        senders=Directory.from_pki(network_pki).get,
    )
    body = messages.unpack(envelope.NOTICE_REQUEST, opened.plaintext)
    assert isinstance(body, messages_pb2.NoticeRequest)
    assert body.publish.notice_id == notice_id
    assert len(notice_id) == 16
    assert body.publish.color == messages_pb2.NOTICE_COLOR_RED
    assert body.publish.subject.surname == "DOE"


@pytest.mark.parametrize(
    ("kind", "to", "message"),
    [
        (envelope.MESSAGE, ["FR"], "cannot send to itself"),
        (envelope.NOTICE_REQUEST, ["DE"], "GS only"),
        (envelope.DIFFUSION, ["ALL", "DE"], "ALL stands alone"),
        (envelope.QUERY_REQUEST, ["DE"], "not a one-way kind"),
    ],
)
def test_bad_addressing_is_a_config_error(
    network_pki: pki.PkiDir, kind: int, to: list[str], message: str
) -> None:
    """Misaddressed posts are refused before anything is sealed or sent."""
    fake = FakeGateway(network_pki)
    body = messages_pb2.CaseMessage(text="x")
    with pytest.raises(ConfigError, match=message):
        _run(network_pki, fake, lambda m: m.post(kind, body, to))
    assert fake.calls == []


def _receipt_for(directory: pki.PkiDir, env: envelope.Envelope) -> receipts.SignedReceipt:
    header = envelope.Header.parse(env.header)
    now = int(time.time() * 1000)
    signer = Identity.load(directory, header.recipient, now_ms=now)
    return receipts.sign(signer, header, envelope.envelope_digest(env), now)


def test_receipts_are_listed_over_pages_and_verified(network_pki: pki.PkiDir) -> None:
    """Good receipts verify; a forged or misattached one does not; queued has none."""
    fake = FakeGateway(network_pki)

    async def use(mailer: mail.Mailer) -> list[mail.Delivered]:
        outcome = await mailer.diffuse(["DE", "IT", "NL"], "S", "T")
        rows = []
        good = {}
        for copy in outcome.copies:
            sequence, env = fake.stored[copy.message_id]
            good[copy.recipient] = _receipt_for(network_pki, env)
            rows.append(
                gateway_pb2.PostedMessage(
                    sequence=sequence,
                    message_id=copy.message_id,
                    post_id=outcome.post_id,
                    recipient=copy.recipient,
                    kind=envelope.DIFFUSION,
                    state=gateway_pb2.MESSAGE_STATE_DELIVERED,
                    attempts=1,
                )
            )
        rows[0].receipt.CopyFrom(good["DE"])
        forged = messages_pb2.SignedReceipt()
        forged.CopyFrom(good["IT"])
        forged.signature = bytes([forged.signature[0] ^ 1]) + forged.signature[1:]
        rows[1].receipt.CopyFrom(forged)
        rows[2].receipt.CopyFrom(good["DE"])  # DE's receipt shown for NL's copy
        rows[3].state = gateway_pb2.MESSAGE_STATE_QUEUED
        # A second copy to DE shown with DE's genuine receipt for the first one: signed by
        # the right bureau, but for another copy.
        later = await mailer.message("DE", "another")
        (copy,) = later.copies
        rows.append(
            gateway_pb2.PostedMessage(
                sequence=fake.stored[copy.message_id][0],
                message_id=copy.message_id,
                post_id=later.post_id,
                recipient="DE",
                kind=envelope.MESSAGE,
                state=gateway_pb2.MESSAGE_STATE_DELIVERED,
                receipt=good["DE"],
            )
        )
        fake.posted = rows
        return await mailer.receipts()

    listed = _run(network_pki, fake, use)
    assert [d.sequence for d in listed] == [1, 2, 3, 4, 5]
    assert [(d.recipient, d.state, d.verified) for d in listed] == [
        ("DE", "delivered", True),
        ("IT", "delivered", False),
        ("NL", "delivered", False),
        ("GS", "queued", False),
        ("DE", "delivered", False),
    ]
    assert listed[0].processed_at_ms > 0
    assert listed[3].processed_at_ms == 0


def test_ttl_outside_the_protocol_limit_is_refused(network_pki: pki.PkiDir) -> None:
    """A TTL above 24 h (which the gateway would refuse) is a config error."""
    fake = FakeGateway(network_pki)
    with pytest.raises(ConfigError, match="24 h"):
        _run(
            network_pki,
            fake,
            lambda m: m.diffuse(["DE"], "S", "T", ttl_ms=envelope.MAX_TTL_MS + 1),
        )


def test_message_starts_a_thread_named_after_its_post(network_pki: pki.PkiDir) -> None:
    """A message with no thread starts one named after its post id; a reply keeps it."""
    fake = FakeGateway(network_pki)

    async def use(mailer: mail.Mailer) -> tuple[mail.PostOutcome, mail.PostOutcome]:
        first = await mailer.message("DE", "one", subject="case")
        second = await mailer.message("DE", "two", thread=first.post_hex, in_reply_to=first.post_id)
        return first, second

    first, second = _run(network_pki, fake, use)
    now = int(time.time() * 1000)
    bodies = []
    for call in fake.calls:
        env = envelope.Envelope.FromString(call[0])
        opened = envelope.open_message(
            env,
            recipient=Identity.load(network_pki, "DE", now_ms=now),
            senders=Directory.from_pki(network_pki).get,
        )
        body = messages.unpack(envelope.MESSAGE, opened.plaintext)
        assert isinstance(body, messages_pb2.CaseMessage)
        bodies.append(body)
    assert bodies[0].thread == bodies[1].thread == first.post_hex
    assert bodies[1].in_reply_to == first.post_id
    assert second.stored


def test_all_is_expanded_once_for_many_posts(network_pki: pki.PkiDir) -> None:
    """Posts to ALL in a row fetch the whole directory once, not once per post."""
    fake = FakeGateway(network_pki)

    async def use(mailer: mail.Mailer) -> list[mail.PostOutcome]:
        return [await mailer.diffuse(["ALL"], "S", str(n)) for n in range(3)]

    outcomes = _run(network_pki, fake, use)
    assert all(o.stored for o in outcomes)
    assert fake.directory_calls.count([]) == 1
    assert len(fake.calls) == 3


def test_unreachable_gateway_fails_the_post(network_pki: pki.PkiDir) -> None:
    """With no gateway listening, every addressee gets a failed copy after timeout_s."""

    async def main() -> mail.PostOutcome:
        # A port that was just free: nothing listens on it.
        served = await start_server(
            network_pki.tls("gateway"), "127.0.0.1:0", [], register=lambda s: None
        )
        address = served.address
        await served.server.stop(0)
        async with BureauClient.open(network_pki, "FR", address) as client:
            return await mail.Mailer(client).message("DE", "hello", timeout_s=0.5)

    outcome = asyncio.run(main())
    assert [(c.recipient, c.status) for c in outcome.copies] == [("DE", "failed")]
    assert "UNAVAILABLE" in outcome.copies[0].detail


def test_notice_request_not_stored_raises(network_pki: pki.PkiDir) -> None:
    """request_notice says so when GS's queue is full, rather than return an id in vain."""
    fake = FakeGateway(network_pki, script=["queue_full"])
    subject = messages_pb2.NoticeSubject(surname="DOE", date_of_birth="1980-01-02")
    with pytest.raises(NcbsimError, match="queue_full"):
        _run(network_pki, fake, lambda m: m.request_notice("red", subject, "fraud"))


def test_withdrawal_outcome_names_the_notice(network_pki: pki.PkiDir) -> None:
    """A withdrawal goes to GS and its outcome carries the notice id."""
    fake = FakeGateway(network_pki)
    notice_id = bytes(range(16))
    outcome = _run(network_pki, fake, lambda m: m.withdraw_notice(notice_id, "arrested"))
    assert outcome.notice_id == notice_id
    assert outcome.recipients == ["GS"]
    assert outcome.stored


def test_posts_are_cut_by_count_and_by_bytes() -> None:
    """Copies go out in order, at most POST_BATCH a call and about POST_BATCH_BYTES, so a
    post of large copies to many bureaus never exceeds gRPC's 4 MiB message limit."""
    small = envelope.Envelope(sealed=b"x" * 100)
    large = envelope.Envelope(sealed=b"x" * 33_000)
    items = [(f"B{i}", bytes(16), small) for i in range(300)]
    assert [len(b) for b in mail._batches(items)] == [mail.POST_BATCH, 300 - mail.POST_BATCH]
    items = [(f"B{i}", bytes(16), large) for i in range(196)]
    batches = mail._batches(items)
    assert [i for b in batches for i in b] == items
    assert all(sum(e.ByteSize() for _, _, e in b) <= mail.POST_BATCH_BYTES for b in batches)
    assert len(batches) == 3


def test_strict_mailer_sends_nothing_when_a_bureau_is_unknown(network_pki: pki.PkiDir) -> None:
    """The CLI's mailer refuses a post naming a bureau not in the directory, before any
    copy is stored (a typo must not half-send a diffusion)."""
    fake = FakeGateway(network_pki)

    async def use(mailer: mail.Mailer) -> None:
        await mail.Mailer(mailer.client, strict=True).diffuse(["DE", "ZZ"], "S", "T")

    with pytest.raises(
        ConfigError, match=r"cannot send to ZZ: not in the directory.*; nothing was sent"
    ):
        _run(network_pki, fake, use)
    assert fake.calls == []


def test_a_diffusion_can_be_sent_again_without_a_second_gs_copy(network_pki: pki.PkiDir) -> None:
    """copy_gs=False leaves GS out, so resending to failed bureaus does not double GS's."""
    fake = FakeGateway(network_pki)
    outcome = _run(network_pki, fake, lambda m: m.diffuse(["DE"], "S", "T", copy_gs=False))
    assert outcome.recipients == ["DE"]


def test_batches_whose_turn_comes_after_the_timeout_are_not_sent(
    network_pki: pki.PkiDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once timeout_s has passed, the remaining batches are failed without a call, so they
    are certainly not stored (a last call could time out after the gateway stored them)."""
    monkeypatch.setattr(mail, "POST_BATCH", 1)
    fake = FakeGateway(network_pki, script=["stall"] * 100)

    async def use(mailer: mail.Mailer) -> mail.PostOutcome:
        return await mailer.diffuse(["DE", "IT", "NL"], "S", "T", timeout_s=0.4)

    outcome = _run(network_pki, fake, use)
    first = outcome.copies[0].message_id
    assert {
        envelope.Header.parse(envelope.Envelope.FromString(c[0]).header).message_id
        for c in fake.calls
    } == {first}
    assert [c.status for c in outcome.copies] == ["failed"] * 4
    assert "DEADLINE_EXCEEDED" in outcome.copies[0].detail
    assert all(c.detail.startswith("not sent") for c in outcome.copies[1:])
