"""Metadata-only audit trail of every envelope the gateway handles: a hash-chained log.

Each row holds ids, parties, kind, sizes, times and outcome. Never a payload: the
record type has no field that could carry one. The table, its chain and its writer
thread are :mod:`ncbsim.auditlog`'s; this module only fixes the gateway's columns.

The gateway awaits :meth:`AuditLog.commit` for the row of every envelope it answers
or refuses, so no reply leaves before its row is in the file; concurrent handlers share
one commit (group commit), so the writer thread is woken once per batch, not once per
envelope. The rows of settled one-way copies (``Deliver``), which answer no one, are
queued with :meth:`AuditLog.record`. The writer also computes the hashes.
:meth:`AuditLog.close` writes everything recorded before it was called.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import NamedTuple

from ncbsim.auditlog import TABLE, ChainedLog

COLUMNS = (
    ("at_ms", "INTEGER"),
    ("rpc", "TEXT"),
    ("peer", "TEXT"),
    ("message_id", "TEXT"),
    ("correlation_id", "TEXT"),
    ("sender", "TEXT"),
    ("recipient", "TEXT"),
    ("kind", "TEXT"),
    ("issued_at_ms", "INTEGER"),
    ("expires_at_ms", "INTEGER"),
    ("request_bytes", "INTEGER"),
    ("response_bytes", "INTEGER"),
    ("outcome", "TEXT"),
    ("status", "TEXT"),
    ("elapsed_ms", "REAL"),
)
INDEXES = (("sender", "at_ms"), ("message_id",))


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


class AuditLog(ChainedLog):
    """The gateway's append-only, hash-chained audit table."""

    def __init__(
        self, path: Path, *, batch_wait_s: float = 0.05, synchronous: str = "NORMAL"
    ) -> None:
        super().__init__(
            path, COLUMNS, indexes=INDEXES, batch_wait_s=batch_wait_s, synchronous=synchronous
        )


def read_all(path: Path) -> list[AuditRecord]:
    """Every audit record in order (for tools and tests)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        columns = ", ".join(AuditRecord._fields)
        rows = conn.execute(f"SELECT {columns} FROM {TABLE} ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [AuditRecord(*row) for row in rows]
