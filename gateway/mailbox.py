"""The gateway's durable store of one-way envelopes: accept after commit, then deliver.

One SQLite file (``WORKDIR/gateway/mailbox.sqlite``, WAL, ``synchronous=FULL``) holds a
row per posted copy. A single writer thread owns the connection
(:class:`ncbsim.gateway.writer.Writer`): every operation waiting runs in ONE transaction
(group commit: one fsync for many envelopes) and is answered only once it committed, so
"accepted" is only ever answered for a row that is on disk, and the event loop never
touches SQLite. An operation that fails (a bug) fails alone; a commit that fails (disk
full, I/O error) fails every operation of the batch, and nothing of it was accepted.

States of a row: ``queued`` until it is ``delivered`` (the recipient's signed receipt is
kept), ``rejected`` (the recipient refused it: it did not verify or open) or ``expired``
(its TTL passed first). At settlement the envelope (sealed bytes, never plaintext) is
deleted; the metadata and the receipt stay for the sender (Gateway.Receipts) until
:meth:`Mailbox.prune` deletes the row, a retention period after settlement. A receipt
is the recipient's word, so a copy the sweeper expired while its delivery was in flight
becomes ``delivered`` when the receipt comes back.

The queued counts per recipient and per (sender, recipient) are kept in memory
(:mod:`ncbsim.gateway.queues`) for the two queue bounds: a
copy is not stored (``queue_full``) if its recipient has ``max_queue`` queued rows, or
if its sender already has ``max_queue_per_sender`` queued for that recipient (so no one
bureau can fill another's queue). Copies from the General Secretariat (notices) answer
to their pair bound only, so a flood from others cannot stop notices. A message id a
sender already used for another envelope refuses the whole call
(:class:`MessageIdReused`). docs/delivery.md has the rest.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import structlog

from ncbsim import private
from ncbsim.countries import GENERAL_SECRETARIAT
from ncbsim.errors import ConfigError, EnvelopeError
from ncbsim.gateway.config import DEFAULT_MAX_QUEUE_PER_SENDER
from ncbsim.gateway.copies import (
    ACCEPTED,
    DELIVERED,
    DUPLICATE,
    EXPIRED,
    QUEUE_FULL,
    QUEUED,
    REJECTED,
    Acceptance,
    Due,
    Incoming,
    Outcome,
    Posted,
    Settled,
)
from ncbsim.gateway.queues import PendingCounts, QueueCounts
from ncbsim.gateway.writer import Writer

log = structlog.get_logger()

EXPIRE_CHUNK = 10_000
"""At most this many rows are expired by one sweep (the next sweep takes the rest)."""
PRUNE_CHUNK = 10_000
"""At most this many settled rows are deleted in one transaction."""
EXEMPT_FROM_TOTAL = frozenset({GENERAL_SECRETARIAT})
"""Senders whose copies are not held to the recipient's total bound (their pair bound holds)."""


class MessageIdReused(EnvelopeError):  # noqa: N818 - reads as the refusal it is
    """A sender's message id is stored already for a different envelope (not a retry)."""

    def __str__(self) -> str:
        return "message id reused by a different envelope"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
    sender TEXT NOT NULL,
    message_id BLOB NOT NULL,
    post_id BLOB NOT NULL,
    recipient TEXT NOT NULL,
    kind INTEGER NOT NULL,
    envelope BLOB,
    envelope_sha256 BLOB NOT NULL,
    envelope_bytes INTEGER NOT NULL,
    issued_at_ms INTEGER NOT NULL,
    accepted_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'delivered', 'expired', 'rejected')),
    settled_at_ms INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    receipt BLOB,
    detail TEXT NOT NULL DEFAULT '',
    UNIQUE (sender, message_id)
);
-- Partial indexes: only queued rows are looked up by recipient or expiry, and these stay
-- as small as the queues however long the settled history grows.
CREATE INDEX IF NOT EXISTS messages_due ON messages (recipient, sequence)
    WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS messages_expiry ON messages (expires_at_ms)
    WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS messages_sender ON messages (sender, sequence);
CREATE INDEX IF NOT EXISTS messages_settled ON messages (settled_at_ms)
    WHERE state != 'queued';
