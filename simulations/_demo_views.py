"""The parties' views for ``ncbsim demo``: what each one really saw, drawn in 80 columns.

The gathering is :mod:`ncbsim.simulations._demo_observer`'s; the functions here draw one
panel per party, four to a step. Every value is put in :class:`rich.text.Text`, never
parsed as markup, so a name with brackets in it prints as it is.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TextIO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ncbsim import biometrics, envelope
from ncbsim.client import (
    Answer,
    Outcome,
)
from ncbsim.envelope import Header
from ncbsim.errors import NcbsimError
from ncbsim.events import Event
from ncbsim.node.records import Control, Document, Person, Vehicle
from ncbsim.simulations._demo_observer import Exchange, Row
from ncbsim.v2 import query_pb2

MAX_WIDTH = 80
Pairs = list[tuple[str, str]]

_OUTCOME_STYLE = {
    Outcome.HIT: "bold green",
    Outcome.RECORD: "bold green",
    Outcome.NO_HIT: "",
    Outcome.NOT_FOUND: "",
    Outcome.NO_ANSWER: "bold yellow",
    Outcome.ERROR: "bold red",
    Outcome.FAILED: "bold red",
}


# ---------------------------------------------------------------- drawing


def make_console(file: TextIO | None = None) -> Console:
    """A console at most 80 columns wide (narrower if the terminal is)."""
    width = min(shutil.get_terminal_size((MAX_WIDTH, 24)).columns, MAX_WIDTH)
    return Console(file=file, width=width, highlight=False, soft_wrap=False)


def outcome_name(outcome: Outcome) -> str:
    """``no-hit`` for ``Outcome.NO_HIT``: how a trainer says it."""
    return outcome.value.replace("_", "-")


def utc_time(at_ms: int) -> str:
    """``HH:MM:SS UTC`` of a time in ms since the epoch."""
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%H:%M:%S UTC")


def utc_day(at_ms: int) -> str:
    """``YYYY-MM-DD HH:MM UTC``: a post's expiry, which may be tomorrow."""
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def short_id(hex_id: str) -> str:
    """The first 16 hex digits of a 32-digit id, enough to tell messages apart."""
    return hex_id[:16] + "…" if len(hex_id) > 16 else hex_id


def fields(pairs: Pairs, *, key_width: int = 11) -> Table:
    """``key  value`` lines; a long value wraps under itself, not under the key."""
    grid = Table.grid(padding=(0, 1), expand=True)
    grid.add_column(width=key_width, no_wrap=True, style="bold")
    grid.add_column(ratio=1, overflow="fold")
    for key, value in pairs:
        grid.add_row(Text(key), Text(value))
    return grid


def query_fields(query: query_pb2.Query) -> list[tuple[str, str]]:
    """The plaintext fields of a query (never its response key or padding)."""
    which = query.WhichOneof("query")
    if which == "document":
        doc = query.document
        return [("kind", "document (step 1)"), ("number", doc.number), ("issuer", doc.issuer)]
    if which == "person":
        person = query.person
        pairs = [("kind", "person (step 1)"), ("surname", person.surname)]
        if person.given_names:
            pairs.append(("given", person.given_names))
        return [*pairs, ("born", person.date_of_birth)]
    if which == "vehicle":
        return [("kind", "vehicle (step 1)"), ("vin", query.vehicle.vin)]
    if which == "fetch":
        return [("kind", "fetch (step 2)"), ("ref", query.fetch.ref)]
    if which in ("biometric", "confirm"):
        return biometric_fields(query)
    return [("kind", "(empty query)")]


def biometric_fields(query: query_pb2.Query) -> list[tuple[str, str]]:
    """A biometric search's or confirmation's fields: the probe is biometric data, so its
    size is shown, never its bytes."""
    if query.WhichOneof("query") == "biometric":
        search = query.biometric
        asked = search.max_candidates or biometrics.DEFAULT_CANDIDATES
        return [
            ("kind", f"{_modality(search.modality)} search (step 1)"),
            ("probe", f"{len(search.template)} bytes, not shown"),
            ("max", f"{asked} candidates"),
        ]
    confirm = query.confirm
    return [
        ("kind", f"{_modality(confirm.modality)} confirm (step 2)"),
        ("ref", confirm.ref),
        ("probe", f"{len(confirm.template)} bytes, not shown"),
    ]


def _modality(wire: int) -> str:
    try:
        return biometrics.from_wire(wire)
    except NcbsimError:
        return "biometric"


def confirmation_text(confirmation: query_pb2.Confirmation | None) -> str:
    """``confirmed, score 0.712`` or ``not confirmed, score 0.120``."""
    if confirmation is None:
        return "no answer"
    word = "confirmed" if confirmation.confirmed else "not confirmed"
    return f"{word}, score {confirmation.score:.3f}"


