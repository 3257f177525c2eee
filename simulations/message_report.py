"""What became of a simulation's posts: one record per post and per copy, and the
accounting of the report's ``messages`` table.

:class:`PostRecord` and :class:`CopyRecord` hold what the gateway answered and, after the
drain, each copy's fate. :func:`read_inboxes` reads every bureau's inbox read-only (with
the copies its node keeps for its users); :func:`out_of_order` and :func:`notice_table`
count from that reading, and :func:`scan_gateway` looks for the posts' text in the gateway's files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError

from ncbsim import envelope
from ncbsim.countries import GENERAL_SECRETARIAT
from ncbsim.errors import EnvelopeError, NcbsimError
from ncbsim.node.inbox import Inbox, InboxItem, NoticeRow
from ncbsim.principal import bureau_of
from ncbsim.simulations.message_plan import PlannedPost
from ncbsim.v2 import messages_pb2
from ncbsim.workdir import Workdir


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
class Inboxes:
    """What every bureau's inbox held at one reading, and the copies its node keeps for
    its users (``user_mail``: principal -> (sender, message id) -> processed at, ms)."""

    items: dict[str, list[InboxItem]] = field(default_factory=dict)
    notices: dict[str, list[NoticeRow]] = field(default_factory=dict)
    duplicates: int = 0
    user_mail: dict[str, dict[tuple[str, bytes], int]] = field(default_factory=dict)


def _user_mail(inbox: Inbox, user: str) -> dict[tuple[str, bytes], int]:
    """The copies ``inbox``'s node keeps for ``user``, by (sender, message id), read from
    their headers (the node cannot open them: they are sealed to the user)."""
    kept: dict[tuple[str, bytes], int] = {}
    for sealed, processed_at_ms in inbox.user_mail(user):
        try:
            header = envelope.unverified_header(envelope.Envelope.FromString(sealed))
        except (DecodeError, EnvelopeError):
            continue
        kept[(header.sender, header.message_id)] = processed_at_ms
    return kept


def read_inboxes(
    workdir: Path, bureaus: Sequence[str], *, full: bool, users: Sequence[str] = ()
) -> Inboxes:
    """Read each bureau's inbox read-only (a node that never received anything has none),
    with the copies kept for those of ``users`` (principals) under these bureaus."""
    out = Inboxes()
    for code in bureaus:
        try:
            inbox = Inbox.read(Workdir(workdir).bureau(code).inbox)
        except NcbsimError:
            continue
        try:
            out.items[code] = inbox.items()
            for user in users:
                if bureau_of(user) == code:
                    out.user_mail[user] = _user_mail(inbox, user)
            if full:
                out.notices[code] = inbox.notices()
                out.duplicates += inbox.duplicates_processed()
        finally:
            inbox.close()
    return out


def out_of_order(records: Sequence[PostRecord], inboxes: Inboxes) -> int:
    """Copies a recipient processed after a later post of the same sender."""
    order = {(r.post.sender, c.message_id): r.order for r in records for c in r.copies}
    wrong = 0
    for items in inboxes.items.values():
        latest: dict[str, int] = {}
        for item in items:
            position = order.get((item.sender, item.message_id))
            if position is None:
                continue
            if position < latest.get(item.sender, -1):
                wrong += 1
            latest[item.sender] = max(position, latest.get(item.sender, -1))
    return wrong


def notice_table(
    notice_ids: Mapping[str, bytes], records: Sequence[PostRecord], inboxes: Inboxes
) -> dict[str, dict[str, Any]]:
    """Per notice event: published by GS, how many bureaus hold it, and how fast."""
    requested = {r.post.notice: r.due_ms for r in records if r.post.kind == "notice"}
    out: dict[str, dict[str, Any]] = {}
    for label, notice_id in notice_ids.items():
        gs = next(
            (n for n in inboxes.notices.get(GENERAL_SECRETARIAT, []) if n.notice_id == notice_id),
            None,
        )
        published = gs is not None and gs.status in (
            messages_pb2.NOTICE_STATUS_PUBLISHED,
            messages_pb2.NOTICE_STATUS_WITHDRAWN,
        )
        arrivals = [
            item.processed_at_ms
            for code, items in inboxes.items.items()
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
            for code, rows in inboxes.notices.items()
            if code != GENERAL_SECRETARIAT
        )
        asked = requested.get(label)
        reviewed = [  # GS reviews a request as it processes it
            item.processed_at_ms
            for item in inboxes.items.get(GENERAL_SECRETARIAT, [])
            if isinstance(item.body, messages_pb2.NoticeRequest)
            and item.body.WhichOneof("action") == "publish"
            and item.body.publish.notice_id == notice_id
        ]
        out[label] = {
            "published": published,
            "holders": len(arrivals),
            "withdrawn": withdrawn,
            "published_s": (
                round((reviewed[0] - asked) / 1000, 3) if published and reviewed and asked else None
            ),
            "all_held_s": (
                round((max(arrivals) - asked) / 1000, 3) if arrivals and asked else None
            ),
        }
    return out


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
