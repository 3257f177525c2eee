"""A bureau's records in SQLite, read through index-backed lookups.

The store answers the two steps of a query: step 1 (``find_document``, ``find_person``,
``find_vehicle``) returns opaque references with a score, step 2 (``fetch``) returns the
full record behind a reference. The schema and record types are in :mod:`ncbsim.node.records`,
the comparison of numbers, plates and names in :mod:`ncbsim.node.matching`.

Every lookup is backed by an index that covers the query, and each thread reads through
its own read-only connection (``mode=ro`` and ``PRAGMA query_only``), so a
``ThreadPoolExecutor`` can serve lookups concurrently. The database is in WAL mode, so
readers never block each other or a writer. The exact date of birth selects the
candidates of a person lookup through an index.

:meth:`RecordStore.control` reads the owner's control of a record at query time, so a
change written by another process (``ncbsim record restrict``, :mod:`ncbsim.node.admin`) applies
to the next query of a running node. A database made before the ``controls`` table existed
reads as "no controls"; the writer creates the table when it first needs it.

The only writes are :func:`put_person` and :func:`delete_person`, for the subject of a
published or withdrawn notice (ncbsim.node.notices).
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, overload

from ncbsim import private
from ncbsim.countries import alpha2_of
from ncbsim.errors import StoreClosedError, UnknownCountry
from ncbsim.node.matching import (
    DEFAULT_THRESHOLD,
    name_key,
    name_similarity,
    normalize_number,
    normalize_plate,
)
from ncbsim.node.records import (
    ACCESS_MODES,
    KINDS,
    NO_CONTROL,
    SCHEMA_VERSION,
    Access,
    Control,
    Document,
    Kind,
    Match,
    Person,
    Record,
    Vehicle,
)

__all__ = [
    "LOOKUPS",
    "MAX_CANDIDATES",
    "RecordStore",
    "delete_person",
    "put_person",
]

_DOCUMENT_COLUMNS = (
    "ref, number, issuer, doc_type, surname, given_names, nationality, date_of_birth, sex, "
    "date_of_expiry, mrz, status, reported_on"
)
_PERSON_COLUMNS = "ref, surname, given_names, date_of_birth, nationality, sex, flag, summary"
_VEHICLE_COLUMNS = (
    "ref, vin, plate, make, model, year, colour, registration_country, status, reported_on"
)
_TABLES: dict[Kind, tuple[str, str]] = {
    "document": ("documents", _DOCUMENT_COLUMNS),
    "person": ("persons", _PERSON_COLUMNS),
    "vehicle": ("vehicles", _VEHICLE_COLUMNS),
}

_LOOKUPS: dict[str, str] = {
    "document": "SELECT ref FROM documents WHERE number = ? AND issuer = ?",
    "person": "SELECT ref, surname_key, given_key FROM persons WHERE date_of_birth = ?",
    "vehicle_vin": "SELECT ref FROM vehicles WHERE vin = ?",
    "vehicle_plate": "SELECT ref FROM vehicles WHERE plate_key = ?",
    "fetch_document": f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE ref = ?",
    "fetch_person": f"SELECT {_PERSON_COLUMNS} FROM persons WHERE ref = ?",
    "fetch_vehicle": f"SELECT {_VEHICLE_COLUMNS} FROM vehicles WHERE ref = ?",
    "control": "SELECT access, bureaus, handling, notify FROM controls WHERE ref = ?",
}
"""Every lookup the store runs, by name, so :meth:`RecordStore.query_plan` can explain it."""

MAX_CANDIDATES = 5
"""How many person candidates a lookup returns by default."""


def _access(value: str) -> Access:
    for known in ACCESS_MODES:
        if value == known:
            return known
    raise ValueError(f"unknown access mode {value!r}")


_RECORD_TYPES: dict[Kind, type[Document] | type[Person] | type[Vehicle]] = {
    "document": Document,
    "person": Person,
    "vehicle": Vehicle,
}


def _kind(kind: str) -> Kind:
    for known in KINDS:
        if kind == known:
            return known
    raise ValueError(f"unknown record kind {kind!r}; expected one of {KINDS}")


class RecordStore:
    """Read-only, thread-safe lookups in one bureau's record database."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        if not self._path.is_file():
            raise FileNotFoundError(f"no record database at {self._path}")
        # A database an older version left readable by anyone is made the owner's alone,
        # with its -wal and -shm files (SQLite creates those with the database's mode).
        private.tighten(self._path)
        self._uri = self._path.resolve().as_uri() + "?mode=ro"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False
        self._bureau: str | None = None
        row = self._conn().execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or int(row[0]) != SCHEMA_VERSION:
            self.close()
            raise ValueError(f"{self._path} does not hold schema version {SCHEMA_VERSION}")

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreClosedError("the record store is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            with self._lock:
                if self._closed:
                    raise StoreClosedError("the record store is closed")
                conn = sqlite3.connect(
                    self._uri, uri=True, check_same_thread=False, cached_statements=64
                )
                conn.execute("PRAGMA query_only = ON")
                self._connections.append(conn)
            self._local.conn = conn
        return conn

    def find_document(self, number: str, issuer: str) -> list[Match]:
        """Documents with this number from this issuer (alpha-2, alpha-3 or MRZ code).

        The number is compared case-insensitively, ignoring spaces and fillers. An issuer
        that names no country matches nothing.
        """
        try:
            issuer_code = alpha2_of(issuer)
        except UnknownCountry:
            return []
        rows = (
            self._conn()
            .execute(_LOOKUPS["document"], (normalize_number(number), issuer_code))
            .fetchall()
        )
        return [Match(ref, "document", 1.0) for (ref,) in rows]

    def find_person(
        self,
        surname: str,
        given_names: str,
        date_of_birth: str,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        limit: int | None = MAX_CANDIDATES,
    ) -> list[Match]:
        """Persons born on ``date_of_birth`` (``YYYY-MM-DD``) whose name is close enough.

        Returns at most ``limit`` candidates (``None``: all) scoring at least
        ``threshold``, best first.
        """
        query_surname, query_given = name_key(surname), name_key(given_names)
        if not query_surname and not query_given:
            return []
        rows = self._conn().execute(_LOOKUPS["person"], (date_of_birth.strip(),)).fetchall()
        scored = [
            Match(ref, "person", score)
            for ref, surname_key, given_key in rows
            if (score := name_similarity(query_surname, query_given, surname_key, given_key))
            >= threshold
        ]
        scored.sort(key=lambda m: (-m.score, m.ref))
        return scored if limit is None else scored[:limit]

    def find_vehicle(self, vin: str | None = None, plate: str | None = None) -> list[Match]:
        """Vehicles with this VIN or this plate (plates compared without spaces or dashes).

        Raises ``ValueError`` if neither is given.
        """
        vin_key = (vin or "").strip().upper().replace(" ", "")
        plate_key = normalize_plate(plate or "")
        if not vin_key and not plate_key:
            raise ValueError("a vehicle lookup needs a VIN or a plate")
        conn = self._conn()
        refs: list[str] = []
        if vin_key:
            refs.extend(ref for (ref,) in conn.execute(_LOOKUPS["vehicle_vin"], (vin_key,)))
        if plate_key:
            refs.extend(ref for (ref,) in conn.execute(_LOOKUPS["vehicle_plate"], (plate_key,)))
        return [Match(ref, "vehicle", 1.0) for ref in dict.fromkeys(refs)]

    @property
    def bureau(self) -> str:
        """The owning bureau (alpha-2), as the generator recorded it."""
        owner = self._bureau
        if owner is None:
            row = self._conn().execute("SELECT value FROM meta WHERE key = 'bureau'").fetchone()
            owner = self._bureau = str(row[0]) if row else ""
        return owner

    def control(self, ref: str) -> Control:
        """The owner's control of ``ref`` (:data:`NO_CONTROL` if it has none), read now.

        Read at every call, so a change another process commits applies at once. Any
        database error other than a missing ``controls`` table (an older database)
        propagates: a node must not release a record whose control it cannot read.
        """
        try:
            row = self._conn().execute(_LOOKUPS["control"], (ref.strip(),)).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table: controls" in str(exc):
                return NO_CONTROL
            raise
        if row is None:
            return NO_CONTROL
        access, bureaus, handling, notify = row
        return Control(
            _access(access),
            frozenset(code for code in bureaus.split(",") if code),
            None if handling is None else int(handling),
            bool(notify),
        )

    def fetch_full(self, ref: str) -> Document | Person | Vehicle | None:
        """Like :meth:`fetch`, but always runs the lookup of every kind.

        A step 2 answer then costs the same whether the reference exists or not.
        """
        conn = self._conn()
        ref = ref.strip()
        found: Document | Person | Vehicle | None = None
        for kind in KINDS:
            row = conn.execute(_LOOKUPS[f"fetch_{kind}"], (ref,)).fetchone()
            if row is not None and found is None:
                found = _RECORD_TYPES[kind](*row)
        return found

    def fetch(self, ref: str) -> Document | Person | Vehicle | None:
        """The full record behind ``ref``, or ``None`` if this store holds no such record."""
        conn = self._conn()
        ref = ref.strip()
        for kind in KINDS:
            row = conn.execute(_LOOKUPS[f"fetch_{kind}"], (ref,)).fetchone()
            if row is not None:
                return _RECORD_TYPES[kind](*row)
        return None

    @overload
    def sample(self, kind: Literal["document"], n: int, rng: random.Random) -> list[Document]: ...
    @overload
    def sample(self, kind: Literal["person"], n: int, rng: random.Random) -> list[Person]: ...
    @overload
    def sample(self, kind: Literal["vehicle"], n: int, rng: random.Random) -> list[Vehicle]: ...
    @overload
    def sample(self, kind: str, n: int, rng: random.Random) -> Sequence[Record]: ...

    def sample(self, kind: str, n: int, rng: random.Random) -> Sequence[Record]:
        """Up to ``n`` distinct records of ``kind``, drawn with ``rng`` (reproducibly).

        Raises ``ValueError`` for an unknown kind.
        """
        checked = _kind(kind)
        table, columns = _TABLES[checked]
        conn = self._conn()
        (top,) = conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()
        ids = rng.sample(range(1, top + 1), min(n, top))
        record_type = _RECORD_TYPES[checked]
        statement = f"SELECT {columns} FROM {table} WHERE id = ?"
        records: list[Record] = []
        for row_id in ids:
            row = conn.execute(statement, (row_id,)).fetchone()
            if row is not None:
                records.append(record_type(*row))
        return records

    def worth_querying(self, kind: str, limit: int) -> list[tuple[Record, Control]]:
        """Up to ``limit`` records of ``kind`` to query, each with its control (read-only).

        Records flagged for hit notification come first (a hit on one shows in
        ``ncbsim hits``), then records with no control, and records restricted to some
        bureaus last (they hit only for those). Database order within each group. Raises
        ``ValueError`` for an unknown kind.
        """
        checked = _kind(kind)
        table, columns = _TABLES[checked]
        selected = ", ".join(f"r.{column.strip()}" for column in columns.split(","))
        statement = (
            f"SELECT {selected}, c.access, c.bureaus, c.handling, c.notify FROM {table} r "
            "LEFT JOIN controls c ON c.ref = r.ref ORDER BY CASE "
            "WHEN c.access IN ('allow', 'deny') THEN 2 WHEN c.notify = 1 THEN 0 ELSE 1 END, "
            "r.id LIMIT ?"
        )
        try:
            rows = self._conn().execute(statement, (limit,)).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table: controls" not in str(exc):
                raise
            plain = f"SELECT {columns} FROM {table} ORDER BY id LIMIT ?"
            rows = [(*row, None, None, None, None) for row in self._conn().execute(plain, (limit,))]
        record_type = _RECORD_TYPES[checked]
        listed: list[tuple[Record, Control]] = []
        for row in rows:
            *fields, access, bureaus, handling, notify = row
            control = NO_CONTROL
            if access is not None:
                control = Control(
                    _access(access),
                    frozenset(code for code in str(bureaus).split(",") if code),
                    None if handling is None else int(handling),
                    bool(notify),
                )
            listed.append((record_type(*fields), control))
        return listed

    def counts(self) -> dict[str, int]:
        """How many records of each kind the store holds."""
        conn = self._conn()
        return {
            kind: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for kind, (table, _) in _TABLES.items()
        }

    def enrolled(self) -> list[tuple[str, str, str, bytes]]:
        """Every enrolled biometric template: ``(ref, person_ref, modality, template)``,
        in enrolment order (none for a database made before biometrics existed)."""
        try:
            rows = self._conn().execute(
                "SELECT ref, person_ref, modality, template FROM biometrics ORDER BY rowid"
            )
            return [(str(a), str(b), str(c), bytes(d)) for a, b, c, d in rows]
        except sqlite3.OperationalError as exc:
            if "no such table: biometrics" in str(exc):
                return []
            raise

    def meta(self) -> dict[str, str]:
        """What the generator recorded about this database (bureau, seed, schema version)."""
        return dict(self._conn().execute("SELECT key, value FROM meta").fetchall())

    def query_plan(self, lookup: str) -> list[str]:
        """SQLite's ``EXPLAIN QUERY PLAN`` details for a named lookup (see ``LOOKUPS``)."""
        statement = _LOOKUPS[lookup]
        params = (None,) * statement.count("?")
        rows = self._conn().execute(f"EXPLAIN QUERY PLAN {statement}", params).fetchall()
        return [str(row[-1]) for row in rows]

    def close(self) -> None:
        """Close every connection. Lookups after this raise :class:`StoreClosedError`."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()


LOOKUPS: tuple[str, ...] = tuple(_LOOKUPS)
"""Names accepted by :meth:`RecordStore.query_plan`."""


# ---------------------------------------------------------------- notice subjects


def _writer(path: Path) -> sqlite3.Connection:
    """A short-lived write connection to the record database (the store itself is read-only)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no record database at {path}")
    conn = sqlite3.connect(path, timeout=10, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


def put_person(path: Path, person: Person) -> bool:
    """Add ``person`` to the record database at ``path``, unless its ``ref`` is there.

    Used for the subject of a published notice (ncbsim.node.notices): idempotent, so applying
    the same notice again leaves one record. True if a record was added. Name keys are
    computed with :func:`name_key`, as the generator does, so a person query finds it.
    """
    with contextlib.closing(_writer(path)) as conn:
        added = conn.execute(
            "INSERT INTO persons (ref, surname, given_names, date_of_birth, nationality, sex, "
            "flag, summary, surname_key, given_key) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "
            "WHERE NOT EXISTS (SELECT 1 FROM persons WHERE ref = ?)",
            (
                person.ref,
                person.surname,
                person.given_names,
                person.date_of_birth,
                person.nationality,
                person.sex,
                person.flag,
                person.summary,
                name_key(person.surname),
                name_key(person.given_names),
                person.ref,
            ),
        ).rowcount
    return bool(added)


def delete_person(path: Path, ref: str) -> bool:
    """Delete the person record ``ref`` (a withdrawn notice's subject); True if one was."""
    with contextlib.closing(_writer(path)) as conn:
        deleted = conn.execute("DELETE FROM persons WHERE ref = ?", (ref,)).rowcount
    return bool(deleted)