def candidate_table(candidates: Iterable[query_pb2.Candidate]) -> Table:
    """A candidate list: rank, reference and score, best first."""
    table = Table(box=box.SIMPLE, show_edge=False, pad_edge=False, expand=True)
    table.add_column("#", justify="right")
    table.add_column("candidate ref", no_wrap=True)
    table.add_column("score", justify="right")
    for c in candidates:
        table.add_row(str(c.rank), Text(c.ref or "(hit only)"), f"{c.score:.3f}")
    return table


def record_fields(record: Document | Person | Vehicle) -> list[tuple[str, str]]:
    """The fields of a record a trainer points at."""
    if isinstance(record, Document):
        return [
            ("ref", record.ref),
            ("document", f"{record.number} {record.issuer} ({record.doc_type})"),
            ("holder", f"{record.surname or '-'}, {record.given_names or '-'}"),
            ("status", f"{record.status} ({record.reported_on})"),
        ]
    if isinstance(record, Person):
        return [
            ("ref", record.ref),
            ("name", f"{record.surname}, {record.given_names}"),
            ("born", record.date_of_birth),
            ("flag", record.flag),
        ]
    return [
        ("ref", record.ref),
        ("vehicle", f"{record.make} {record.model} {record.year}"),
        ("vin", record.vin),
        ("status", record.status),
    ]


def control_text(control: Control) -> str:
    """Who may see a record, in words."""
    if control.access == "open":
        return "every bureau"
    who = ", ".join(sorted(control.bureaus))
    return f"only {who}" if control.access == "allow" else f"all but {who}"


def header_fields(header: Header, *, ciphertext: int, total: int) -> list[tuple[str, str]]:
    """What the gateway reads: the routing header in clear, and sizes."""
    return [
        ("from", header.sender),
        ("to", header.recipient),
        ("kind", "query request"),
        ("message id", short_id(header.message_hex)),
        ("expires", utc_time(header.expires_at_ms)),
        ("ciphertext", f"{ciphertext:,} bytes"),
        ("envelope", f"{total:,} bytes"),
    ]


def answer_fields(answer: Answer) -> list[tuple[str, str]]:
    """One bureau's answer as the asking bureau reads it."""
    pairs = [("answer", outcome_name(answer.outcome))]
    for match in answer.matches:
        pairs += [("ref", match.ref), ("score", f"{match.score:.3f}")]
    response = answer.response
    if response is not None and response.HasField("candidates"):
        for c in response.candidates.candidates:
            pairs.append((f"#{c.rank}", f"{c.ref or '(hit only)'} {c.score:.3f}"))
    if response is not None and response.HasField("confirmation"):
        pairs.append(("step 2", confirmation_text(response.confirmation)))
        if response.confirmation.record.WhichOneof("record"):
            pairs.append(("record", str(response.confirmation.record.WhichOneof("record"))))
    if response is not None and response.HasField("record"):
        pairs.append(("record", str(response.record.WhichOneof("record") or "")))
    if answer.detail:
        pairs.append(("detail", answer.detail))
    return pairs


def merged_reply(answers: Iterable[Answer]) -> Table:
    """A multi-bureau reply: one row per bureau, every bureau listed."""
    table = Table(box=box.SIMPLE, show_edge=False, pad_edge=False, expand=True)
    table.add_column("bureau")
    table.add_column("answer")
    table.add_column("ms", justify="right")
    for answer in answers:
        table.add_row(
            answer.bureau,
            Text(outcome_name(answer.outcome), style=_OUTCOME_STYLE[answer.outcome]),
            f"{answer.latency_ms:.0f}",
        )
    return table


def panel(title: str, *body: RenderableType | Pairs, style: str = "") -> Panel:
    """A party's view: a titled box of lines (pairs become ``key  value`` lines)."""
    parts: list[RenderableType] = []
    for part in body:
        parts.append(fields(part) if isinstance(part, list) else part)
    return Panel(
        Group(*parts),
        title=Text(title, style="bold"),
        title_align="left",
        border_style=style,
        box=box.ROUNDED,
        safe_box=True,
    )


def views(asker: Panel, gateway: Panel, answerer: Panel, reply: Panel) -> Table:
    """The four parties side by side, two by two."""
    grid = Table.grid(expand=True)
    grid.add_column(ratio=1)
    grid.add_column(ratio=1)
    grid.add_row(asker, gateway)
    grid.add_row(answerer, reply)
    return grid


def check_line(passed: bool, text: str) -> Text:
    """``PASS  text`` or ``FAIL  text``."""
    line = Text("  ")
    line.append("PASS" if passed else "FAIL", style="bold green" if passed else "bold red")
    line.append(f"  {text}")
    return line


def narration(text: str) -> Text:
    """A step's explanation for the room."""
    return Text(text, style="italic")


# ---------------------------------------------------------------- the four parties


