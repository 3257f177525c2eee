"""Metadata-only audit trail of every envelope the gateway handles, in SQLite (WAL).

Each row holds ids, parties, kind, sizes, times and outcome. Never a payload: the
record type has no field that could carry one. Rows are written by one background
thread in batches, so the event loop never waits on the disk.

The hot path only appends to a deque: the writer thread is woken once per batch,
not once per record, and then sleeps ``batch_wait_s`` so the batch can fill. Waking a
thread (and handing it the GIL) for every envelope cost more CPU than the insert.
:meth:`AuditLog.close` writes everything recorded before it was called.
"""

from __future__ import annotations

import collections
import sqlite3
import threading
from pathlib import Path
from typing import NamedTuple

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms          INTEGER NOT NULL,
    rpc            TEXT    NOT NULL,
    peer           TEXT    NOT NULL,
    message_id     TEXT    NOT NULL,
    correlation_id TEXT    NOT NULL,
    sender         TEXT    NOT NULL,
    recipient      TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    issued_at_ms   INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL,
    request_bytes  INTEGER NOT NULL,
    response_bytes INTEGER NOT NULL,
    outcome        TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    elapsed_ms     REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_sender ON audit (sender, at_ms);
CREATE INDEX IF NOT EXISTS audit_message ON audit (message_id);
"""


class AuditRecord(NamedTuple):
    """One envelope's metadata. There is deliberately no field for content.

    A named tuple: immutable, cheap to build for every envelope, and already the row
    that SQLite inserts.
    """

    at_ms: int
    rpc: str
    peer: str
    message_id: str
    correlation_id: str
    sender: str
    recipient: str
    kind: str
    issued_at_ms: int
    expires_at_ms: int
    request_bytes: int
    response_bytes: int
    outcome: str
    status: str
    elapsed_ms: float


_COLUMNS = AuditRecord._fields
_INSERT = f"INSERT INTO audit ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"


class AuditLog:
    """Append-only audit table fed by a single writer thread, one batch at a time."""

    def __init__(self, path: Path, *, batch_wait_s: float = 0.05) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
        conn.close()
        # deque.append and popleft are atomic, so the two threads share no lock.
        self._pending: collections.deque[AuditRecord] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._batch_wait_s = batch_wait_s
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def record(self, entry: AuditRecord) -> None:
        """Queue one record; returns at once."""
        self._pending.append(entry)
        if not self._wake.is_set():
            self._wake.set()

    def close(self) -> None:
        """Write everything recorded so far, then stop the writer."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def _drain(self) -> list[AuditRecord]:
        pending = self._pending
        return [pending.popleft() for _ in range(len(pending))]

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, check_same_thread=True)
        conn.execute("PRAGMA synchronous=NORMAL")
        while True:
            self._wake.wait()
            # Clear before draining: a record appended after the drain sets it again.
            self._wake.clear()
            if not self._stop.is_set():
                self._stop.wait(self._batch_wait_s)  # let the batch fill
            stopping = self._stop.is_set()
            batch = self._drain()
            if batch:
                with conn:
                    conn.executemany(_INSERT, batch)
            if stopping:
                break
        conn.close()


def read_all(path: Path) -> list[AuditRecord]:
    """Every audit record in order (for tools and tests)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM audit ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [AuditRecord(*row) for row in rows]
