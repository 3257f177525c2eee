"""Notices: GS's review rules, the registry, and applying notices to records.

GS's outbox poster is tested in test_outbox.py; both use the notice network of
tests/support.py.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import (
    NOTICE_SUBJECT,
    NoticeNet,
    deliver,
    notice_net,
    publish,
    request_notice,
    withdraw,
)

from ncbsim import envelope, messages
from ncbsim.directory import Directory
from ncbsim.node import notices
from ncbsim.node.inbox import Inbox
from ncbsim.node.store import RecordStore
from ncbsim.v2 import bureau_pb2, messages_pb2

RED = messages_pb2.NOTICE_COLOR_RED
YELLOW = messages_pb2.NOTICE_COLOR_YELLOW
PURPLE = messages_pb2.NOTICE_COLOR_PURPLE
PUBLISHED = messages_pb2.NOTICE_STATUS_PUBLISHED
REFUSED = messages_pb2.NOTICE_STATUS_REFUSED
WITHDRAWN = messages_pb2.NOTICE_STATUS_WITHDRAWN


@pytest.fixture
def net(tmp_path: Path) -> Iterator[NoticeNet]:
    """A notice network in tmp_path (tests/support.py)."""
    with notice_net(tmp_path) as network:
        yield network


def outbox_copies(net: NoticeNet) -> dict[str, envelope.Envelope]:
    """GS's pending copies by recipient, taken out of the outbox (as if posted)."""
    inbox = net.node("GS").inbox
    rows = inbox.outbox()
    inbox.remove_outbox([r.id for r in rows])
    return {r.recipient: envelope.Envelope.FromString(r.envelope) for r in rows}


def sent_notice(net: NoticeNet, copy: envelope.Envelope, to: str) -> messages_pb2.Notice:
    opened = envelope.open_message(
        copy, recipient=net.identity(to), senders=Directory.from_pki(net.pki).get
    )
    body = messages.unpack(envelope.NOTICE, opened.plaintext)
    assert isinstance(body, messages_pb2.Notice)
    return body


# ---------------------------------------------------------------- review rules


def _review(
    inbox: Inbox, request: messages_pb2.NoticeRequest, requester: str = "FR"
) -> notices.Decision:
    return notices.review(
        inbox,
        requester,
        request,
        now_ms=int(time.time() * 1000),
        requested_at_ms=1,
        bureaus=["DE", "FR", "IT"],
    )


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (publish(notice_id=b"short"), "the notice id must be 16 bytes"),
        (publish(color=42), "unknown notice colour"),
        (
            publish(subject=messages_pb2.NoticeSubject(date_of_birth="1979-04-12")),
            "a red notice needs the subject's surname",
        ),
        (
            publish(subject=messages_pb2.NoticeSubject(surname="X", date_of_birth="1979-02-30")),
            "a red notice needs a valid date of birth (YYYY-MM-DD)",
        ),
        (
            publish(subject=messages_pb2.NoticeSubject(surname="X", date_of_birth="2999-01-01")),
            "a red notice needs a valid date of birth (YYYY-MM-DD)",
        ),
        (
            publish(color=YELLOW, subject=messages_pb2.NoticeSubject(surname="X")),
            "a yellow notice needs a valid date of birth (YYYY-MM-DD)",
        ),
        (publish(summary="  "), "a red notice needs a summary of the charges"),
    ],
)
def test_gs_refuses_a_draft_that_breaks_a_rule(
    tmp_path: Path, request_: messages_pb2.NoticeRequest, reason: str
) -> None:
    """Each review rule refuses its case, to the requester only, with the reason."""
    inbox = Inbox(tmp_path / "inbox.sqlite")
    try:
        decision = _review(inbox, request_)
    finally:
        inbox.close()
    assert decision.notice.status == REFUSED
    assert decision.notice.reason == reason
    assert decision.recipients == ("FR",)


