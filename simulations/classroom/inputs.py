"""What the classroom page may send, checked before anything reaches the network.

Every request body is a JSON object from a browser: anything may be in it. Each check
returns the value to use or raises :class:`InputError`, whose text the page shows as it is
(the server replies 400 with it). The query fields go through the checks ``ncbsim query``
uses (:mod:`ncbsim.simulations.query_input`), so the page and the command line accept and
refuse the same values; their messages name the form's fields instead of the options.

A :class:`InputError` also carries a short ``field`` name: the server logs that, never the
value, since a value typed in the form may be a query term.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Mapping
from typing import Any

from ncbsim.errors import ConfigError
from ncbsim.simulations import query_input
from ncbsim.v2 import messages_pb2, query_pb2

ALL = "ALL"
KINDS = ("document", "person", "vehicle")
FAULTS = ("kill", "pause", "partition", "slow")
MAX_BODY = 16_384
"""Largest request body the server reads, in bytes."""
MAX_TEXT = 500
_OPTION = re.compile(r"^--([a-z-]+): ")
_FIELD_NAMES = {
    "dob": "date of birth",
    "given-names": "given names",
    "number": "document number",
}
_HEX_ID = re.compile(r"[0-9a-f]{32}")


class InputError(ValueError):
    """A request the classroom refuses; ``str()`` is the sentence the page shows."""

    def __init__(self, text: str, field: str = "", status: int = 400) -> None:
        super().__init__(text)
        self.field = field
        self.status = status


def _checked(field: str, check: Any, *args: Any, **kwargs: Any) -> Any:
    """``check(*args)``, its ConfigError as a InputError naming the form's field."""
    try:
        return check(*args, **kwargs)
    except ConfigError as exc:
        text = str(exc)
        match = _OPTION.match(text)
        if match:
            name = _FIELD_NAMES.get(match.group(1), match.group(1).replace("-", " "))
            text = f"{name}: {text[match.end() :]}"
        raise InputError(text, field) from None


def body_object(data: object) -> Mapping[str, Any]:
    """The request body, which must be one JSON object."""
    if not isinstance(data, dict):
        raise InputError("the request must be one JSON object", "body")
    return data


def text(body: Mapping[str, Any], key: str, *, required: bool = True, limit: int = 64) -> str:
    """``body[key]`` as a stripped string of at most ``limit`` characters."""
    value = body.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InputError(f"{key}: expected text", key)
    value = value.strip()
    if required and not value:
        raise InputError(f"{key}: required", key)
    if len(value) > limit:
        raise InputError(f"{key}: at most {limit} characters", key)
    if any(not ch.isprintable() for ch in value):
        raise InputError(f"{key}: printable characters only", key)
    return value


def bureau(body: Mapping[str, Any], key: str, known: Collection[str]) -> str:
    """A bureau code of this network."""
    code = text(body, key, limit=8).upper()
    if code not in known:
        raise InputError(f"{key}: {code} is not a bureau of this network", key)
    return code


def recipients(body: Mapping[str, Any], key: str, known: Collection[str], asker: str) -> list[str]:
    """``ALL`` (every bureau but the asker), one code, or a list of codes of this network."""
    value = body.get(key)
    if isinstance(value, list):
        codes = [bureau({key: v}, key, known) for v in value]
        if not codes:
            raise InputError(f"{key}: name at least one bureau, or ALL", key)
    elif isinstance(value, str) and value.strip().upper() == ALL:
        codes = [c for c in known if c != asker]
    else:
        codes = [bureau(body, key, known)]
    if asker in codes:
        raise InputError(f"{key}: {asker} cannot send to itself", key)
    return list(dict.fromkeys(codes))


def query(body: Mapping[str, Any], *, today: dt.date) -> query_pb2.Query:
    """The step-1 query the form describes, every field checked as ``ncbsim query`` does."""
    kind = text(body, "kind", limit=16)
    if kind == "document":
        return query_pb2.Query(
            document=query_pb2.DocumentQuery(
                number=_checked("number", query_input.document_number, text(body, "number")),
                issuer=_checked("issuer", query_input.issuer, text(body, "issuer")),
            )
        )
    if kind == "person":
        return query_pb2.Query(person=person(body, today=today))
    if kind == "vehicle":
        vin = text(body, "vin", required=False)
        plate = text(body, "plate", required=False)
        if not vin and not plate:
            raise InputError("vehicle: give a VIN or a plate", "vin")
        return query_pb2.Query(
            vehicle=query_pb2.VehicleQuery(
                vin=_checked("vin", query_input.vin, vin) if vin else "",
                plate=_checked("plate", query_input.plate, plate) if plate else "",
            )
        )
    raise InputError(f"kind: expected one of {', '.join(KINDS)}", "kind")


def person(body: Mapping[str, Any], *, today: dt.date) -> query_pb2.PersonQuery:
    """Surname (required), given names and date of birth, checked."""
    return query_pb2.PersonQuery(
        surname=_checked(
            "surname", query_input.name, text(body, "surname"), "--surname", required=True
        ),
        given_names=_checked(
            "given_names",
            query_input.name,
            text(body, "given_names", required=False),
            "--given-names",
            required=False,
        ),
        date_of_birth=_checked(
            "date_of_birth",
            query_input.date_of_birth,
            text(body, "date_of_birth"),
            today=today,
        ),
    )


def subject(body: Mapping[str, Any], *, today: dt.date) -> messages_pb2.NoticeSubject:
    """A notice's subject: a person, checked as a person query is."""
    who = person(body, today=today)
    return messages_pb2.NoticeSubject(
        surname=who.surname, given_names=who.given_names, date_of_birth=who.date_of_birth
    )


def notice_id(body: Mapping[str, Any]) -> bytes:
    """A notice id: 32 hex digits."""
    value = text(body, "notice_id", limit=64).lower()
    if not _HEX_ID.fullmatch(value):
        raise InputError("notice_id: expected the notice's id, 32 hex digits", "notice_id")
    return bytes.fromhex(value)


def choice(body: Mapping[str, Any], key: str, allowed: Collection[str]) -> str:
    """One of ``allowed``."""
    value = text(body, key, limit=32)
    if value not in allowed:
        raise InputError(f"{key}: expected one of {', '.join(allowed)}", key)
    return value


def step(body: Mapping[str, Any], total: int) -> int:
    """A lesson step's index, 0 to ``total - 1``."""
    value = body.get("step")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < total:
        raise InputError(f"step: expected a step number from 0 to {total - 1}", "step")
    return value
