"""One-way message traffic in a simulation: the posts, their senders, and the accounting.

:func:`plan` draws the scenario's posts from its seed: a Poisson stream of diffusions and
case messages (``[messages]``) and the timeline's diffusion, message, notice and withdraw
events. A notice without a subject gets a wanted person drawn from the requesting
bureau's own records.

:class:`Messenger` sends them as the scenario's bureaus through :class:`ncbsim.mail.Mailer`,
one post at a time per sender (so each sender's posts reach the gateway in their order).
A post is retried with the same sealed envelopes while the gateway is down, never sealed
again. Every copy is recorded: recipient, message id, whether the gateway stored it.

After the traffic, :meth:`Messenger.drain` waits (at most ``messages.drain_s``) until every
stored copy is in its recipient's inbox (``node.inbox``, read-only) or settled otherwise
at the gateway (expired or rejected, from ``Mailer.receipts``). GS's copies of the
notices it publishes, refuses or withdraws are followed the same way: read from GS's own
receipts at the gateway (kind NOTICE), and waited for while GS's outbox still holds some.
:meth:`Messenger.report`
then gives the report's ``messages`` table, and :meth:`Messenger.checks` the built-in
checks: nothing lost, nothing processed twice, order kept, no text at the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
import structlog
from google.protobuf.message import Message

from ncbsim import envelope
from ncbsim.client import ALL, BureauClient
from ncbsim.countries import GENERAL_SECRETARIAT
from ncbsim.errors import NcbsimError
from ncbsim.mail import Mailer, PostOutcome
from ncbsim.messages import color as color_value
from ncbsim.node.inbox import Inbox, InboxItem, NoticeRow
from ncbsim.node.store import Person, RecordStore
from ncbsim.simulations.outcomes import latency
from ncbsim.simulations.scenario import Event, Scenario
from ncbsim.simulations.schema import MESSAGE_LATENCY_KEYS
from ncbsim.v2 import messages_pb2, query_pb2
from ncbsim.workdir import Workdir

log = structlog.get_logger()

KINDS = {
    "diffusion": envelope.DIFFUSION,
    "message": envelope.MESSAGE,
    "notice": envelope.NOTICE_REQUEST,
    "withdraw": envelope.NOTICE_REQUEST,
}
_POLL_S = 0.25
_RECEIPTS_TIMEOUT_S = 5.0
_WORDS = (
    "suspect", "vehicle", "border", "crossing", "alert", "warrant", "passport", "forged",
    "route", "seen", "travelling", "contact", "liaison", "officer", "request", "urgent",
    "identified", "associate", "operation", "checkpoint", "airport", "harbour", "report",
)  # fmt: skip


# ---------------------------------------------------------------- the plan


@dataclass(slots=True)
class PlannedPost:
    """One post the run sends: from the steady stream, or a timeline event (``label``)."""

    label: str
    at_s: float
    kind: str  # diffusion | message | notice | withdraw
    sender: str
    to: tuple[str, ...]
    ttl_s: float
    subject: str = ""
    text: str = ""
    probe: str = ""  # a unique string of the text that must never reach the gateway's files
    notice: str | None = None  # the notice event a notice or withdraw is about
    color: str = "red"
    summary: str = ""


@dataclass(slots=True)
class MessagePlan:
    """The run's posts in sending order, and the subject of each notice event."""

    posts: list[PlannedPost] = field(default_factory=list)
    subjects: dict[str, messages_pb2.NoticeSubject] = field(default_factory=dict)


def _text(rng: random.Random, size: int) -> tuple[str, str]:
    """A text of ``size`` characters starting with a unique probe (kept if it fits)."""
    probe = f"Msg{rng.getrandbits(48):012x}"
    words = [probe]
    while sum(len(w) + 1 for w in words) - 1 < size:
        words.append(rng.choice(_WORDS))
    text = " ".join(words)[:size]
    return text, probe if probe in text else ""


def _drawn_subject(
    store: RecordStore, rng: random.Random
) -> tuple[messages_pb2.NoticeSubject, str]:
    """A wanted person of ``store`` as a notice subject, with the charges as its summary."""
    for _ in range(200):
        person = store.sample("person", 1, rng)[0]
        if person.flag == "wanted" and not store.control(person.ref).restricted:
            return _subject_of(person), person.summary
    raise RuntimeError("no wanted person to draw a notice subject from")


