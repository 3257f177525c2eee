"""Human and JSON output for ``ncbsim query``: what a trainer shows a room."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable
from typing import Any

from google.protobuf.json_format import MessageToDict
from rich.console import Console, Group
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from ncbsim import biosearch
from ncbsim.client import ALL, Answer, BureauClient, Outcome
from ncbsim.countries import country
from ncbsim.errors import DirectoryError, UnknownCountry
from ncbsim.eventbus import EventBus
from ncbsim.pki import PkiDir
from ncbsim.v2 import query_pb2, records_pb2

_STYLE = {
    Outcome.HIT: "bold green",
    Outcome.RECORD: "bold green",
    Outcome.NO_HIT: "dim",
    Outcome.NOT_FOUND: "dim",
    Outcome.NO_ANSWER: "bold yellow",
    Outcome.ERROR: "bold red",
    Outcome.FAILED: "bold red",
}


_HANDLING_NOTES = {
    "H0": "may be used in criminal proceedings",
    "H1": "not for criminal proceedings without the owner's permission",
    "H2": "not to be disseminated without the owner's permission",
    "H3": "other restrictions: ask the owner before further use",
}


def handling_code(code: int) -> str:
    """``H0`` to ``H3`` for a wire HandlingCode, ``""`` when the owner attached none."""
    if code == records_pb2.HANDLING_CODE_UNSPECIFIED:
        return ""
    name = records_pb2.HandlingCode.Name(code) if code in records_pb2.HandlingCode.values() else ""
    return name.removeprefix("HANDLING_CODE_")


# How each field of a released record is shown: (field, label, how to render the value).
# ``ref`` heads the block; a field the owner left empty is left out.
_DOC_TYPES = {"P": "passport", "PD": "diplomatic passport", "PS": "service passport"}
_SEXES = {"F": "female", "M": "male", "X": "unspecified"}
_FIELDS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "document": (
        ("number", "Document number", "text"),
        ("doc_type", "Document type", "doc_type"),
        ("issuer", "Issuing state", "country"),
        ("status", "Status", "word"),
        ("reported_on", "Reported on", "date"),
        ("surname", "Surname", "text"),
        ("given_names", "Given names", "text"),
        ("date_of_birth", "Date of birth", "date"),
        ("sex", "Sex", "sex"),
        ("nationality", "Nationality", "country"),
        ("date_of_expiry", "Date of expiry", "date"),
        ("mrz", "MRZ", "text"),
    ),
    "person": (
        ("flag", "Status", "word"),  # wanted or missing
        ("surname", "Surname", "text"),
        ("given_names", "Given names", "text"),
        ("date_of_birth", "Date of birth", "date"),
        ("sex", "Sex", "sex"),
        ("nationality", "Nationality", "country"),
        ("summary", "Summary", "text"),
    ),
    "vehicle": (
        ("vin", "VIN", "text"),
        ("plate", "Plate", "text"),
        ("registration_country", "Registered in", "country"),
        ("make", "Make", "text"),
        ("model", "Model", "text"),
        ("year", "Model year", "year"),
        ("colour", "Colour", "text"),
        ("status", "Status", "word"),
        ("reported_on", "Reported on", "date"),
    ),
}


def _date(value: str) -> str:
    """ISO 8601 as the records hold it; anything else as the owner wrote it."""
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        return value


def _country(value: str) -> str:
    try:
        return f"{value} ({country(value).name})"
    except UnknownCountry:
        return value


def _spelled(names: dict[str, str]) -> Callable[[str], str]:
    return lambda value: f"{value} ({names[value]})" if value in names else value


_SHOWN: dict[str, Callable[[str], str]] = {
    "text": str,
    "date": _date,
    "country": _country,
    "doc_type": _spelled(_DOC_TYPES),
    "sex": _spelled(_SEXES),
    "word": lambda value: value.replace("_", " "),
    "year": lambda value: "" if value == "0" else value,  # 0: the owner gave none
}


def handling_text(code: int) -> str:
    """A record's handling code and what it asks of the requester, in words."""
    name = handling_code(code)
    if not name:
        return f"none (handle as H0: {_HANDLING_NOTES['H0']})"
    return f"{name}: {_HANDLING_NOTES[name]}"


