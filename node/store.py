"""A bureau's records in SQLite, read through index-backed lookups.

The store answers the two steps of a query: step 1 (``find_document``, ``find_person``,
``find_vehicle``) returns opaque references with a score, step 2 (``fetch``) returns the
full record behind a reference.

This module holds the schema (:data:`TABLES_DDL`, :data:`INDEXES_DDL`); ``node.datagen``
creates databases from it. Every lookup is backed by an index that covers the query, and
each thread reads through its own read-only connection (``mode=ro`` and
``PRAGMA query_only``), so a ``ThreadPoolExecutor`` can serve lookups concurrently. The
database is in WAL mode, so readers never block each other or a writer.

Names are matched fuzzily. Both sides are folded to a key (:func:`name_key`): accents
stripped, upper case, punctuation and hyphens removed, and common transliteration variants
merged (``MÜLLER``/``MUELLER``, ``MEYER``/``MAIER``, ``W``/``V``, doubled letters). Keys
are compared with the mean of Jaro-Winkler and Indel similarity (rapidfuzz), trying the
names as given, with surname and given names swapped, and as one sorted bag of name parts.
The exact date of birth selects the candidates through an index.

Data-owner control lives in the ``controls`` table, one row per record the owner has
restricted, given a handling code or flagged for hit notification (most records have
none). :meth:`RecordStore.control` reads it at query time, so a change written by
another process (``ncbsim record restrict``, :mod:`node.admin`) applies to the next
query of a running node. A database made before the table existed reads as "no
controls"; the writer creates the table when it first needs it.
"""

from __future__ import annotations

import contextlib
import random
import re
import sqlite3
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal, overload

from rapidfuzz.distance import Indel, JaroWinkler

from ncbsim import private
from ncbsim.countries import alpha2_of
from ncbsim.errors import StoreClosedError, UnknownCountry

__all__ = [
    "ACCESS_MODES",
    "CONTROLS_DDL",
    "DOCUMENT_STATUSES",
    "HANDLING_CODES",
    "INDEXES_DDL",
    "KINDS",
    "NO_CONTROL",
    "SCHEMA_VERSION",
    "TABLES_DDL",
    "Access",
    "Control",
    "Document",
    "Kind",
    "Match",
    "Person",
    "RecordStore",
    "Vehicle",
    "delete_person",
    "name_key",
    "name_similarity",
    "normalize_number",
    "normalize_plate",
    "put_person",
]

Kind = Literal["document", "person", "vehicle"]
KINDS: tuple[Kind, ...] = ("document", "person", "vehicle")
DOCUMENT_STATUSES = ("stolen", "lost", "revoked", "invalid", "stolen_blank")
PERSON_FLAGS = ("wanted", "missing")
SCHEMA_VERSION = 1

TABLES_DDL = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE documents (
    id             INTEGER PRIMARY KEY,
    ref            TEXT NOT NULL,
    number         TEXT NOT NULL,
    issuer         TEXT NOT NULL,
    doc_type       TEXT NOT NULL,
    surname        TEXT,
    given_names    TEXT,
    nationality    TEXT,
    date_of_birth  TEXT,
    sex            TEXT,
    date_of_expiry TEXT,
    mrz            TEXT,
    status         TEXT NOT NULL
        CHECK (status IN ('stolen', 'lost', 'revoked', 'invalid', 'stolen_blank')),
    reported_on    TEXT NOT NULL
);
CREATE TABLE persons (
    id            INTEGER PRIMARY KEY,
    ref           TEXT NOT NULL,
    surname       TEXT NOT NULL,
    given_names   TEXT NOT NULL,
    date_of_birth TEXT NOT NULL,
    nationality   TEXT NOT NULL,
    sex           TEXT NOT NULL,
    flag          TEXT NOT NULL CHECK (flag IN ('wanted', 'missing')),
    summary       TEXT NOT NULL,
    surname_key   TEXT NOT NULL,
    given_key     TEXT NOT NULL
);
CREATE TABLE vehicles (
    id                   INTEGER PRIMARY KEY,
    ref                  TEXT NOT NULL,
    vin                  TEXT NOT NULL,
    plate                TEXT NOT NULL,
    plate_key            TEXT NOT NULL,
    make                 TEXT NOT NULL,
    model                TEXT NOT NULL,
    year                 INTEGER NOT NULL,
    colour               TEXT NOT NULL,
    registration_country TEXT NOT NULL,
    status               TEXT NOT NULL,
    reported_on          TEXT NOT NULL
);
"""
"""Tables. ``id`` is internal (sampling); only ``ref`` ever leaves the store. The
controls table (:data:`CONTROLS_DDL`) is created with them."""

INDEXES_DDL = """
CREATE UNIQUE INDEX documents_ref ON documents (ref);
CREATE INDEX documents_number ON documents (number, issuer, ref);
CREATE UNIQUE INDEX persons_ref ON persons (ref);
CREATE INDEX persons_dob ON persons (date_of_birth, surname_key, given_key, ref);
CREATE UNIQUE INDEX vehicles_ref ON vehicles (ref);
CREATE INDEX vehicles_vin ON vehicles (vin, ref);
CREATE INDEX vehicles_plate ON vehicles (plate_key, ref);
"""
"""Indexes, created after a bulk load. Each lookup's index covers its query."""

