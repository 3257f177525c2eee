"""How the one-way commands show what they did: tables, colours and JSON-ready data.

Rendering only: :mod:`ncbsim.cli.mail` reads the options, sends, asks the gateway and
reads the inbox, then calls these to print. Text that senders wrote is printed literally
(never as rich markup).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message
from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from ncbsim import envelope, messages, posts
from ncbsim.countries import GENERAL_SECRETARIAT
from ncbsim.node.inbox import InboxItem, NoticeRow
from ncbsim.v2 import messages_pb2

__all__ = [
    "body_dict",
    "body_text",
    "delivered_dict",
    "item_dict",
    "notice_dict",
    "outcome_dict",
    "print_inbox",
    "print_notices",
    "print_outcome",
    "print_receipts",
    "send_verdict",
    "utc",
]

_STATUS_STYLE = {
    "accepted": "green",
    "duplicate": "green",
    "queue_full": "bold yellow",
    "failed": "bold red",
}
_STATE_STYLE = {
    "delivered": "green",
    "queued": "yellow",
    "expired": "bold red",
    "rejected": "bold red",
    "unknown": "bold red",
}

_NOTICE_STYLE = {"published": "bold green", "refused": "bold red", "withdrawn": "yellow"}


def _kind(kind: int) -> str:
    return envelope.kind_name(kind).replace("_", " ")


def utc(ms: int) -> str:
    """``YYYY-MM-DD HH:MM:SS`` (UTC) for milliseconds since the epoch; ``""`` for 0."""
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


# --------------------------------------------------------------------------- sending


def outcome_dict(bureau: str, what: str, outcome: posts.PostOutcome) -> dict[str, Any]:
    """A post's outcome as JSON-ready data."""
    data: dict[str, Any] = {
        "as": bureau,
        "kind": envelope.kind_name(outcome.kind),
        "action": what,
        "post_id": outcome.post_hex,
        "stored": outcome.stored,
        "attempts": outcome.attempts,
        "copies": [
            {
                "recipient": c.recipient,
                "status": c.status,
                "sequence": c.sequence,
                "message_id": c.message_hex,
                "accepted_at_ms": c.accepted_at_ms,
                "detail": c.detail,
            }
            for c in outcome.copies
        ],
    }
    if outcome.notice_id:
        data["notice_id"] = outcome.notice_id.hex()
    return data


def print_outcome(bureau: str, what: str, outcome: posts.PostOutcome) -> None:
    console = Console()
    stored = sum(c.stored for c in outcome.copies)
    console.print(
        f"[bold]{bureau}[/] {what}, post {outcome.post_hex}: "
        f"{stored} of {len(outcome.copies)} copies stored",
        highlight=False,
    )
    if outcome.notice_id:
        console.print(f"notice id: [bold]{outcome.notice_id.hex()}[/]", highlight=False)
        console.print(
            f"GS reviews it; its answer (published, refused or withdrawn) reaches {bureau}: "
            f"see `ncbsim notice list --as {bureau}`",
            highlight=False,
        )
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", collapse_padding=True, pad_edge=False)
    for column in ("recipient", "status", "sequence", "message id", "detail"):
        table.add_column(column, justify="right" if column == "sequence" else "left")
    for c in outcome.copies:
        table.add_row(
            c.recipient,
            Text(c.status.replace("_", "-"), style=_STATUS_STYLE[c.status]),
            str(c.sequence or ""),
            c.message_hex[:12],
            Text(c.detail),
        )
    console.print(table)


def send_verdict(outcome: posts.PostOutcome) -> int:
    missing = [c for c in outcome.copies if not c.stored]
    if not missing:
        return 0
    names = ", ".join(f"{c.recipient} ({c.status})" for c in missing)
    print(
        f"ncbsim: {len(missing)} of {len(outcome.copies)} copies not stored: {names}",
        file=sys.stderr,
    )
    if any(c.status == "queue_full" for c in missing):
        print(
            "ncbsim: a recipient's queue is full (it is down or slow); send again later",
            file=sys.stderr,
        )
    if any(c.status == "failed" for c in missing):
        print(
            "ncbsim: check the bureau codes and that the gateway runs (ncbsim up)",
            file=sys.stderr,
        )
    if any("DEADLINE_EXCEEDED" in c.detail for c in missing):
        print(
            "ncbsim: a call timed out, so some of those copies may be stored even so: "
            "check `ncbsim receipts` before sending again",
            file=sys.stderr,
        )
    if len(missing) < len(outcome.copies):
        again = ",".join(c.recipient for c in missing if c.recipient != GENERAL_SECRETARIAT)
        gs_stored = any(c.recipient == GENERAL_SECRETARIAT and c.stored for c in outcome.copies)
        extra = " --no-gs-copy" if outcome.kind == envelope.DIFFUSION and gs_stored else ""
        if again:
            print(
                f"ncbsim: the other copies are stored: to send again, use --to {again}{extra}",
                file=sys.stderr,
            )
    return 1


