"""The one-way posts of a simulation, drawn before it runs.

:func:`plan` draws the scenario's posts from its seed: a Poisson stream of diffusions and
case messages (``[messages]``) and the timeline's diffusion, message, notice and withdraw
events. A notice without a subject gets a wanted person drawn from the requesting
bureau's own records. :func:`subject_query` is the person search for a notice's subject.
:mod:`ncbsim.simulations.messaging` sends the posts.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from ncbsim.client import ALL
from ncbsim.countries import GENERAL_SECRETARIAT
from ncbsim.node.records import Person
from ncbsim.node.store import RecordStore
from ncbsim.simulations.scenario import Event, NoticeEvent, PostEvent, Scenario, WithdrawEvent
from ncbsim.v2 import messages_pb2, query_pb2

_WORDS = (
    "suspect", "vehicle", "border", "crossing", "alert", "warrant", "passport", "forged",
    "route", "seen", "travelling", "contact", "liaison", "officer", "request", "urgent",
    "identified", "associate", "operation", "checkpoint", "airport", "harbour", "report",
)  # fmt: skip


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
    if isinstance(event, PostEvent):
        item = event.post
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
    if isinstance(event, NoticeEvent):
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
    if isinstance(event, WithdrawEvent):
        requester = scenario.event(event.withdraw.notice)
        assert isinstance(requester, NoticeEvent)
        return PlannedPost(
            event.id,
            event.at_s,
            "withdraw",
            requester.notice.requester,
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
