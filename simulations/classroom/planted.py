"""Records worth asking about: a few of each bureau's flagged records, for the page's list.

A trainer who picks one of these is sure of a hit: each is a stolen document, a wanted
person or a stolen vehicle that the bureau's own database holds, and that its owner has
not restricted (a record with an ``allow`` or ``deny`` control would answer some bureaus
no-hit). They are read from the bureau's records database, read-only, as the lesson's
steps read theirs.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from ncbsim.workdir import Workdir

PER_KIND = {"document": 3, "person": 2, "vehicle": 2}

_OPEN = "ref NOT IN (SELECT ref FROM controls WHERE access != 'open')"
_QUERIES = {
    "document": (
        "SELECT number, issuer, doc_type FROM documents WHERE status = 'stolen' "
        f"AND surname IS NOT NULL AND {_OPEN} ORDER BY id LIMIT ?"
    ),
    "person": (
        "SELECT surname, given_names, date_of_birth FROM persons WHERE flag = 'wanted' "
        f"AND {_OPEN} ORDER BY id LIMIT ?"
    ),
    "vehicle": (
        f"SELECT vin, make, model FROM vehicles WHERE status = 'stolen' AND {_OPEN} "
        "ORDER BY id LIMIT ?"
    ),
}
_DOC_TYPES = {"P": "passport", "I": "identity card", "V": "visa"}


def _item(kind: str, row: tuple[Any, ...]) -> dict[str, str]:
    if kind == "document":
        number, issuer, doc_type = (str(x) for x in row)
        what = _DOC_TYPES.get(doc_type, "document")
        return {
            "kind": kind,
            "label": f"stolen {what} {number} ({issuer})",
            "number": number,
            "issuer": issuer,
        }
    if kind == "person":
        surname, given, born = (str(x) for x in row)
        return {
            "kind": kind,
            "label": f"wanted: {surname.upper()} {given}, born {born}",
            "surname": surname,
            "given_names": given,
            "date_of_birth": born,
        }
    vin, make, model = (str(x) for x in row)
    return {"kind": kind, "label": f"stolen {make} {model}, VIN {vin}", "vin": vin}


def planted(workdir: Path, code: str) -> list[dict[str, str]]:
    """A few flagged records of ``code``'s database (none if it has no database yet)."""
    path = Workdir(workdir).bureau(code).records
    if not path.is_file():
        return []
    uri = path.resolve().as_uri() + "?mode=ro"
    out: list[dict[str, str]] = []
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        for kind, sql in _QUERIES.items():
            with contextlib.suppress(sqlite3.Error):  # a table it lacks: none of that kind
                out += [_item(kind, row) for row in conn.execute(sql, (PER_KIND[kind],))]
    return out
