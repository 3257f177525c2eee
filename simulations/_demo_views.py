"""The parties' views for ``ncbsim demo``: what each one really saw, drawn in 80 columns.

:class:`Observer` gathers them from the running network: it sends as the asking bureau
through the gateway's real RPCs, parses headers as the gateway does, opens requests as
the answering node does, and reads the audit logs and record databases. The functions
after it draw one panel per party, four to a step. Every value is put in
:class:`rich.text.Text`, never parsed as markup, so a name with brackets in it prints as
it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import grpc
from google.protobuf.message import DecodeError
from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ncbsim import auditread, envelope, transport
from ncbsim.client import (
    PEER_MAX_AGE_S,
    Answer,
    Outcome,
    failure_detail,
    failure_outcome,
    open_answer,
    open_deliveries,
    seal_query,
)
from ncbsim.directory import Directory
from ncbsim.envelope import Header
from ncbsim.errors import EnvelopeError
from ncbsim.events import Event
from ncbsim.identity import Identity
from ncbsim.node.records import Control, Document, Person, Vehicle
from ncbsim.node.store import RecordStore
from ncbsim.peers import Peers, RevocationFile
from ncbsim.pki import PkiDir
from ncbsim.simulations import manifest
from ncbsim.simulations.observe_net import NetworkObserver
from ncbsim.v2 import gateway_pb2, gateway_pb2_grpc, query_pb2
from ncbsim.workdir import Workdir

AUDIT_WAIT_S = 3.0
"""How long to wait for an audit row (both audit writers batch for about 50 ms), and for
an event of the gateway's stream."""
STREAM_WAIT_S = 10.0
"""How long to wait for every party's event stream to attach."""

MAX_WIDTH = 80
Pairs = list[tuple[str, str]]
Row = dict[str, str]
"""An audit row: column name to value, as text."""

_OUTCOME_STYLE = {
    Outcome.HIT: "bold green",
    Outcome.RECORD: "bold green",
    Outcome.NO_HIT: "",
    Outcome.NOT_FOUND: "",
    Outcome.NO_ANSWER: "bold yellow",
    Outcome.ERROR: "bold red",
    Outcome.FAILED: "bold red",
}


# ---------------------------------------------------------------- gathering


@dataclass(slots=True)
class Exchange:
    """One envelope sent through the gateway's Query RPC, and what each party saw of it."""

    sealed: envelope.SealedRequest
    answer: Answer
    opened: query_pb2.Query | None
    gateway_row: Row | None
    error: grpc.aio.AioRpcError | None = None
    gateway_event: Event | None = None
    """What the gateway's own event stream said of the envelope (``query.relayed`` or
    ``query.refused``), as the operator's ``Observe`` subscription received it."""


def same_query(a: query_pb2.Query | None, b: query_pb2.Query) -> bool:
    """Whether ``a`` (as a node opened it) asks what ``b`` (as sealed) asked."""
    which = b.WhichOneof("query")
    return (
        a is not None
        and which is not None
        and a.WhichOneof("query") == which
        and (getattr(a, which) == getattr(b, which))
    )


