"""The gateway's durable store of one-way envelopes: accept after commit, then deliver.

One SQLite file (``WORKDIR/gateway/mailbox.sqlite``, WAL, ``synchronous=FULL``) holds a
row per posted copy. A single writer thread owns the connection. Callers on the event
loop hand it operations and await asyncio futures; the thread takes every operation
that is waiting, runs them all in ONE transaction (group commit: one fsync for many
envelopes) and only then resolves the futures. So "accepted" is only ever answered for
a row that is on disk, and the event loop never touches SQLite.

Each operation runs inside its own savepoint: one that fails (a bug) is rolled back and
fails alone; a commit that fails (disk full, I/O error) fails every operation of the
batch, and nothing of it was accepted.

States of a row: ``queued`` until it is ``delivered`` (the recipient's signed receipt is
kept), ``rejected`` (the recipient refused it: it did not verify or open) or ``expired``
(its TTL passed first). At settlement the envelope (sealed bytes, never plaintext) is
deleted; the metadata and the receipt stay for the sender (Gateway.Receipts) until
:meth:`Mailbox.prune` deletes the row, a retention period after settlement. A receipt
is the recipient's word, so a copy the sweeper expired while its delivery was in flight
becomes ``delivered`` when the receipt comes back.

The queued counts per recipient and per (sender, recipient) are kept in memory (loaded
at open, changed only by the writer thread after a commit) for the two queue bounds: a
copy is not stored (``queue_full``) if its recipient has ``max_queue`` queued rows, or
if its sender already has ``max_queue_per_sender`` queued for that recipient (so no one
bureau can fill another's queue). Copies from the General Secretariat (notices) answer
to their pair bound only, so a flood from others cannot stop notices. A message id a
sender already used for another envelope refuses the whole call
(:class:`MessageIdReused`). docs/delivery.md has the rest.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import structlog

from ncbsim import envelope, private
from ncbsim.countries import GENERAL_SECRETARIAT
from ncbsim.errors import ConfigError, EnvelopeError, NcbsimError
from ncbsim.gateway.config import DEFAULT_MAX_QUEUE_PER_SENDER

log = structlog.get_logger()

QUEUED = "queued"
DELIVERED = "delivered"
EXPIRED = "expired"
REJECTED = "rejected"
STATES = (QUEUED, DELIVERED, EXPIRED, REJECTED)

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
QUEUE_FULL = "queue_full"

MAX_BATCH_OPS = 1024
"""At most this many operations share one transaction."""
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


async def run_to_end(work: Awaitable[_T]) -> _T:
    """Await ``work`` even if the caller is cancelled meanwhile, then re-raise the cancel.

    A mailbox operation commits whatever happens to its caller; wrapping "commit, then
    audit what was committed" in this keeps the audit rows from being lost to a cancelled
    RPC or a stopping worker.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        raise


@dataclass(frozen=True, slots=True)
class Incoming:
    """One admitted envelope to store: its parsed header and its serialized bytes."""

    header: envelope.Header
    data: bytes
    """The envelope as serialized protobuf bytes (sealed, never plaintext)."""
    sha256: bytes
    """:func:`ncbsim.envelope.envelope_digest` of the envelope."""


