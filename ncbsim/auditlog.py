"""Append-only, hash-chained audit logs in SQLite (WAL), shared by the gateway and the nodes.

Every row of the ``audit`` table carries ``prev_hash`` and ``hash``, where::

    hash = SHA-256(prev_hash || canonical(seq, field_1, ..., field_n))

``canonical`` is the UTF-8 JSON array ``[seq, field_1, ..., field_n]`` in the table's
column order, with no whitespace (``separators=(",", ":")``) and ASCII escapes
(``ensure_ascii``). Fields are integers, floats (Python's shortest round-trip ``repr``)
and strings, so the encoding is unambiguous. The first row's ``prev_hash`` is the
genesis value ``SHA-256("ncbsim audit chain v1\\n" || JSON [table, [column names]])``,
which binds the chain to its schema. Sequence numbers start at 1 and have no gaps.

One writer thread owns the file. It drains the queued rows in batches, computes the
chain (it owns the last hash and resumes from the last stored row on open) and inserts
the batch in one transaction. At most every :data:`HEAD_INTERVAL_S` after a commit, and
at close, it replaces the sidecar file ``PATH.head`` with the head
``{"seq": N, "hash": HEX}``: the head may lag the log, never lead it. Triggers refuse
UPDATE and DELETE; :func:`ncbsim.auditread.verify` still catches edits made around them.

Rows arrive two ways. :meth:`ChainedLog.commit` is group commit: the caller awaits a
future that is resolved once the transaction holding its row has committed, so a server
can hold an answer back until its audit row is in the file (a process crash then loses
no row of an answer that left). The rows committed during one pass of the event loop
share one transaction, run on the loop itself at the end of that pass (about 30 µs: far
less than two hand-offs to a thread and back); only when the writer thread is busy
(its lock taken) does the batch go to it instead, and callers that arrive while it
writes share its next commit. (``synchronous=FULL`` commits always go to the thread: an
fsync must not stall the loop.) :meth:`ChainedLog.record` queues a row and returns at
once; when only such rows are queued the writer waits ``batch_wait_s`` to let the
batch fill. In WAL mode with ``synchronous=NORMAL`` (the default) a committed row
survives a crash of the process, not a power loss; ``synchronous=FULL`` also survives a
power loss, for an fsync per commit. See docs/audit.md.

A hash chain has no secret: it shows that rows were changed, deleted, inserted or
reordered *inside* the chain, but not that the newest rows were cut off (the head file
catches that unless it is rewritten too), nor that someone rewrote the whole chain from
some row onwards. See docs/audit.md.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from ncbsim import private
from ncbsim._auditchain import HASH_SIZE, TABLE, Row, entry_hash, field_columns, genesis, head_path
from ncbsim.errors import NcbsimError

log = structlog.get_logger()

__all__ = [
    "HASH_SIZE",
    "HEAD_INTERVAL_S",
    "SYNCHRONOUS",
    "TABLE",
    "AuditWriteError",
    "ChainedLog",
    "Row",
    "entry_hash",
    "genesis",
    "head_path",
]

HEAD_INTERVAL_S = 0.05
"""The head file is rewritten at most this often (and at close): replacing it costs far
more than a commit (a rename over a file makes ext4 write the new one out at once)."""
CHECKPOINT_ROWS = 4000
"""The WAL is copied back into the database (a checkpoint) once it holds this many rows,
by the writer thread; SQLite's own checkpoint every 1000 pages is turned off, since it
would run in whichever commit crossed the mark, on the event loop too."""
SYNCHRONOUS = ("NORMAL", "FULL")
"""The SQLite ``synchronous`` settings a log may be written with (docs/audit.md)."""
_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]
_Item = tuple[Sequence[Row], _Waiter | None]
"""What the writer's queue holds: rows, with the waiter of a commit (None for a record).
A commit's rows and its waiter are one item, so no batch can take the one without the
other: its waiter learns the fate of the transaction that held its rows."""


class AuditWriteError(Exception):
    """The rows a caller awaited were not committed (the disk, the file, a closed log).

    Not an :class:`NcbsimError`: it is no fault of the caller's request. A server that
    gets it must not act as though the row were written: it holds the answer back.
    """


def _schema(columns: Sequence[tuple[str, str]], indexes: Sequence[Sequence[str]]) -> str:
    cols = ",\n    ".join(f"{name} {sqltype} NOT NULL" for name, sqltype in columns)
    script = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    {cols},
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS {TABLE}_no_update BEFORE UPDATE ON {TABLE}
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS {TABLE}_no_delete BEFORE DELETE ON {TABLE}
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""
    for index in indexes:
        script += (
            f"CREATE INDEX IF NOT EXISTS {TABLE}_{'_'.join(index)} "
            f"ON {TABLE} ({', '.join(index)});\n"
        )
    return script


class ChainedLog:
    """An append-only, hash-chained table fed by a single writer thread, one batch at a time.

    ``columns`` are ``(name, SQL type)`` pairs (INTEGER, REAL or TEXT); each recorded row
    is a tuple of values in that order. :meth:`commit` returns once the row is committed;
    :meth:`record` returns at once. deque.append and popleft are atomic, so the callers
    and the writer share no lock. The writer is woken once per batch; when nobody awaits
    a commit it then sleeps ``batch_wait_s`` so the batch can fill. :meth:`close` writes
    everything recorded before it was called. ``synchronous`` is SQLite's setting for
    the writer's connection: NORMAL (survives a process crash) or FULL (a power loss too).
    """

    def __init__(
        self,
        path: Path,
        columns: Sequence[tuple[str, str]],
        *,
        indexes: Sequence[Sequence[str]] = (),
        batch_wait_s: float = 0.05,
        synchronous: str = "NORMAL",
        head_interval_s: float = HEAD_INTERVAL_S,
    ) -> None:
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS}, not {synchronous!r}")
        self.path = path
        self.columns = tuple(name for name, _ in columns)
        # SQLite stores an int given to a REAL column as a float; hash what it will read back.
        self._real = tuple(i for i, (_, t) in enumerate(columns) if t.upper() == "REAL")
        private.sqlite_file(path)
        conn = sqlite3.connect(path)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            with conn:
                conn.executescript(_schema(columns, indexes))
            try:
                found = field_columns(conn)
            except NcbsimError:
                raise NcbsimError(
                    f"{path} holds an audit table without a hash chain (written before chained "
                    "audit logs); move it aside or use a new work directory"
                ) from None
            if tuple(found) != self.columns:
                raise NcbsimError(f"{path} holds an audit log with other columns: {found}")
            last = conn.execute(f"SELECT seq, hash FROM {TABLE} ORDER BY seq DESC LIMIT 1")
            row = last.fetchone()
        finally:
            conn.close()
        private.tighten(head_path(path))
        self._seq: int = row[0] if row else 0
        self._hash: bytes = row[1] if row else genesis(self.columns)
        self._insert = (
            f"INSERT INTO {TABLE} (seq, {', '.join(self.columns)}, prev_hash, hash) "
            f"VALUES ({', '.join('?' for _ in range(len(self.columns) + 3))})"
        )
        self._synchronous = synchronous
        self._pending: collections.deque[_Item] = collections.deque()
        self._wake = threading.Event()  # rows are queued
        self._hurry = threading.Event()  # someone awaits a commit, or the log is closing
        self._stop = threading.Event()
        self._dead: AuditWriteError | None = None  # why the writer stopped, if it failed
        self._inflight: list[_Waiter] = []  # the waiters of the batch being written
        self._batch_wait_s = batch_wait_s
        self._head_interval_s = head_interval_s
        self._queued_since: float | None = None  # monotonic: the oldest row not yet drained
        self._writing_since: float | None = None  # the same, of the batch being written
        # The connection and the chain's head (seq, hash) belong to whoever holds the
        # lock: the writer thread, or the event loop committing a batch of its own.
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None  # set by the writer once open
        self._unheaded = False  # a commit the head file does not show yet
        self._uncheckpointed = 0  # rows committed since the last WAL checkpoint
        # With FULL every commit waits for an fsync: never on the loop, always the thread's.
        self._inline = synchronous == "NORMAL"
        self._loop_items: list[tuple[Sequence[Row], asyncio.Future[None]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # of the scheduled loop batch
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def record(self, row: Row) -> None:
        """Queue one row; returns at once. A crash may lose it until the next commit.

        If the writer has stopped on an error, the row is dropped and the loss logged, as
        when a batch cannot be written.
        """
        if self._dead is not None:
            log.error("audit_write_failed", error=str(self._dead), lost=1)
            return
        self._pending.append(((row,), None))
        if self._queued_since is None:
            self._queued_since = time.monotonic()
        if not self._wake.is_set():
            self._wake.set()

    async def commit(self, *rows: Row) -> None:
        """Queue ``rows`` and return once the transaction that holds them has committed.

        Callers that wait at the same time share one commit. Raises
        :class:`AuditWriteError` if the rows could not be written, the log is closed or its
        writer has stopped on an error.
        """
        if self._dead is not None:
            raise AuditWriteError(str(self._dead))
        if self._stop.is_set():
            raise AuditWriteError(f"the audit log {self.path} is closed")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        if self._inline and self._conn is not None and self._loop in (None, loop):
            # On the loop: every commit of this pass shares one transaction at its end.
            if not self._loop_items:
                self._loop = loop
                loop.call_soon(self._flush_loop)
            self._loop_items.append((rows, waiter))
            await waiter
            return
        self._hand_over(rows, loop, waiter)
        await waiter

    def _hand_over(
        self, rows: Sequence[Row], loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[None]
    ) -> None:
        """Queue ``rows`` for the writer thread, which resolves ``waiter`` on ``loop``."""
        self._pending.append((rows, (loop, waiter)))  # one item: one batch takes both
        if self._queued_since is None:
            self._queued_since = time.monotonic()
        if self._dead is not None:  # the writer died meanwhile: it may not have seen ours
            self._fail_pending(self._dead)
        self._wake.set()
        self._hurry.set()

    def _flush_loop(self) -> None:
        """On the event loop, at the end of a pass: commit the pass's rows in one
        transaction, or hand them to the writer thread if it holds the lock."""
        items, self._loop_items = self._loop_items, []
        loop, self._loop = self._loop, None
        if not items or loop is None:
            return
        if not self._lock.acquire(blocking=False):
            for rows, waiter in items:
                self._hand_over(rows, loop, waiter)
            return
        wake = False
        try:
            conn = self._conn
            if conn is None:  # the writer stopped: its error, or closed
                error: AuditWriteError | None = self._dead or AuditWriteError(
                    f"the audit log {self.path} is closed"
                )
            else:
                # Rows recorded (or handed over) before go first, in order, in this batch.
                queued: list[_Item] = _drain(self._pending)
                self._queued_since = None
                handed = _waiters(queued)
                batch = [row for rows, _ in queued for row in rows]
                batch += [row for rows, _ in items for row in rows]
                error = self._write(conn, batch)
                if handed:
                    _resolve(handed, error)
        except Exception as exc:  # a bug (a row that cannot be chained): as the writer's death
            self._dead = error = AuditWriteError(
                f"the audit log {self.path} stopped: {type(exc).__name__}: {exc}"
            )
            log.exception("audit_writer_failed", path=str(self.path))
        else:
            wake = error is None and not self._unheaded
            if error is None:
                self._unheaded = True
        finally:
            self._lock.release()
        if self._dead is not None:
            _settle([waiter for _, waiter in items], self._dead)
            self._fail_pending(self._dead)
            return
        if wake:  # the writer schedules the head file's next rewrite
            self._hurry.set()
            self._wake.set()
        _settle([waiter for _, waiter in items], error)

    def lag_s(self) -> float:
        """Seconds the oldest row handed in and not yet committed has waited; 0 if none
        (``ncbsim_audit_writer_lag_seconds``). Read without a lock: a close estimate."""
        since = [t for t in (self._writing_since, self._queued_since) if t is not None]
        return max(time.monotonic() - min(since), 0.0) if since else 0.0

    def close(self) -> None:
        """Write everything recorded so far, then stop the writer."""
        items, self._loop_items = self._loop_items, []
        loop, self._loop = self._loop, None
        for rows, waiter in items:  # a loop batch not flushed yet: the writer takes it
            if loop is not None:
                self._hand_over(rows, loop, waiter)
        self._stop.set()
        self._hurry.set()
        self._wake.set()
        self._thread.join(timeout=10)
        # Waiters that came after the writer's last batch (or a writer that did not stop).
        left = _waiters(_drain(self._pending))
        if left:
            _resolve(left, AuditWriteError(f"the audit log {self.path} closed first"))

    def _chain(self, batch: list[Row]) -> tuple[list[Row], int, bytes]:
        """The rows to insert, with seq and hashes, and the new head."""
        seq, prev = self._seq, self._hash
        real = self._real
        out = []
        for entry in batch:
            fields: Sequence[object] = entry
            if real:
                values = list(entry)
                for i in real:
                    values[i] = float(values[i])
                fields = values
            seq += 1
            digest = entry_hash(prev, seq, fields)
            out.append((seq, *fields, prev, digest))
            prev = digest
        return out, seq, prev

    def _write_head(self) -> None:
        with self._lock:
            seq, digest = self._seq, self._hash
            self._unheaded = False
        head = head_path(self.path)
        tmp = head.with_name(head.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, private.FILE_MODE)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps({"seq": seq, "hash": digest.hex()}))
        os.replace(tmp, head)

    def _write(self, conn: sqlite3.Connection, batch: list[Row]) -> AuditWriteError | None:
        """Insert and commit one batch; the error to hand its waiters if that failed.
        The caller holds the lock."""
        rows, seq, digest = self._chain(batch)
        try:
            with conn:
                conn.executemany(self._insert, rows)
        except sqlite3.Error as exc:
            log.error("audit_write_failed", error=str(exc), lost=len(batch))
            return AuditWriteError(f"audit rows not written: {exc}")
        self._seq, self._hash = seq, digest
        self._uncheckpointed += len(batch)
        return None

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        """Copy the WAL back into the database once it holds :data:`CHECKPOINT_ROWS` rows
        (PASSIVE: readers are never waited for). Holding the lock, so the loop's batches
        go to the writer meanwhile instead of waiting."""
        if self._uncheckpointed < CHECKPOINT_ROWS:
            return
        with self._lock:
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:
                log.error("audit_checkpoint_failed", error=str(exc))
            self._uncheckpointed = 0

    def _fail_pending(self, error: AuditWriteError) -> None:
        """Drop every queued row (logging the loss) and fail the waiters among them."""
        items: list[_Item] = _drain(self._pending)
        lost = sum(len(rows) for rows, _ in items)
        if lost:
            log.error("audit_write_failed", error=str(error), lost=lost)
        waiters = _waiters(items)
        if waiters:
            _resolve(waiters, error)

    def _run(self) -> None:
        """The writer thread. If it fails on anything (a bug, a file it cannot open, memory),
        the log is dead: every waiter, now and later, gets AuditWriteError, never a hang."""
        try:
            self._serve()
        except BaseException as exc:  # no waiter may be left waiting on a dead writer
            # Dead first: a commit that queues after the drain below sees it and fails itself.
            self._dead = AuditWriteError(
                f"the audit writer of {self.path} stopped: {type(exc).__name__}: {exc}"
            )
            log.exception("audit_writer_failed", path=str(self.path))
            inflight, self._inflight = self._inflight, []
            if inflight:
                _resolve(inflight, self._dead)
            self._fail_pending(self._dead)

    def _serve(self) -> None:
        # Shared with the event loop's batches; whoever uses it holds the lock.
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
        try:
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            # The WAL is checkpointed by this thread (_checkpoint), never by a commit on
            # the event loop: a checkpoint syncs the database file.
            conn.execute("PRAGMA wal_autocheckpoint=0")
            self._conn = conn
            self._run_writer(conn)
        finally:
            with self._lock:
                self._conn = None
                conn.close()

    def _run_writer(self, conn: sqlite3.Connection) -> None:
        head_due: float | None = None  # when the head file must show the last commit
        while True:
            timeout = None if head_due is None else max(head_due - time.monotonic(), 0.0)
            stopping = False
            if self._wake.wait(timeout):
                # Clear before draining: a record appended after the drain sets it again.
                self._wake.clear()
                if not self._hurry.is_set():
                    self._hurry.wait(self._batch_wait_s)  # nobody waits: let the batch fill
                self._hurry.clear()
                stopping = self._stop.is_set()
                # Drained holding the lock, so a loop batch cannot slip in between: rows
                # go into the chain in the order they were handed in.
                with self._lock:
                    # Taken before the drain: a row queued after it starts the next wait.
                    self._writing_since, self._queued_since = self._queued_since, None
                    items: list[_Item] = _drain(self._pending)
                    batch = [row for rows, _ in items for row in rows]
                    waiters = self._inflight = _waiters(items)
                    error = self._write(conn, batch) if batch else None
                    self._unheaded = self._unheaded or (bool(batch) and error is None)
                self._inflight, self._writing_since = [], None
                if waiters:
                    _resolve(waiters, error)
                if self._unheaded and head_due is None:
                    head_due = time.monotonic() + self._head_interval_s
            if head_due is not None and (stopping or time.monotonic() >= head_due):
                head_due = None
                try:
                    self._write_head()
                except OSError as exc:
                    log.error("audit_head_failed", error=str(exc))
                self._checkpoint(conn)
            if stopping:
                break


def _drain(queue: collections.deque[Any]) -> list[Any]:
    return [queue.popleft() for _ in range(len(queue))]


def _waiters(items: list[_Item]) -> list[_Waiter]:
    return [waiter for _, waiter in items if waiter is not None]


def _resolve(waiters: list[_Waiter], error: AuditWriteError | None) -> None:
    """Wake every waiter, on its own event loop: one call into each loop, not one each."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for loop, future in waiters:
        by_loop.setdefault(loop, []).append(future)
    for loop, futures in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting
            loop.call_soon_threadsafe(_settle, futures, error)


def _settle(futures: list[asyncio.Future[None]], error: AuditWriteError | None) -> None:
    for future in futures:
        if future.done():  # its caller was cancelled meanwhile
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(AuditWriteError(str(error)))
