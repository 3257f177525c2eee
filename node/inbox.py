"""A bureau's inbox: every one-way envelope it processed, its notices, and GS's outbox.

One SQLite file per bureau, ``WORKDIR/bureaus/XX/inbox.sqlite`` (WAL,
``synchronous=FULL``: a commit is on disk before the node answers the gateway). Tables:

- ``messages``: one row per processed envelope, keyed by ``(sender, message_id)``. It
  holds the decrypted, unpadded body and the signed receipt the node returned, so a
  redelivery is answered DUPLICATE with the very same receipt. This is the dedup that
  makes at-least-once delivery effectively exactly once: the lookup and the insert run
  in the same transaction as the processing.
- ``processed``: append-only, one row per processing, written in that same transaction.
  A correct node never writes two rows for one ``(sender, message_id)``;
  :meth:`Inbox.duplicates_processed` counts any that it did.
- ``notices``: the notices this bureau knows (at GS: the registry of every notice it
  decided), one row per notice id, with its latest status.
- ``outbox``: at GS, the sealed Notice envelopes decided but not yet accepted by the
  gateway (ncbsim.node.notices). A row is written in the transaction that records the decision
  and deleted once the gateway accepted the envelope.
- ``user_mail``: copies addressed to the bureau's users (``NG/x``, docs/users.md), kept
  as they came, sealed to the user: the node verified the sender's signature but cannot
  open them; ``ncbsim inbox --as NG/x`` does, with the user's key. Keyed and answered
  like ``messages`` (dedup, receipt); they count in :meth:`Inbox.duplicates_processed`
  through ``processed``, not in :meth:`Inbox.count` nor in the bureau's own items.

The node is the only writer, and uses the inbox from its event loop only. The CLI and
the simulator read it while the node runs through :meth:`Inbox.read` (read-only).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from ncbsim import messages, private
from ncbsim.errors import EnvelopeError, NcbsimError
from ncbsim.v2 import messages_pb2

__all__ = ["Inbox", "InboxItem", "NoticeRow", "OutboxRow", "Stored"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    sender          TEXT NOT NULL,
    message_id      BLOB NOT NULL,
    post_id         BLOB NOT NULL,
    kind            INTEGER NOT NULL,
    issued_at_ms    INTEGER NOT NULL,
    processed_at_ms INTEGER NOT NULL,
    body            BLOB NOT NULL,
    envelope_sha256 BLOB NOT NULL,
    receipt         BLOB NOT NULL,
    PRIMARY KEY (sender, message_id)
);
CREATE TABLE IF NOT EXISTS processed (
    id              INTEGER PRIMARY KEY,
    sender          TEXT NOT NULL,
    message_id      BLOB NOT NULL,
    processed_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS notices (
    notice_id       BLOB PRIMARY KEY,
    color           INTEGER NOT NULL,
    status          INTEGER NOT NULL,
    requested_by    TEXT NOT NULL,
    reference       TEXT NOT NULL,
    subject         BLOB NOT NULL,
    summary         TEXT NOT NULL,
    text            TEXT NOT NULL,
    reason          TEXT NOT NULL,
    requested_at_ms INTEGER NOT NULL,
    decided_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    record_ref      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS user_mail (
    recipient       TEXT NOT NULL,
    sender          TEXT NOT NULL,
    message_id      BLOB NOT NULL,
    kind            INTEGER NOT NULL,
    processed_at_ms INTEGER NOT NULL,
    envelope        BLOB NOT NULL,
    envelope_sha256 BLOB NOT NULL,
    receipt         BLOB NOT NULL,
    PRIMARY KEY (sender, message_id)
);
CREATE INDEX IF NOT EXISTS user_mail_recipient ON user_mail (recipient);
CREATE TABLE IF NOT EXISTS outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient     TEXT NOT NULL,
    message_id    BLOB NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    envelope      BLOB NOT NULL
);
"""
_NOTICE_COLUMNS = (
    "notice_id, color, status, requested_by, reference, subject, summary, text, reason, "
    "requested_at_ms, decided_at_ms, updated_at_ms, record_ref"
)