def asker_panel(asker: str, query: query_pb2.Query, to: str, *extra: Pairs) -> Panel:
    """The asking bureau's plaintext query."""
    return panel(
        f"{asker} asks {to} (plaintext)",
        query_fields(query),
        [("", f"sealed to {to}, signed {asker}")],
        *extra,
        style="cyan",
    )


def event_text(event: Event | None) -> str:
    """One event as the gateway's panel shows it: kind, outcome or reason, time taken."""
    if event is None:
        return "none seen!"
    view = event.view
    what = view.get("outcome") or view.get("reason") or view.get("status") or ""
    took = f", {view['elapsed_ms']:.1f} ms" if isinstance(view.get("elapsed_ms"), float) else ""
    return f"{event.kind} {what}{took}"


def gateway_panel(
    sent: envelope.Envelope, row: Row | None, *extra: Pairs, event: Event | None = None
) -> Panel:
    """The gateway's view of one envelope: the header as it parses it, sizes, its audit
    row, and the event its stream emitted for it (when one was looked for)."""
    header = envelope.unverified_header(sent)
    audit = [("audit", "no row!" if row is None else f"{row['outcome']}, {row['status']}")]
    if row is not None and row["response_bytes"] != "0":
        audit.append(("reply", f"{int(row['response_bytes']):,} bytes, sealed"))
    if event is not None:
        audit.append(("event", event_text(event)))
    pairs = header_fields(header, ciphertext=len(sent.sealed), total=sent.ByteSize())
    return panel("gateway sees", pairs + audit, *extra, style="yellow")


def post_gateway_panel(row: Row | None, *extra: Pairs) -> Panel:
    """The gateway's view of one copy of a post, from its audit rows: the header in clear,
    the sealed size, and what became of the copy. ``row`` is the copy's last row."""
    if row is None:
        return panel("gateway sees", [("audit", "no row!")], *extra, style="yellow")
    pairs = [
        ("from", row["sender"]),
        ("to", row["recipient"]),
        ("kind", row["kind"].replace("_", " ")),
        ("message id", short_id(row["message_id"])),
        ("post id", short_id(row["correlation_id"])),
        ("expires", utc_day(int(row["expires_at_ms"]))),
        ("sealed", f"{int(row['request_bytes']):,} bytes"),
        ("audit", f"{row['rpc']} {row['outcome']}, {row['status']}"),
    ]
    return panel("gateway sees", pairs, *extra, style="yellow")


def answerer_panel(
    code: str,
    opened: query_pb2.Query | None,
    record: Document | Person | Vehicle | None,
    *extra: Pairs,
) -> Panel:
    """What ``code``'s node reads: the decrypted query, and the record it matched."""
    body: list[Pairs] = [
        [("decrypt", "refused: does not verify")] if opened is None else query_fields(opened)
    ]
    if record is not None:
        body += [[("matched", "")], record_fields(record)]
    return panel(f"{code} decrypts (as its node)", *body, *extra, style="magenta")


def reply_panel(asker: str, to: str, *body: Pairs | Table) -> Panel:
    """What the asking bureau gets back, verified and opened."""
    return panel(f"{asker} gets from {to}", *body, style="cyan")


def exchange_views(
    asker: str,
    query: query_pb2.Query,
    ex: Exchange,
    record: Document | Person | Vehicle | None,
    *,
    asked: Pairs | None = None,
    answered: Pairs | None = None,
    reply: Pairs | None = None,
) -> tuple[Panel, Panel, Panel, Panel]:
    """The four views of one exchange; ``asked`` and ``answered`` add lines to the asking
    and answering bureaus' panels, ``reply`` replaces the answer's lines."""
    to = ex.answer.bureau
    return (
        asker_panel(asker, query, to, *([asked] if asked else [])),
        gateway_panel(ex.sealed.envelope, ex.gateway_row, event=ex.gateway_event),
        answerer_panel(to, ex.opened, record, *([answered] if answered else [])),
        reply_panel(asker, to, reply if reply is not None else answer_fields(ex.answer)),
    )


def show(
    console: Console,
    title: str,
    intro: str,
    panels: tuple[Panel, Panel, Panel, Panel] | None,
    checks: Iterable[tuple[str, bool]],
) -> None:
    """Print one step: title, narration, the four views (if any), the checks."""
    console.rule(Text(title, style="bold"))
    console.print(narration(intro))
    if panels is not None:
        console.print(views(*panels))
    for text, ok in checks:
        console.print(check_line(ok, text))
    console.print()


def skipped(console: Console, title: str, reason: str) -> None:
    """Print a step that did not run, and why."""
    console.rule(Text(title, style="bold"))
    console.print(Text(f"  skipped: {reason}"))
    console.print()


def skip_line(title: str) -> Text:
    """``SKIP  title``, in the summary."""
    line = Text("  ")
    line.append("SKIP", style="bold yellow")
    line.append(f"  {title}")
    return line
