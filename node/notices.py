"""Notices: GS's review and registry, its durable outbox, and applying notices to records.

**Review at GS.** A NoticeRequest is reviewed at once, when GS processes it; the rules:

- a new notice (``publish``) is refused if its notice id is not 16 bytes, or is already
  used (by any bureau, the requester included: a notice id names one notice);
- its colour must be one of the nine (red ... silver);
- a person colour (red, yellow, blue, green, orange, UN special) needs the subject's
  surname and a valid date of birth (``YYYY-MM-DD``, a real date, not in the future);
- a red notice needs a summary: the charges;
- otherwise it is published, with a reference ``COLOUR/YEAR/NNNN`` (``RED/2026/0001``):
  numbered per colour and year, in order of publication;
- a withdrawal is accepted only for a published notice, and only from the bureau that
  requested it (or GS). A refused withdrawal leaves the notice as it is; the requester
  is sent the notice's current state with the reason.

GS keeps the registry in its inbox's ``notices`` table. A published or withdrawn notice
goes to every bureau of GS's verified directory except GS itself and requester-only
bureaus; a refusal to the requester only.

**Durable, idempotent outbound.** GS seals every copy once and stores the sealed
envelopes in its inbox's ``outbox`` table, in the transaction that records the decision
(and the request's processing). :class:`OutboxPoster` posts pending envelopes with
Gateway.Post, the same bytes on every retry, so the gateway's dedup by
``(sender, message_id)`` makes a retry harmless; a row leaves the outbox only once the
gateway answered ACCEPTED or DUPLICATE. A GS that crashes between deciding and posting
posts at its next start.

**Applying a notice** (at every recipient, and at GS when it decides): the ``notices``
row; a published notice whose subject has a surname and a date of birth becomes a person
record, ref ``N`` + notice id in hex, flag ``missing`` for yellow and black notices and
``wanted`` otherwise, summary ``RED notice RED/2026/0001: <summary>``, so a later person
query hits it. A withdrawal marks the row withdrawn and deletes that record. Both are
idempotent (the records write is keyed by the ref), so a notice applied again, after a
crash between the records write and the inbox commit, leaves one record.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import grpc
import structlog

from ncbsim import envelope, messages
from ncbsim.clock import Clock
from ncbsim.countries import GENERAL_SECRETARIAT
from ncbsim.directory import Directory
from ncbsim.identity import Identity
from ncbsim.v1 import gateway_pb2, gateway_pb2_grpc, messages_pb2
from node.inbox import Inbox, NoticeRow, OutboxRow
from node.store import Person, delete_person, put_person

__all__ = [
    "MISSING_COLORS",
    "PERSON_COLORS",
    "Decision",
    "OutboxPoster",
    "apply_notice",
    "notice_recipients",
    "person_ref",
    "record_decision",
    "review",
]

log = structlog.get_logger()

PERSON_COLORS = frozenset(
    {
        messages_pb2.NOTICE_COLOR_RED,
        messages_pb2.NOTICE_COLOR_YELLOW,
        messages_pb2.NOTICE_COLOR_BLUE,
        messages_pb2.NOTICE_COLOR_GREEN,
        messages_pb2.NOTICE_COLOR_ORANGE,
        messages_pb2.NOTICE_COLOR_UN_SPECIAL,
    }
)
"""Colours whose subject must be an identified person (surname and date of birth)."""
MISSING_COLORS = frozenset({messages_pb2.NOTICE_COLOR_YELLOW, messages_pb2.NOTICE_COLOR_BLACK})
"""Colours whose subject becomes a ``missing`` person record; the others ``wanted``."""

PUBLISHED = messages_pb2.NOTICE_STATUS_PUBLISHED
REFUSED = messages_pb2.NOTICE_STATUS_REFUSED
WITHDRAWN = messages_pb2.NOTICE_STATUS_WITHDRAWN
_RANK: dict[int, int] = {
    messages_pb2.NOTICE_STATUS_REQUESTED: 1,
    PUBLISHED: 2,
    REFUSED: 2,
    WITHDRAWN: 3,
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NOTICE_ID_LEN = 16


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """GS's decision on one NoticeRequest: the Notice to send, to whom, and the registry row
    to write (``None``: the registry does not change)."""

    notice: messages_pb2.Notice
    recipients: tuple[str, ...]
    row: NoticeRow | None


def person_ref(notice_id: bytes) -> str:
    """The reference of the person record a notice puts into a bureau's records."""
    return "N" + notice_id.hex().upper()


def _valid_date(text: str, now_ms: int) -> bool:
    if not _DATE.match(text):
        return False
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        return False
    return day <= dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).date()