CONTROLS_DDL = """
CREATE TABLE IF NOT EXISTS controls (
    id       INTEGER PRIMARY KEY,
    ref      TEXT NOT NULL,
    access   TEXT NOT NULL CHECK (access IN ('open', 'allow', 'deny')),
    bureaus  TEXT NOT NULL,
    handling INTEGER CHECK (handling BETWEEN 0 AND 3),
    notify   INTEGER NOT NULL CHECK (notify IN (0, 1))
);
CREATE UNIQUE INDEX IF NOT EXISTS controls_ref ON controls (ref);
"""
"""The controls table and its index: created with the other tables, and by the writer
(``ncbsim record restrict``) in a database made before they existed."""

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

DEFAULT_THRESHOLD = 0.85
MAX_CANDIDATES = 5


@dataclass(frozen=True, slots=True)
class Match:
    """A hit: the opaque reference of a record, its kind and a score in [0, 1]."""

    ref: str
    kind: Kind
    score: float


@dataclass(frozen=True, slots=True)
class Document:
    """A travel document in SLTD. A stolen blank booklet has no holder fields and no MRZ."""

    ref: str
    number: str
    issuer: str
    doc_type: str
    surname: str | None
    given_names: str | None
    nationality: str | None
    date_of_birth: str | None
    sex: str | None
    date_of_expiry: str | None
    mrz: str | None
    status: str
    reported_on: str


@dataclass(frozen=True, slots=True)
class Person:
    """A person in the nominal data: wanted (summary = offence) or missing (circumstances)."""

    ref: str
    surname: str
    given_names: str
    date_of_birth: str
    nationality: str
    sex: str
    flag: str
    summary: str


@dataclass(frozen=True, slots=True)
class Vehicle:
    """A stolen motor vehicle."""

    ref: str
    vin: str
    plate: str
    make: str
    model: str
    year: int
    colour: str
    registration_country: str
    status: str
    reported_on: str


Record = Document | Person | Vehicle

Access = Literal["open", "allow", "deny"]
ACCESS_MODES: tuple[Access, ...] = ("open", "allow", "deny")
HANDLING_CODES = ("H0", "H1", "H2", "H3")


@dataclass(frozen=True, slots=True)
class Control:
    """The owner's control of one record.

    ``access`` is ``open`` (every bureau), ``allow`` (only ``bureaus``) or ``deny``
    (every bureau but ``bureaus``); the owner always sees its own records.
    ``handling`` is 0 to 3 (H0 to H3) or ``None`` when the owner attached no code.
    ``notify``: the owner wants a hit notification whenever another bureau hits it.
    """

    access: Access = "open"
    bureaus: frozenset[str] = frozenset()
    handling: int | None = None
    notify: bool = False

    @property
    def restricted(self) -> bool:
        """Whether some bureau other than the owner may not see the record."""
        return self.access != "open"

    def visible_to(self, requester: str | None, owner: str) -> bool:
        """Whether ``requester`` may see the record (hit at step 1, record at step 2).

        ``None`` is a caller nobody authenticated: it sees only open records.
        """
        if requester is not None and requester == owner:
            return True
        if self.access == "open":
            return True
        if requester is None:
            return False
        if self.access == "allow":
            return requester in self.bureaus
        return requester not in self.bureaus

    def bureaus_text(self) -> str:
        """The bureau list as stored: sorted codes separated by commas."""
        return ",".join(sorted(self.bureaus))


NO_CONTROL = Control()
"""What a record without a controls row gets: open, no handling code, no notification."""


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

# ---------------------------------------------------------------- normalisation

_SEPARATORS = re.compile(r"[\s<\-./]+")


