"""The mailer: per-recipient sealing, ALL and GS expansion, batches, notices, receipts.

The gateway here is a small in-process servicer (tests/support.py FakeGateway) on a real
mTLS loopback socket. It serves directory entries from the PKI folder, records every Post
call, and fails calls on a script, as a gateway that restarts or pushes back would.
"""

from __future__ import annotations

import time

import pytest
from support import FakeGateway, run_mailer, with_bureaus

from ncbsim import envelope, mail, messages, pki, posts, receipts
from ncbsim.directory import Directory
from ncbsim.errors import ConfigError, NcbsimError
from ncbsim.identity import Identity
from ncbsim.v2 import gateway_pb2, messages_pb2

BUREAUS = ["FR", "DE", "IT", "NL", "GS"]


@pytest.fixture(scope="module")
def pki_bureaus() -> list[str]:
    """``module_pki``: four bureaus and the General Secretariat."""
    return BUREAUS


@pytest.fixture
def send_only_pki(pki_dir: pki.PkiDir) -> pki.PkiDir:
    """The test's PKI (``with_bureaus("FR", "DE", "GS")``) and MC: a send-only bureau
    (requester_only), which runs no node."""
    pki.add_bureau(pki_dir, "MC", requester_only=True)
    return pki_dir


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
    module_pki: pki.PkiDir,
) -> None:
    """ALL reaches every other bureau and GS; each copy opens only for its recipient."""
    fake = FakeGateway(module_pki)
    outcome = run_mailer(module_pki, fake, lambda m: m.diffuse(["ALL"], "Alert", "Armed robbery"))
    assert sorted(outcome.recipients) == ["DE", "GS", "IT", "NL"]
    assert outcome.stored
    assert outcome.attempts == 1
    assert len({c.message_id for c in outcome.copies}) == 4
    (call,) = fake.calls
    for raw in call:
        header, body = _open(module_pki, raw)
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
            recipient=Identity.load(module_pki, other, now_ms=int(time.time() * 1000)),
            senders=Directory.from_pki(module_pki).get,
        )


def test_diffusion_to_a_list_adds_gs(module_pki: pki.PkiDir) -> None:
    """A diffusion to named bureaus also goes to GS, once, listed in the distribution."""
    fake = FakeGateway(module_pki)
    outcome = run_mailer(module_pki, fake, lambda m: m.diffuse(["de", "IT", "DE"], "S", "T"))
    assert outcome.recipients == ["DE", "IT", "GS"]
    _, body = _open(module_pki, fake.calls[0][0])
    assert list(body.distribution) == ["DE", "IT", "GS"]


@with_bureaus("FR", "DE", "IT")
def test_diffusion_without_gs_in_the_network(pki_dir: pki.PkiDir) -> None:
    """Where the directory has no GS, a diffusion goes to the named bureaus only."""
    fake = FakeGateway(pki_dir)
    outcome = run_mailer(pki_dir, fake, lambda m: m.diffuse(["DE"], "S", "T"))
    assert outcome.recipients == ["DE"]
    assert outcome.stored


def test_large_posts_go_in_batches(module_pki: pki.PkiDir, monkeypatch: pytest.MonkeyPatch) -> None:
    """More copies than one Post may carry are split into several calls, all stored."""
    monkeypatch.setattr(mail, "MAX_ENVELOPES_PER_CALL", 2)
    fake = FakeGateway(module_pki)
    outcome = run_mailer(module_pki, fake, lambda m: m.diffuse(["ALL"], "S", "T"))
    assert [len(c) for c in fake.calls] == [2, 2]
    assert outcome.stored
    assert len(fake.stored) == 4


def test_unknown_recipient_fails_alone(module_pki: pki.PkiDir) -> None:
    """A bureau not in the directory gets a failed copy; the others are still posted."""
    fake = FakeGateway(module_pki)
    outcome = run_mailer(module_pki, fake, lambda m: m.diffuse(["DE", "ZZ"], "S", "T"))
    status = {c.recipient: c.status for c in outcome.copies}
    assert status == {"DE": "accepted", "ZZ": "failed", "GS": "accepted"}
    _, body = _open(module_pki, fake.calls[0][0])
    assert "ZZ" not in body.distribution


@with_bureaus("FR", "DE", "GS")
def test_a_send_only_bureau_gets_no_copy(send_only_pki: pki.PkiDir) -> None:
    """ALL leaves a send-only bureau out; named, it gets a failed copy saying why (it runs
    no node, so a stored copy could only expire) and the others are still posted."""
    fake = FakeGateway(send_only_pki)
    everyone = run_mailer(send_only_pki, fake, lambda m: m.diffuse(["ALL"], "S", "T"))
    assert sorted(everyone.recipients) == ["DE", "GS"]
    named = run_mailer(send_only_pki, fake, lambda m: m.diffuse(["DE", "MC"], "S", "T"))
    copies = {c.recipient: (c.status, c.detail) for c in named.copies}
    assert copies["MC"] == ("failed", "only sends: it runs no node to deliver to")
    assert (copies["DE"][0], copies["GS"][0]) == ("accepted", "accepted")
    assert "MC" not in {envelope.Header.parse(e.header).recipient for _, e in fake.stored.values()}