def _has_person(subject: messages_pb2.NoticeSubject) -> bool:
    return bool(subject.surname.strip()) and bool(_DATE.match(subject.date_of_birth.strip()))


def _draft_problem(  # noqa: PLR0911 - one return per rule
    draft: messages_pb2.NoticeDraft, existing: NoticeRow | None, now_ms: int
) -> str:
    """Why GS refuses ``draft`` (a short reason), or "" to publish it."""
    if len(draft.notice_id) != _NOTICE_ID_LEN:
        return "the notice id must be 16 bytes"
    if existing is not None:
        return "this notice id is already used"
    if draft.color not in messages.COLOR_NAMES:
        return "unknown notice colour"
    if draft.color in PERSON_COLORS:
        if not draft.subject.surname.strip():
            return f"a {messages.color_name(draft.color)} notice needs the subject's surname"
        if not _valid_date(draft.subject.date_of_birth.strip(), now_ms):
            return (
                f"a {messages.color_name(draft.color)} notice needs a valid date of birth "
                "(YYYY-MM-DD)"
            )
    if draft.color == messages_pb2.NOTICE_COLOR_RED and not draft.summary.strip():
        return "a red notice needs a summary of the charges"
    return ""


def _notice(row: NoticeRow) -> messages_pb2.Notice:
    return messages_pb2.Notice(
        notice_id=row.notice_id,
        color=row.color,  # type: ignore[arg-type]
        status=row.status,  # type: ignore[arg-type]
        requested_by=row.requested_by,
        subject=row.subject,
        summary=row.summary,
        text=row.text,
        reason=row.reason,
        requested_at_ms=row.requested_at_ms,
        decided_at_ms=row.decided_at_ms,
        reference=row.reference,
    )


def review(
    inbox: Inbox,
    requester: str,
    request: messages_pb2.NoticeRequest,
    *,
    now_ms: int,
    requested_at_ms: int,
    bureaus: Sequence[str],
) -> Decision:
    """GS's decision on ``request`` from ``requester`` (rules in the module docstring).

    ``bureaus`` are the recipients of a published or withdrawn notice. Reads the registry
    in ``inbox``; writes nothing (:func:`record_decision` does).
    """
    everyone = tuple(bureaus)
    if request.WhichOneof("action") == "withdraw":
        withdrawal = request.withdraw
        existing = inbox.notice(withdrawal.notice_id)
        problem = ""
        if existing is None:
            problem = "no such notice"
        elif existing.status != PUBLISHED:
            problem = f"the notice is {existing.status_name}"
        elif requester not in {existing.requested_by, GENERAL_SECRETARIAT}:
            problem = "only the requesting bureau may withdraw it"
        if existing is None or problem:
            reason = f"withdrawal refused: {problem}"
            if existing is None:
                notice = messages_pb2.Notice(
                    notice_id=withdrawal.notice_id,
                    status=REFUSED,
                    requested_by=requester,
                    reason=reason,
                    requested_at_ms=requested_at_ms,
                    decided_at_ms=now_ms,
                )
            else:
                notice = _notice(existing)
                notice.reason = reason
            return Decision(notice, (requester,), None)
        row = NoticeRow(
            notice_id=existing.notice_id,
            color=existing.color,
            status=WITHDRAWN,
            requested_by=existing.requested_by,
            reference=existing.reference,
            subject=existing.subject,
            summary=existing.summary,
            text=existing.text,
            reason=withdrawal.reason.strip() or "withdrawn",
            requested_at_ms=existing.requested_at_ms,
            decided_at_ms=now_ms,
            updated_at_ms=now_ms,
            record_ref="",
        )
        return Decision(_notice(row), everyone, row)
    draft = request.publish
    existing = inbox.notice(draft.notice_id) if len(draft.notice_id) == _NOTICE_ID_LEN else None
    problem = _draft_problem(draft, existing, now_ms)
    row = NoticeRow(
        notice_id=draft.notice_id,
        color=draft.color,
        status=REFUSED if problem else PUBLISHED,
        requested_by=requester,
        reference="",
        subject=draft.subject,
        summary=draft.summary,
        text=draft.text,
        reason=problem,
        requested_at_ms=requested_at_ms,
        decided_at_ms=now_ms,
        updated_at_ms=now_ms,
    )
    if problem:
        # The registry keeps a refused request, unless its id is unusable or taken.
        keep = len(draft.notice_id) == _NOTICE_ID_LEN and existing is None
        return Decision(_notice(row), (requester,), row if keep else None)
    year = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).year
    prefix = f"{messages.color_name(draft.color).upper()}/{year}/"
    reference = f"{prefix}{inbox.references_with(prefix) + 1:04d}"
    ref = person_ref(draft.notice_id) if _has_person(draft.subject) else ""
    row = dataclasses.replace(row, reference=reference, record_ref=ref)
    return Decision(_notice(row), everyone, row)


