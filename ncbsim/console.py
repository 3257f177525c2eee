"""Human and JSON output for ``ncbsim query``: what a trainer shows a room."""

from __future__ import annotations

import argparse
import json
from typing import Any

from google.protobuf.json_format import MessageToDict
from rich.console import Console
from rich.table import Table

from ncbsim.client import Answer, BureauClient, Outcome
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


def build_query(args: argparse.Namespace) -> query_pb2.Query:
    """The step-1 (or step-2) query the command line describes."""
    if args.kind == "document":
        return query_pb2.Query(
            document=query_pb2.DocumentQuery(number=args.number, issuer=args.issuer)
        )
    if args.kind == "person":
        return query_pb2.Query(
            person=query_pb2.PersonQuery(
                surname=args.surname, given_names=args.given_names, date_of_birth=args.dob
            )
        )
    if args.kind == "vehicle":
        return query_pb2.Query(vehicle=query_pb2.VehicleQuery(vin=args.vin, plate=args.plate))
    return query_pb2.Query(fetch=query_pb2.FetchQuery(ref=args.ref))


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
    if answer.response is not None and answer.response.HasField("record"):
        record = answer.response.record
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


async def run_query(args: argparse.Namespace, *, gateway: str) -> int:
    """Run ``ncbsim query``; exit 0 when every bureau answered, 1 otherwise."""
    query = build_query(args)
    to = [c for c in args.to.split(",") if c]
    async with BureauClient.open(PkiDir(args.workdir), args.as_bureau, gateway) as client:
        if len(to) == 1 and to != ["ALL"]:
            answers = [await client.query(query, to[0], timeout=args.timeout)]
        else:
            answers = await client.multi_query(query, to, timeout=args.timeout)
        fetched: list[Answer] = []
        if args.fetch:
            for answer in answers:
                for match in answer.matches:
                    step2 = query_pb2.Query(fetch=query_pb2.FetchQuery(ref=match.ref))
                    fetched.append(await client.query(step2, answer.bureau, timeout=args.timeout))
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
        _print_human(args, answers, fetched)
    failed = {Outcome.NO_ANSWER, Outcome.FAILED, Outcome.ERROR}
    return 1 if any(a.outcome in failed for a in [*answers, *fetched]) else 0


def _print_human(args: argparse.Namespace, answers: list[Answer], fetched: list[Answer]) -> None:
    console = Console()
    console.print(f"[bold]{args.as_bureau}[/] asks [bold]{args.to}[/]: {args.kind} query")
    table = Table(show_header=True, header_style="bold")
    for column in ("bureau", "answer", "references", "ms"):
        table.add_column(column, justify="right" if column == "ms" else "left")
    for answer in answers:
        refs = ", ".join(_with_handling(m.ref, m.handling) for m in answer.matches)
        refs = refs or answer.detail
        table.add_row(
            answer.bureau,
            f"[{_STYLE[answer.outcome]}]{answer.outcome.value.replace('_', '-')}[/]",
            refs,
            f"{answer.latency_ms:.1f}",
        )
    console.print(table)
    for answer in fetched:
        console.print(f"\n[bold]step 2[/] from {answer.bureau}: {answer.outcome.value}")
        if answer.response is not None and answer.response.HasField("record"):
            released = answer.response.record
            if code := handling_code(released.handling):
                console.print(
                    f"  [bold yellow]handling {code}[/]: {_HANDLING_NOTES[code]}", highlight=False
                )
            record = MessageToDict(released, preserving_proto_field_name=True)
            record.pop("handling", None)
            for kind, fields in record.items():
                console.print(f"  [bold]{kind}[/]")
                for key, value in fields.items():
                    text = str(value).replace("\n", "\n" + " " * 20)
                    console.print(f"    {key:15} {text}", highlight=False)
