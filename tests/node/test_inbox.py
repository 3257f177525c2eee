"""The inbox on real SQLite files: dedup, the processed log, notices, the outbox, readers."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from ncbsim import envelope
from ncbsim.errors import NcbsimError
from ncbsim.node.inbox import Inbox, NoticeRow
from ncbsim.v2 import messages_pb2

SENDER = "FR"


def _receipt(tag: bytes) -> messages_pb2.SignedReceipt:
    return messages_pb2.SignedReceipt(receipt=b"receipt-" + tag, signature=b"sig-" + tag)


def _add(
    inbox: Inbox,
    message_id: bytes,
    *,
    post_id: bytes | None = None,
    kind: int = envelope.DIFFUSION,
    sender: str = SENDER,
    text: str = "alert",
) -> None:
    body = messages_pb2.Diffusion(subject="s", text=text).SerializeToString()
    if kind == envelope.MESSAGE:
        body = messages_pb2.CaseMessage(thread="t", text=text).SerializeToString()
    with inbox.transaction():
        inbox.add(
            sender=sender,
            message_id=message_id,
            post_id=post_id or message_id,
            kind=kind,
            issued_at_ms=1_000,
            processed_at_ms=2_000,
            body=body,
            envelope_sha256=b"d" * 32,
            receipt=_receipt(message_id),
        )


@pytest.fixture
def inbox(tmp_path: Path) -> Inbox:
    return Inbox(tmp_path / "inbox.sqlite")


def test_a_processed_envelope_is_found_with_its_receipt(inbox: Inbox) -> None:
    """stored() returns the digest and the receipt of a pair processed before, None else."""
    _add(inbox, b"a" * 16)
    stored = inbox.stored(SENDER, b"a" * 16)
    assert stored is not None
    assert stored.envelope_sha256 == b"d" * 32
    assert stored.receipt == _receipt(b"a" * 16)
    assert inbox.stored(SENDER, b"b" * 16) is None
    assert inbox.stored("DE", b"a" * 16) is None  # dedup is per sender


def test_the_same_pair_cannot_be_recorded_twice(inbox: Inbox) -> None:
    """A second add of one (sender, message_id) fails and rolls back: one row stays."""
    _add(inbox, b"a" * 16)
    with pytest.raises(sqlite3.IntegrityError):
        _add(inbox, b"a" * 16)
    assert inbox.count() == 1
    assert inbox.duplicates_processed() == 0


def test_items_come_in_processing_order_with_decoded_bodies(inbox: Inbox) -> None:
    """items() lists envelopes in the order processed, bodies decoded, filtered by kind."""
    _add(inbox, b"b" * 16, text="first")
    _add(inbox, b"a" * 16, kind=envelope.MESSAGE, text="second")
    _add(inbox, b"c" * 16, text="third")
    items = inbox.items()
    assert [i.message_id for i in items] == [b"b" * 16, b"a" * 16, b"c" * 16]
    first = items[0].body
    assert isinstance(first, messages_pb2.Diffusion)
    assert first.text == "first"
    assert [i.message_id for i in inbox.items(envelope.DIFFUSION)] == [b"b" * 16, b"c" * 16]
    assert [i.sender for i in inbox.items(envelope.MESSAGE)] == [SENDER]


def test_duplicates_processed_counts_a_forced_duplicate(inbox: Inbox) -> None:
    """A second processed row for one pair, or a second copy of one post, is counted."""
    _add(inbox, b"a" * 16)
    _add(inbox, b"b" * 16)
    assert inbox.duplicates_processed() == 0
    # A broken node that processed b twice would have logged it twice.
    raw = sqlite3.connect(inbox.path)
    raw.execute(
        "INSERT INTO processed (sender, message_id, processed_at_ms) VALUES (?, ?, 3000)",
        (SENDER, b"b" * 16),
    )
    raw.commit()
    raw.close()
    assert inbox.duplicates_processed() == 1
    # A sender that re-sealed post b under a new message id: a second copy of one post.
    _add(inbox, b"c" * 16, post_id=b"b" * 16)
    assert inbox.duplicates_processed() == 2
    # The same post id from another sender is another post.
    _add(inbox, b"d" * 16, post_id=b"b" * 16, sender="DE")
    assert inbox.duplicates_processed() == 2


def test_a_reader_sees_commits_while_the_writer_writes(inbox: Inbox) -> None:
    """A read-only reader opened while the node writes sees each commit, never a part of
    an open transaction, and cannot write."""
    _add(inbox, b"a" * 16)
    reader = Inbox.read(inbox.path)
    try:
        assert reader.count() == 1
        with inbox.transaction():
            inbox.add(
                sender=SENDER,
                message_id=b"b" * 16,
                post_id=b"b" * 16,
                kind=envelope.DIFFUSION,
                issued_at_ms=1,
                processed_at_ms=2,
                body=b"",
                envelope_sha256=b"d" * 32,
                receipt=_receipt(b"b"),
            )
            assert reader.count() == 1  # not committed yet
        assert reader.count() == 2
        assert [i.message_id for i in reader.items()] == [b"a" * 16, b"b" * 16]
        with pytest.raises(NcbsimError), reader.transaction():
            pass
        with pytest.raises(sqlite3.OperationalError):
            reader._conn.execute("DELETE FROM messages")
    finally:
        reader.close()


def test_a_reader_opens_an_inbox_after_the_node_closed_it(inbox: Inbox) -> None:
    """A stopped node's inbox reads the same (the CLI after `ncbsim down`)."""
    _add(inbox, b"a" * 16)
    inbox.close()
    reader = Inbox.read(inbox.path)
    try:
        assert [i.message_id for i in reader.items()] == [b"a" * 16]
    finally:
        reader.close()