def _subject_of(person: Person) -> messages_pb2.NoticeSubject:
    return messages_pb2.NoticeSubject(
        surname=person.surname,
        given_names=person.given_names,
        date_of_birth=person.date_of_birth,
        nationality=person.nationality,
        sex=person.sex,
    )


def plan(scenario: Scenario, stores: Mapping[str, RecordStore]) -> MessagePlan:
    """Every post of the run, drawn from the scenario's seed (its own generator)."""
    rng = random.Random(f"{scenario.seed}:messages")
    spec = scenario.messages
    out = MessagePlan()
    bureaus = list(scenario.bureaus)
    senders = list(spec.senders) or bureaus
    weights = spec.mix.weights()
    kinds = [k for k, w in weights.items() if w > 0]
    at_s, i = 0.0, 0
    while spec.rate_per_s > 0:
        at_s += rng.expovariate(spec.rate_per_s)
        if at_s >= scenario.traffic.duration_s:
            break
        kind = rng.choices(kinds, [weights[k] for k in kinds])[0]
        sender = rng.choice(senders)
        if kind == "diffusion":
            to = tuple(b for b in spec.diffusion_to if b != sender) or (ALL,)
        else:
            to = (rng.choice([b for b in bureaus if b != sender]),)
        text, probe = _text(rng, spec.text_bytes)
        label = f"{kind}-{i}"
        subject = f"{kind} {i}"
        out.posts.append(
            PlannedPost(label, at_s, kind, sender, to, spec.ttl_s, subject, text, probe)
        )
        i += 1
    for event in scenario.events:
        post = _event_post(scenario, event, rng, stores, out)
        if post is not None:
            out.posts.append(post)
    out.posts.sort(key=lambda p: p.at_s)
    return out


def _event_post(
    scenario: Scenario,
    event: Event,
    rng: random.Random,
    stores: Mapping[str, RecordStore],
    out: MessagePlan,
) -> PlannedPost | None:
    spec = scenario.messages
    item = event.diffusion or event.message
    if item is not None:
        text, probe = _text(rng, item.text_bytes or spec.text_bytes)
        return PlannedPost(
            event.id,
            event.at_s,
            item.kind,
            item.sender,
            item.to,
            item.ttl_s or spec.ttl_s,
            item.subject,
            text,
            probe,
        )
    if event.notice is not None:
        notice = event.notice
        summary = notice.summary
        if notice.subject is not None:
            subject = messages_pb2.NoticeSubject(**notice.subject)
        else:
            subject, drawn = _drawn_subject(stores[notice.requester], rng)
            summary = summary or drawn
        out.subjects[event.id] = subject
        text, probe = _text(rng, spec.text_bytes)
        return PlannedPost(
            event.id,
            event.at_s,
            "notice",
            notice.requester,
            (GENERAL_SECRETARIAT,),
            notice.ttl_s or spec.ttl_s,
            text=text,
            probe=probe,
            notice=event.id,
            color=notice.color,
            summary=summary,
        )
    if event.withdraw is not None:
        requester = scenario.event(event.withdraw.notice).notice
        assert requester is not None
        return PlannedPost(
            event.id,
            event.at_s,
            "withdraw",
            requester.requester,
            (GENERAL_SECRETARIAT,),
            spec.ttl_s,
            text=event.withdraw.reason,
            notice=event.withdraw.notice,
        )
    return None


def subject_query(subject: messages_pb2.NoticeSubject) -> query_pb2.Query:
    """A person search for a notice's subject, typed as a border post would (no accents)."""

    def plain(text: str) -> str:
        decomposed = unicodedata.normalize("NFKD", text)
        return "".join(c for c in decomposed if not unicodedata.combining(c)).upper()

    return query_pb2.Query(
        person=query_pb2.PersonQuery(
            surname=plain(subject.surname),
            given_names=plain(subject.given_names),
            date_of_birth=subject.date_of_birth,
        )
    )


# ---------------------------------------------------------------- what happened


@dataclass(slots=True)
class CopyRecord:
    """One recipient's copy of a post and what became of it."""

    recipient: str
    message_id: bytes
    stored: bool
    status: str  # the gateway's answer: accepted, duplicate, queue_full, failed
    sequence: int = 0
    fate: str = ""  # delivered, expired, rejected, pending, lost (after the drain)
    processed_at_ms: int = 0
    gateway_state: str = ""


