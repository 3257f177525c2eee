"""The five narrated steps of ``ncbsim demo`` (ncbsim.simulations.demo), and their checks.

Each step is sent by the scenario's first bureau through the gateway's real RPCs and
shows what each party saw (ncbsim.simulations._demo_views), then checks that things went as
narrated.
"""

from __future__ import annotations

import asyncio
import os
import signal
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
from rich.console import Console
from rich.panel import Panel

from ncbsim import envelope
from ncbsim.client import Outcome
from ncbsim.events import Event
from ncbsim.node.admin import ControlChange, restrict
from ncbsim.node.matching import DEFAULT_THRESHOLD, name_key, name_similarity
from ncbsim.simulations import _demo_observer as o
from ncbsim.simulations import _demo_views as v
from ncbsim.simulations.network import Network
from ncbsim.v2 import query_pb2
from ncbsim.workdir import Workdir

if TYPE_CHECKING:
    from ncbsim.simulations.demo import DemoConfig

STEPS = 5


@dataclass(slots=True)
class Step:
    """One narrated step and the checks it made."""

    title: str
    checks: list[tuple[str, bool]] = field(default_factory=list)

    def check(self, text: str, passed: object) -> bool:
        """Record one expectation and whether it held."""
        self.checks.append((text, bool(passed)))
        return bool(passed)

    @property
    def passed(self) -> bool:
        """Whether every expectation held (and there was at least one)."""
        return bool(self.checks) and all(ok for _, ok in self.checks)


def _document(number: str, issuer: str) -> query_pb2.Query:
    return query_pb2.Query(document=query_pb2.DocumentQuery(number=number, issuer=issuer))


def _outcome(row: o.Row | None) -> str:
    return "no row" if row is None else row["outcome"]