# --------------------------------------------------------------------------- receipts


def delivered_dict(d: posts.Delivered) -> dict[str, Any]:
    """One posted copy's fate as JSON-ready data."""
    return {
        "sequence": d.sequence,
        "recipient": d.recipient,
        "kind": envelope.kind_name(d.kind),
        "post_id": d.post_hex,
        "message_id": d.message_hex,
        "state": d.state,
        "accepted_at_ms": d.accepted_at_ms,
        "expires_at_ms": d.expires_at_ms,
        "settled_at_ms": d.settled_at_ms,
        "processed_at_ms": d.processed_at_ms,
        "attempts": d.attempts,
        "receipt_verified": d.verified,
        "detail": d.detail,
    }


def _took(d: posts.Delivered) -> str:
    if not d.settled_at_ms:
        return ""
    ms = max(d.settled_at_ms - d.accepted_at_ms, 0)
    return f"{ms} ms" if ms < 10_000 else f"{ms / 1000:.0f} s"


def print_receipts(bureau: str, listed: list[posts.Delivered]) -> None:
    console = Console()
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", collapse_padding=True, pad_edge=False)
    columns = ("seq", "to", "kind", "post", "state", "accepted", "after", "tries", "receipt")
    for column in columns:
        table.add_column(column, justify="right" if column in ("seq", "after", "tries") else "left")
    for d in listed:
        if d.state == "delivered":
            receipt = Text("verified", style="green") if d.verified else Text("BAD", "bold red")
        else:
            receipt = Text(d.detail or "-", style="dim")
        table.add_row(
            str(d.sequence),
            d.recipient,
            _kind(d.kind),
            d.post_hex[:8],
            Text(d.state, style=_STATE_STYLE[d.state]),
            utc(d.accepted_at_ms)[11:],
            _took(d),
            str(d.attempts),
            receipt,
        )
    console.print(table)
    states = Counter(d.state for d in listed)
    verified = sum(d.verified for d in listed)
    summary = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    console.print(
        f"{bureau}: {len(listed)} copies sent ({summary or 'none'}); {verified} receipts "
        "verified. Times are UTC; `after` is from acceptance to settlement.",
        highlight=False,
    )


# --------------------------------------------------------------------------- inbox


def item_dict(item: InboxItem) -> dict[str, Any]:
    """One received item as JSON-ready data (its body decrypted)."""
    return {
        "sender": item.sender,
        "kind": envelope.kind_name(item.kind),
        "post_id": item.post_id.hex(),
        "message_id": item.message_id.hex(),
        "issued_at_ms": item.issued_at_ms,
        "processed_at_ms": item.processed_at_ms,
        "body": body_dict(item.body),
    }


def print_inbox(bureau: str, items: list[InboxItem]) -> None:
    """The received items, one block each, oldest first."""
    console = Console(highlight=False)
    for number, item in enumerate(items, 1):
        head = Text(f"#{number} ", style="bold")
        head.append(f"{utc(item.processed_at_ms)} UTC  ")
        head.append(f"{_kind(item.kind)} from {item.sender}", style="bold")
        console.print(head)
        content = body_text(item.body)
        content.append(f"\npost {item.post_id.hex()}", style="dim")
        console.print(Padding(content, (0, 0, 1, 4)))
    console.print(f"{bureau}: {len(items)} received, oldest first")


def _subject_text(subject: messages_pb2.NoticeSubject) -> str:
    name = ", ".join(p for p in (subject.surname, subject.given_names) if p)
    extra = " ".join(p for p in (subject.date_of_birth, subject.nationality, subject.sex) if p)
    return f"{name} ({extra})" if extra else name


def body_text(body: Message) -> Text:
    """A body as a few lines of plain text (never rich markup: senders write it)."""
    text = Text()
    if isinstance(body, messages_pb2.Diffusion):
        text.append(body.subject, style="bold")
        text.append(f"\n{body.text}")
        text.append(f"\nto {', '.join(body.distribution)}", style="dim")
        _append_attachments(text, body.attachments)
    elif isinstance(body, messages_pb2.CaseMessage):
        text.append(f"thread {body.thread}", style="dim")
        if body.in_reply_to:
            text.append(f", in reply to {body.in_reply_to.hex()[:12]}", style="dim")
        if body.subject:
            text.append(f"\n{body.subject}", style="bold")
        text.append(f"\n{body.text}")
        _append_attachments(text, body.attachments)
    elif isinstance(body, messages_pb2.Notice):
        status = messages.status_name(body.status)
        text.append(f"{messages.color_name(body.color).upper()} notice {status}", style="bold")
        text.append(f" {body.reference}".rstrip())
        text.append(f"\n{_subject_text(body.subject)}")
        for line in (body.summary, body.reason and f"reason: {body.reason}"):
            if line:
                text.append(f"\n{line}")
        text.append(f"\nid {body.notice_id.hex()}, requested by {body.requested_by}", "dim")
    elif isinstance(body, messages_pb2.NoticeRequest):
        _append_request(text, body)
    else:
        text.append(type(body).__name__)
    return text