@dataclass(frozen=True, slots=True)
class Acceptance:
    """What became of one :class:`Incoming`: accepted, duplicate or queue_full."""

    status: str
    sequence: int
    """The stored row's sequence (the original one for a duplicate); 0 if not stored."""
    accepted_at_ms: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Due:
    """A queued copy to deliver, with what the audit row and the receipt check need."""

    sequence: int
    sender: str
    message_id: bytes
    post_id: bytes
    recipient: str
    kind: int
    data: bytes
    sha256: bytes
    issued_at_ms: int
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one delivery attempt of a copy.

    ``state`` is ``delivered`` (with ``receipt``, the serialized SignedReceipt),
    ``rejected`` or ``expired`` (with ``detail``: the recipient refused it) or ``queued``
    (not settled: try again later).
    """

    sequence: int
    state: str
    receipt: bytes = b""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Settled:
    """A copy that reached a final state by this call (one gateway audit row each)."""

    sequence: int
    sender: str
    message_id: bytes
    post_id: bytes
    recipient: str
    kind: int
    issued_at_ms: int
    expires_at_ms: int
    envelope_bytes: int
    state: str
    receipt_bytes: int
    detail: str


@dataclass(frozen=True, slots=True)
class Posted:
    """One row as its sender sees it (Gateway.Receipts)."""

    sequence: int
    message_id: bytes
    post_id: bytes
    recipient: str
    kind: int
    state: str
    accepted_at_ms: int
    expires_at_ms: int
    settled_at_ms: int
    attempts: int
    receipt: bytes | None
    detail: str


_SETTLED_COLUMNS = (
    "sequence, sender, message_id, post_id, recipient, kind, issued_at_ms, expires_at_ms, "
    "envelope_bytes, state, length(receipt), detail"
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
    )


_Pair = tuple[str, str]
"""(sender, recipient)"""


class _Batch:
    """Changes to the queued counts made by the operations of the open transaction."""

    def __init__(self, committed: dict[_Pair, int], totals: dict[str, int]) -> None:
        self._committed = committed  # only the writer thread changes these: no copy needed
        self._totals = totals
        self.delta: collections.Counter[_Pair] = collections.Counter()
        self.by_recipient: collections.Counter[str] = collections.Counter()

    def change(self, sender: str, recipient: str, n: int) -> None:
        self.delta[(sender, recipient)] += n
        self.by_recipient[recipient] += n

    def queued(self, recipient: str) -> int:
        return self._totals.get(recipient, 0) + self.by_recipient[recipient]

    def pair(self, sender: str, recipient: str) -> int:
        return self._committed.get((sender, recipient), 0) + self.delta[(sender, recipient)]


class _Op(Generic[_T]):
    __slots__ = ("fn", "future", "loop")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection, _Batch], _T],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.fn = fn
        self.loop = loop
        self.future: asyncio.Future[_T] = loop.create_future()


def _resolve(done: list[tuple[_Op[Any], Any, BaseException | None]]) -> None:
    """On the event loop: hand each operation's result or error to its awaiting caller."""
    for op, result, error in done:
        if op.future.done():  # the caller was cancelled; the work stands regardless
            continue
        if error is not None:
            op.future.set_exception(error)
        else:
            op.future.set_result(result)


def _apply(counts: dict[_T, int], delta: collections.Counter[_T]) -> None:
    """Add ``delta`` to ``counts``, keeping only keys with a positive count."""
    for key, change in delta.items():
        left = counts.get(key, 0) + change
        if left > 0:
            counts[key] = left
        else:
            counts.pop(key, None)


