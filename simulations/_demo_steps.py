"""The lesson's first query steps as ``ncbsim demo`` runs them (ncbsim.simulations.demo),
and their checks; :class:`Demo` runs any step of the lesson by its index.

Each step is sent through the gateway's real RPCs and shows what each party saw
(ncbsim.simulations._demo_views), then checks that things went as narrated. Titles and
captions come from the lesson script (ncbsim.simulations.lesson), shared with the
classroom. The biometric search is ncbsim.simulations._demo_bio's, the bureau down and the
tampered envelope ncbsim.simulations._demo_failures's, the one-way steps (diffusion,
notices) and the attacks ncbsim.simulations._demo_posts's.
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from rich.console import Console
from rich.panel import Panel

from ncbsim import envelope
from ncbsim.client import BureauClient, Outcome
from ncbsim.countries import GENERAL_SECRETARIAT
from ncbsim.eventbus import EventBus
from ncbsim.events import Event
from ncbsim.node.admin import ControlChange, restrict
from ncbsim.node.matching import DEFAULT_THRESHOLD, name_key, name_similarity
from ncbsim.pki import PkiDir
from ncbsim.simulations import _demo_bio as bio
from ncbsim.simulations import _demo_failures as failures
from ncbsim.simulations import _demo_observer as o
from ncbsim.simulations import _demo_posts as posts
from ncbsim.simulations import _demo_views as v
from ncbsim.simulations._demo_record import AttackRunner, Shown, Step
from ncbsim.simulations.lesson import LESSON, NEEDS, LessonStep, caption
from ncbsim.simulations.network import Network
from ncbsim.v2 import query_pb2
from ncbsim.workdir import Workdir

if TYPE_CHECKING:
    from ncbsim.simulations.demo import DemoConfig

__all__ = ["STEPS", "Demo", "Shown", "Step", "misspell"]

STEPS = len(LESSON)
"""How many steps the lesson has (the demo runs them all, skipping those it cannot)."""


def _document(number: str, issuer: str) -> query_pb2.Query:
    return query_pb2.Query(document=query_pb2.DocumentQuery(number=number, issuer=issuer))


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
    """The lesson's steps, asked by the scenario's first bureau against a running network.

    ``bureaus`` are the network's bureaus; the query steps use those other than GS.
    ``attack_runner`` runs the ``attack:*`` steps (they are skipped without one).
    ``buses`` gives a bureau's client-event bus (the classroom shows those events).
    """

    def __init__(
        self,
        network: Network,
        bureaus: list[str],
        config: DemoConfig,
        console: Console,
        *,
        attack_runner: AttackRunner | None = None,
        buses: Callable[[str], EventBus] | None = None,
    ) -> None:
        self.network = network
        self.workdir = network.workdir
        self.bureaus = bureaus
        self.members = [b for b in bureaus if b != GENERAL_SECRETARIAT]
        self.asker = self.members[0]
        self.config = config
        self.console = console
        self.attack_runner = attack_runner
        self.buses = buses
        self.obs = o.Observer(
            network.workdir,
            self.asker,
            network.gateway.address,
            timeout_s=config.timeout_s,
            buses=buses,
        )
        self.notice: posts.PublishedNotice | None = None
        """The red notice of the ``notice`` step, for the border check and withdrawal."""
        self._client: BureauClient | None = None
        self._loaded = False

    def client(self) -> BureauClient:
        """The asker as a bureau client (its mailer posts diffusions and notice requests)."""
        if self._client is None:
            pki = PkiDir(self.workdir)
            bus = self.buses(self.asker) if self.buses is not None else None
            self._client = BureauClient.open(pki, self.asker, self.network.gateway.address, bus=bus)
        return self._client

    async def close(self) -> None:
        """Close the observer's channels and streams, and the asker's client."""
        await self.obs.close()
        if self._client is not None:
            await self._client.close()

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
                f"{header.recipient} decrypted exactly the query {header.sender} sent",
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

    def show(
        self,
        step: Step,
        panels: tuple[Panel, Panel, Panel, Panel] | None,
        **values: object,
    ) -> None:
        """Fill the step's caption with ``values`` (every field of the script's caption)
        and print the step: title, caption, the four views, the checks."""
        step.caption = caption(LESSON[step.number - 1], **values)
        v.show(self.console, step.numbered, step.caption, panels, step.checks)

    @staticmethod
    def views(shown: Shown) -> tuple[Panel, Panel, Panel, Panel]:
        """The four views of a recorded exchange (drawn from the record alone)."""
        assert shown.query is not None
        assert shown.exchange is not None
        return v.exchange_views(
            shown.asker,
            shown.query,
            shown.exchange,
            shown.record,
            asked=shown.extra.get("requester"),
            answered=shown.extra.get("recipient"),
            reply=shown.extra.get("reply"),
        )

    def exchanged(
        self,
        step: Step,
        query: query_pb2.Query,
        ex: o.Exchange,
        record_ref: str = "",
        *,
        asker: str | None = None,
        **extra: v.Pairs,
    ) -> Shown:
        """Record an exchange with the recipient's record ``record_ref`` (if any); empty
        ``extra`` lines are left out."""
        extra = {k: rows for k, rows in extra.items() if rows}
        to = ex.answer.bureau
        record = self.obs.record(to, record_ref)
        shown = Shown(
            asker=asker or self.asker, to=to, query=query, exchange=ex, record=record, extra=extra
        )
        step.shown.append(shown)
        return shown

    # ------------------------------------------------------------ the query steps

    async def step_document(self, step: Step) -> None:
        """A passport check that hits a stolen document."""
        to = self.members[1]
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
        shown = self.exchanged(step, query, ex, refs[0] if refs else "")
        self.show(step, self.views(shown), asker=self.asker, issuer=issuer, to=to)

    async def step_person(self, step: Step) -> None:
        """A person search with a misspelt name still hits, with a score."""
        to = self.members[2 % len(self.members)]
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
        shown = self.exchanged(step, query, ex, ref if ref in scores else "")
        self.show(step, self.views(shown), asker=self.asker, typed=typed, to=to, surname=surname)

    async def step_restricted(self, step: Step) -> None:
        """The owner denies the asker; step 1 finds nothing, step 2 gives not_found."""
        owner = self.members[3 % len(self.members)]
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
        self.exchanged(step, check, before, ref)
        path = Workdir(self.workdir).bureau(owner).records
        control = restrict(path, ref, ControlChange(access="deny", bureaus=frozenset({self.asker})))
        try:
            after = await self.obs.exchange(check, owner)
            fetch = query_pb2.Query(fetch=query_pb2.FetchQuery(ref=ref))
            ex = await self.obs.exchange(fetch, owner)
            bogus_ref = "a" * len(ref) if ref != "a" * len(ref) else "b" * len(ref)
            bogus_query = query_pb2.Query(fetch=query_pb2.FetchQuery(ref=bogus_ref))
            bogus = await self.obs.exchange(bogus_query, owner)
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
        self.exchanged(step, check, after)
        shown = self.exchanged(
            step,
            fetch,
            ex,
            ref,
            recipient=[("visible to", v.control_text(control)), ("answer", "withheld")],
            reply=[
                ("before", f"step 1 {v.outcome_name(before.answer.outcome)}"),
                ("after", f"step 1 {v.outcome_name(after.answer.outcome)}"),
                ("fetch", v.outcome_name(ex.answer.outcome)),
                ("unknown ref", v.outcome_name(bogus.answer.outcome)),
            ],
        )
        self.exchanged(step, bogus_query, bogus)
        self.show(step, self.views(shown), owner=owner, ref=ref, asker=self.asker)

    # ------------------------------------------------------------ running steps

    def unmet(self, lesson: LessonStep) -> str:
        """Why ``lesson`` cannot run on this network (empty if it can)."""
        has = {
            "gs": GENERAL_SECRETARIAT in self.bureaus,
            "attacks": self.attack_runner is not None,
            "biometrics": "biometrics" in lesson.needs and bio.has_faces(self),
        }
        return next((NEEDS[n] for n in sorted(lesson.needs) if not has[n]), "")

    async def run_step(self, index: int) -> Step:
        """Run lesson step ``index`` (0-based) now, in the caller's loop; the step as it ran.

        A step whose needs the network does not meet is returned skipped. A step that
        raises counts as failed (its last check says why). IndexError for a bad index.
        """
        if not 0 <= index < STEPS:
            raise IndexError(f"the lesson has steps 0 to {STEPS - 1}; there is no step {index}")
        lesson = LESSON[index]
        step = Step(lesson.key, lesson.title, index + 1)
        step.skipped = self.unmet(lesson)
        if step.skipped:
            return step
        if not self._loaded:
            await self.obs.peers.load_all(self.config.timeout_s)
            self._loaded = True
        try:
            await self._runner(lesson)(step)
        except Exception as exc:  # a trainer sees what broke, and the rest still runs
            step.check(f"the step ran: {type(exc).__name__}: {exc}", False)
            self.console.print(v.check_line(False, step.checks[-1][0]))
        return step

    def _runner(self, lesson: LessonStep) -> Callable[[Step], Awaitable[None]]:
        """The code that runs ``lesson``'s step."""
        own: dict[str, Callable[[Step], Awaitable[None]]] = {
            "document": self.step_document,
            "person": self.step_person,
            "restricted": self.step_restricted,
        }
        elsewhere = {
            "biometric": bio.step_biometric,
            "down": failures.step_down,
            "tampered": failures.step_tampered,
        }
        if lesson.key in elsewhere:
            run = elsewhere[lesson.key]
            return lambda step: run(self, step)
        if lesson.key in own:
            return own[lesson.key]
        return lambda step: posts.run(self, lesson, step)

    def run(self, runner: asyncio.Runner, pause: Callable[[str], None]) -> list[Step]:
        """Every step in order, in ``runner``'s loop; every step, skipped ones included.

        Pauses happen outside the loop, so one Ctrl-C at a pause stops the demo. A step
        that raises counts as failed, and the demo goes on with the next one.
        """
        steps = []
        for index, lesson in enumerate(LESSON):
            if not self.unmet(lesson):
                pause(f"Press Enter for step {index + 1} of {STEPS} (Ctrl-C stops) ")
            step = runner.run(self.run_step(index))
            if step.skipped:
                v.skipped(self.console, step.numbered, step.skipped)
            steps.append(step)
        return steps
