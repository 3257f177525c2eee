"""What a bureau's record database holds: its schema, the records read from it, and the
owner's control of each record.

:data:`TABLES_DDL` and :data:`INDEXES_DDL` are the schema; ``ncbsim.node.datagen`` creates
databases from it and ``ncbsim.node.store`` reads them. Only a record's ``ref`` ever identifies it
outside the database; ``id`` is internal (sampling).

Data-owner control lives in the ``controls`` table (:data:`CONTROLS_DDL`), one row per
record the owner has restricted, given a handling code or flagged for hit notification
(most records have none); a record without a row gets :data:`NO_CONTROL`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ACCESS_MODES",
    "CONTROLS_DDL",
    "DOCUMENT_STATUSES",
    "HANDLING_CODES",
    "INDEXES_DDL",
    "KINDS",
    "NO_CONTROL",
    "PERSON_FLAGS",
    "SCHEMA_VERSION",
    "TABLES_DDL",
    "Access",
    "Control",
    "Document",
    "Kind",
    "Match",
    "Person",
    "Record",
    "Vehicle",
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