def record_fields(record: query_pb2.Record) -> list[tuple[str, str]]:
    """A released record as (label, value) lines for a reader: every field the owner
    filled, the handling code first, dates and codes spelled out."""
    kind = record.WhichOneof("record")
    if kind is None:
        return []
    body = getattr(record, kind)
    lines = [("Handling", handling_text(record.handling))]
    for name, label, how in _FIELDS[kind]:
        if shown := _SHOWN[how](str(getattr(body, name)).strip()):
            lines.append((label, shown))
    return lines


def record_view(bureau: str, record: query_pb2.Record) -> Group:
    """A released record as a heading and two columns, label and value, for the terminal.

    Values are the owner's text, shown as text (never rich markup); long ones wrap in
    their column, so the block fits an 80-column terminal.
    """
    kind = record.WhichOneof("record") or "record"
    ref = getattr(record, kind).ref if kind != "record" else ""
    heading = Text.assemble((bureau, "bold"), f" released {kind} ", (ref, "bold"))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, style="bold")
    grid.add_column(overflow="fold")
    for label, value in record_fields(record):
        style = "bold yellow" if label == "Handling" and handling_code(record.handling) else ""
        grid.add_row(label, Text(value, style=style))
    return Group(heading, Padding(grid, (0, 0, 0, 2), expand=False))


def released(answer: Answer) -> query_pb2.Record | None:
    """The record an answer released: a fetch's, or a confirmed candidate's person."""
    response = answer.response
    if response is not None and response.HasField("record"):
        return response.record
    if response is not None and response.confirmation.HasField("record"):
        return response.confirmation.record
    return None


def second_steps(query: query_pb2.Query, answer: Answer) -> list[query_pb2.Query]:
    """Step 2 for every hit of ``answer`` to ``query``: a fetch of each match, or the
    confirmation of each candidate with the search's own probe."""
    if query.WhichOneof("query") == "biometric":
        search = query.biometric
        return [
            query_pb2.Query(
                confirm=query_pb2.ConfirmQuery(
                    ref=c.ref, modality=search.modality, template=search.template
                )
            )
            for c in biosearch.candidates(answer)
            if c.ref  # a hit-only user's candidates carry none
        ]
    return [query_pb2.Query(fetch=query_pb2.FetchQuery(ref=m.ref)) for m in answer.matches if m.ref]


def answer_dict(answer: Answer) -> dict[str, Any]:
    """An answer as plain JSON-ready data."""
    data: dict[str, Any] = {
        "bureau": answer.bureau,
        "outcome": answer.outcome.value,
        "latency_ms": round(answer.latency_ms, 2),
        "message_id": answer.message_id,
    }
    if answer.detail:
        data["detail"] = answer.detail
    if answer.matches:
        data["matches"] = [_match_dict(m) for m in answer.matches]
    if biosearch.candidates(answer):
        data["candidates"] = [
            {"rank": c.rank, "ref": c.ref, "score": round(c.score, 3)}
            for c in biosearch.candidates(answer)
            if c.ref  # a hit-only user's candidates carry none
        ]
    if answer.response is not None and answer.response.HasField("confirmation"):
        confirmation = answer.response.confirmation
        data["confirmed"] = confirmation.confirmed
        data["score"] = round(confirmation.score, 3)
    if (record := released(answer)) is not None:
        data["record"] = MessageToDict(record, preserving_proto_field_name=True)
        data["record"].pop("handling", None)
        if code := handling_code(record.handling):
            data["handling"] = code
    return data


def _match_dict(match: query_pb2.Match) -> dict[str, Any]:
    data: dict[str, Any] = {"ref": match.ref, "score": round(match.score, 3)}
    if code := handling_code(match.handling):
        data["handling"] = code
    return data


def _with_handling(ref: str, handling: int) -> str:
    code = handling_code(handling)
    return f"{ref} [{code}]" if code else ref