@dataclass(slots=True)
class PostRecord:
    """One post the run sent: when, by whom, its place in the sender's order, its copies.

    ``sent_s`` is when the sender took it up (after its earlier posts); ``due_ms`` its
    planned time on the wall clock, from which delivery latency counts.
    """

    post: PlannedPost
    order: int
    sent_s: float
    due_ms: int
    post_id: bytes = b""
    copies: list[CopyRecord] = field(default_factory=list)
    done_s: float = 0.0


@dataclass(slots=True)
class _Inboxes:
    """What every bureau's inbox held at one reading."""

    items: dict[str, list[InboxItem]] = field(default_factory=dict)
    notices: dict[str, list[NoticeRow]] = field(default_factory=dict)
    duplicates: int = 0


def _read_inboxes(workdir: Path, bureaus: Sequence[str], *, full: bool) -> _Inboxes:
    """Read each bureau's inbox read-only (a node that never received anything has none)."""
    out = _Inboxes()
    for code in bureaus:
        try:
            inbox = Inbox.read(Workdir(workdir).bureau(code).inbox)
        except NcbsimError:
            continue
        try:
            out.items[code] = inbox.items()
            if full:
                out.notices[code] = inbox.notices()
                out.duplicates += inbox.duplicates_processed()
        finally:
            inbox.close()
    return out


