"""The audit chain's format, shared by the writer and the checks (see ncbsim.auditlog).

The names are re-exported by :mod:`ncbsim.auditlog`, where callers find them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TABLE = "audit"
HASH_SIZE = 32
_GENESIS_TAG = b"ncbsim audit chain v1\n"

Row = tuple[Any, ...]


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
