"""Why an entry breaks an audit chain: the diagnosis behind :func:`ncbsim.auditread.verify`."""

from __future__ import annotations

import sqlite3

from ncbsim._auditchain import TABLE, Row, entry_hash

_REORDER_WINDOW = 1024
"""How far from its position :func:`diagnose` looks for the seq a moved entry was written as."""


def _hash_exists(conn: sqlite3.Connection, digest: bytes) -> bool:
    found = conn.execute(f"SELECT 1 FROM {TABLE} WHERE hash = ? LIMIT 1", (digest,)).fetchone()
    return found is not None


def _written_as(row: Row, lo: int) -> int | None:
    """The seq (other than its own) under which this row's hash verifies, if one is near."""
    seq: int = row[0]
    fields, prev, digest = row[1:-2], row[-2], row[-1]
    for distance in range(1, _REORDER_WINDOW + 1):
        for candidate in (seq - distance, seq + distance):
            if candidate >= lo and entry_hash(prev, candidate, fields) == digest:
                return candidate
    return None


def diagnose(  # noqa: PLR0911 - one return per kind of damage
    conn: sqlite3.Connection,
    row: Row,
    nxt: Row | None,
    *,
    expected_seq: int,
    expected_prev: bytes,
    before_prev: bytes | None,
) -> tuple[int, str, str]:
    """Why ``row`` breaks the chain: (seq of the first bad entry, damage, detail).

    ``expected_prev`` is the hash of the last good entry, ``before_prev`` that entry's
    own ``prev_hash`` (None at the start).
    """
    seq, fields, prev, digest = row[0], row[1:-2], row[-2], row[-1]
    self_ok = entry_hash(prev, seq, fields) == digest
    next_skips = nxt is not None and nxt[-2] == expected_prev
    if self_ok and seq > expected_seq and prev != expected_prev:
        missing = f"seq={expected_seq}" + (f"..{seq - 1}" if seq - 1 > expected_seq else "")
        detail = f"entries {missing} are missing (the chain jumps to seq={seq})"
        return expected_seq, "deleted", detail
    if not self_ok:
        original = _written_as(row, 1)
        if original is not None:
            if before_prev is not None and prev == before_prev:
                return (
                    seq - 1,
                    "inserted",
                    (
                        f"this entry is not in the chain: entry seq={seq}, written as "
                        f"seq={original}, links past it"
                    ),
                )
            if prev == expected_prev or _hash_exists(conn, prev) or original == 1:
                return seq, "reordered", f"this entry was written as seq={original}"
            return (
                seq,
                "deleted",
                (
                    f"this entry was written as seq={original}: an earlier entry is missing "
                    "and later ones were renumbered"
                ),
            )
        if next_skips:
            return seq, "inserted", "this entry is not in the chain: the next entry links past it"
        if prev != expected_prev:  # a changed entry keeps its link; this one never had it
            return seq, "inserted", f"this entry does not link to entry seq={seq - 1}"
        return seq, "changed", "its stored fields no longer match its hash"
    # The row's own hash is right, but it does not link to the entry before it.
    if next_skips:
        return seq, "inserted", "this entry is not in the chain: the next entry links past it"
    if seq > 1 and not _hash_exists(conn, prev):
        return (
            seq - 1,
            "changed",
            (f"its hash was recomputed, but entry seq={seq} still links to the original"),
        )
    return seq, "inserted", "this entry links to a different previous entry"