def normalize_number(number: str) -> str:
    """A document number as stored: upper case, without spaces, fillers or separators."""
    return _SEPARATORS.sub("", number).upper()


def normalize_plate(plate: str) -> str:
    """A plate as indexed: upper case letters and digits only (``AB-123 CD`` → ``AB123CD``)."""
    return "".join(ch for ch in plate.upper() if ch.isalnum())


# fmt: off
_FOLD = str.maketrans(
    {"ß": "SS", "ẞ": "SS", "Æ": "AE", "æ": "AE", "Ø": "O", "ø": "O", "Œ": "OE", "œ": "OE",
     "Þ": "TH", "þ": "TH", "Ð": "D", "ð": "D", "Đ": "D", "đ": "D", "Ł": "L", "ł": "L",
     "ı": "I", "Ə": "A", "ə": "A", "Ħ": "H", "ħ": "H"}  # noqa: RUF001 - look-alike letters are the point
)
# fmt: on
_DROPPED = str.maketrans("", "", "'’‘`´ʼ")  # noqa: RUF001 - look-alike letters are the point
_NON_LETTERS = re.compile(r"[^A-Z]+")
_VARIANTS = (
    ("SCH", "SH"),
    ("DZH", "J"),
    ("DJ", "J"),
    ("AE", "A"),
    ("OE", "O"),
    ("UE", "U"),
    ("PH", "F"),
    ("TH", "T"),
    ("CK", "K"),
    ("KH", "H"),
    ("W", "V"),
    ("Y", "I"),
    ("EI", "AI"),
)
_DOUBLED = re.compile(r"(.)\1+")


def name_key(name: str) -> str:
    """The matching key of a name: folded name parts separated by single spaces.

    ``name_key("Müller-Lüdenscheidt") == name_key("MUELLER LUEDENSCHEIDT")``.
    """
    return " ".join(filter(None, map(_word_key, name.split())))


@lru_cache(maxsize=1 << 16)
def _word_key(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word.translate(_FOLD).translate(_DROPPED))
    ascii_upper = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).upper()
    return " ".join(_variant_key(part) for part in _NON_LETTERS.split(ascii_upper) if part)


def _variant_key(part: str) -> str:
    for old, new in _VARIANTS:
        part = part.replace(old, new)
    return _DOUBLED.sub(r"\1", part)


def _similarity(a: str, b: str) -> float:
    """Mean of Jaro-Winkler (rewards a shared start) and Indel (penalises extra letters)."""
    return (JaroWinkler.normalized_similarity(a, b) + Indel.normalized_similarity(a, b)) / 2


def _field_similarity(query: list[str], record: list[str]) -> float:
    """Similarity of two multi-part names, allowing one side to omit parts (0.05 penalty)."""
    whole = _similarity("".join(query), "".join(record))
    if len(query) == len(record) or not query or not record:
        return whole
    shorter, longer = (query, record) if len(query) < len(record) else (record, query)
    parts = sum(max(_similarity(p, q) for q in longer) for p in shorter) / len(shorter)
    return max(whole, parts - 0.05)


def _ordered(qs: list[str], qg: list[str], rs: list[str], rg: list[str]) -> float:
    surname = _field_similarity(qs, rs)
    if not qg:
        return 0.95 * surname
    if not rg:
        return 0.6 * surname
    return 0.6 * surname + 0.4 * _field_similarity(qg, rg)


def name_similarity(
    query_surname_key: str, query_given_key: str, surname_key: str, given_key: str
) -> float:
    """How alike two names are, in [0, 1], from their :func:`name_key` keys.

    The best of: surname and given names compared in place (weighted 0.6 and 0.4), the
    same with the record's surname and given names swapped, and all name parts compared as
    one sorted string. Each comparison averages Jaro-Winkler and Indel similarity, and lets
    one side omit name parts (``GARCIA`` against ``GARCIA LOPEZ``) at a small cost. A query
    without given names scores its surname alone, times 0.95.
    """
    qs, qg = query_surname_key.split(), query_given_key.split()
    rs, rg = surname_key.split(), given_key.split()
    if not qs:
        qs, qg = qg, []
    if not qs or not (rs or rg):
        return 0.0
    best = max(_ordered(qs, qg, rs, rg), _ordered(qs, qg, rg, rs) if rg else 0.0)
    if qg:
        best = max(best, _similarity("".join(sorted(qs + qg)), "".join(sorted(rs + rg))))
    return round(best, 4)


# ---------------------------------------------------------------- the store


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

    Used for the subject of a published notice (node.notices): idempotent, so applying
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