def test_gs_publishes_a_valid_draft_to_everyone_with_a_numbered_reference(tmp_path: Path) -> None:
    """A valid red notice is published to every bureau; references count per colour and
    year; a purple notice needs no identified person."""
    inbox = Inbox(tmp_path / "inbox.sqlite")
    year = dt.datetime.now(dt.UTC).year
    try:
        references = []
        for n, color in enumerate([RED, RED, PURPLE]):
            subject = NOTICE_SUBJECT if color == RED else messages_pb2.NoticeSubject()
            decision = _review(inbox, publish(bytes([n]) * 16, color, subject))
            assert decision.row is not None
            with inbox.transaction():
                inbox.put_notice(decision.row)
            assert (decision.notice.status, decision.recipients) == (PUBLISHED, ("DE", "FR", "IT"))
            references.append(decision.notice.reference)
        assert references == [f"RED/{year}/0001", f"RED/{year}/0002", f"PURPLE/{year}/0001"]
        # A subject without a surname makes no person record.
        assert [n.record_ref for n in inbox.notices()] == [
            notices.person_ref(b"\x00" * 16),
            notices.person_ref(b"\x01" * 16),
            "",
        ]
    finally:
        inbox.close()


def test_a_notice_id_in_use_is_refused_and_the_registry_unchanged(net: NoticeNet) -> None:
    """Another bureau reusing a published notice's id is refused; the notice stays FR's."""
    assert request_notice(net, "FR", publish()).status == bureau_pb2.DELIVER_STATUS_PROCESSED
    outbox_copies(net)
    request_notice(net, "IT", publish(summary="something else"))
    copies = outbox_copies(net)
    assert list(copies) == ["IT"]
    refusal = sent_notice(net, copies["IT"], "IT")
    assert (refusal.status, refusal.reason) == (REFUSED, "this notice id is already used")
    [row] = net.node("GS").inbox.notices()
    assert (row.requested_by, row.status, row.summary) == ("FR", PUBLISHED, "armed robbery")


# ---------------------------------------------------------------- through GS and recipients


def test_a_published_notice_reaches_every_bureau_and_becomes_searchable(net: NoticeNet) -> None:
    """GS publishes FR's red notice: copies for every bureau but GS; GS's records and,
    once delivered, DE's records hit the subject, flagged wanted with the reference."""
    gs = net.node("GS")
    de = net.node("DE")
    assert de.find() == []
    assert gs.find() == []
    assert request_notice(net, "FR", publish()).status == bureau_pb2.DELIVER_STATUS_PROCESSED
    ref = notices.person_ref(b"n" * 16)
    assert gs.find() == [ref]
    [registry] = gs.inbox.notices()
    assert (registry.status_name, registry.requested_by) == ("published", "FR")
    copies = outbox_copies(net)
    assert sorted(copies) == ["DE", "FR", "IT"]
    [result] = deliver(de, copies["DE"])
    assert result.status == bureau_pb2.DELIVER_STATUS_PROCESSED
    assert de.find() == [ref]
    store = RecordStore(de.records)
    try:
        person = store.fetch(ref)
    finally:
        store.close()
    assert person is not None
    assert person.flag == "wanted"  # type: ignore[union-attr]
    assert person.summary == f"RED notice {registry.reference}: armed robbery"  # type: ignore[union-attr]
    [row] = de.inbox.notices()
    assert (row.reference, row.status_name, row.record_ref) == (
        registry.reference,
        "published",
        ref,
    )


def test_a_withdrawal_removes_the_subject_everywhere(net: NoticeNet) -> None:
    """FR withdraws its notice: GS and DE mark it withdrawn and no longer hit the subject."""
    gs, de = net.node("GS"), net.node("DE")
    request_notice(net, "FR", publish())
    deliver(de, outbox_copies(net)["DE"])
    assert de.find() != []
    assert request_notice(net, "FR", withdraw()).status == bureau_pb2.DELIVER_STATUS_PROCESSED
    copies = outbox_copies(net)
    assert sorted(copies) == ["DE", "FR", "IT"]
    assert sent_notice(net, copies["DE"], "DE").status == WITHDRAWN
    deliver(de, copies["DE"])
    assert de.find() == []
    assert gs.find() == []
    assert [(n.status_name, n.reason) for n in de.inbox.notices()] == [("withdrawn", "arrested")]
    assert [n.status_name for n in gs.inbox.notices()] == ["withdrawn"]


