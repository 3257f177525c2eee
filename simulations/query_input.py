"""What ``ncbsim query`` checks before anything is sent: the formats a user types.

A query that cannot be right (``--dob 03/02/1980``, ``--vin 123``, ``--issuer XX``)
is refused here with what was expected, instead of travelling to a bureau that answers
``error`` or a no-hit that looks like a real answer. Every check is a pure function that
returns the value to send (normalised where the bureaus normalise anyway) or raises
:class:`~ncbsim.errors.ConfigError`, which the CLI prints as one line and exit 2.

The messages name the command's options (``--dob: ...``); the classroom's form
(:mod:`ncbsim.simulations.classroom.inputs`) uses the same checks. It sits on the
simulations' floor, above the node whose VIN rules it reads (:mod:`ncbsim.node.vin`),
below both.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re

from ncbsim import biometrics, biosearch
from ncbsim.client import ALL
from ncbsim.countries import GENERAL_SECRETARIAT, alpha2_of, country
from ncbsim.errors import ConfigError, UnknownCountry
from ncbsim.node import vin as vins
from ncbsim.v2 import query_pb2

__all__ = [
    "DOCUMENT_NUMBER_MAX",
    "FIELD_MAX",
    "date_of_birth",
    "document_number",
    "issuer",
    "max_candidates",
    "name",
    "plate",
    "recipients",
    "reference",
    "request",
    "vin",
]

FIELD_MAX = 64
"""Longest value a bureau accepts in any query field (node/answer.py refuses longer)."""
DOCUMENT_NUMBER_MAX = 20
"""Letters and digits in a document number, separators aside. A passport's MRZ has nine
positions for it (ICAO 9303); longer numbers (some identity cards) overflow into the
optional data, and none in use comes near twenty."""

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# What a document number may be written with: MRZ characters, and the separators people
# type, which the bureaus drop before comparing (node/matching.py normalize_number).
_NUMBER_SEPARATORS = re.compile(r"[\s<\-./]+")
_NUMBER = re.compile(r"[A-Z0-9]+")
# References are opaque, but a bureau only ever issues these two shapes: 20 base32
# characters (node/datagen.py) or N and a notice id in hex (node/notices.py person_ref).
_REFERENCE = re.compile(r"[a-z2-7]{20}|N[0-9A-F]{32}")
_VIN_SEPARATORS = re.compile(r"[\s-]+")


def recipients(text: str) -> list[str]:
    """``--to``: bureau codes separated by commas, or ``ALL`` alone; duplicates dropped."""
    codes = [c.strip().upper() for c in text.split(",") if c.strip()]
    if not codes:
        raise ConfigError("--to: name at least one bureau (e.g. DE or DE,IT) or ALL")
    if ALL in codes:
        if codes != [ALL]:
            raise ConfigError(f"--to: {ALL} already means every bureau; do not list others")
        return codes
    for code in codes:
        try:
            country(code)
        except UnknownCountry:
            raise ConfigError(
                f"--to: {code!r} is not a bureau code: expected ISO 3166 alpha-2 codes "
                f"(e.g. DE,IT), {GENERAL_SECRETARIAT} for the General Secretariat, or {ALL}"
            ) from None
    return list(dict.fromkeys(codes))


def date_of_birth(text: str, *, today: dt.date) -> str:
    """``--dob``: a real calendar date written ``YYYY-MM-DD``, not after ``today``."""
    value = text.strip()
    if not _DATE.fullmatch(value):
        raise ConfigError(f"--dob: expected a date written YYYY-MM-DD, got {text!r}")
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--dob: {value} is not a date in the calendar") from None
    if day > today:
        raise ConfigError(f"--dob: {value} is in the future")
    return value


def vin(text: str) -> str:
    """``--vin``: 17 VIN characters (no I, O, Q), upper case; for a North American VIN
    (first character 1 to 5) position 9 must hold its check digit."""
    value = _VIN_SEPARATORS.sub("", text).upper()
    if len(value) != vins.LENGTH:
        raise ConfigError(f"--vin: a VIN has {vins.LENGTH} characters, got {len(value)}")
    for position, ch in enumerate(value, 1):
        if ch not in vins.ALPHABET:
            raise ConfigError(
                "--vin: a VIN is made of digits and letters A-Z except I, O and Q "
                f"(found {ch!r} at position {position})"
            )
    if vins.requires_check_digit(value):
        expected = vins.check_digit(value)
        found = value[vins.CHECK_POSITION]
        if found != expected:
            raise ConfigError(
                f"--vin: wrong check digit: a North American VIN (first character 1 to 5) "
                f"has its check digit at position 9, which should be {expected!r}, not {found!r}"
            )
    return value


def plate(text: str) -> str:
    """``--plate``: any registration plate with at least one letter or digit."""
    value = text.strip()
    if len(value) > FIELD_MAX:
        raise ConfigError(f"--plate: at most {FIELD_MAX} characters")
    if not any(ch.isalnum() for ch in value):
        raise ConfigError(f"--plate: expected letters and digits, e.g. 'AB-123-CD', got {text!r}")
    return value


def issuer(text: str) -> str:
    """``--issuer``: the issuing state as ISO 3166 alpha-2 (alpha-3 and ICAO MRZ codes such
    as ``FRA`` or ``D`` are accepted and sent as alpha-2). ``GS`` (ICAO ``XPO``) is the General
    Secretariat, which issues INTERPOL travel documents to its officials."""
    try:
        code = alpha2_of(text)
    except UnknownCountry:
        code = ""
    if not code:
        raise ConfigError(
            f"--issuer: {text.strip()!r} is not an issuing state: expected an ISO 3166 "
            "alpha-2 code such as FR or DE (alpha-3 FRA and ICAO codes such as D work too)"
        )
    return code


def document_number(text: str) -> str:
    """``--number``: letters and digits (spaces, ``-``, ``.``, ``/`` and ``<`` are dropped,
    as the bureaus drop them), upper case, 1 to :data:`DOCUMENT_NUMBER_MAX` of them."""
    value = _NUMBER_SEPARATORS.sub("", text).upper()
    if not value:
        raise ConfigError("--number: the document number is empty")
    if not _NUMBER.fullmatch(value):
        bad = next(ch for ch in value if not ("A" <= ch <= "Z" or "0" <= ch <= "9"))
        raise ConfigError(
            f"--number: a document number has letters A-Z and digits only (found {bad!r})"
        )
    if len(value) > DOCUMENT_NUMBER_MAX:
        raise ConfigError(
            f"--number: at most {DOCUMENT_NUMBER_MAX} letters and digits, got {len(value)}"
        )
    return value


def name(text: str, option: str, *, required: bool) -> str:
    """``--surname`` or ``--given-names``: at most :data:`FIELD_MAX` characters with at
    least one letter (any script: the bureaus romanise names before comparing)."""
    value = text.strip()
    if not value:
        if required:
            raise ConfigError(f"{option}: required, and may not be blank")
        return value
    if len(value) > FIELD_MAX:
        raise ConfigError(f"{option}: at most {FIELD_MAX} characters")
    if not any(ch.isalpha() for ch in value) or any(not ch.isprintable() for ch in value):
        raise ConfigError(f"{option}: expected a name in letters, got {text!r}")
    return value


def reference(text: str) -> str:
    """``--ref``: a reference as step 1 prints it (20 characters ``a-z``, ``2-7``; or ``N``
    and 32 hex digits for the person record a notice created)."""
    value = text.strip()
    if not _REFERENCE.fullmatch(value):
        raise ConfigError(
            f"--ref: not a record reference: expected one as a hit lists it, 20 characters "
            f"a-z and 2-7 (or N and 32 hex digits for a notice's person), got {text!r}"
        )
    return value


def request(args: argparse.Namespace, *, today: dt.date) -> query_pb2.Query:
    """The step-1 (or step-2) query ``ncbsim query`` describes, every field checked (a
    biometric probe's size too: :func:`ncbsim.biosearch.read_probe`)."""
    if args.kind == "document":
        return query_pb2.Query(
            document=query_pb2.DocumentQuery(
                number=document_number(args.number), issuer=issuer(args.issuer)
            )
        )
    if args.kind == "person":
        return query_pb2.Query(
            person=query_pb2.PersonQuery(
                surname=name(args.surname, "--surname", required=True),
                given_names=name(args.given_names, "--given-names", required=False),
                date_of_birth=date_of_birth(args.dob, today=today),
            )
        )
    if args.kind == "vehicle":
        if not args.vin.strip() and not args.plate.strip():
            raise ConfigError("vehicle: give --vin, --plate or both")
        return query_pb2.Query(
            vehicle=query_pb2.VehicleQuery(
                vin=vin(args.vin) if args.vin.strip() else "",
                plate=plate(args.plate) if args.plate.strip() else "",
            )
        )
    if args.kind in biometrics.MODALITIES:
        probe = biosearch.read_probe(args.probe, args.kind)
        return biosearch.search(args.kind, probe, max_candidates(args.max))
    if args.kind == "confirm":
        ref = reference(args.ref)
        return biosearch.confirm(
            ref, args.modality, biosearch.read_probe(args.probe, args.modality)
        )
    return query_pb2.Query(fetch=query_pb2.FetchQuery(ref=reference(args.ref)))


def max_candidates(value: int) -> int:
    """``--max``: candidates wanted, 1 to the owners' cap (0: the owner's default)."""
    if not 0 <= value <= biometrics.MAX_CANDIDATES:
        raise ConfigError(
            f"--max: from 1 to {biometrics.MAX_CANDIDATES} candidates (an owner returns no "
            f"more, Prüm), got {value}"
        )
    return value