def _append_attachments(text: Text, attachments: Sequence[messages_pb2.Attachment]) -> None:
    if attachments:
        names = ", ".join(f"{a.name} ({len(a.data)} B)" for a in attachments)
        text.append(f"\nattachments: {names}", style="dim")


def _append_request(text: Text, body: messages_pb2.NoticeRequest) -> None:
    if body.HasField("withdraw"):
        text.append("withdraw notice", style="bold")
        text.append(f" {body.withdraw.notice_id.hex()}")
        if body.withdraw.reason:
            text.append(f"\nreason: {body.withdraw.reason}")
        return
    draft = body.publish
    text.append(f"publish a {messages.color_name(draft.color)} notice", style="bold")
    text.append(f"\n{_subject_text(draft.subject)}")
    if draft.summary:
        text.append(f"\n{draft.summary}")
    text.append(f"\nid {draft.notice_id.hex()}", style="dim")


def _subject_dict(subject: messages_pb2.NoticeSubject) -> dict[str, str]:
    fields = ("surname", "given_names", "date_of_birth", "nationality", "sex", "description")
    return {f: getattr(subject, f) for f in fields if getattr(subject, f)}


def _attachment_dicts(attachments: Sequence[messages_pb2.Attachment]) -> list[dict[str, Any]]:
    import base64

    return [
        {
            "name": a.name,
            "media_type": a.media_type,
            "bytes": len(a.data),
            "data_base64": base64.b64encode(a.data).decode("ascii"),
        }
        for a in attachments
    ]


def body_dict(body: Message) -> dict[str, Any]:
    """A decrypted body as JSON-ready data (ids in hex, colours and statuses by name)."""
    if isinstance(body, messages_pb2.Diffusion):
        return {
            "subject": body.subject,
            "text": body.text,
            "distribution": list(body.distribution),
            "attachments": _attachment_dicts(body.attachments),
        }
    if isinstance(body, messages_pb2.CaseMessage):
        return {
            "thread": body.thread,
            "subject": body.subject,
            "text": body.text,
            "in_reply_to": body.in_reply_to.hex(),
            "attachments": _attachment_dicts(body.attachments),
        }
    if isinstance(body, messages_pb2.Notice):
        return {
            "notice_id": body.notice_id.hex(),
            "color": messages.color_name(body.color),
            "status": messages.status_name(body.status),
            "reference": body.reference,
            "requested_by": body.requested_by,
            "subject": _subject_dict(body.subject),
            "summary": body.summary,
            "text": body.text,
            "reason": body.reason,
            "requested_at_ms": body.requested_at_ms,
            "decided_at_ms": body.decided_at_ms,
        }
    if isinstance(body, messages_pb2.NoticeRequest):
        if body.HasField("withdraw"):
            return {
                "action": "withdraw",
                "notice_id": body.withdraw.notice_id.hex(),
                "reason": body.withdraw.reason,
            }
        draft = body.publish
        return {
            "action": "publish",
            "notice_id": draft.notice_id.hex(),
            "color": messages.color_name(draft.color),
            "subject": _subject_dict(draft.subject),
            "summary": draft.summary,
            "text": draft.text,
        }
    return {"type": type(body).__name__}


# --------------------------------------------------------------------------- notices


def notice_dict(row: NoticeRow) -> dict[str, Any]:
    """One notice the bureau knows as JSON-ready data."""
    return {
        "notice_id": row.notice_id.hex(),
        "color": row.color_name,
        "status": row.status_name,
        "reference": row.reference,
        "subject": _subject_dict(row.subject),
        "summary": row.summary,
        "reason": row.reason,
        "requested_by": row.requested_by,
        "requested_at_ms": row.requested_at_ms,
        "decided_at_ms": row.decided_at_ms,
        "updated_at_ms": row.updated_at_ms,
        "record_ref": row.record_ref,
    }


def print_notices(bureau: str, rows: list[NoticeRow]) -> None:
    """The notices, one block each, oldest request first."""
    console = Console(highlight=False)
    for row in rows:
        head = Text(f"{row.reference or '(no reference)'}  ", style="bold")
        head.append(f"{row.color_name} ")
        head.append(row.status_name, style=_NOTICE_STYLE.get(row.status_name, ""))
        head.append("  ")
        head.append(_subject_text(row.subject))
        console.print(head)
        lines = Text(f"requested by {row.requested_by} {utc(row.requested_at_ms)} UTC", "dim")
        if row.decided_at_ms:
            lines.append(f", decided {utc(row.decided_at_ms)} UTC", "dim")
        lines.append(f"\nid {row.notice_id.hex()}", "dim")
        for line in (row.summary, row.reason and f"reason: {row.reason}"):
            if line:
                lines.append(f"\n{line}")
        console.print(Padding(lines, (0, 0, 1, 4)))
    console.print(f"{bureau}: {len(rows)} notices")