class Observer:
    """Acts as bureau ``asker`` towards the gateway, and reads what every party saw.

    It seals and sends through the gateway's real RPCs, opens requests as the answering
    node does (its identity from the work directory's PKI), and reads the gateway's and
    the nodes' audit logs and the bureaus' record databases.
    """

    def __init__(self, workdir: Path, asker: str, gateway: str, *, timeout_s: float) -> None:
        self.workdir = workdir
        self.timeout_s = timeout_s
        self.pki = PkiDir(workdir)
        self.identity = Identity.load(self.pki, asker, now_ms=int(time.time() * 1000))
        self.channel = transport.gateway_channel(gateway, self.pki.tls(asker))
        self.stub = gateway_pb2_grpc.GatewayServiceStub(self.channel)
        directory = Directory.pinned(self.pki)
        self.peers = Peers(
            directory,
            self.stub,
            revocations=RevocationFile(self.pki, directory),
            max_age_s=PEER_MAX_AGE_S,
        )
        self._stores: dict[str, RecordStore] = {}
        self.stream = NetworkObserver(workdir, kinds=["query."])
        self._seen: dict[tuple[str, str], Event] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start_stream(self, timeout_s: float = STREAM_WAIT_S) -> bool:
        """Subscribe, as the operator, to every party's event stream (ncbsim.observe),
        and wait until each is attached; False if one was not in time."""
        self._tasks = [
            asyncio.create_task(self.stream.run()),
            asyncio.create_task(self._collect()),
        ]
        parties = {"gateway", *(p.bureau for p in manifest.read(self.workdir).procs if p.bureau)}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            sources = self.stream.sources
            if all(party in sources and sources[party].connected for party in parties):
                return True
            await asyncio.sleep(0.05)
        return False

    async def _collect(self) -> None:
        while True:
            for event in await self.stream.next_batch(timeout=1.0):
                self._seen[(event.party, event.message_id)] = event

    async def gateway_event(self, message_hex: str) -> Event | None:
        """The gateway's event for a message id, or None if none came in time."""
        deadline = time.monotonic() + AUDIT_WAIT_S
        while (event := self._seen.get(("gateway", message_hex))) is None:
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.02)
        return event

    async def close(self) -> None:
        """Close the channel, the event streams and the record stores."""
        for task in reversed(self._tasks):  # the reader first, then the streams
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.channel.close()
        for store in self._stores.values():
            store.close()

    def store(self, code: str) -> RecordStore:
        """``code``'s records database, read-only."""
        if code not in self._stores:
            self._stores[code] = RecordStore(Workdir(self.workdir).bureau(code).records)
        return self._stores[code]

    def pick(self, code: str, sql: str) -> list[tuple[str, ...]]:
        """Rows of ``code``'s records database (read-only), to find records worth asking."""
        uri = Workdir(self.workdir).bureau(code).records.resolve().as_uri() + "?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            return [tuple(str(x) for x in row) for row in conn.execute(sql).fetchall()]

    def record(self, code: str, ref: str) -> Document | Person | Vehicle | None:
        """The record behind ``ref`` in ``code``'s database."""
        return self.store(code).fetch(ref) if ref else None

    def open_as(self, code: str, sent: envelope.Envelope) -> query_pb2.Query | None:
        """Open ``sent`` as ``code``'s node does: its identity, verified sender keys."""
        identity = Identity.load(self.pki, code, now_ms=int(time.time() * 1000))
        try:
            opened = envelope.open_request(sent, recipient=identity, senders=self.peers.get)
            return query_pb2.Query.FromString(opened.plaintext)
        except (EnvelopeError, DecodeError):
            return None

    async def gateway_row(self, message_hex: str) -> Row | None:
        """The gateway's audit row for a message id, or None if none appeared in time."""
        return await self._audit_row(Workdir(self.workdir).gateway.audit, message_hex)

    async def node_row(self, code: str, message_hex: str) -> Row | None:
        """``code``'s node's audit row for a message id (outcome, reason, status ...)."""
        return await self._audit_row(Workdir(self.workdir).bureau(code).audit, message_hex)

    async def _audit_row(self, path: Path, message_hex: str) -> Row | None:
        deadline = time.monotonic() + AUDIT_WAIT_S
        while True:
            if path.exists():
                columns, rows = auditread.search(path, auditread.Query(message_id=message_hex))
                if rows:
                    return {c: str(x) for c, x in zip(columns, rows[-1], strict=True)}
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------ sending

    async def exchange(self, query: query_pb2.Query, to: str, *, tamper: bool = False) -> Exchange:
        """Seal ``query`` to ``to``, send it through the gateway's Query RPC, open the answer.

        ``tamper`` flips one bit of the ciphertext after sealing and signing.
        """
        await self.peers.resolve([to], timeout=self.timeout_s)
        sealed = seal_query(self.identity, self.peers.get(to), query)
        if tamper:
            body = bytearray(sealed.envelope.sealed)
            body[len(body) // 2] ^= 0x01
            sealed.envelope.sealed = bytes(body)
        mid = sealed.header.message_hex
        started = time.perf_counter()
        error: grpc.aio.AioRpcError | None = None
        try:
            wire = gateway_pb2.QueryRequest(envelope=sealed.envelope)
            response = (await self.stub.Query(wire, timeout=self.timeout_s)).envelope
            elapsed = (time.perf_counter() - started) * 1000
            answer = open_answer(sealed, response, self.peers.get(to), elapsed)
        except grpc.aio.AioRpcError as exc:
            error = exc
            elapsed = (time.perf_counter() - started) * 1000
            answer = Answer(
                to, failure_outcome(exc.code()), None, failure_detail(exc), elapsed, mid
            )
        opened = self.open_as(to, sealed.envelope)
        row = await self.gateway_row(mid)
        return Exchange(sealed, answer, opened, row, error, await self.gateway_event(mid))

    async def multi(
        self, query: query_pb2.Query, to: list[str], *, deadline_s: float
    ) -> tuple[dict[str, envelope.SealedRequest], list[Answer]]:
        """One query to several bureaus through MultiQuery, as one merged reply (like
        :meth:`ncbsim.client.BureauClient.multi_query`, keeping the envelopes to show)."""
        await self.peers.resolve(to, timeout=self.timeout_s)
        correlation = os.urandom(envelope.MESSAGE_ID_LEN)
        sealed = {r: seal_query(self.identity, self.peers.get(r), query, correlation) for r in to}
        request = gateway_pb2.MultiQueryRequest(envelopes=[s.envelope for s in sealed.values()])
        started = time.perf_counter()
        try:
            reply = await self.stub.MultiQuery(request, timeout=deadline_s)
        except grpc.aio.AioRpcError as exc:
            outcome = failure_outcome(exc.code())
            return sealed, [Answer(r, outcome, None, failure_detail(exc)) for r in to]
        elapsed = (time.perf_counter() - started) * 1000
        answers = open_deliveries(sealed, reply.deliveries, self.peers.get, elapsed)
        missing = Answer("", Outcome.NO_ANSWER, None, "missing from reply")
        merged = [answers.get(r, missing) for r in to]
        return sealed, [
            Answer(r, a.outcome, a.response, a.detail, elapsed, sealed[r].header.message_hex)
            for r, a in zip(to, merged, strict=True)
        ]


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
    return [("kind", "(empty query)")]


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
    panels: tuple[Panel, Panel, Panel, Panel],
    checks: Iterable[tuple[str, bool]],
) -> None:
    """Print one step: title, narration, the four views, the checks."""
    console.rule(Text(title, style="bold"))
    console.print(narration(intro))
    console.print(views(*panels))
    for text, ok in checks:
        console.print(check_line(ok, text))
    console.print()