@dataclass(frozen=True, slots=True)
class InboxItem:
    """One processed envelope, with its body decoded (``ncbsim inbox``)."""

    sender: str
    message_id: bytes
    post_id: bytes
    kind: int
    issued_at_ms: int
    processed_at_ms: int
    body: Message


@dataclass(frozen=True, kw_only=True, slots=True)
class NoticeRow:
    """A notice as this bureau knows it: its latest status, and the person record it made.

    ``record_ref`` is the reference of the person record the notice put into the
    bureau's records (empty if none: no surname or date of birth, or withdrawn).
    """

    notice_id: bytes
    color: int
    status: int
    requested_by: str
    reference: str
    subject: messages_pb2.NoticeSubject
    summary: str
    text: str = ""
    reason: str = ""
    requested_at_ms: int = 0
    decided_at_ms: int = 0
    updated_at_ms: int = 0
    record_ref: str = ""

    @property
    def color_name(self) -> str:
        """``red``, ``yellow``, ..."""
        return messages.color_name(self.color)

    @property
    def status_name(self) -> str:
        """``requested``, ``published``, ``refused`` or ``withdrawn``."""
        return messages.status_name(self.status)


@dataclass(frozen=True, slots=True)
class Stored:
    """What dedup needs of an envelope processed before: its digest and our receipt."""

    envelope_sha256: bytes
    receipt: messages_pb2.SignedReceipt


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A sealed envelope waiting to be accepted by the gateway."""

    id: int
    recipient: str
    message_id: bytes
    expires_at_ms: int
    envelope: bytes


def _notice_row(row: tuple[Any, ...]) -> NoticeRow:
    return NoticeRow(
        notice_id=bytes(row[0]),
        color=int(row[1]),
        status=int(row[2]),
        requested_by=str(row[3]),
        reference=str(row[4]),
        subject=messages_pb2.NoticeSubject.FromString(bytes(row[5])),
        summary=str(row[6]),
        text=str(row[7]),
        reason=str(row[8]),
        requested_at_ms=int(row[9]),
        decided_at_ms=int(row[10]),
        updated_at_ms=int(row[11]),
        record_ref=str(row[12]),
    )


class Inbox:
    """A bureau's inbox database. ``Inbox(path)`` opens it for writing (the node);
    :meth:`read` opens it read-only (the CLI, the simulator), also while the node runs.
    """

    def __init__(self, path: Path, *, busy_timeout_ms: int = 5_000) -> None:
        self.path = Path(path)
        self.read_only = False
        try:
            private.sqlite_file(self.path)  # opened messages, in clear: the owner's alone
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=busy_timeout_ms / 1000
            )
        except (OSError, sqlite3.Error) as exc:
            raise NcbsimError(f"cannot open the inbox at {self.path}: {exc}") from None
        try:
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise NcbsimError(f"{self.path} is not an inbox: {exc}") from None
        self._depth = 0

    @classmethod
    def read(cls, path: Path) -> Inbox:
        """Open the inbox at ``path`` read-only; NcbsimError if there is none."""
        path = Path(path)
        if not path.is_file():
            raise NcbsimError(f"no inbox at {path}")
        inbox = cls.__new__(cls)
        inbox.path = path
        inbox.read_only = True
        inbox._depth = 0
        try:
            inbox._conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=5
            )
            inbox._conn.execute("PRAGMA query_only = ON")
            inbox._conn.execute("SELECT count(*) FROM messages").fetchone()
        except sqlite3.DatabaseError as exc:
            raise NcbsimError(f"{path} is not an inbox: {exc}") from None
        return inbox

    def close(self) -> None:
        """Close the connection; everything committed is on disk."""
        self._conn.close()

    # ------------------------------------------------------------ transactions

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``); rolled back on error.

        A COMMIT that fails (a full disk, a deferred constraint) is rolled back too, so
        the connection can start the next transaction.
        """
        if self.read_only:
            raise NcbsimError("the inbox is open read-only")
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested part of a transaction, undone alone if it raises."""
        self._depth += 1
        name = f"part{self._depth}"
        self._conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self._conn.execute(f"ROLLBACK TO {name}")
            self._conn.execute(f"RELEASE {name}")
            raise
        finally:
            self._depth -= 1
        self._conn.execute(f"RELEASE {name}")

    # ------------------------------------------------------------ messages

    def stored(self, sender: str, message_id: bytes) -> Stored | None:
        """The digest and receipt of ``(sender, message_id)`` if it was processed before
        (for the bureau, or kept for one of its users)."""
        row = self._conn.execute(
            "SELECT envelope_sha256, receipt FROM messages WHERE sender = ? AND message_id = ? "
            "UNION ALL SELECT envelope_sha256, receipt FROM user_mail "
            "WHERE sender = ? AND message_id = ?",
            (sender, message_id, sender, message_id),
        ).fetchone()
        if row is None:
            return None
        return Stored(bytes(row[0]), messages_pb2.SignedReceipt.FromString(bytes(row[1])))

    def add(
        self,
        *,
        sender: str,
        message_id: bytes,
        post_id: bytes,
        kind: int,
        issued_at_ms: int,
        processed_at_ms: int,
        body: bytes,
        envelope_sha256: bytes,
        receipt: messages_pb2.SignedReceipt,
    ) -> None:
        """Record one processed envelope: its ``messages`` row and its ``processed`` row.

        Call it inside :meth:`transaction`. ``sqlite3.IntegrityError`` if the pair was
        processed before (check :meth:`stored` first, in the same transaction).
        """
        self._conn.execute(
            "INSERT INTO messages (sender, message_id, post_id, kind, issued_at_ms, "
            "processed_at_ms, body, envelope_sha256, receipt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                sender,
                message_id,
                post_id,
                kind,
                issued_at_ms,
                processed_at_ms,
                body,
                envelope_sha256,
                receipt.SerializeToString(),
            ),
        )
        self._conn.execute(
            "INSERT INTO processed (sender, message_id, processed_at_ms) VALUES (?, ?, ?)",
            (sender, message_id, processed_at_ms),
        )

    def add_user_mail(  # noqa: PLR0917 - one column each, as add
        self,
        recipient: str,
        sender: str,
        message_id: bytes,
        kind: int,
        processed_at_ms: int,
        sealed: bytes,
        envelope_sha256: bytes,
        receipt: messages_pb2.SignedReceipt,
    ) -> None:
        """Keep one copy for user ``recipient``, unopened (inside :meth:`transaction`)."""
        self._conn.execute(
            "INSERT INTO user_mail (recipient, sender, message_id, kind, processed_at_ms, "
            "envelope, envelope_sha256, receipt) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                recipient,
                sender,
                message_id,
                kind,
                processed_at_ms,
                sealed,
                envelope_sha256,
                receipt.SerializeToString(),
            ),
        )
        self._conn.execute(
            "INSERT INTO processed (sender, message_id, processed_at_ms) VALUES (?, ?, ?)",
            (sender, message_id, processed_at_ms),
        )

    def user_mail(self, recipient: str) -> list[tuple[bytes, int]]:
        """The sealed copies kept for user ``recipient`` and when each was taken, in order."""
        rows = self._conn.execute(
            "SELECT envelope, processed_at_ms FROM user_mail WHERE recipient = ? ORDER BY rowid",
            (recipient,),
        ).fetchall()
        return [(bytes(sealed), int(at)) for sealed, at in rows]

    def items(self, kind: int | None = None) -> list[InboxItem]:
        """Every processed envelope (of ``kind``, if given), in processing order.

        A body that no longer decodes is skipped (it cannot happen to a body the node
        stored, which decoded when it was processed).
        """
        sql = (
            "SELECT sender, message_id, post_id, kind, issued_at_ms, processed_at_ms, body "
            "FROM messages"
        )
        params: tuple[int, ...] = ()
        if kind is not None:
            sql += " WHERE kind = ?"
            params = (kind,)
        out: list[InboxItem] = []
        for sender, message_id, post_id, k, issued, processed, body in self._conn.execute(
            sql + " ORDER BY rowid", params
        ):
            try:
                decoded = messages.unpack(int(k), bytes(body))
            except EnvelopeError:
                continue
            out.append(
                InboxItem(
                    str(sender),
                    bytes(message_id),
                    bytes(post_id),
                    int(k),
                    issued,
                    processed,
                    decoded,
                )
            )
        return out

    def count(self) -> int:
        """How many envelopes were processed."""
        return int(self._conn.execute("SELECT count(*) FROM messages").fetchone()[0])

    def duplicates_processed(self) -> int:
        """Processings beyond the first: of one ``(sender, message_id)``, and of one post.

        ``processed`` rows minus distinct ``(sender, message_id)`` among them, plus
        ``messages`` rows minus distinct ``(sender, post_id)``: a second copy of one post
        (a sender that re-sealed it under a new message id) counts too. 0 when delivery
        was effectively exactly once.
        """
        (extra_processings,) = self._conn.execute(
            "SELECT count(*) - (SELECT count(*) FROM (SELECT DISTINCT sender, message_id "
            "FROM processed)) FROM processed"
        ).fetchone()
        (extra_copies,) = self._conn.execute(
            "SELECT count(*) - (SELECT count(*) FROM (SELECT DISTINCT sender, post_id "
            "FROM messages)) FROM messages"
        ).fetchone()
        return int(extra_processings) + int(extra_copies)

    # ------------------------------------------------------------ notices

    def notice(self, notice_id: bytes) -> NoticeRow | None:
        """The notice with this id, or None."""
        row = self._conn.execute(
            f"SELECT {_NOTICE_COLUMNS} FROM notices WHERE notice_id = ?", (notice_id,)
        ).fetchone()
        return None if row is None else _notice_row(row)

    def notices(self) -> list[NoticeRow]:
        """Every notice this bureau knows, oldest request first."""
        rows = self._conn.execute(
            f"SELECT {_NOTICE_COLUMNS} FROM notices ORDER BY requested_at_ms, rowid"
        ).fetchall()
        return [_notice_row(row) for row in rows]

    def put_notice(self, notice: NoticeRow) -> None:
        """Insert or replace the row of ``notice.notice_id`` (inside :meth:`transaction`)."""
        self._conn.execute(
            f"INSERT OR REPLACE INTO notices ({_NOTICE_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                notice.notice_id,
                notice.color,
                notice.status,
                notice.requested_by,
                notice.reference,
                notice.subject.SerializeToString(),
                notice.summary,
                notice.text,
                notice.reason,
                notice.requested_at_ms,
                notice.decided_at_ms,
                notice.updated_at_ms,
                notice.record_ref,
            ),
        )

    def references_with(self, prefix: str) -> int:
        """How many notices have a reference starting with ``prefix`` (``RED/2026/``)."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        (count,) = self._conn.execute(
            "SELECT count(*) FROM notices WHERE reference LIKE ? ESCAPE '\\'", (escaped + "%",)
        ).fetchone()
        return int(count)

    # ------------------------------------------------------------ outbox

    def add_outbox(self, rows: Sequence[tuple[str, bytes, int, bytes]]) -> None:
        """Queue sealed envelopes ``(recipient, message_id, expires_at_ms, envelope bytes)``
        for posting (inside the transaction that decided to send them)."""
        self._conn.executemany(
            "INSERT INTO outbox (recipient, message_id, expires_at_ms, envelope) "
            "VALUES (?, ?, ?, ?)",
            rows,
        )

    def outbox(self, limit: int = 256, *, skip: Collection[str] = ()) -> list[OutboxRow]:
        """The oldest ``limit`` envelopes still to be accepted by the gateway, leaving out
        those for the recipients in ``skip`` (held back: their queue is full)."""
        held = sorted(skip)
        where = f"WHERE recipient NOT IN ({', '.join('?' * len(held))}) " if held else ""
        rows = self._conn.execute(
            "SELECT id, recipient, message_id, expires_at_ms, envelope FROM outbox "
            f"{where}ORDER BY id LIMIT ?",
            (*held, limit),
        ).fetchall()
        return [OutboxRow(int(i), str(r), bytes(m), int(e), bytes(b)) for i, r, m, e, b in rows]

    def outbox_size(self) -> int:
        """How many envelopes wait in the outbox."""
        return int(self._conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def remove_outbox(self, ids: Sequence[int]) -> None:
        """Delete outbox rows the gateway accepted (or that expired), in one commit."""
        if not ids:
            return
        with self.transaction():
            self._conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])
