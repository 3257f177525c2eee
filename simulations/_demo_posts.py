"""The lesson's one-way and attack steps as ``ncbsim demo`` runs them: a diffusion to every
bureau, a red notice that GS reviews and publishes, a border check that hits its subject,
its withdrawal, and the attacks (through the demo's attack runner).

Posts go through :class:`ncbsim.mail.Mailer` as the asking bureau, exactly as ``ncbsim
diffuse`` and ``ncbsim notice`` send them; what happened is read back from the gateway's
audit log, the bureaus' inboxes and record databases, and the signed receipts, with a
bounded wait (delivery is asynchronous). Drawn in the style of the query steps
(ncbsim.simulations._demo_steps).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ncbsim import auditread, envelope
from ncbsim.client import Outcome
from ncbsim.countries import GENERAL_SECRETARIAT
from ncbsim.errors import NcbsimError
from ncbsim.mail import Mailer
from ncbsim.node.inbox import Inbox, InboxItem, NoticeRow
from ncbsim.node.notices import person_ref
from ncbsim.posts import PostOutcome, notice_draft
from ncbsim.simulations import _demo_views as v
from ncbsim.simulations._demo_observer import Row
from ncbsim.simulations._demo_record import Shown, Step
from ncbsim.simulations.lesson import LessonStep
from ncbsim.v2 import messages_pb2, query_pb2
from ncbsim.workdir import Workdir

if TYPE_CHECKING:
    from ncbsim.simulations._demo_steps import Demo

SETTLE_WAIT_S = 15.0
"""How long a one-way step waits for every copy to be delivered and applied (delivery is
pushed by the gateway within milliseconds; the margin is for a busy machine)."""

SUBJECT = messages_pb2.NoticeSubject(
    surname="Marchetti",
    given_names="Lorenzo Paolo",
    date_of_birth="1979-04-12",
    nationality="IT",
    sex="M",
    description="1.82 m, scar on the left hand",
)
"""The fugitive of the lesson (the ``red-notice`` scenario's): in no bureau's records
until the red notice puts him there."""
SUMMARY = "Armed robbery of a cash transport, Lyon; arrest warrant of the investigating judge"
REASON = "arrested"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PublishedNotice:
    """The red notice of the ``notice`` step, as GS published it."""

    notice_id: bytes
    reference: str
    ref: str
    """The person record each bureau made of its subject."""


def _name() -> str:
    return f"{SUBJECT.surname.upper()} {SUBJECT.given_names}"


def _query() -> query_pb2.Query:
    person = query_pb2.PersonQuery(
        surname=SUBJECT.surname,
        given_names=SUBJECT.given_names,
        date_of_birth=SUBJECT.date_of_birth,
    )
    return query_pb2.Query(person=person)


async def _until(read: Callable[[], T], done: Callable[[T], bool]) -> T:
    """``read()`` (in a thread) until ``done`` says yes or SETTLE_WAIT_S passed; the last."""
    deadline = time.monotonic() + SETTLE_WAIT_S
    while True:
        value = await asyncio.to_thread(read)
        if done(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


def _inbox(demo: Demo, code: str, read: Callable[[Inbox], T], default: T) -> T:
    """``read`` of ``code``'s inbox (read-only), or ``default`` if it has none yet."""
    try:
        inbox = Inbox.read(Workdir(demo.workdir).bureau(code).inbox)
    except NcbsimError:
        return default
    try:
        return read(inbox)
    finally:
        inbox.close()


def _holders(demo: Demo, ref: str) -> set[str]:
    """The bureaus whose records database holds the person ``ref`` now."""
    found = set()
    for code in demo.members:
        uri = Workdir(demo.workdir).bureau(code).records.resolve().as_uri() + "?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            if conn.execute("SELECT 1 FROM persons WHERE ref = ?", (ref,)).fetchone():
                found.add(code)
    return found


def _registry(demo: Demo, notice_id: bytes) -> NoticeRow | None:
    """GS's registry row of the notice (from its inbox), or None."""
    return _inbox(demo, GENERAL_SECRETARIAT, lambda inbox: inbox.notice(notice_id), None)


async def _copy_rows(demo: Demo, outcome: PostOutcome) -> dict[str, Row | None]:
    """Each copy's last gateway audit row, once it was delivered (or the wait ran out)."""
    rows: dict[str, Row | None] = {}
    for copy in outcome.copies:
        found = await demo.obs.gateway_rows(
            auditread.Query(message_id=copy.message_hex), at_least=2, wait_s=SETTLE_WAIT_S
        )
        rows[copy.recipient] = found[-1] if found else None
    return rows


async def _gs_rows(demo: Demo, kind: str, since_ms: int, count: int) -> list[Row]:
    """The gateway's rows of GS's copies of ``kind`` since ``since_ms``, delivered ones."""
    query = auditread.Query(sender=GENERAL_SECRETARIAT, kind=kind, since_ms=since_ms)
    rows = await demo.obs.gateway_rows(query, at_least=2 * count, wait_s=SETTLE_WAIT_S)
    return [r for r in rows if r["rpc"] == "Deliver"]


def _post_fields(outcome: PostOutcome) -> v.Pairs:
    stored = sum(c.stored for c in outcome.copies)
    return [("", f"sealed {len(outcome.copies)} times, one per recipient"), ("stored", f"{stored}")]


# ---------------------------------------------------------------- diffusion


async def step_diffusion(demo: Demo, step: Step) -> None:
    """The asker alerts ALL; every bureau's node processes its copy and signs a receipt."""
    asker = demo.asker
    mailer = Mailer(demo.client(), strict=True)
    subject = f"Wanted for armed robbery: {_name()}"
    text = f"Born {SUBJECT.date_of_birth}, {SUBJECT.description}. May cross borders."
    outcome = await mailer.diffuse(["ALL"], subject, text, timeout_s=demo.config.timeout_s)
    others = [b for b in demo.bureaus if b != asker]
    step.check(
        f"the gateway stored a sealed copy for each of the {len(others)} other bureaus",
        outcome.stored and sorted(outcome.recipients) == sorted(others),
    )

    def opened() -> dict[str, messages_pb2.Diffusion]:
        got = {}
        for code in others:
            none: list[InboxItem] = []
            items = _inbox(demo, code, lambda i: i.items(envelope.DIFFUSION), none)
            for item in items:
                if item.post_id == outcome.post_id and item.sender == asker:
                    assert isinstance(item.body, messages_pb2.Diffusion)
                    got[code] = item.body
        return got

    bodies = await _until(opened, lambda got: len(got) == len(others))
    step.check(
        "every bureau's node opened its copy: " + ", ".join(sorted(bodies)),
        len(bodies) == len(others) and all(b.subject == subject for b in bodies.values()),
    )
    rows = await _copy_rows(demo, outcome)
    step.check(
        "the gateway's audit: every copy delivered, one sealed size for all",
        all(r is not None and r["outcome"] == "delivered" for r in rows.values())
        and len({r["request_bytes"] for r in rows.values() if r}) == 1,
    )
    mine = [d for d in await mailer.receipts() if d.post_id == outcome.post_id]
    step.check(
        f"{asker} holds a verified receipt from every bureau",
        sorted(d.recipient for d in mine if d.verified) == sorted(others),
    )
    receipts = {d.recipient: "verified" if d.verified else d.state for d in mine}
    asked = [("kind", "diffusion"), ("subject", subject), ("text", text), *_post_fields(outcome)]
    for code in outcome.recipients:
        body = bodies.get(code)
        got = [("subject", body.subject), ("copies", str(len(body.distribution)))] if body else []
        step.shown.append(
            Shown(
                asker=asker,
                to=code,
                post=outcome,
                gateway_row=rows.get(code),
                extra={
                    "requester": asked,
                    "recipient": got,
                    "reply": [("receipt", receipts.get(code, "none"))],
                },
            )
        )
    first = step.shown[0]
    demo.show(
        step,
        (
            v.panel(f"{asker} posts to ALL (plaintext)", asked, style="cyan"),
            v.post_gateway_panel(first.gateway_row),
            v.panel(
                f"{first.to} opens its copy (as its node)",
                first.extra["recipient"] or [("inbox", "nothing yet!")],
                style="magenta",
            ),
            v.reply_panel(asker, "every bureau", [("receipts", "")], sorted(receipts.items())),
        ),
        asker=asker,
        subject=subject,
        copies=len(outcome.copies),
    )


# ---------------------------------------------------------------- notices


def _checker(demo: Demo) -> tuple[str, str]:
    """Who checks a traveller at the border (not the requester), and whom it asks."""
    others = [b for b in demo.members if b != demo.asker]
    return others[2 % len(others)], others[0]


async def step_notice(demo: Demo, step: Step) -> None:
    """The asker requests a red notice; GS publishes it; every bureau holds its subject."""
    asker = demo.asker
    checker, to = _checker(demo)
    query = _query()
    before = await demo.obs.exchange(query, to, asker=checker)
    earlier = demo.notice  # replayed without a withdrawal: the earlier notice still stands
    if earlier is None:
        step.check(
            f"before the notice: {checker}'s check at {to} is a no-hit",
            before.answer.outcome == Outcome.NO_HIT,
        )
    else:
        step.check(
            f"before: {checker}'s check at {to} hits only the earlier {earlier.reference}",
            [m.ref for m in before.answer.matches] == [earlier.ref],
        )
    demo.exchanged(step, query, before, asker=checker)
    since_ms = int(time.time() * 1000)
    body = notice_draft("red", SUBJECT, SUMMARY)
    mailer = Mailer(demo.client(), strict=True)
    outcome = await mailer.post_notice_request(body, timeout_s=demo.config.timeout_s)
    step.check(f"the gateway stored {asker}'s request for GS", outcome.stored)
    notice_id, ref = outcome.notice_id, person_ref(outcome.notice_id)
    row = await _until(lambda: _registry(demo, notice_id), lambda r: r is not None)
    published = messages_pb2.NOTICE_STATUS_PUBLISHED
    reference = row.reference if row is not None else "?"
    step.check(
        f"GS reviewed it and published it as {reference}",
        row is not None and row.status == published and bool(row.reference),
    )
    holders = await _until(lambda: _holders(demo, ref), lambda h: len(h) == len(demo.members))
    step.check(
        f"every bureau now holds the subject as person record {ref[:9]}…",
        holders == set(demo.members),
    )
    gs_rows = await _gs_rows(demo, "notice", since_ms, len(demo.members))
    step.check(
        f"the gateway delivered GS's {len(demo.members)} sealed copies of the notice",
        sorted(r["recipient"] for r in gs_rows if r["outcome"] == "delivered")
        == sorted(demo.members),
    )
    if row is not None and row.status == published:
        demo.notice = PublishedNotice(notice_id, row.reference, ref)
    request_rows = await _copy_rows(demo, outcome)
    asked = [
        ("kind", "notice request"),
        ("colour", "red"),
        ("subject", _name()),
        ("born", SUBJECT.date_of_birth),
        ("charges", SUMMARY),
    ]
    review = [("review", row.status_name if row else "none yet!"), ("reference", reference)]
    step.shown.append(
        Shown(
            asker=asker,
            to=GENERAL_SECRETARIAT,
            post=outcome,
            gateway_row=request_rows.get(GENERAL_SECRETARIAT),
            extra={"requester": asked, "recipient": review},
        )
    )
    by_code = {r["recipient"]: r for r in gs_rows}
    for code in demo.members:
        step.shown.append(
            Shown(
                asker=GENERAL_SECRETARIAT,
                to=code,
                record=demo.obs.record(code, ref),
                gateway_row=by_code.get(code),
                extra={"recipient": [("record", ref if code in holders else "none yet!")]},
            )
        )
    published_to = [(c, "holds the subject" if c in holders else "not yet!") for c in demo.members]
    demo.show(
        step,
        (
            v.panel(f"{asker} asks GS (plaintext)", asked, style="cyan"),
            v.post_gateway_panel(request_rows.get(GENERAL_SECRETARIAT)),
            v.panel("GS reviews (as its node)", review, style="magenta"),
            v.panel("GS publishes to every bureau", published_to, style="cyan"),
        ),
        asker=asker,
        gs=GENERAL_SECRETARIAT,
        name=_name(),
        born=SUBJECT.date_of_birth,
        reference=reference,
    )


async def step_border_check(demo: Demo, step: Step) -> None:
    """Another bureau's person check at a third bureau hits the notice's subject."""
    checker, to = _checker(demo)
    notice = demo.notice
    if not step.check("a published red notice to check against (the notice step)", notice):
        return
    assert notice is not None
    query = _query()
    ex = await demo.obs.exchange(query, to, asker=checker)
    demo.confirm(step, query, ex.sealed.envelope, ex.opened, ex.gateway_row, event=ex.gateway_event)
    step.check(
        f"{checker} got a hit on {to}'s record {notice.ref[:9]}…, made by the notice",
        notice.ref in [m.ref for m in ex.answer.matches],
    )
    shown = demo.exchanged(step, query, ex, notice.ref, asker=checker)
    demo.show(
        step,
        demo.views(shown),
        checker=checker,
        name=_name(),
        to=to,
        gs=GENERAL_SECRETARIAT,
        reference=notice.reference,
    )


async def step_withdraw(demo: Demo, step: Step) -> None:
    """The asker withdraws the notice; GS publishes it; the border check is a no-hit."""
    asker = demo.asker
    checker, to = _checker(demo)
    notice = demo.notice
    if not step.check("a published red notice to withdraw (the notice step)", notice):
        return
    assert notice is not None
    mailer = Mailer(demo.client(), strict=True)
    outcome = await mailer.withdraw_notice(
        notice.notice_id, REASON, timeout_s=demo.config.timeout_s
    )
    step.check(f"the gateway stored {asker}'s withdrawal for GS", outcome.stored)
    withdrawn = messages_pb2.NOTICE_STATUS_WITHDRAWN
    row = await _until(
        lambda: _registry(demo, notice.notice_id), lambda r: r is not None and r.status == withdrawn
    )
    step.check(f"GS withdrew {notice.reference}", row is not None and row.status == withdrawn)
    holders = await _until(lambda: _holders(demo, notice.ref), lambda h: not h)
    step.check("every bureau deleted the subject's record", not holders)
    demo.notice = None
    query = _query()
    ex = await demo.obs.exchange(query, to, asker=checker)
    step.check(
        f"{checker}'s same check at {to} is a no-hit again",
        ex.answer.outcome == Outcome.NO_HIT,
    )
    request_rows = await _copy_rows(demo, outcome)
    asked = [("kind", "withdrawal"), ("notice", notice.reference), ("reason", REASON)]
    decided = [("registry", row.status_name if row else "none!"), ("reference", notice.reference)]
    step.shown.append(
        Shown(
            asker=asker,
            to=GENERAL_SECRETARIAT,
            post=outcome,
            gateway_row=request_rows.get(GENERAL_SECRETARIAT),
            extra={"requester": asked, "recipient": decided},
        )
    )
    demo.exchanged(step, query, ex, asker=checker)
    left = [(c, "still holds it!" if c in holders else "record deleted") for c in demo.members]
    demo.show(
        step,
        (
            v.panel(f"{asker} asks GS (plaintext)", asked, style="cyan"),
            v.post_gateway_panel(request_rows.get(GENERAL_SECRETARIAT)),
            v.panel("GS decides (as its node)", decided, style="magenta"),
            v.panel(
                f"{checker} asks {to} again",
                [("answer", v.outcome_name(ex.answer.outcome)), ("records", "")],
                left,
                style="cyan",
            ),
        ),
        asker=asker,
        reference=notice.reference,
        reason=REASON,
        gs=GENERAL_SECRETARIAT,
        checker=checker,
        to=to,
    )


# ---------------------------------------------------------------- attacks


async def step_attack(demo: Demo, lesson: LessonStep, step: Step) -> None:
    """One attack, run by the demo's attack runner; its checks say where it was caught."""
    assert demo.attack_runner is not None
    assert lesson.attack is not None
    asker, to = demo.asker, demo.members[1]
    outcome = await demo.attack_runner(lesson.attack, asker, to)
    for text, ok in outcome.checks:
        step.check(text, ok)
    shown = Shown(asker=asker, to=to, query=outcome.query, exchange=outcome.exchange)
    step.shown.append(shown)
    drawable = shown.query is not None and shown.exchange is not None
    demo.show(step, demo.views(shown) if drawable else None, asker=asker, to=to)


async def run(demo: Demo, lesson: LessonStep, step: Step) -> None:
    """Run ``lesson``'s step (one of this module's) on ``demo``'s network."""
    if lesson.attack is not None:
        await step_attack(demo, lesson, step)
        return
    steps = {
        "diffusion": step_diffusion,
        "notice": step_notice,
        "border-check": step_border_check,
        "withdraw": step_withdraw,
    }
    if lesson.key not in steps:
        raise KeyError(f"no code runs the lesson step {lesson.key!r}")
    await steps[lesson.key](demo, step)