def _set_ready(ready: asyncio.Future[None], error: BaseException | None) -> None:
    if ready.done():
        return
    if error is not None:
        ready.set_exception(error)
    else:
        ready.set_result(None)


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
        self._ops: queue.SimpleQueue[_Op[Any] | None] = queue.SimpleQueue()
        self._counts: dict[_Pair, int] = {}
        """Queued rows per (sender, recipient); only pairs with some."""
        self._totals: dict[str, int] = {}
        """Queued rows per recipient; only recipients with some."""
        self._lock = threading.Lock()  # guards _counts between the thread and the loop
        self._thread: threading.Thread | None = None
        self._closed = False
        self.commits = 0
        """Transactions committed so far (group commit makes it far below the operations)."""

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
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        mailbox._thread = threading.Thread(
            target=mailbox._run, args=(loop, ready), name="mailbox-writer", daemon=True
        )
        mailbox._thread.start()
        await ready
        return mailbox

    async def close(self) -> None:
        """Finish every operation handed in so far, then stop the thread and close the file."""
        if self._closed or self._thread is None:
            return
        self._closed = True
        self._ops.put(None)
        await asyncio.to_thread(self._thread.join)

    # ----------------------------------------------------------------- in memory

    def queued(self, recipient: str | None = None, *, sender: str | None = None) -> int:
        """Queued copies for ``recipient`` (None: for every recipient), from ``sender``
        (None: from anyone), as of the last commit."""
        with self._lock:
            if sender is not None:
                return sum(
                    n
                    for (s, r), n in self._counts.items()
                    if s == sender and (recipient is None or r == recipient)
                )
            if recipient is None:
                return sum(self._totals.values())
            return self._totals.get(recipient, 0)

    def recipients(self) -> list[str]:
        """Recipients with queued copies, sorted (as of the last commit)."""
        with self._lock:
            return sorted(self._totals)

    # ----------------------------------------------------------------- operations

    async def _call(self, fn: Callable[[sqlite3.Connection, _Batch], _T]) -> _T:
        if self._closed or self._thread is None:
            raise RuntimeError("the mailbox is closed")
        op = _Op(fn, asyncio.get_running_loop())
        self._ops.put(op)
        return await op.future

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

        def run(conn: sqlite3.Connection, _: _Batch) -> list[Due]:
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

        def run(conn: sqlite3.Connection, _: _Batch) -> int:
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

        def run(conn: sqlite3.Connection, _: _Batch) -> list[Posted]:
            return [Posted(*row) for row in conn.execute(sql, (sender, after, limit))]

        return await self._call(run)

    # ----------------------------------------------------------------- on the thread

    def _accept(
        self, conn: sqlite3.Connection, batch: _Batch, items: Sequence[Incoming]
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

    def _full(self, batch: _Batch, sender: str, recipient: str) -> str:
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
        self, conn: sqlite3.Connection, batch: _Batch, outcomes: Sequence[Outcome]
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

    def _expire(self, conn: sqlite3.Connection, batch: _Batch, now_ms: int) -> list[Settled]:
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
        with self._lock:
            self._counts = {(sender, recipient): n for sender, recipient, n in counts}
            self._totals = {}
            for (_, recipient), n in self._counts.items():
                self._totals[recipient] = self._totals.get(recipient, 0) + n
        return conn

    def _take(self) -> tuple[list[_Op[Any]], bool]:
        """Block for the next operation, then take every one waiting: (ops, stop)."""
        first = self._ops.get()
        if first is None:
            return [], True
        ops = [first]
        while len(ops) < MAX_BATCH_OPS:
            try:
                op = self._ops.get_nowait()
            except queue.Empty:
                break
            if op is None:
                return ops, True
            ops.append(op)
        return ops, False

    def _run(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        try:
            conn = self._connect()
        except (sqlite3.Error, OSError) as exc:
            error = ConfigError(f"cannot open the mailbox {self.path}: {exc}")
            loop.call_soon_threadsafe(_set_ready, ready, error)
            return
        loop.call_soon_threadsafe(_set_ready, ready, None)
        try:
            stop = False
            while not stop:
                ops, stop = self._take()
                if ops:
                    self._run_batch(conn, ops)
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, ops: list[_Op[Any]]) -> None:
        """Run ``ops`` in one transaction, commit once, then resolve their futures."""
        batch = _Batch(self._counts, self._totals)
        done: list[tuple[_Op[Any], Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in ops:
                before = batch.delta.copy()
                conn.execute("SAVEPOINT op")
                by_recipient = batch.by_recipient.copy()
                try:
                    result = op.fn(conn, batch)
                except Exception as exc:  # one failing operation fails alone
                    conn.execute("ROLLBACK TO op")
                    batch.delta, batch.by_recipient = before, by_recipient
                    if not isinstance(exc, NcbsimError):  # a refusal is not a failure
                        log.error("mailbox_operation_failed", error=repr(exc))
                    done.append((op, None, exc))
                else:
                    done.append((op, result, None))
                conn.execute("RELEASE op")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            log.error("mailbox_commit_failed", error=str(exc), operations=len(ops))
            done = [(op, None, exc) for op in ops]
        else:
            self.commits += 1
            with self._lock:
                _apply(self._counts, batch.delta)
                _apply(self._totals, batch.by_recipient)
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for entry in done:
            by_loop.setdefault(entry[0].loop, []).append(entry)
        for loop, entries in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, entries)