@pytest.mark.attack(
    "a bureau asks GS to withdraw another bureau's notice",
    adversary="rogue bureau",
    expect="refused to that bureau alone, told only the id and the reason; the notice stays "
    "published",
)
def test_only_the_requester_may_withdraw(net: NoticeNet) -> None:
    """IT's withdrawal of FR's notice is refused to IT alone; the notice stays published."""
    request_notice(net, "FR", publish())
    outbox_copies(net)
    request_notice(net, "IT", withdraw())
    copies = outbox_copies(net)
    assert list(copies) == ["IT"]
    answer = sent_notice(net, copies["IT"], "IT")
    # Only the id, REFUSED and the reason: nothing of FR's notice (subject, text).
    assert answer == messages_pb2.Notice(
        notice_id=b"n" * 16,
        status=REFUSED,
        requested_by="IT",
        reason="withdrawal refused: only the requesting bureau may withdraw it",
        requested_at_ms=answer.requested_at_ms,
        decided_at_ms=answer.decided_at_ms,
    )
    assert [n.status_name for n in net.node("GS").inbox.notices()] == ["published"]
    assert net.node("GS").find() != []


def test_the_requester_of_a_withdrawn_notice_is_told_its_state(net: NoticeNet) -> None:
    """FR withdrawing its notice twice: the second is refused, and FR (its owner) gets
    the notice's current state with the reason."""
    request_notice(net, "FR", publish())
    request_notice(net, "FR", withdraw())
    outbox_copies(net)
    request_notice(net, "FR", withdraw())
    answer = sent_notice(net, outbox_copies(net)["FR"], "FR")
    assert (answer.status, answer.reason) == (
        WITHDRAWN,
        "withdrawal refused: the notice is withdrawn",
    )
    assert answer.subject == NOTICE_SUBJECT


def test_a_request_whose_notice_would_be_too_large_is_refused(tmp_path: Path) -> None:
    """A draft packing just under 32 KiB, whose Notice would pad to 64 KiB, or a withdrawal
    with a reason that long, is refused "too large" to the requester without echoing it;
    the longest text a Mailer sends (8000 Cyrillic characters) is published."""
    inbox = Inbox(tmp_path / "inbox.sqlite")
    try:
        crafted = publish()
        crafted.publish.text = ""
        crafted.publish.text = "x" * (32 * 1024 - crafted.ByteSize() - 8)
        assert len(messages.pack(crafted)) == 32 * 1024  # the gateway would take it
        decision = _review(inbox, crafted)
        honest = publish()
        honest.publish.text = "Ж" * messages.MAX_TEXT_CHARS
        published = _review(inbox, honest)
        assert published.row is not None
        with inbox.transaction():
            inbox.put_notice(published.row)
        withdrawal = _review(inbox, withdraw(reason="x" * (32 * 1024)))
    finally:
        inbox.close()
    assert published.notice.status == PUBLISHED
    for refused in (decision, withdrawal):
        assert (refused.notice.status, refused.notice.reason) == (REFUSED, notices.TOO_LARGE)
        assert (refused.recipients, refused.row) == (("FR",), None)
        assert refused.notice.text == ""
        assert refused.notice.notice_id == b"n" * 16
        assert len(messages.pack(refused.notice)) <= notices.MAX_NOTICE_BYTES


def test_applying_a_notice_again_is_a_no_op_and_it_never_moves_back(net: NoticeNet) -> None:
    """The same published notice applied twice leaves one person record; a publication
    arriving after the withdrawal is ignored."""
    de = net.node("DE")
    notice = messages_pb2.Notice(
        notice_id=b"n" * 16, color=YELLOW, status=PUBLISHED, subject=NOTICE_SUBJECT, reference="Y/1"
    )
    for _ in range(2):
        with de.inbox.transaction():
            assert notices.apply_notice(de.inbox, de.records, notice, now_ms=1)
    ref = notices.person_ref(b"n" * 16)
    with sqlite3.connect(de.records) as conn:
        rows = conn.execute("SELECT flag FROM persons WHERE ref = ?", (ref,)).fetchall()
    assert rows == [("missing",)]
    withdrawn = messages_pb2.Notice(notice_id=b"n" * 16, color=YELLOW, status=WITHDRAWN)
    with de.inbox.transaction():
        assert notices.apply_notice(de.inbox, de.records, withdrawn, now_ms=2)
        assert not notices.apply_notice(de.inbox, de.records, notice, now_ms=3)
    assert de.find() == []
    assert [n.status_name for n in de.inbox.notices()] == ["withdrawn"]
