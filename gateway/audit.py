"""Metadata-only audit trail of every envelope the gateway handles, in SQLite (WAL).

Each row holds ids, parties, kind, sizes, times and outcome. Never a payload: the
record type has no field that could carry one. Rows are written by one background
thread in small batches, so the event loop never waits on the disk.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from dataclasses import astuple, dataclass, fields
from pathlib import Path

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


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One envelope's metadata. There is deliberately no field for content."""

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


_COLUMNS = [f.name for f in fields(AuditRecord)]
_INSERT = f"INSERT INTO audit ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"
_STOP = object()


class AuditLog:
    """Append-only audit table fed through a queue by a single writer thread."""

    def __init__(self, path: Path, *, batch_wait_s: float = 0.05) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
        conn.close()
        self._queue: queue.SimpleQueue[AuditRecord | object] = queue.SimpleQueue()
        self._batch_wait_s = batch_wait_s
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def record(self, entry: AuditRecord) -> None:
        """Queue one record; returns at once."""
        self._queue.put(entry)

    def close(self) -> None:
        """Write everything queued, then stop the writer."""
        self._queue.put(_STOP)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, check_same_thread=True)
        conn.execute("PRAGMA synchronous=NORMAL")
        stopping = False
        while not stopping:
            item = self._queue.get()
            batch: list[AuditRecord] = []
            deadline = time.monotonic() + self._batch_wait_s
            while True:
                if item is _STOP:
                    stopping = True
                    break
                if isinstance(item, AuditRecord):
                    batch.append(item)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if batch:
                with conn:
                    conn.executemany(_INSERT, [astuple(r) for r in batch])
        conn.close()


def read_all(path: Path) -> list[AuditRecord]:
    """Every audit record in order (for tools and tests)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM audit ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [AuditRecord(*row) for row in rows]