def notice_recipients(directory: Directory) -> list[str]:
    """Every bureau a published notice goes to: GS's verified directory, without GS itself
    and without requester-only bureaus (they run no node)."""
    return [
        code
        for code in directory.bureaus()
        if code != GENERAL_SECRETARIAT and not directory.get(code).requester_only
    ]


def _person(notice: messages_pb2.Notice, ref: str) -> Person:
    subject = notice.subject
    colour = messages.color_name(notice.color).upper()
    label = notice.reference or notice.notice_id.hex()
    return Person(
        ref=ref,
        surname=subject.surname.strip(),
        given_names=subject.given_names.strip(),
        date_of_birth=subject.date_of_birth.strip(),
        nationality=subject.nationality.strip(),
        sex=subject.sex.strip(),
        flag="missing" if notice.color in MISSING_COLORS else "wanted",
        summary=f"{colour} notice {label}: {notice.summary.strip()}",
    )


def _apply_to_records(records_path: Path, notice: messages_pb2.Notice, ref: str) -> None:
    """Make the records match the notice's status (idempotent)."""
    if not ref:
        return
    if notice.status == PUBLISHED:
        put_person(records_path, _person(notice, ref))
    elif notice.status == WITHDRAWN:
        delete_person(records_path, ref)


def record_decision(
    inbox: Inbox,
    decision: Decision,
    *,
    records_path: Path,
    sender: Identity,
    directory: Directory,
    now_ms: int,
    ttl_ms: int = envelope.DEFAULT_MESSAGE_TTL_MS,
) -> int:
    """Write ``decision`` at GS: registry row, GS's own records, one sealed copy of the
    Notice per recipient in the outbox. Returns how many copies were queued.

    Call it inside the inbox transaction that processes the request: the decision and
    its copies commit together with the request's processing, or not at all. A
    recipient without a verified entry gets no copy (logged).
    """
    if decision.row is not None:
        ref = decision.row.record_ref or _withdrawn_ref(inbox, decision)
        _apply_to_records(records_path, decision.notice, ref)
        inbox.put_notice(decision.row)
    post_id = os.urandom(envelope.MESSAGE_ID_LEN)
    plaintext = messages.pack(decision.notice)
    rows: list[tuple[str, bytes, int, bytes]] = []
    for code in decision.recipients:
        if code not in directory:
            log.warning("notice_recipient_unknown", recipient=code)
            continue
        sealed = envelope.seal_message(
            plaintext,
            sender=sender,
            recipient=directory.get(code),
            kind=envelope.NOTICE,
            post_id=post_id,
            ttl_ms=ttl_ms,
            now_ms=now_ms,
        )
        header = envelope.unverified_header(sealed)
        rows.append((code, header.message_id, header.expires_at_ms, sealed.SerializeToString()))
    inbox.add_outbox(rows)
    log.info(
        "notice_decided",
        notice_id=decision.notice.notice_id.hex(),
        status=messages.status_name(decision.notice.status),
        copies=len(rows),
        post_id=post_id.hex(),
    )
    return len(rows)


def _withdrawn_ref(inbox: Inbox, decision: Decision) -> str:
    """The record a withdrawal removes: the one the published notice made."""
    if decision.notice.status != WITHDRAWN:
        return ""
    current = inbox.notice(decision.notice.notice_id)
    return current.record_ref if current is not None else ""


def apply_notice(
    inbox: Inbox, records_path: Path, notice: messages_pb2.Notice, *, now_ms: int
) -> bool:
    """Apply a Notice from GS at a recipient: notices row and person record. True if applied.

    A notice never moves back: one that is older than the row held (a publication after
    the withdrawal) is ignored. Applying the same notice again is harmless. Call it
    inside the inbox transaction that processes the envelope.
    """
    current = inbox.notice(notice.notice_id)
    if current is not None:
        old, new = _RANK.get(current.status, 0), _RANK.get(notice.status, 0)
        if new < old or (new == old and notice.status != current.status):
            return False
    ref = ""
    if notice.status == PUBLISHED and _has_person(notice.subject):
        ref = person_ref(notice.notice_id)
        _apply_to_records(records_path, notice, ref)
    elif notice.status == WITHDRAWN:
        gone = current.record_ref if current is not None and current.record_ref else None
        _apply_to_records(records_path, notice, gone or person_ref(notice.notice_id))
    inbox.put_notice(
        NoticeRow(
            notice_id=notice.notice_id,
            color=notice.color,
            status=notice.status,
            requested_by=notice.requested_by,
            reference=notice.reference,
            subject=notice.subject,
            summary=notice.summary,
            text=notice.text,
            reason=notice.reason,
            requested_at_ms=notice.requested_at_ms,
            decided_at_ms=notice.decided_at_ms,
            updated_at_ms=now_ms,
            record_ref=ref,
        )
    )
    return True