"""

_T = TypeVar("_T")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


_SETTLED_COLUMNS = (
    "sequence, sender, message_id, post_id, recipient, kind, issued_at_ms, expires_at_ms, "
    "envelope_bytes, state, length(receipt), detail, attempts, accepted_at_ms"
)


def _settled(row: Sequence[Any]) -> Settled:
    (sequence, sender, message_id, post_id, recipient, kind, issued, expires, size, state) = row[
        :10
    ]
    return Settled(
        sequence=sequence,
        sender=sender,
        message_id=message_id,
        post_id=post_id,
        recipient=recipient,
        kind=kind,
        issued_at_ms=issued,
        expires_at_ms=expires,
        envelope_bytes=size,
        state=state,
        receipt_bytes=row[10] or 0,
        detail=row[11],
        attempts=row[12],
        accepted_at_ms=row[13],
    )


class Mailbox:
    """The gateway's store of one-way envelopes. Open with :meth:`open`; every method is
    async and runs on the writer thread, except :meth:`queued` (in memory)."""

    def __init__(
        self,
        path: Path,
        *,
        max_queue: int,
        max_queue_per_sender: int = DEFAULT_MAX_QUEUE_PER_SENDER,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        if max_queue < 1 or max_queue_per_sender < 1:
            raise ConfigError("max_queue and max_queue_per_sender must be at least 1")
        self.path = path
        self.max_queue = max_queue
        self.max_queue_per_sender = max_queue_per_sender
        self._clock = clock
        self._counts = QueueCounts()
        self._writer = Writer(
            "mailbox",
            path,
            connect=self._connect,
            begin=self._counts.begin,
            committed=self._counts.apply,
        )

    @property
    def commits(self) -> int:
        """Transactions committed so far (group commit makes it far below the operations)."""
        return self._writer.commits

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        max_queue: int,
        max_queue_per_sender: int = DEFAULT_MAX_QUEUE_PER_SENDER,
        clock: Callable[[], int] = _now_ms,
    ) -> Mailbox:
        """Open (or create) the store at ``path`` and start its writer thread."""
        mailbox = cls(
            path, max_queue=max_queue, max_queue_per_sender=max_queue_per_sender, clock=clock
        )
        await mailbox._writer.start()
        return mailbox

    async def close(self) -> None:
        """Finish every operation handed in so far, then stop the thread and close the file."""
        await self._writer.close()

    # ----------------------------------------------------------------- in memory

    def queued(self, recipient: str | None = None, *, sender: str | None = None) -> int:
        """Queued copies for ``recipient`` (None: for every recipient), from ``sender``
        (None: from anyone), as of the last commit."""
        return self._counts.queued(recipient, sender=sender)

    def recipients(self) -> list[str]:
        """Recipients with queued copies, sorted (as of the last commit)."""
        return self._counts.recipients()

    def oldest_queued_ms(self) -> dict[str, int]:
        """When the oldest queued copy of each recipient was accepted (epoch ms), read on
        a read-only connection of the caller's (a metrics scrape, on its own thread): one
        indexed lookup per recipient with copies queued."""
        recipients = self.recipients()
        if not recipients:
            return {}
        conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            sql = (
                "SELECT accepted_at_ms FROM messages WHERE recipient = ? AND state = 'queued' "
                "ORDER BY sequence LIMIT 1"
            )
            found = {r: conn.execute(sql, (r,)).fetchone() for r in recipients}
        finally:
            conn.close()
        return {r: int(row[0]) for r, row in found.items() if row is not None}

    # ----------------------------------------------------------------- operations

    async def _call(self, fn: Callable[[sqlite3.Connection, PendingCounts], _T]) -> _T:
        return await self._writer.call(fn)

    async def accept(self, items: Sequence[Incoming]) -> list[Acceptance]:
        """Store each envelope, once committed: ``accepted``, ``duplicate`` (this envelope
        is stored already: the original sequence) or ``queue_full`` (detail: which bound).

        Raises :class:`MessageIdReused` (nothing of the call stored) if a message id is
        stored already for a different envelope of the same sender.
        """
        return await self._call(lambda conn, batch: self._accept(conn, batch, items))

    async def due(
        self,
        recipient: str,
        limit: int,
        now_ms: int,
        *,
        max_bytes: int | None = None,
        skip: Sequence[str] = (),
    ) -> list[Due]:
        """Up to ``limit`` of ``recipient``'s oldest queued, unexpired copies, by sequence,
        leaving out those of the senders in ``skip`` (held back by the deliverer).

        With ``max_bytes``, stop before the envelopes' total size would pass it (the
        first copy is always taken, so a large one cannot block the queue).
        """
        held = f"AND sender NOT IN ({', '.join('?' for _ in skip)}) " if skip else ""
        sql = (
            "SELECT sequence, sender, message_id, post_id, recipient, kind, envelope, "
            "envelope_sha256, issued_at_ms, expires_at_ms FROM messages "
            f"WHERE recipient = ? AND state = 'queued' AND expires_at_ms > ? {held}"
            "ORDER BY sequence LIMIT ?"
        )

        def run(conn: sqlite3.Connection, _: PendingCounts) -> list[Due]:
            out: list[Due] = []
            total = 0
            for row in conn.execute(sql, (recipient, now_ms, *skip, limit)):
                total += len(row[6])
                if out and max_bytes is not None and total > max_bytes:
                    break
                out.append(Due(*row))
            return out

        return await self._call(run)

    async def settle(self, outcomes: Sequence[Outcome]) -> list[Settled]:
        """Record one delivery attempt of each copy; the copies it settled, for the audit.

        ``delivered``, ``rejected`` and ``expired`` drop the envelope; ``queued`` only
        counts the attempt. Only a queued copy changes, except that a receipt also
        settles a copy the sweeper had expired meanwhile.
        """
        return await self._call(lambda conn, batch: self._settle(conn, batch, outcomes))

    async def expire(self, now_ms: int) -> list[Settled]:
        """Mark queued copies whose ``expires_at_ms`` is past as expired; return them."""
        return await self._call(lambda conn, batch: self._expire(conn, batch, now_ms))

    async def prune(self, settled_before_ms: int, now_ms: int) -> int:
        """Delete the rows of copies settled before ``settled_before_ms``; how many.

        Only rows whose copy has also expired by ``now_ms`` go, so the dedup of a retry
        is never lost: a retry of a pruned copy carries the same header, which the
        gateway refuses as expired before it looks here. Queued rows are never deleted.
        """
        sql = (
            "DELETE FROM messages WHERE sequence IN (SELECT sequence FROM messages "
            "WHERE state != 'queued' AND settled_at_ms < ? AND expires_at_ms <= ? "
            "ORDER BY settled_at_ms LIMIT ?)"
        )

        def run(conn: sqlite3.Connection, _: PendingCounts) -> int:
            return conn.execute(sql, (settled_before_ms, now_ms, PRUNE_CHUNK)).rowcount

        deleted = 0
        while True:
            count = await self._call(run)
            deleted += count
            if count < PRUNE_CHUNK:
                return deleted

    async def posted(self, sender: str, after: int, limit: int) -> list[Posted]:
        """``sender``'s copies with a sequence above ``after``, by sequence, at most ``limit``."""
        sql = (
            "SELECT sequence, message_id, post_id, recipient, kind, state, accepted_at_ms, "
            "expires_at_ms, settled_at_ms, attempts, receipt, detail FROM messages "
            "WHERE sender = ? AND sequence > ? ORDER BY sequence LIMIT ?"
        )

        def run(conn: sqlite3.Connection, _: PendingCounts) -> list[Posted]:
            return [Posted(*row) for row in conn.execute(sql, (sender, after, limit))]

        return await self._call(run)

    # ----------------------------------------------------------------- on the thread

    def _accept(
        self, conn: sqlite3.Connection, batch: PendingCounts, items: Sequence[Incoming]
    ) -> list[Acceptance]:
        now = self._clock()
        out: list[Acceptance] = []
        for item in items:
            h = item.header
            existing = self._existing(conn, h.sender, h.message_id, item.sha256)
            if existing is not None:
                out.append(existing)
                continue
            full = self._full(batch, h.sender, h.recipient)
            if full:
                out.append(Acceptance(QUEUE_FULL, 0, 0, full))
                continue
            cursor = conn.execute(
                "INSERT INTO messages (sender, message_id, post_id, recipient, kind, envelope, "
                "envelope_sha256, envelope_bytes, issued_at_ms, accepted_at_ms, expires_at_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    h.sender,
                    h.message_id,
                    h.correlation_id,
                    h.recipient,
                    h.kind,
                    item.data,
                    item.sha256,
                    len(item.data),
                    h.issued_at_ms,
                    now,
                    h.expires_at_ms,
                ),
            )
            batch.change(h.sender, h.recipient, 1)
            out.append(Acceptance(ACCEPTED, int(cursor.lastrowid or 0), now))
        return out

    def _full(self, batch: PendingCounts, sender: str, recipient: str) -> str:
        """Which bound a new copy from ``sender`` to ``recipient`` is over ("" if none)."""
        if batch.pair(sender, recipient) >= self.max_queue_per_sender:
            return (
                f"queue from {sender} to {recipient} is full "
                f"({self.max_queue_per_sender} of {sender}'s messages waiting)"
            )
        if sender not in EXEMPT_FROM_TOTAL and batch.queued(recipient) >= self.max_queue:
            return f"queue for {recipient} is full ({self.max_queue} messages waiting)"
        return ""

    @staticmethod
    def _existing(
        conn: sqlite3.Connection, sender: str, message_id: bytes, sha256: bytes
    ) -> Acceptance | None:
        row = conn.execute(
            "SELECT sequence, accepted_at_ms, envelope_sha256 FROM messages "
            "WHERE sender = ? AND message_id = ?",
            (sender, message_id),
        ).fetchone()
        if row is None:
            return None
        if row[2] != sha256:
            raise MessageIdReused
        return Acceptance(DUPLICATE, row[0], row[1])

    def _settle(
        self, conn: sqlite3.Connection, batch: PendingCounts, outcomes: Sequence[Outcome]
    ) -> list[Settled]:
        now = self._clock()
        settled: list[int] = []
        for outcome in outcomes:
            if outcome.state == QUEUED:
                conn.execute(
                    "UPDATE messages SET attempts = attempts + 1 "
                    "WHERE sequence = ? AND state = 'queued'",
                    (outcome.sequence,),
                )
                continue
            if outcome.state not in (DELIVERED, REJECTED, EXPIRED):
                raise ValueError(f"not a settlement: {outcome.state!r}")
            receipt = outcome.receipt if outcome.state == DELIVERED else None
            update = (
                "UPDATE messages SET state = ?, envelope = NULL, settled_at_ms = ?, "
                "attempts = attempts + 1, receipt = ?, detail = ? "
                "WHERE sequence = ? AND state = ? RETURNING sender, recipient"
            )
            args = (outcome.state, now, receipt, outcome.detail, outcome.sequence)
            row = conn.execute(update, (*args, QUEUED)).fetchone()
            if row is not None:
                batch.change(row[0], row[1], -1)
                settled.append(outcome.sequence)
            elif (  # the recipient's receipt outranks our expiry
                outcome.state == DELIVERED
                and conn.execute(update, (*args, EXPIRED)).fetchone() is not None
            ):
                settled.append(outcome.sequence)
        return self._select_settled(conn, settled)

    def _expire(self, conn: sqlite3.Connection, batch: PendingCounts, now_ms: int) -> list[Settled]:
        rows = conn.execute(
            "UPDATE messages SET state = 'expired', envelope = NULL, settled_at_ms = ?, "
            "detail = 'ttl passed before delivery' "
            "WHERE sequence IN (SELECT sequence FROM messages "
            "WHERE state = 'queued' AND expires_at_ms <= ? ORDER BY expires_at_ms LIMIT ?) "
            "RETURNING sequence, sender, recipient",
            (now_ms, now_ms, EXPIRE_CHUNK),
        ).fetchall()
        for _, sender, recipient in rows:
            batch.change(sender, recipient, -1)
        return self._select_settled(conn, sorted(seq for seq, _, _ in rows))

    @staticmethod
    def _select_settled(conn: sqlite3.Connection, sequences: list[int]) -> list[Settled]:
        out: list[Settled] = []
        for start in range(0, len(sequences), 500):
            chunk = sequences[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            sql = (
                f"SELECT {_SETTLED_COLUMNS} FROM messages WHERE sequence IN ({marks}) "
                "ORDER BY sequence"
            )
            out += [_settled(row) for row in conn.execute(sql, chunk)]
        return out

    def _connect(self) -> sqlite3.Connection:
        private.sqlite_file(self.path)  # sealed copies and who sent what to whom
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA secure_delete=ON")  # a settled envelope's bytes are overwritten
        conn.executescript(_SCHEMA)
        counts = conn.execute(
            "SELECT sender, recipient, count(*) FROM messages WHERE state = 'queued' "
            "GROUP BY sender, recipient"
        ).fetchall()
        self._counts.load(counts)
        return conn