def test_reading_a_missing_inbox_says_so(tmp_path: Path) -> None:
    """Inbox.read on a path with no file raises NcbsimError naming it, creating nothing."""
    path = tmp_path / "nope" / "inbox.sqlite"
    with pytest.raises(NcbsimError, match="no inbox"):
        Inbox.read(path)
    assert not path.exists()


def test_a_notice_row_round_trips_and_is_replaced(inbox: Inbox) -> None:
    """put_notice stores every field; a second put of the same id replaces the row."""
    subject = messages_pb2.NoticeSubject(surname="Doe", date_of_birth="1980-01-02")
    row = NoticeRow(
        notice_id=b"n" * 16,
        color=messages_pb2.NOTICE_COLOR_RED,
        status=messages_pb2.NOTICE_STATUS_PUBLISHED,
        requested_by="FR",
        reference="RED/2026/0001",
        subject=subject,
        summary="fraud",
        text="details",
        requested_at_ms=5,
        decided_at_ms=6,
        updated_at_ms=7,
        record_ref="NX",
    )
    with inbox.transaction():
        inbox.put_notice(row)
    assert inbox.notice(b"n" * 16) == row
    assert (row.color_name, row.status_name) == ("red", "published")
    assert inbox.references_with("RED/2026/") == 1
    assert inbox.references_with("RED/2025/") == 0
    withdrawn = dataclasses.replace(row, status=messages_pb2.NOTICE_STATUS_WITHDRAWN)
    with inbox.transaction():
        inbox.put_notice(withdrawn)
    assert [n.status_name for n in inbox.notices()] == ["withdrawn"]


def test_outbox_rows_stay_until_removed_across_reopen(tmp_path: Path) -> None:
    """Queued envelopes survive a close and reopen, in order, until removed."""
    path = tmp_path / "inbox.sqlite"
    inbox = Inbox(path)
    with inbox.transaction():
        inbox.add_outbox([("DE", b"1" * 16, 10, b"env1"), ("IT", b"2" * 16, 20, b"env2")])
    inbox.close()
    inbox = Inbox(path)
    try:
        rows = inbox.outbox()
        assert [(r.recipient, r.envelope) for r in rows] == [("DE", b"env1"), ("IT", b"env2")]
        inbox.remove_outbox([rows[0].id])
        assert [r.recipient for r in inbox.outbox()] == ["IT"]
        assert inbox.outbox_size() == 1
    finally:
        inbox.close()


def test_a_rolled_back_transaction_leaves_nothing(inbox: Inbox) -> None:
    """An error inside a transaction undoes its messages, processed and outbox rows."""

    def fail_after_queueing() -> None:
        with inbox.transaction():
            inbox.add_outbox([("DE", b"1" * 16, 10, b"env")])
            raise RuntimeError

    with pytest.raises(RuntimeError):
        fail_after_queueing()
    assert inbox.outbox_size() == 0
    assert inbox.count() == 0


def test_a_failed_commit_is_rolled_back_and_the_inbox_stays_usable(inbox: Inbox) -> None:
    """A COMMIT that fails (here a deferred constraint) undoes the transaction, and the
    next transaction on the same inbox works."""
    conn = inbox._conn  # a deferred foreign key: the only way to fail COMMIT on demand
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    conn.execute(
        "CREATE TABLE child (parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)"
    )

    def commit_fails() -> None:
        with inbox.transaction():
            inbox.add_outbox([("DE", b"1" * 16, 10, b"env")])
            conn.execute("INSERT INTO child VALUES (42)")  # no parent 42: COMMIT fails

    with pytest.raises(sqlite3.IntegrityError):
        commit_fails()
    assert inbox.outbox_size() == 0
    with inbox.transaction():
        inbox.add_outbox([("IT", b"2" * 16, 10, b"env")])
    assert [r.recipient for r in inbox.outbox()] == ["IT"]


def test_the_outbox_leaves_out_held_back_recipients(inbox: Inbox) -> None:
    """outbox(skip=...) lists the other recipients' envelopes, oldest first."""
    with inbox.transaction():
        inbox.add_outbox([(c, c.encode() * 8, 10, b"env") for c in ("DE", "IT", "DE", "FR")])
    assert [r.recipient for r in inbox.outbox(skip={"DE"})] == ["IT", "FR"]
    assert [r.recipient for r in inbox.outbox(1, skip={"IT", "FR"})] == ["DE"]
