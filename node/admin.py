"""The owner's side of its records: list them, change their controls, read its hits.

:func:`list_records` reads records worth querying from the bureau's own record database
(read-only: it never writes), so a user knows what a query will hit.

:func:`restrict` writes a record's control (allow- or deny-list, handling code, notify
flag) into the bureau's own record database, ``WORKDIR/bureaus/XX/records.sqlite``. It
is a separate writer on the WAL database the node reads, and the node reads controls at
every query, so the change applies to the next query of a running node, with no restart.

:func:`list_hits` reads the bureau's hit notifications (``WORKDIR/bureaus/XX/hits.sqlite``,
see :mod:`ncbsim.node.hits`).

The commands ``ncbsim record list``, ``record restrict`` and ``hits`` call them from the
command line's floor, which also prints what they return.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ncbsim.errors import NcbsimError
from ncbsim.node.hits import HitEvent, read_hits
from ncbsim.node.records import (
    CONTROLS_DDL,
    KINDS,
    NO_CONTROL,
    Access,
    Control,
    Record,
)
from ncbsim.node.store import RecordStore
from ncbsim.workdir import Workdir, require_pki

__all__ = [
    "ControlChange",
    "list_hits",
    "list_records",
    "read_control",
    "restrict",
]


@dataclass(frozen=True, slots=True)
class ControlChange:
    """What to change in a record's control; ``None`` leaves that part as it is.

    ``access`` with ``bureaus``: ``allow`` (only those bureaus), ``deny`` (all but
    those) or ``open`` (everyone; ``bureaus`` must be empty). ``handling``: 0 to 3,
    or -1 to remove the code.
    """

    access: Access | None = None
    bureaus: frozenset[str] = frozenset()
    handling: int | None = None
    notify: bool | None = None


def _connect(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise NcbsimError(f"no record database at {path}")
    conn = sqlite3.connect(path, timeout=10, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


def _record_exists(conn: sqlite3.Connection, ref: str) -> bool:
    return any(
        conn.execute(f"SELECT 1 FROM {table} WHERE ref = ?", (ref,)).fetchone()
        for table in ("documents", "persons", "vehicles")
    )


def _current(conn: sqlite3.Connection, ref: str) -> Control:
    row = conn.execute(
        "SELECT access, bureaus, handling, notify FROM controls WHERE ref = ?", (ref,)
    ).fetchone()
    if row is None:
        return NO_CONTROL
    access, bureaus, handling, notify = row
    checked: Access = "allow" if access == "allow" else "deny" if access == "deny" else "open"
    return Control(
        checked,
        frozenset(c for c in str(bureaus).split(",") if c),
        None if handling is None else int(handling),
        bool(notify),
    )


def read_control(path: Path, ref: str) -> Control:
    """The control of ``ref`` in the record database at ``path`` (read-only)."""
    with contextlib.closing(_connect(path)) as conn:
        if _controls_missing(conn):
            return NO_CONTROL
        return _current(conn, ref.strip())


def _controls_missing(conn: sqlite3.Connection) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='controls'"
        ).fetchone()
        is None
    )


def restrict(path: Path, ref: str, change: ControlChange) -> Control:
    """Apply ``change`` to the control of ``ref`` in the database at ``path``; the result.

    Raises NcbsimError if the database holds no record ``ref``. One short write
    transaction: a node reading the database sees the old control or the new one.
    """
    ref = ref.strip()
    with contextlib.closing(_connect(path)) as conn:
        if _controls_missing(conn):
            conn.executescript(CONTROLS_DDL)  # a database made before controls existed
        conn.execute("BEGIN IMMEDIATE")
        try:
            if not _record_exists(conn, ref):
                raise NcbsimError(f"{path.parent.name} holds no record {ref!r}")
            old = _current(conn, ref)
            access = old.access if change.access is None else change.access
            bureaus = old.bureaus if change.access is None else change.bureaus
            if change.handling is None:
                handling = old.handling
            else:
                handling = None if change.handling < 0 else change.handling
            notify = old.notify if change.notify is None else change.notify
            new = Control(access, bureaus, handling, notify)
            if new == NO_CONTROL:
                conn.execute("DELETE FROM controls WHERE ref = ?", (ref,))
            else:
                conn.execute(
                    "INSERT INTO controls (ref, access, bureaus, handling, notify) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (ref) DO UPDATE SET "
                    "access = excluded.access, bureaus = excluded.bureaus, "
                    "handling = excluded.handling, notify = excluded.notify",
                    (ref, new.access, new.bureaus_text(), new.handling, int(new.notify)),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return new


def list_records(
    workdir: Path, bureau: str, kinds: tuple[str, ...] = KINDS, limit: int = 10
) -> list[tuple[str, Record, Control]]:
    """Up to ``limit`` records of each kind worth querying in ``bureau``'s database, with
    their controls (:meth:`RecordStore.worth_querying`); read-only."""
    path = Workdir(Path(workdir)).bureau(bureau.upper()).records
    if not path.is_file():
        require_pki(workdir)  # a folder that is no work directory says so first
        raise NcbsimError(f"no record database at {path}; is {bureau} a bureau of {workdir}?")
    try:
        store = RecordStore(path)
    except ValueError as exc:
        raise NcbsimError(str(exc)) from None
    try:
        return [
            (kind, record, control)
            for kind in kinds
            for record, control in store.worth_querying(kind, limit)
        ]
    finally:
        store.close()


def list_hits(
    workdir: Path, bureau: str, *, ref: str = "", requester: str = "", limit: int | None = None
) -> list[HitEvent]:
    """The hit notifications of ``bureau``'s node in ``workdir``, oldest first."""
    return read_hits(
        Workdir(Path(workdir)).bureau(bureau.upper()).hits,
        ref=ref,
        requester=requester,
        limit=limit,
    )