# ---------------------------------------------------------------- the outbox poster

_PERMANENT = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
"""Post statuses that refuse an envelope for good: posting it again cannot help."""
_DONE = frozenset({gateway_pb2.POST_STATUS_ACCEPTED, gateway_pb2.POST_STATUS_DUPLICATE})


class OutboxPoster:
    """Posts GS's outbox to the gateway until every envelope was accepted.

    :meth:`run` posts what is pending at start (a GS that crashed after deciding), then
    waits for :meth:`wake`. While the gateway is down, or answers QUEUE_FULL, it tries
    again after ``retry_s``, doubling up to ``max_retry_s``. An envelope the gateway
    refuses for good (an invalid one; it cannot happen to what GS seals) is dropped and
    logged, and so is one that expired in the outbox. Logs ids and counts, never content.
    """

    def __init__(
        self,
        inbox: Inbox,
        gateway: gateway_pb2_grpc.GatewayStub,
        *,
        clock: Clock | None = None,
        batch: int = 256,
        retry_s: float = 0.1,
        max_retry_s: float = 2.0,
        timeout_s: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._inbox = inbox
        self._gateway = gateway
        self._clock = clock or Clock()
        self._batch = batch
        self._retry_s = retry_s
        self._max_retry_s = max_retry_s
        self._timeout_s = timeout_s
        self._sleep = sleep
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New envelopes are in the outbox: post them now."""
        self._wake.set()

    async def run(self) -> None:
        """Post until cancelled."""
        delay = self._retry_s
        failing = False
        while True:
            self._wake.clear()
            try:
                empty = await self.post_pending()
            except (grpc.aio.AioRpcError, TimeoutError) as exc:
                if not failing:
                    code = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else "TIMEOUT"
                    log.warning("outbox_post_failed", code=code, pending=self._inbox.outbox_size())
                failing = True
                await self._sleep(delay)
                delay = min(delay * 2, self._max_retry_s)
                continue
            except Exception:
                # The inbox failing (a bug, a full disk): keep the task alive, try again.
                log.exception("outbox_failed")
                await self._sleep(self._max_retry_s)
                continue
            if failing:
                log.info("outbox_posting_again")
            failing = False
            if empty:
                delay = self._retry_s
                await self._wake.wait()
            else:
                await self._sleep(delay)
                delay = min(delay * 2, self._max_retry_s)

    async def post_pending(self) -> bool:
        """Post the pending envelopes once, a batch at a time; True if the outbox is empty.

        Raises grpc.aio.AioRpcError (retryable) or TimeoutError if the gateway cannot
        take them now; what it took before that is out of the outbox.
        """
        while True:
            rows = self._inbox.outbox(self._batch)
            if not rows:
                return True
            now_ms = self._clock.now_ms()
            expired = [r.id for r in rows if r.expires_at_ms <= now_ms]
            if expired:
                log.warning("outbox_expired", copies=len(expired))
                self._inbox.remove_outbox(expired)
            live = [r for r in rows if r.expires_at_ms > now_ms]
            if not live:
                continue
            done = await self._post(live)
            self._inbox.remove_outbox(done)
            if len(done) < len(live):
                return False

    async def _post(self, rows: Sequence[OutboxRow]) -> list[int]:
        """Post ``rows``; the ids of those the gateway took (or refused for good)."""
        request = gateway_pb2.PostRequest(
            envelopes=[envelope.Envelope.FromString(r.envelope) for r in rows]
        )
        try:
            reply = await self._gateway.Post(request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in _PERMANENT:
                raise
            if len(rows) > 1:
                done: list[int] = []
                for row in rows:
                    done.extend(await self._post([row]))
                return done
            log.warning(
                "outbox_refused",
                code=exc.code().name,
                recipient=rows[0].recipient,
                message_id=rows[0].message_id.hex(),
            )
            return [rows[0].id]
        done = [
            row.id
            for row, result in zip(rows, reply.results, strict=False)
            if result.status in _DONE and result.message_id == row.message_id
        ]
        log.debug("outbox_posted", copies=len(rows), accepted=len(done))
        return done
