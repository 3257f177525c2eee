"""The audit chain's format, shared by the writer (ncbsim.auditlog) and the readers
(ncbsim.auditread): the table, the hashes, the head file and the field columns.

The writer's callers find these names in :mod:`ncbsim.auditlog`, which re-exports them.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ncbsim.errors import NcbsimError

TABLE = "audit"
HASH_SIZE = 32
_GENESIS_TAG = b"ncbsim audit chain v1\n"

Row = tuple[Any, ...]

_CHAIN_COLUMNS = ("seq", "prev_hash", "hash")


def genesis(columns: Sequence[str], table: str = TABLE) -> bytes:
    """The first row's ``prev_hash`` for a table with these field columns."""
    spec = json.dumps([table, list(columns)], separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(_GENESIS_TAG + spec.encode()).digest()


def entry_hash(prev_hash: bytes, seq: int, fields: Sequence[object]) -> bytes:
    """``SHA-256(prev_hash || canonical JSON [seq, *fields])``."""
    body = json.dumps([seq, *fields], separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(prev_hash + body.encode()).digest()


def head_path(path: Path) -> Path:
    """The sidecar file that holds the ``(seq, hash)`` the writer committed last (within
    ``ncbsim.auditlog.HEAD_INTERVAL_S``)."""
    return path.with_name(path.name + ".head")


def field_columns(conn: sqlite3.Connection) -> list[str]:
    """The table's field columns (without seq and the chain), or raise if it is not a log."""
    names = [row[1] for row in conn.execute(f"PRAGMA table_info({TABLE})")]
    if not set(_CHAIN_COLUMNS) <= set(names):
        raise NcbsimError("not a hash-chained audit log (no audit table with seq and hashes)")
    return [n for n in names if n not in _CHAIN_COLUMNS]