async def run_query(
    args: argparse.Namespace,
    query: query_pb2.Query,
    to: list[str],
    *,
    pki: PkiDir,
    gateway: str,
    bus: EventBus | None = None,
) -> int:
    """Run ``ncbsim query`` with a checked ``query`` and recipients ``to``, as
    ``args.as_bureau`` whose keys are in ``pki``, through ``gateway``.

    Exit 0 when every bureau answered, 1 otherwise (a no-answer, a failure, an error, or
    ``ALL`` that cannot be expanded because the gateway is down and no directory is held).
    """
    async with BureauClient.open(pki, args.as_bureau, gateway, bus=bus) as client:
        try:
            if len(to) == 1 and to != [ALL]:
                answers = [await client.query(query, to[0], timeout=args.timeout)]
            else:
                answers = await client.multi_query(query, to, timeout=args.timeout)
        except DirectoryError as exc:  # ALL, with no directory held and no gateway to ask
            _print_unexpanded(args, str(exc))
            return 1
        fetched: list[Answer] = []
        if args.fetch:
            for answer in answers:
                for second in second_steps(query, answer):
                    fetched.append(await client.query(second, answer.bureau, timeout=args.timeout))
    if args.json:
        print(
            json.dumps(
                {
                    "as": args.as_bureau,
                    "kind": args.kind,
                    "answers": [answer_dict(a) for a in answers],
                    "fetched": [answer_dict(a) for a in fetched],
                },
                indent=2,
            )
        )
    else:
        _print_human(args, ",".join(to), answers, fetched)
    failed = {Outcome.NO_ANSWER, Outcome.FAILED, Outcome.ERROR}
    return 1 if any(a.outcome in failed for a in [*answers, *fetched]) else 0


def _print_unexpanded(args: argparse.Namespace, reason: str) -> None:
    if args.json:
        shown = {"as": args.as_bureau, "kind": args.kind, "answers": [], "fetched": []}
        print(json.dumps({**shown, "error": reason}, indent=2))
    else:
        print(f"ncbsim: {reason}", file=sys.stderr)


def _answers_table(answers: list[Answer], *, step2: bool = False) -> Table:
    table = Table(show_header=True, header_style="bold")
    for column in ("bureau", "answer", "reference" if step2 else "references", "ms"):
        table.add_column(column, justify="right" if column == "ms" else "left")
    for answer in answers:
        refs = ", ".join(_with_handling(m.ref, m.handling) for m in answer.matches)
        if biosearch.candidates(answer):
            refs = "\n".join(
                f"{c.rank}. {c.ref}  {c.score:.3f}" for c in biosearch.candidates(answer)
            )
        confirming = answer.response is not None and answer.response.HasField("confirmation")
        if confirming and answer.response is not None:
            confirmation = answer.response.confirmation
            said = "confirmed" if confirmation.confirmed else "not confirmed"
            refs = f"{said}, score {confirmation.score:.3f}"
        if (record := released(answer)) is not None and (kind := record.WhichOneof("record")):
            person = _with_handling(getattr(record, kind).ref, record.handling)
            refs = f"{refs}: person {person}" if confirming else person
        table.add_row(
            answer.bureau,
            f"[{_STYLE[answer.outcome]}]{answer.outcome.value.replace('_', '-')}[/]",
            Text(refs or answer.detail),  # the bureau's or gateway's words: never markup
            f"{answer.latency_ms:.1f}",
        )
    return table


def _print_human(
    args: argparse.Namespace, to: str, answers: list[Answer], fetched: list[Answer]
) -> None:
    console = Console()
    console.print(f"[bold]{args.as_bureau}[/] asks [bold]{to}[/]: {args.kind} query")
    console.print(_answers_table(answers))
    if fetched:
        console.print("\n[bold]step 2[/]: the records behind the hits")
        console.print(_answers_table(fetched, step2=True))
    for answer in [*answers, *fetched]:
        if (record := released(answer)) is not None:
            console.print()
            console.print(record_view(answer.bureau, record))
