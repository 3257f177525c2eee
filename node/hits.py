"""Hit notifications: the owner's record of other bureaus' hits on its flagged records.

A bureau can flag a record ``notify`` (``ncbsim record restrict --notify``). Whenever a
query from another bureau hits such a record, at step 1 (a match) or at step 2 (a
fetch), :func:`ncbsim.node.answer.answer` calls its ``on_hit`` callback with a
:class:`HitEvent`; the node passes :meth:`HitLog.record`, which appends the event to
its own hash-chained SQLite file (``WORKDIR/bureaus/XX/hits.sqlite``, WAL; the same
chain as the audit logs, see :mod:`ncbsim.auditlog`, so ``ncbsim audit verify`` checks
it) and logs an info line ``record_hit``.

An event holds who asked (the requester principal: a bureau, ``FR``, or the user of a
bureau who asked, ``FR/cdg-border-12``, docs/users.md), when, which reference, the
record's kind, the query's kind and outcome, and the message id. Never the query's
terms: the reference is the only part of the query it keeps. The outcome is ``hit``
(step 1 match), ``released`` (step 2 returned the record) or ``withheld`` (the record
matched or was fetched, but its access restriction hid it from the requester, who saw
no-hit or not-found). A withheld event tells the owner that a bureau it excluded looked
for the record; the requester cannot tell that anything was recorded.

:meth:`HitLog.record` only appends to a queue (a writer thread inserts in batches), so
it is safe to call on the node's event loop. :func:`read_hits` reads the file from
another process, read-only.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import structlog

from ncbsim.auditlog import TABLE, ChainedLog
from ncbsim.errors import NcbsimError

__all__ = ["HIT_COLUMNS", "HitEvent", "HitLog", "Outcome", "QueryKind", "event_dict", "read_hits"]

log = structlog.get_logger()

QueryKind = Literal["document", "person", "vehicle", "fetch", "fingerprint", "face", "confirm"]
Outcome = Literal["hit", "released", "withheld"]

HIT_COLUMNS = (
    ("at_ms", "INTEGER"),
    ("requester", "TEXT"),
    ("ref", "TEXT"),
    ("record_kind", "TEXT"),
    ("query_kind", "TEXT"),
    ("outcome", "TEXT"),
    ("message_id", "TEXT"),
)
_NAMES = tuple(name for name, _ in HIT_COLUMNS)


@dataclass(frozen=True, slots=True)
class HitEvent:
    """One hit by another bureau on a notify-flagged record. Metadata only, never terms."""

    at_ms: int
    requester: str
    ref: str
    record_kind: str  # document, person or vehicle
    query_kind: str  # document, person, vehicle, fingerprint, face (step 1); fetch, confirm
    outcome: str  # hit, released or withheld
    message_id: str  # hex, as in the audit logs; empty if the caller gave none

    def row(self) -> tuple[int, str, str, str, str, str, str]:
        """The event as a row, in :data:`HIT_COLUMNS` order."""
        return (
            self.at_ms,
            self.requester,
            self.ref,
            self.record_kind,
            self.query_kind,
            self.outcome,
            self.message_id,
        )


class HitLog:
    """A bureau's hit notifications: an append-only, hash-chained SQLite table (WAL)."""

    def __init__(self, path: Path, *, batch_wait_s: float = 0.05) -> None:
        self.path = Path(path)
        self._log = ChainedLog(
            self.path,
            HIT_COLUMNS,
            indexes=(("at_ms",), ("ref", "at_ms"), ("requester", "at_ms")),
            batch_wait_s=batch_wait_s,
        )

    def record(self, event: HitEvent) -> None:
        """Queue ``event`` for the file and log ``record_hit``; returns at once."""
        self._log.record(event.row())
        log.info(
            "record_hit",
            requester=event.requester,
            ref=event.ref,
            record_kind=event.record_kind,
            query_kind=event.query_kind,
            outcome=event.outcome,
            message_id=event.message_id,
        )

    def list(
        self,
        *,
        since_ms: int | None = None,
        ref: str = "",
        requester: str = "",
        limit: int | None = None,
    ) -> list[HitEvent]:
        """The events already written to the file, oldest first (see :func:`read_hits`)."""
        return read_hits(self.path, since_ms=since_ms, ref=ref, requester=requester, limit=limit)

    def close(self) -> None:
        """Write every event recorded so far, then stop the writer."""
        self._log.close()


def read_hits(
    path: Path,
    *,
    since_ms: int | None = None,
    ref: str = "",
    requester: str = "",
    limit: int | None = None,
) -> list[HitEvent]:
    """The hit notifications in the file at ``path``, oldest first, read-only.

    A bureau that never had a hit on a flagged record has no file: that reads as no
    events. Raises NcbsimError if the file is not a hit log.
    """
    path = Path(path)
    if not path.is_file():
        return []
    where: list[str] = []
    params: list[object] = []
    if since_ms is not None:
        where.append("at_ms >= ?")
        params.append(since_ms)
    if ref:
        where.append("ref = ?")
        params.append(ref)
    if requester:  # a user (FR/x): its hits; a bureau (FR): its own and its users'
        bureau, slash, name = requester.partition("/")
        if slash:
            where.append("requester = ?")
            params.append(f"{bureau.upper()}/{name}")
        else:
            where.append("(requester = ? OR requester LIKE ?)")
            params.extend((bureau.upper(), bureau.upper() + "/%"))
    sql = f"SELECT {', '.join(_NAMES)} FROM {TABLE}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY seq"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            rows = conn.execute(sql, params).fetchall()
    except sqlite3.DatabaseError as exc:
        raise NcbsimError(f"{path} is not a hit log: {exc}") from None
    return [
        HitEvent(int(at), str(who), str(ref_), str(rk), str(qk), str(out), str(mid))
        for at, who, ref_, rk, qk, out, mid in rows
    ]


def event_dict(event: HitEvent) -> dict[str, object]:
    """An event as plain JSON-ready data."""
    return asdict(event)
