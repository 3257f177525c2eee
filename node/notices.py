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
  is sent the notice's current state with the reason, or, if it is not the notice's
  requester, only the notice id, REFUSED and the reason (never another bureau's notice);
- a request whose Notice would be over :data:`MAX_NOTICE_BYTES` packed (a long text,
  a long withdrawal reason) is refused with the reason ``too large``, so every sealed
  copy stays far under the gateway's 64 KiB envelope limit.

GS keeps the registry in its inbox's ``notices`` table. A published or withdrawn notice
goes to every bureau of GS's verified directory except GS itself and requester-only
bureaus; a refusal to the requester only.

**Durable, idempotent outbound.** GS seals every copy once and stores the sealed
envelopes in its inbox's ``outbox`` table, in the transaction that records the decision
(and the request's processing). ncbsim.node.outbox.OutboxPoster posts pending envelopes with
Gateway.Post, the same bytes on every retry, so the gateway's dedup by
``(sender, message_id)`` makes a retry harmless; a row leaves the outbox once the
gateway answered ACCEPTED or DUPLICATE, or, logged, when it expired or the gateway
refused it for its size. A GS that crashes between deciding and posting posts at its
next start.

**Applying a notice** (at every recipient, and at GS when it decides): the ``notices``
row; a published notice whose subject has a surname and a date of birth becomes a person
record, ref ``N`` + notice id in hex, flag ``missing`` for yellow and black notices and
``wanted`` otherwise, summary ``RED notice RED/2026/0001: <summary>``, so a later person
query hits it. A withdrawal marks the row withdrawn and deletes that record. Both are
idempotent (the records write is keyed by the ref), so a notice applied again, after a
crash between the records write and the inbox commit, leaves one record.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
from collections.abc import Sequence
from pathlib import Path

import structlog

from ncbsim import envelope, messages, padding
from ncbsim.countries import GENERAL_SECRETARIAT
from ncbsim.directory import Directory
from ncbsim.identity import Identity
from ncbsim.node.inbox import Inbox, NoticeRow
from ncbsim.node.records import Person
from ncbsim.node.store import delete_person, put_person
from ncbsim.v2 import messages_pb2

__all__ = [
    "MAX_NOTICE_BYTES",
    "MISSING_COLORS",
    "PERSON_COLORS",
    "TOO_LARGE",
    "Decision",
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
MAX_NOTICE_BYTES = messages.MAX_BODY_BYTES
"""The largest Notice GS sends, packed (padded plaintext; messages.pack refuses more): a
sealed copy (a few hundred bytes more) stays at half the gateway's envelope limit (64 KiB
by default). A request crafted to pack just under 32 KiB, whose Notice (a few bytes more:
reference, times) would pad to 64 KiB, is refused."""
TOO_LARGE = "too large"
"""The reason GS gives for a request whose Notice would be over :data:`MAX_NOTICE_BYTES`."""


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


def _refusal(
    notice_id: bytes, requester: str, reason: str, *, requested_at_ms: int, now_ms: int
) -> messages_pb2.Notice:
    """A refusal that tells nothing of a stored notice: its id (if well formed), REFUSED,
    the reason, and the request's own times."""
    return messages_pb2.Notice(
        notice_id=notice_id if len(notice_id) == _NOTICE_ID_LEN else b"",
        status=REFUSED,
        requested_by=requester,
        reason=reason,
        requested_at_ms=requested_at_ms,
        decided_at_ms=now_ms,
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
    decision = _review(
        inbox, requester, request, now_ms=now_ms, requested_at_ms=requested_at_ms, bureaus=bureaus
    )
    if padding.target_size(decision.notice.ByteSize(), messages.MESSAGE_BYTES) <= MAX_NOTICE_BYTES:
        return decision
    action = request.WhichOneof("action")
    notice_id = request.withdraw.notice_id if action == "withdraw" else request.publish.notice_id
    refusal = _refusal(
        notice_id, requester, TOO_LARGE, requested_at_ms=requested_at_ms, now_ms=now_ms
    )
    return Decision(refusal, (requester,), None)


def _review(
    inbox: Inbox,
    requester: str,
    request: messages_pb2.NoticeRequest,
    *,
    now_ms: int,
    requested_at_ms: int,
    bureaus: Sequence[str],
) -> Decision:
    """:func:`review` before the size bound."""
    everyone = tuple(bureaus)
    if request.WhichOneof("action") == "withdraw":
        withdrawal = request.withdraw
        existing = inbox.notice(withdrawal.notice_id)
        problem = ""
        if existing is None:
            problem = "no such notice"
        elif requester not in {existing.requested_by, GENERAL_SECRETARIAT}:
            problem = "only the requesting bureau may withdraw it"
        elif existing.status != PUBLISHED:
            problem = f"the notice is {existing.status_name}"
        if existing is None or problem:
            reason = f"withdrawal refused: {problem}"
            if existing is None or requester not in {existing.requested_by, GENERAL_SECRETARIAT}:
                # Not the requester's notice: tell nothing of it.
                notice = _refusal(
                    withdrawal.notice_id,
                    requester,
                    reason,
                    requested_at_ms=requested_at_ms,
                    now_ms=now_ms,
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
