"""A group-commit writer: one thread owns an SQLite file and commits many operations at once.

Callers on the event loop hand the writer operations (:meth:`Writer.call`) and await
asyncio futures; the thread takes every operation that is waiting (at most
:data:`MAX_BATCH_OPS`), runs them all in ONE transaction (group commit: one fsync for
many) and only then resolves the futures. So a result is only ever answered for a
change that is on disk, and the event loop never touches SQLite.

Each operation runs inside its own savepoint: one that fails (a bug) is rolled back and
fails alone; a commit that fails (disk full, I/O error) fails every operation of the
batch, and nothing of it stands. The owner keeps what it derives from the rows (say,
counts) in a :class:`Batch` per transaction; the writer undoes an operation's share of it
with the operation's savepoint and hands the batch back once it committed.
:func:`run_to_end` lets a caller commit and then act on what was committed even if it
is cancelled meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import structlog

from ncbsim.errors import ConfigError, NcbsimError

log = structlog.get_logger()

MAX_BATCH_OPS = 1024
"""At most this many operations share one transaction."""

_T = TypeVar("_T")


class Batch(Protocol):
    """What the owner keeps for one transaction: marked before each operation, undone to
    the mark if that operation fails."""

    def mark(self) -> object:
        """A copy of what the batch holds now."""
        ...

    def undo(self, mark: object) -> None:
        """Go back to what :meth:`mark` returned."""
        ...


_B = TypeVar("_B", bound=Batch)


async def run_to_end(work: Awaitable[_T]) -> _T:
    """Await ``work`` even if the caller is cancelled meanwhile, then re-raise the cancel.

    A writer's operation commits whatever happens to its caller; wrapping "commit, then
    audit what was committed" in this keeps the audit rows from being lost to a cancelled
    RPC or a stopping worker.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        raise


class _Op(Generic[_B, _T]):
    __slots__ = ("fn", "future", "loop")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection, _B], _T],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.fn = fn
        self.loop = loop
        self.future: asyncio.Future[_T] = loop.create_future()


def _resolve(done: list[tuple[_Op[Any, Any], Any, BaseException | None]]) -> None:
    """On the event loop: hand each operation's result or error to its awaiting caller."""
    for op, result, error in done:
        if op.future.done():  # the caller was cancelled; the work stands regardless
            continue
        if error is not None:
            op.future.set_exception(error)
        else:
            op.future.set_result(result)


def _set_ready(ready: asyncio.Future[None], error: BaseException | None) -> None:
    if ready.done():
        return
    if error is not None:
        ready.set_exception(error)
    else:
        ready.set_result(None)


class Writer(Generic[_B]):
    """The writer thread of one SQLite file, named ``name`` in its logs and errors.

    ``connect`` opens the file on the thread (ConfigError naming the file if it fails),
    ``begin`` makes the :class:`Batch` of each transaction and ``committed`` is called on
    the thread with it once that transaction committed, before any caller learns so.
    """

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        connect: Callable[[], sqlite3.Connection],
        begin: Callable[[], _B],
        committed: Callable[[_B], None],
    ) -> None:
        self._name = name
        self._path = path
        self._connect = connect
        self._begin = begin
        self._committed = committed
        self._ops: queue.SimpleQueue[_Op[_B, Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.commits = 0
        """Transactions committed so far (group commit makes it far below the operations)."""

    async def start(self) -> None:
        """Start the thread; return once the file is open (ConfigError if it cannot be)."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(
            target=self._run, args=(loop, ready), name=f"{self._name}-writer", daemon=True
        )
        self._thread.start()
        await ready

    async def close(self) -> None:
        """Finish every operation handed in so far, then stop the thread and close the file."""
        if self._closed or self._thread is None:
            return
        self._closed = True
        self._ops.put(None)
        await asyncio.to_thread(self._thread.join)

    async def call(self, fn: Callable[[sqlite3.Connection, _B], _T]) -> _T:
        """Run ``fn`` on the thread in the next transaction; its result once committed."""
        if self._closed or self._thread is None:
            raise RuntimeError(f"the {self._name} is closed")
        op = _Op(fn, asyncio.get_running_loop())
        self._ops.put(op)
        return await op.future

    # ----------------------------------------------------------------- on the thread

    def _take(self) -> tuple[list[_Op[_B, Any]], bool]:
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
            error = ConfigError(f"cannot open the {self._name} {self._path}: {exc}")
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

    def _run_batch(self, conn: sqlite3.Connection, ops: list[_Op[_B, Any]]) -> None:
        """Run ``ops`` in one transaction, commit once, then resolve their futures."""
        batch = self._begin()
        done: list[tuple[_Op[_B, Any], Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in ops:
                mark = batch.mark()
                conn.execute("SAVEPOINT op")
                try:
                    result = op.fn(conn, batch)
                except Exception as exc:  # one failing operation fails alone
                    conn.execute("ROLLBACK TO op")
                    batch.undo(mark)
                    if not isinstance(exc, NcbsimError):  # a refusal is not a failure
                        log.error(f"{self._name}_operation_failed", error=repr(exc))
                    done.append((op, None, exc))
                else:
                    done.append((op, result, None))
                conn.execute("RELEASE op")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            log.error(f"{self._name}_commit_failed", error=str(exc), operations=len(ops))
            done = [(op, None, exc) for op in ops]
        else:
            self.commits += 1
            self._committed(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for entry in done:
            by_loop.setdefault(entry[0].loop, []).append(entry)
        for loop, entries in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, entries)