class Messenger:
    """Sends a scenario's posts as its bureaus, then follows every copy to its fate.

    ``now_s`` is the engine's clock (seconds since traffic start), ``event`` adds a
    timeline event, ``down`` names what a fault holds down now (bureau codes, and
    ``"gateway"``): the drain does not wait for copies to a bureau that is down.
    """

    def __init__(
        self,
        scenario: Scenario,
        workdir: Path,
        message_plan: MessagePlan,
        *,
        now_s: Callable[[], float],
        event: Callable[..., None],
        down: Callable[[], set[str]],
    ) -> None:
        self.scenario = scenario
        self.workdir = workdir
        self.plan = message_plan
        self._now_s = now_s
        self._event = event
        self._down = down
        self.mailers: dict[str, Mailer] = {}
        self.records: list[PostRecord] = []
        self.notice_ids = {
            p.notice: os.urandom(envelope.MESSAGE_ID_LEN)
            for p in message_plan.posts
            if p.kind == "notice" and p.notice is not None
        }
        self._locks = {code: asyncio.Lock() for code in scenario.bureaus}
        self._orders = dict.fromkeys(scenario.bureaus, 0)
        self._inboxes = _Inboxes()
        self.drain_s = 0.0
        self.notice_posts: dict[bytes, PostRecord] = {}  # GS's notice posts, by post id
        self._outbox = 0  # envelopes GS's outbox still held at the last reading

    @property
    def active(self) -> bool:
        """Whether the run sends any post."""
        return bool(self.plan.posts)

    def senders(self) -> list[str]:
        """The bureaus the run needs a client as: its senders, and GS if notices are
        requested (to read GS's notice copies at the gateway)."""
        codes = list(dict.fromkeys(p.sender for p in self.plan.posts))
        if any(p.kind in ("notice", "withdraw") for p in self.plan.posts):
            codes.append(GENERAL_SECRETARIAT)
        return list(dict.fromkeys(codes))

    def attach(self, clients: Mapping[str, BureauClient]) -> None:
        """Post through these clients (one per sender)."""
        self.mailers = {code: Mailer(clients[code]) for code in self.senders()}

    # ------------------------------------------------------------ sending

    async def run(self, t0: float) -> None:
        """Send every post at its planned time (monotonic ``t0`` + ``at_s``); wait for all."""
        tasks: list[asyncio.Task[None]] = []
        try:
            for post in self.plan.posts:
                delay = t0 + post.at_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                due_ms = int(time.time() * 1000)  # its planned time, on the wall clock
                tasks.append(asyncio.create_task(self._send(post, due_ms)))
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    def _body(self, post: PlannedPost) -> Message:
        if post.kind == "diffusion":
            return messages_pb2.Diffusion(subject=post.subject, text=post.text)
        if post.kind == "message":
            return messages_pb2.CaseMessage(
                thread=f"sim-{post.label}", subject=post.subject, text=post.text
            )
        assert post.notice is not None
        notice_id = self.notice_ids[post.notice]
        if post.kind == "withdraw":
            return messages_pb2.NoticeRequest(
                withdraw=messages_pb2.NoticeWithdrawal(notice_id=notice_id, reason=post.text)
            )
        return messages_pb2.NoticeRequest(
            publish=messages_pb2.NoticeDraft(
                notice_id=notice_id,
                color=cast("messages_pb2.NoticeColor", color_value(post.color)),
                subject=self.plan.subjects[post.notice],
                summary=post.summary,
                text=post.text,
            )
        )

    async def _send(self, post: PlannedPost, due_ms: int) -> None:
        """One post, after the sender's earlier ones (its order at the gateway)."""
        mailer = self.mailers[post.sender]
        async with self._locks[post.sender]:
            order = self._orders[post.sender]
            self._orders[post.sender] += 1
            record = PostRecord(post, order, self._now_s(), due_ms)
            self.records.append(record)
            try:
                outcome = await mailer.post(
                    KINDS[post.kind],
                    self._body(post),
                    list(post.to),
                    ttl_ms=int(post.ttl_s * 1000),
                    timeout_s=self.scenario.messages.post_timeout_s,
                )
            except Exception as exc:
                log.exception("post_crashed", label=post.label)
                self._event("post_failed", label=post.label, error=type(exc).__name__)
                record.done_s = self._now_s()
                return
        self._record(record, outcome)

    def _record(self, record: PostRecord, outcome: PostOutcome) -> None:
        record.post_id = outcome.post_id
        record.done_s = self._now_s()
        record.copies = [
            CopyRecord(c.recipient, c.message_id, c.stored, c.status, c.sequence)
            for c in outcome.copies
        ]
        post = record.post
        self._event(
            "post",
            t_s=record.sent_s,
            label=post.label,
            kind=post.kind,
            sender=post.sender,
            copies=len(record.copies),
            stored=sum(c.stored for c in record.copies),
            attempts=outcome.attempts,
            latency_ms=round((record.done_s - record.sent_s) * 1000, 2),
        )

    # ------------------------------------------------------------ notice queries

    async def notice_ref(self, notice: str, target: str) -> str | None:
        """The person record ``target`` made of notice event ``notice``'s subject, if any.

        The ground truth of a query for the subject: the target holds the record while
        its copy of the notice is published (and not withdrawn).
        """
        notice_id = self.notice_ids.get(notice)
        if notice_id is None:
            return None

        def read() -> NoticeRow | None:
            try:
                inbox = Inbox.read(Workdir(self.workdir).bureau(target).inbox)
            except NcbsimError:
                return None
            try:
                return inbox.notice(notice_id)
            finally:
                inbox.close()

        row = await asyncio.to_thread(read)
        if row is None or row.status != messages_pb2.NOTICE_STATUS_PUBLISHED:
            return None
        return row.record_ref or None

    # ------------------------------------------------------------ drain

    def _copies(self, *, own: bool = False) -> list[tuple[PostRecord, CopyRecord]]:
        """Stored copies: the run's own, and (unless ``own``) GS's notice copies."""
        records = self.records if own else [*self.records, *self.notice_posts.values()]
        return [(r, c) for r in records for c in r.copies if c.stored]

    async def _notice_copies(self) -> None:
        """Add GS's notice copies the gateway stored since the last reading, and note
        how many envelopes GS's outbox still holds (not yet accepted by the gateway)."""
        mailer = self.mailers.get(GENERAL_SECRETARIAT)
        if mailer is None or GATEWAY_DOWN in self._down():
            return
        self._outbox = await asyncio.to_thread(_outbox_size, self.workdir)
        known = [c.sequence for r in self.notice_posts.values() for c in r.copies]
        try:
            rows = await mailer.receipts(max(known, default=0), timeout_s=_RECEIPTS_TIMEOUT_S)
        except (grpc.aio.AioRpcError, NcbsimError) as exc:
            log.info("receipts_unavailable", sender=GENERAL_SECRETARIAT, error=type(exc).__name__)
            return
        seen = {c.message_id for r in self.notice_posts.values() for c in r.copies}
        for row in rows:
            if row.kind != envelope.NOTICE or row.message_id in seen:
                continue
            record = self.notice_posts.get(row.post_id)
            if record is None:
                label = f"gs-notice-{row.post_id.hex()[:8]}"
                planned = PlannedPost(label, 0.0, "notice_copy", GENERAL_SECRETARIAT, (), 0.0)
                record = PostRecord(planned, len(self.notice_posts), 0.0, 0, row.post_id)
                self.notice_posts[row.post_id] = record
            record.copies.append(
                CopyRecord(row.recipient, row.message_id, True, "accepted", row.sequence)
            )

    async def drain(self) -> None:
        """Wait until every stored copy is settled, or ``messages.drain_s`` has passed.

        Settled: in its recipient's inbox (delivered), or expired or rejected at the
        gateway. Copies to a bureau that is down at the end are not waited for, nor any
        while the gateway is down. GS's notice copies count too, and the drain also waits
        while GS's outbox holds envelopes the gateway has not accepted yet.
        """
        began = time.monotonic()
        deadline = began + self.scenario.messages.drain_s
        while True:
            await self._notice_copies()
            await self._settle(final=False)
            down = self._down()
            waiting = [c for _, c in self._copies() if not c.fate and c.recipient not in down]
            outbox = self._outbox > 0 and GENERAL_SECRETARIAT not in down
            if (not waiting and not outbox) or GATEWAY_DOWN in down:
                break
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(_POLL_S)
        await self._notice_copies()
        await self._settle(final=True)
        self.drain_s = round(time.monotonic() - began, 3)
        self._event("drain", drain_s=self.drain_s, **self._fates())

    async def _settle(self, *, final: bool) -> None:
        """Read the inboxes, then the gateway's word on copies not in them.

        The final reading takes every bureau's whole inbox (duplicates, order, notices);
        the others only those of recipients still waiting for a copy.
        """
        bureaus = list(self.scenario.bureaus)
        if not final:
            unsettled = {c.recipient for _, c in self._copies() if not c.fate}
            bureaus = [b for b in bureaus if b in unsettled]
        inboxes = await asyncio.to_thread(_read_inboxes, self.workdir, bureaus, full=final)
        held = {
            code: {(i.sender, i.message_id): i.processed_at_ms for i in items}
            for code, items in inboxes.items.items()
        }
        for record, copy in self._copies():
            processed = held.get(copy.recipient, {}).get((record.post.sender, copy.message_id))
            if processed is not None:
                copy.fate, copy.processed_at_ms = "delivered", processed
        if final:
            self._inboxes = inboxes
        await self._gateway_states()
        if final:
            down = self._down()
            for _, copy in self._copies():
                if copy.fate:
                    continue
                waiting = copy.recipient in down and copy.gateway_state != "delivered"
                # Stored and waiting for its recipient, or in the mailbox of a gateway
                # that is down: not lost. Anything else unaccounted for is.
                copy.fate = "pending" if waiting or GATEWAY_DOWN in down else "lost"

    async def _gateway_states(self) -> None:
        """Expired and rejected copies, from each sender's receipts at the gateway."""
        if GATEWAY_DOWN in self._down():
            return  # a fault holds it down: nobody to ask
        unsettled: dict[str, list[CopyRecord]] = {}
        for record, copy in self._copies():
            if not copy.fate:
                unsettled.setdefault(record.post.sender, []).append(copy)
        for sender, copies in unsettled.items():
            after = max(min(c.sequence for c in copies) - 1, 0)
            try:
                rows = await self.mailers[sender].receipts(after, timeout_s=_RECEIPTS_TIMEOUT_S)
            except (grpc.aio.AioRpcError, NcbsimError) as exc:
                log.info("receipts_unavailable", sender=sender, error=type(exc).__name__)
                continue
            states = {r.message_id: r.state for r in rows}
            for copy in copies:
                copy.gateway_state = states.get(copy.message_id, "")
                if copy.gateway_state in ("expired", "rejected"):
                    copy.fate = copy.gateway_state

    # ------------------------------------------------------------ accounting

    def _fates(self, copies: Sequence[CopyRecord] | None = None) -> dict[str, int]:
        if copies is None:
            copies = [c for _, c in self._copies()]
        fates = [c.fate for c in copies]
        return {k: fates.count(k) for k in ("delivered", "expired", "rejected", "pending", "lost")}

    def _out_of_order(self) -> int:
        """Copies a recipient processed after a later post of the same sender."""
        order = {(r.post.sender, c.message_id): r.order for r in self.records for c in r.copies}
        wrong = 0
        for items in self._inboxes.items.values():
            latest: dict[str, int] = {}
            for item in items:
                position = order.get((item.sender, item.message_id))
                if position is None:
                    continue
                if position < latest.get(item.sender, -1):
                    wrong += 1
                latest[item.sender] = max(position, latest.get(item.sender, -1))
        return wrong

    def _notices(self) -> dict[str, dict[str, Any]]:
        """Per notice event: published by GS, how many bureaus hold it, and how fast."""
        requested = {r.post.notice: r.due_ms for r in self.records if r.post.kind == "notice"}
        out: dict[str, dict[str, Any]] = {}
        for label, notice_id in self.notice_ids.items():
            gs = next(
                (
                    n
                    for n in self._inboxes.notices.get(GENERAL_SECRETARIAT, [])
                    if n.notice_id == notice_id
                ),
                None,
            )
            published = gs is not None and gs.status in (
                messages_pb2.NOTICE_STATUS_PUBLISHED,
                messages_pb2.NOTICE_STATUS_WITHDRAWN,
            )
            arrivals = [
                item.processed_at_ms
                for code, items in self._inboxes.items.items()
                if code != GENERAL_SECRETARIAT
                for item in items
                if item.kind == envelope.NOTICE
                and isinstance(item.body, messages_pb2.Notice)
                and item.body.notice_id == notice_id
                and item.body.status == messages_pb2.NOTICE_STATUS_PUBLISHED
            ]
            withdrawn = sum(
                any(
                    n.notice_id == notice_id and n.status == messages_pb2.NOTICE_STATUS_WITHDRAWN
                    for n in rows
                )
                for code, rows in self._inboxes.notices.items()
                if code != GENERAL_SECRETARIAT
            )
            asked = requested.get(label)
            reviewed = [  # GS reviews a request as it processes it
                item.processed_at_ms
                for item in self._inboxes.items.get(GENERAL_SECRETARIAT, [])
                if isinstance(item.body, messages_pb2.NoticeRequest)
                and item.body.WhichOneof("action") == "publish"
                and item.body.publish.notice_id == notice_id
            ]
            out[label] = {
                "published": published,
                "holders": len(arrivals),
                "withdrawn": withdrawn,
                "published_s": (
                    round((reviewed[0] - asked) / 1000, 3)
                    if published and reviewed and asked
                    else None
                ),
                "all_held_s": (
                    round((max(arrivals) - asked) / 1000, 3) if arrivals and asked else None
                ),
            }
        return out

    def report(self) -> dict[str, Any]:
        """The report's ``messages`` table (docs/scenarios.md)."""
        gs_copies = [c for r in self.notice_posts.values() for c in r.copies]
        copies = [c for r in self.records for c in r.copies] + gs_copies
        fates = self._fates()
        delays = [  # the run's own copies only: GS's have no planned time
            float(c.processed_at_ms - r.due_ms)
            for r, c in self._copies(own=True)
            if c.fate == "delivered"
        ]
        lat = latency(delays)
        return {
            "sent": len(self.records) + len(self.notice_posts),
            "recipients": len(copies),
            "accepted": sum(c.stored for c in copies),
            "not_accepted": sum(not c.stored for c in copies),
            **fates,
            "duplicates_processed": self._inboxes.duplicates,
            "out_of_order": self._out_of_order(),
            "latency_ms": {k: lat[k] for k in MESSAGE_LATENCY_KEYS},
            "drain_s": self.drain_s,
            "notices": self._notices(),
            "notice_copies": {"recipients": len(gs_copies), **self._fates(gs_copies)},
        }

    def probes(self) -> list[str]:
        """Strings of the posts none may reach the gateway's files: each text's unique
        probe, and each notice's subject (surname) and summary."""
        found = [p.probe for p in self.plan.posts if p.probe]
        found += [p.summary for p in self.plan.posts if p.kind == "notice" and p.summary]
        found += [subject.surname for subject in self.plan.subjects.values()]
        return list(dict.fromkeys(found))


GATEWAY_DOWN = "gateway"
"""What :attr:`Messenger._down` names when the gateway itself is down."""


def _outbox_size(workdir: Path) -> int:
    """How many envelopes GS's outbox holds (0 if GS has no inbox yet)."""
    try:
        inbox = Inbox.read(Workdir(workdir).bureau(GENERAL_SECRETARIAT).inbox)
    except NcbsimError:
        return 0
    try:
        return inbox.outbox_size()
    finally:
        inbox.close()


def scan_gateway(workdir: Path, probes: Sequence[str]) -> list[str]:
    """Which ``probes`` appear anywhere under the gateway's folder (text or raw bytes)."""
    needles = {p: p.encode() for p in probes if len(p) >= 6}
    found: set[str] = set()
    for path in Workdir(workdir).gateway.root.rglob("*"):
        if path.is_file():
            with contextlib.suppress(OSError):
                data = path.read_bytes()
                found |= {p for p, raw in needles.items() if raw in data}
    return sorted(found)