@with_bureaus("FR", "DE", "GS")
def test_strict_mailer_sends_nothing_to_a_send_only_bureau(send_only_pki: pki.PkiDir) -> None:
    """The CLI's mailer refuses a post naming a send-only bureau before any copy is stored."""
    fake = FakeGateway(send_only_pki)

    async def use(mailer: mail.Mailer) -> None:
        await mail.Mailer(mailer.client, strict=True).message("MC", "hello")

    with pytest.raises(ConfigError, match=r"cannot send to MC: only sends.*nothing was sent"):
        run_mailer(send_only_pki, fake, use)
    assert fake.calls == []


def test_notice_request_goes_to_gs_with_its_notice_id(module_pki: pki.PkiDir) -> None:
    """A notice request is one copy, to GS, carrying the draft and the returned notice id."""
    fake = FakeGateway(module_pki)
    subject = messages_pb2.NoticeSubject(surname="DOE", date_of_birth="1980-01-02")
    notice_id = run_mailer(module_pki, fake, lambda m: m.request_notice("red", subject, "fraud"))
    (call,) = fake.calls
    assert len(call) == 1
    env = envelope.Envelope.FromString(fake.calls[0][0])
    opened = envelope.open_message(
        env,
        recipient=Identity.load(module_pki, "GS", now_ms=int(time.time() * 1000)),
        senders=Directory.from_pki(module_pki).get,
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
    module_pki: pki.PkiDir, kind: int, to: list[str], message: str
) -> None:
    """Misaddressed posts are refused before anything is sealed or sent."""
    fake = FakeGateway(module_pki)
    body = messages_pb2.CaseMessage(text="x")
    with pytest.raises(ConfigError, match=message):
        run_mailer(module_pki, fake, lambda m: m.post(kind, body, to))
    assert fake.calls == []


def _receipt_for(directory: pki.PkiDir, env: envelope.Envelope) -> receipts.SignedReceipt:
    header = envelope.Header.parse(env.header)
    now = int(time.time() * 1000)
    signer = Identity.load(directory, header.recipient, now_ms=now)
    return receipts.sign(signer, header, envelope.envelope_digest(env), now)


def test_receipts_are_listed_over_pages_and_verified(module_pki: pki.PkiDir) -> None:
    """Good receipts verify; a forged or misattached one does not; queued has none."""
    fake = FakeGateway(module_pki)

    async def use(mailer: mail.Mailer) -> list[posts.Delivered]:
        outcome = await mailer.diffuse(["DE", "IT", "NL"], "S", "T")
        rows = []
        good = {}
        for copy in outcome.copies:
            sequence, env = fake.stored[copy.message_id]
            good[copy.recipient] = _receipt_for(module_pki, env)
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

    listed = run_mailer(module_pki, fake, use)
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


def test_ttl_outside_the_protocol_limit_is_refused(module_pki: pki.PkiDir) -> None:
    """A TTL above 24 h (which the gateway would refuse) is a config error."""
    fake = FakeGateway(module_pki)
    with pytest.raises(ConfigError, match="24 h"):
        run_mailer(
            module_pki,
            fake,
            lambda m: m.diffuse(["DE"], "S", "T", ttl_ms=envelope.MAX_TTL_MS + 1),
        )


def test_message_starts_a_thread_named_after_its_post(module_pki: pki.PkiDir) -> None:
    """A message with no thread starts one named after its post id; a reply keeps it."""
    fake = FakeGateway(module_pki)

    async def use(mailer: mail.Mailer) -> tuple[posts.PostOutcome, posts.PostOutcome]:
        first = await mailer.message("DE", "one", subject="case")
        second = await mailer.message("DE", "two", thread=first.post_hex, in_reply_to=first.post_id)
        return first, second

    first, second = run_mailer(module_pki, fake, use)
    now = int(time.time() * 1000)
    bodies = []
    for call in fake.calls:
        env = envelope.Envelope.FromString(call[0])
        opened = envelope.open_message(
            env,
            recipient=Identity.load(module_pki, "DE", now_ms=now),
            senders=Directory.from_pki(module_pki).get,
        )
        body = messages.unpack(envelope.MESSAGE, opened.plaintext)
        assert isinstance(body, messages_pb2.CaseMessage)
        bodies.append(body)
    assert bodies[0].thread == bodies[1].thread == first.post_hex
    assert bodies[1].in_reply_to == first.post_id
    assert second.stored