def misspell(surname: str) -> str:
    """``surname`` as a hurried officer types it: no accents, lower case, two letters swapped."""
    plain = "".join(
        ch for ch in unicodedata.normalize("NFKD", surname) if not unicodedata.combining(ch)
    ).lower()
    letters = list(plain)
    for i in range(len(letters) // 2, len(letters) - 1):
        if letters[i].isalpha() and letters[i + 1].isalpha() and letters[i] != letters[i + 1]:
            letters[i], letters[i + 1] = letters[i + 1], letters[i]
            break
    return "".join(letters)


class Demo:
    """The five steps, run as the scenario's first bureau against a running network."""

    def __init__(
        self, network: Network, bureaus: list[str], config: DemoConfig, console: Console
    ) -> None:
        self.network = network
        self.workdir = network.workdir
        self.bureaus = bureaus
        self.asker = bureaus[0]
        self.config = config
        self.console = console
        self.obs = o.Observer(
            network.workdir, self.asker, network.gateway.address, timeout_s=config.timeout_s
        )

    def confirm(
        self,
        step: Step,
        query: query_pb2.Query | None,
        sent: envelope.Envelope,
        opened: query_pb2.Query | None,
        row: o.Row | None,
        *,
        event: Event | None = None,
    ) -> None:
        """Check that the recipient opened ``query`` (unless None) from the envelope sent,
        that the gateway's audit row matches the header and size it was given, and (when
        given) that the gateway's event stream told the operator the same, and no more."""
        header = envelope.unverified_header(sent)
        if query is not None:
            step.check(
                f"{header.recipient} decrypted exactly the query {self.asker} sent",
                o.same_query(opened, query),
            )
        columns = ("sender", "recipient", "kind", "expires_at_ms", "request_bytes")
        expected = (header.sender, header.recipient, "query_request", str(header.expires_at_ms))
        step.check(
            f"gateway audit row {v.short_id(header.message_hex)} matches the header sent",
            row is not None and tuple(row[c] for c in columns) == (*expected, str(sent.ByteSize())),
        )
        if event is not None or row is not None:
            seen = {"sender": header.sender, "recipient": header.recipient}
            step.check(
                "the gateway's event stream showed the operator the same metadata",
                event is not None
                and all(event.view.get(k) == x for k, x in seen.items())
                and event.view.get("bytes") == sent.ByteSize(),
            )

    def show(self, step: Step, intro: str, panels: tuple[Panel, Panel, Panel, Panel]) -> None:
        """Print one step: title, narration, the four views, the checks."""
        v.show(self.console, step.title, intro, panels, step.checks)

    # ------------------------------------------------------------ the five steps

    async def step_document(self, step: Step) -> None:
        """1: a passport check that hits a stolen document."""
        to = self.bureaus[1]
        rows = self.obs.pick(
            to,
            "SELECT ref, number, issuer FROM documents WHERE status = 'stolen' "
            "AND doc_type = 'P' AND surname IS NOT NULL ORDER BY id LIMIT 1",
        )
        if not step.check(f"{to} holds a stolen passport to ask about", rows):
            return
        ref, number, issuer = rows[0]
        query = _document(number, issuer)
        ex = await self.obs.exchange(query, to)
        refs = [m.ref for m in ex.answer.matches]
        self.confirm(
            step, query, ex.sealed.envelope, ex.opened, ex.gateway_row, event=ex.gateway_event
        )
        step.check(f"{self.asker} got a hit on {to}'s record {ref}", ref in refs)
        self.show(
            step,
            f"A border officer of {self.asker} checks a passport issued by {issuer}. "
            f"{self.asker} asks {to}, whose database lists it as stolen.",
            v.exchange_views(self.asker, query, ex, self.obs.record(to, refs[0] if refs else "")),
        )

    async def step_person(self, step: Step) -> None:
        """2: a person search with a misspelt name still hits, with a score."""
        to = self.bureaus[2 % len(self.bureaus)]
        rows = self.obs.pick(
            to,
            "SELECT ref, surname, given_names, date_of_birth, surname_key, given_key "
            "FROM persons WHERE flag = 'wanted' AND length(surname) >= 6 ORDER BY id LIMIT 200",
        )
        chosen = None
        for ref, surname, given, dob, surname_key, given_key in rows:
            typed = misspell(surname)
            score = name_similarity(name_key(typed), name_key(given), surname_key, given_key)
            if name_key(typed) != surname_key and DEFAULT_THRESHOLD + 0.03 <= score < 1:
                chosen = (ref, surname, typed, given, dob)
                break
        if not step.check(f"{to} holds a wanted person whose name can be misspelt", chosen):
            return
        assert chosen is not None
        ref, surname, typed, given, dob = chosen
        query = query_pb2.Query(
            person=query_pb2.PersonQuery(surname=typed, given_names=given, date_of_birth=dob)
        )
        ex = await self.obs.exchange(query, to)
        scores = {m.ref: m.score for m in ex.answer.matches}
        self.confirm(
            step, query, ex.sealed.envelope, ex.opened, ex.gateway_row, event=ex.gateway_event
        )
        step.check(
            f"'{typed}' found '{surname}' ({ref}) with a score below 1",
            ref in scores and scores[ref] < 1,
        )
        self.show(
            step,
            f"An officer of {self.asker} types the name '{typed}' without accents and "
            f"with two letters swapped. {to}'s record says '{surname}'. Names are "
            "matched fuzzily, so it still hits, with a score.",
            v.exchange_views(
                self.asker, query, ex, self.obs.record(to, ref if ref in scores else "")
            ),
        )

    async def step_restricted(self, step: Step) -> None:
        """3: the owner denies the asker; step 1 finds nothing, step 2 gives not_found."""
        owner = self.bureaus[3 % len(self.bureaus)]
        rows = self.obs.pick(
            owner,
            "SELECT ref, number, issuer FROM documents WHERE status = 'stolen' "
            "AND surname IS NOT NULL ORDER BY id LIMIT 1 OFFSET 1",
        )
        if not step.check(f"{owner} holds a stolen document to restrict", rows):
            return
        ref, number, issuer = rows[0]
        check = _document(number, issuer)
        before = await self.obs.exchange(check, owner)
        step.check(
            f"before: {self.asker}'s step 1 hits {ref}",
            ref in [m.ref for m in before.answer.matches],
        )
        path = Workdir(self.workdir).bureau(owner).records
        control = restrict(path, ref, ControlChange(access="deny", bureaus=frozenset({self.asker})))
        try:
            after = await self.obs.exchange(check, owner)
            fetch = query_pb2.Query(fetch=query_pb2.FetchQuery(ref=ref))
            ex = await self.obs.exchange(fetch, owner)
            bogus_ref = "a" * len(ref) if ref != "a" * len(ref) else "b" * len(ref)
            bogus = await self.obs.exchange(
                query_pb2.Query(fetch=query_pb2.FetchQuery(ref=bogus_ref)), owner
            )
        finally:
            restrict(path, ref, ControlChange(access="open"))
        step.check(
            f"after `record restrict --deny {self.asker}`: step 1 is a no-hit",
            after.answer.outcome == Outcome.NO_HIT,
        )
        self.confirm(
            step, fetch, ex.sealed.envelope, ex.opened, ex.gateway_row, event=ex.gateway_event
        )
        step.check(f"step 2 for {ref}: not-found", ex.answer.outcome == Outcome.NOT_FOUND)
        same = (
            ex.answer.response is not None
            and bogus.answer.response is not None
            and ex.answer.response == bogus.answer.response
        )
        step.check("identical to the answer for a reference never issued", same)
        sizes = {r["response_bytes"] for r in (ex.gateway_row, bogus.gateway_row) if r}
        step.check("the gateway saw answers of one size for both", len(sizes) == 1)
        self.show(
            step,
            f"{owner} restricts its record {ref}: every bureau but {self.asker} may see it "
            "(the same code path as `ncbsim record restrict`). Its node reads the control "
            f"from its database at every query, so {self.asker} now gets nothing, exactly "
            "as if the record did not exist.",
            v.exchange_views(
                self.asker,
                fetch,
                ex,
                self.obs.record(owner, ref),
                answered=[("visible to", v.control_text(control)), ("answer", "withheld")],
                reply=[
                    ("before", f"step 1 {v.outcome_name(before.answer.outcome)}"),
                    ("after", f"step 1 {v.outcome_name(after.answer.outcome)}"),
                    ("fetch", v.outcome_name(ex.answer.outcome)),
                    ("unknown ref", v.outcome_name(bogus.answer.outcome)),
                ],
            ),
        )

    async def step_down(self, step: Step) -> None:
        """4: a query to every other bureau while one is stopped: it is no-answer."""
        to = [b for b in self.bureaus if b != self.asker]
        holder, down = to[0], to[-1]
        pid = self.network.node(down).pid
        shared = [p.bureau for p in self.network.procs if p.pid == pid and p.bureau != down]
        if not step.check(f"{down}'s node runs in a process of its own", not shared):
            return
        rows = self.obs.pick(
            holder,
            "SELECT ref, number, issuer FROM documents WHERE status = 'lost' ORDER BY id LIMIT 1",
        )
        if not step.check(f"{holder} holds a lost document to ask about", rows):
            return
        ref, number, issuer = rows[0]
        query = _document(number, issuer)
        os.kill(pid, signal.SIGSTOP)
        try:
            sealed, answers = await self.obs.multi(query, to, deadline_s=self.config.deadline_s)
        finally:
            os.kill(pid, signal.SIGCONT)
        by = {a.bureau: a for a in answers}
        rows_by = {r: await self.obs.gateway_row(sealed[r].header.message_hex) for r in to}
        opened = self.obs.open_as(holder, sealed[holder].envelope)
        event = await self.obs.gateway_event(sealed[holder].header.message_hex)
        self.confirm(step, query, sealed[holder].envelope, opened, rows_by[holder], event=event)
        step.check(
            f"{down} (stopped) listed as no-answer within {self.config.deadline_s:g} s",
            by[down].outcome == Outcome.NO_ANSWER,
        )
        step.check(
            f"gateway audit: {down} no_answer",
            _outcome(rows_by[down]) == "no_answer",
        )
        answered = {Outcome.HIT, Outcome.NO_HIT}
        step.check(
            "every other bureau answered",
            all(by[b].outcome in answered for b in to if b != down),
        )
        step.check(f"{holder} answered hit", ref in [m.ref for m in by[holder].matches])
        routed = [
            (r, f"{len(sealed[r].envelope.sealed)} B, {_outcome(row)}")
            for r, row in rows_by.items()
        ]
        self.show(
            step,
            f"{self.asker} asks every other bureau at once, with a {self.config.deadline_s:g} s "
            f"deadline. {down}'s node is frozen (SIGSTOP pid {pid}), as if its server hung. "
            "The merged reply lists every bureau: the others answer, the frozen one is "
            "no-answer.",
            (
                v.asker_panel(self.asker, query, ", ".join(to)),
                v.gateway_panel(
                    sealed[holder].envelope,
                    rows_by[holder],
                    [("per bureau", "")],
                    routed,
                    event=event,
                ),
                v.answerer_panel(
                    holder,
                    opened,
                    self.obs.record(holder, ref),
                    [(down, "stopped: sees nothing")],
                ),
                v.reply_panel(self.asker, "all", v.merged_reply(answers)),
            ),
        )

    async def step_tampered(self, step: Step) -> None:
        """5: one flipped ciphertext bit; the gateway relays it, the node refuses it."""
        to = self.bureaus[1]
        query = _document("X0000000", to)
        ex = await self.obs.exchange(query, to, tamper=True)
        code = ex.error.code() if ex.error is not None else grpc.StatusCode.OK
        node = await self.obs.node_row(to, ex.sealed.header.message_hex)
        self.confirm(
            step, None, ex.sealed.envelope, ex.opened, ex.gateway_row, event=ex.gateway_event
        )
        step.check(
            f"{self.asker} got the refusal: INVALID_ARGUMENT",
            code == grpc.StatusCode.INVALID_ARGUMENT and ex.answer.outcome == Outcome.FAILED,
        )
        step.check(
            f"{to}'s node audit: refused, reason unverified",
            node is not None and (node["outcome"], node["reason"]) == ("refused", "unverified"),
        )
        step.check("the envelope does not open with the recipient's key", ex.opened is None)
        step.check(
            "the gateway relayed it to the node: it cannot tell",
            _outcome(ex.gateway_row) == "refused" and node is not None,
        )
        node_pairs = (
            [("audit", "no row!")]
            if node is None
            else [
                ("audit", f"{node['outcome']}, reason {node['reason']}"),
                ("status", node["status"]),
            ]
        )
        error = (
            [("answer", "refused"), ("status", code.name)]
            if ex.error is not None
            else v.answer_fields(ex.answer)
        )
        self.show(
            step,
            f"Someone on the path flips one bit of a sealed query from {self.asker} to {to}. "
            "The gateway sees a well-formed header and relays it. The signature covers the "
            f"ciphertext, so {to}'s node refuses it and writes why in its own audit log.",
            v.exchange_views(
                self.asker,
                query,
                ex,
                None,
                asked=[("tampered", "1 bit of ciphertext flipped")],
                answered=node_pairs,
                reply=error,
            ),
        )

    def run(self, runner: asyncio.Runner, pause: Callable[[str], None]) -> list[Step]:
        """Every step in order, in ``runner``'s loop; the steps that ran.

        Pauses happen outside the loop, so one Ctrl-C at a pause stops the demo. A step
        that raises counts as failed, and the demo goes on with the next one.
        """
        runner.run(self.obs.peers.load_all(self.config.timeout_s))
        steps = []
        for number, (title, run_step) in enumerate(
            (
                ("Passport check: a stolen document", self.step_document),
                ("Person search with a fuzzy name", self.step_person),
                ("Step-2 fetch denied by the owner's restriction", self.step_restricted),
                ("Multi-bureau query with one bureau down", self.step_down),
                ("A tampered envelope is refused", self.step_tampered),
            ),
            1,
        ):
            pause(f"Press Enter for step {number} of {STEPS} (Ctrl-C stops) ")
            step = Step(f"{number}. {title}")
            steps.append(step)
            try:
                runner.run(run_step(step))
            except Exception as exc:  # a trainer sees what broke, and the rest still runs
                step.check(f"the step ran: {type(exc).__name__}: {exc}", False)
                self.console.print(v.check_line(False, step.checks[-1][0]))
        return steps
