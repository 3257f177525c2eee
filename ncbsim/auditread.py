"""Reading a hash-chained audit log without writing to it: verify its chain, search its rows.

:func:`verify` walks the chain in seq order (the format is :mod:`ncbsim._auditchain`'s,
described in :mod:`ncbsim.auditlog`) and names the first bad entry and the damage
(:mod:`ncbsim._auditdamage` tells which); the head file catches the newest entries cut
off. :func:`search` lists the rows that match a :class:`Query`. Both open the file
read-only, so they run beside a live writer. See docs/audit.md.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ncbsim._auditchain import TABLE, Row, entry_hash, field_columns, genesis, head_path
from ncbsim._auditdamage import diagnose
from ncbsim.errors import NcbsimError

__all__ = ["Query", "Verdict", "search", "verify"]


def _connect_ro(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise NcbsimError(f"no audit log at {path}")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise NcbsimError(f"{path} is not an SQLite audit log: {exc}") from None
    return conn


def _open_log(path: Path) -> tuple[sqlite3.Connection, list[str]]:
    """A read-only connection to the log at ``path`` and its field columns."""
    conn = _connect_ro(path)
    try:
        return conn, field_columns(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise NcbsimError(f"{path} is not an SQLite audit log: {exc}") from None
    except NcbsimError:
        conn.close()
        raise


@dataclass(frozen=True, slots=True)
class Verdict:
    """The result of :func:`verify`: intact, or the first bad entry and what happened to it."""

    entries: int
    head_seq: int
    head_hash: bytes
    bad_seq: int | None = None
    damage: str | None = None  # changed, deleted, inserted, reordered, truncated, unreadable
    detail: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def intact(self) -> bool:
        return self.bad_seq is None

    def describe(self) -> str:
        """One line for people: ``intact: ...`` or ``entry seq=K: DAMAGE: detail``."""
        if self.intact:
            head = f"seq={self.head_seq} {self.head_hash.hex()[:16]}"
            return f"intact: {self.entries} entries, head {head}"
        return f"entry seq={self.bad_seq}: {self.damage}: {self.detail}"


def _iter_rows(conn: sqlite3.Connection, columns: Sequence[str]) -> Iterator[Row]:
    sql = f"SELECT seq, {', '.join(columns)}, prev_hash, hash FROM {TABLE} ORDER BY seq"
    cursor: Iterator[Row] = conn.execute(sql)
    return cursor


def _read_head(path: Path) -> tuple[int, bytes] | None:
    try:
        data = json.loads(head_path(path).read_text())
        return int(data["seq"]), bytes.fromhex(data["hash"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        return -1, b""


def _check_head(conn: sqlite3.Connection, path: Path, last_seq: int) -> tuple[int, str] | None:
    """Compare the log's end with the head file: (bad seq, detail) if they disagree."""
    head = _read_head(path)
    if head is None:
        return None
    head_seq, head_hash = head
    if head_seq < 0:
        return last_seq + 1, f"the head file {head_path(path).name} is unreadable"
    if head_seq > last_seq:
        return last_seq + 1, (
            f"the log ends at seq={last_seq} but its head file records seq={head_seq}: "
            "the newest entries were cut off"
        )
    stored = conn.execute(f"SELECT hash FROM {TABLE} WHERE seq = ?", (head_seq,)).fetchone()
    if head_seq > 0 and (stored is None or stored[0] != head_hash):
        return head_seq, "its hash is not the one the head file recorded (chain rewritten)"
    return None


def verify(path: Path) -> Verdict:
    """Walk the log in seq order and report the first bad entry, if any.

    Raises :class:`NcbsimError` if ``path`` is not a hash-chained audit log at all.
    """
    conn, columns = _open_log(path)
    try:
        triggers = {
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        }
        warnings = tuple(
            f"trigger {name} is missing: the table accepts edits"
            for name in (f"{TABLE}_no_update", f"{TABLE}_no_delete")
            if name not in triggers
        )
        expected_prev, expected_seq, count = genesis(columns), 1, 0
        before_prev: bytes | None = None

        def verdict(bad: int | None = None, damage: str | None = None, detail: str = "") -> Verdict:
            return Verdict(count, expected_seq - 1, expected_prev, bad, damage, detail, warnings)

        rows = _iter_rows(conn, columns)
        try:
            row = next(rows, None)
            while row is not None:
                nxt = next(rows, None)
                seq, fields, prev, digest = row[0], row[1:-2], row[-2], row[-1]
                if (
                    seq != expected_seq
                    or prev != expected_prev
                    or entry_hash(prev, seq, fields) != digest
                ):
                    return verdict(
                        *diagnose(
                            conn,
                            row,
                            nxt,
                            expected_seq=expected_seq,
                            expected_prev=expected_prev,
                            before_prev=before_prev,
                        )
                    )
                count += 1
                before_prev, expected_prev, expected_seq = prev, digest, seq + 1
                row = nxt
        except sqlite3.DatabaseError as exc:
            return verdict(expected_seq, "unreadable", str(exc))
        mismatch = _check_head(conn, path, expected_seq - 1)
        if mismatch is not None:
            bad, detail = mismatch
            return verdict(bad, "deleted" if bad == expected_seq else "changed", detail)
        return verdict()
    finally:
        conn.close()


# --------------------------------------------------------------------------- search


@dataclass(frozen=True, slots=True)
class Query:
    """Filters for :func:`search`; empty or None means any."""

    sender: str = ""
    recipient: str = ""
    kind: str = ""
    """Exact kind (``query_request``) or its prefix up to an underscore (``query``)."""
    message_id: str = ""
    since_ms: int | None = None
    until_ms: int | None = None
    limit: int | None = None


def search(path: Path, query: Query) -> tuple[list[str], list[Row]]:
    """The column names and the matching rows (seq, fields, hash hex), oldest first."""
    conn, columns = _open_log(path)
    try:
        where: list[str] = []
        params: list[object] = []
        for column, value in (
            ("sender", query.sender),
            ("recipient", query.recipient),
            ("message_id", query.message_id.lower()),
        ):
            if value:
                if column not in columns:
                    raise NcbsimError(f"this audit log has no {column} column")
                where.append(f"{column} = ?")
                params.append(value)
        if query.kind:
            where.append("(kind = ? OR substr(kind, 1, ?) = ?)")
            params += [query.kind, len(query.kind) + 1, query.kind + "_"]
        if query.since_ms is not None:
            where.append("at_ms >= ?")
            params.append(query.since_ms)
        if query.until_ms is not None:
            where.append("at_ms < ?")
            params.append(query.until_ms)
        sql = f"SELECT seq, {', '.join(columns)}, hash FROM {TABLE}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq"
        if query.limit is not None:
            sql += " LIMIT ?"
            params.append(query.limit)
        with contextlib.closing(conn.execute(sql, params)) as cursor:
            rows = [(*r[:-1], r[-1].hex()) for r in cursor]
    except sqlite3.DatabaseError as exc:
        raise NcbsimError(f"cannot search {path}: {exc}") from None
    except OverflowError:  # a time or limit beyond SQLite's 64-bit integers
        raise NcbsimError("a time or --limit is out of range") from None
    except UnicodeEncodeError:  # a lone surrogate from a badly encoded argument
        raise NcbsimError("a filter is not valid text") from None
    finally:
        conn.close()
    return ["seq", *columns, "hash"], rows