def test_all_is_expanded_once_for_many_posts(module_pki: pki.PkiDir) -> None:
    """Posts to ALL in a row fetch the whole directory once, not once per post."""
    fake = FakeGateway(module_pki)

    async def use(mailer: mail.Mailer) -> list[posts.PostOutcome]:
        return [await mailer.diffuse(["ALL"], "S", str(n)) for n in range(3)]

    outcomes = run_mailer(module_pki, fake, use)
    assert all(o.stored for o in outcomes)
    assert fake.directory_calls.count([]) == 1
    assert len(fake.calls) == 3


def test_notice_request_not_stored_raises(module_pki: pki.PkiDir) -> None:
    """request_notice says so when GS's queue is full, rather than return an id in vain."""
    fake = FakeGateway(module_pki, script=["queue_full"])
    subject = messages_pb2.NoticeSubject(surname="DOE", date_of_birth="1980-01-02")
    with pytest.raises(NcbsimError, match="queue_full"):
        run_mailer(module_pki, fake, lambda m: m.request_notice("red", subject, "fraud"))


def test_withdrawal_outcome_names_the_notice(module_pki: pki.PkiDir) -> None:
    """A withdrawal goes to GS and its outcome carries the notice id."""
    fake = FakeGateway(module_pki)
    notice_id = bytes(range(16))
    outcome = run_mailer(module_pki, fake, lambda m: m.withdraw_notice(notice_id, "arrested"))
    assert outcome.notice_id == notice_id
    assert outcome.recipients == ["GS"]
    assert outcome.stored


def test_posts_are_cut_by_count_and_by_bytes() -> None:
    """Copies go out in order, at most MAX_ENVELOPES_PER_CALL a call and MAX_BATCH_BYTES, so a
    post of large copies to many bureaus never exceeds gRPC's 4 MiB message limit."""
    small = envelope.Envelope(sealed=b"x" * 100)
    large = envelope.Envelope(sealed=b"x" * 33_000)
    items = [(f"B{i}", bytes(16), small) for i in range(300)]
    assert [len(b) for b in mail._batches(items)] == [
        mail.MAX_ENVELOPES_PER_CALL,
        300 - mail.MAX_ENVELOPES_PER_CALL,
    ]
    items = [(f"B{i}", bytes(16), large) for i in range(196)]
    batches = mail._batches(items)
    assert [i for b in batches for i in b] == items
    assert all(sum(e.ByteSize() for _, _, e in b) <= mail.MAX_BATCH_BYTES for b in batches)
    assert len(batches) == 3


def test_strict_mailer_sends_nothing_when_a_bureau_is_unknown(module_pki: pki.PkiDir) -> None:
    """The CLI's mailer refuses a post naming a bureau not in the directory, before any
    copy is stored (a typo must not half-send a diffusion)."""
    fake = FakeGateway(module_pki)

    async def use(mailer: mail.Mailer) -> None:
        await mail.Mailer(mailer.client, strict=True).diffuse(["DE", "ZZ"], "S", "T")

    with pytest.raises(
        ConfigError, match=r"cannot send to ZZ: not in the directory.*; nothing was sent"
    ):
        run_mailer(module_pki, fake, use)
    assert fake.calls == []


def test_a_diffusion_can_be_sent_again_without_a_second_gs_copy(module_pki: pki.PkiDir) -> None:
    """copy_gs=False leaves GS out, so resending to failed bureaus does not double GS's."""
    fake = FakeGateway(module_pki)
    outcome = run_mailer(module_pki, fake, lambda m: m.diffuse(["DE"], "S", "T", copy_gs=False))
    assert outcome.recipients == ["DE"]


def test_batches_whose_turn_comes_after_the_timeout_are_not_sent(
    module_pki: pki.PkiDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once timeout_s has passed, the remaining batches are failed without a call, so they
    are certainly not stored (a last call could time out after the gateway stored them)."""
    monkeypatch.setattr(mail, "MAX_ENVELOPES_PER_CALL", 1)
    fake = FakeGateway(module_pki, script=["stall"] * 100)

    async def use(mailer: mail.Mailer) -> posts.PostOutcome:
        return await mailer.diffuse(["DE", "IT", "NL"], "S", "T", timeout_s=0.4)

    outcome = run_mailer(module_pki, fake, use)
    first = outcome.copies[0].message_id
    assert {
        envelope.Header.parse(envelope.Envelope.FromString(c[0]).header).message_id
        for c in fake.calls
    } == {first}
    assert [c.status for c in outcome.copies] == ["failed"] * 4
    assert "DEADLINE_EXCEEDED" in outcome.copies[0].detail
    assert all(c.detail.startswith("not sent") for c in outcome.copies[1:])
