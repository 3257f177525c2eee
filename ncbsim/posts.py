"""One-way posts without the network: what a post is addressed to, what it carries, and
what became of each copy.

:func:`addressees` and :func:`ttl_checked` check a post's arguments, :func:`attachment`
and :func:`notice_draft` build bodies. :class:`Copy` and :class:`PostOutcome` say what the
gateway answered a post; :class:`Delivered` is one row of Gateway.Receipts, verified
against the recipient's signed receipt by :func:`delivered`. :class:`ncbsim.mail.Mailer`
does the sending.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

from ncbsim import envelope, messages, principal, receipts
from ncbsim.client import ALL
from ncbsim.countries import GENERAL_SECRETARIAT
from ncbsim.directory import Peer
from ncbsim.errors import ConfigError, EnvelopeError, PkiError
from ncbsim.v2 import gateway_pb2, messages_pb2

CopyStatus = Literal["accepted", "duplicate", "queue_full", "failed"]
State = Literal["queued", "delivered", "expired", "rejected", "unknown"]

POST_STATUS: dict[int, CopyStatus] = {
    gateway_pb2.POST_STATUS_ACCEPTED: "accepted",
    gateway_pb2.POST_STATUS_DUPLICATE: "duplicate",
    gateway_pb2.POST_STATUS_QUEUE_FULL: "queue_full",
}
_STATE: dict[int, State] = {
    gateway_pb2.MESSAGE_STATE_QUEUED: "queued",
    gateway_pb2.MESSAGE_STATE_DELIVERED: "delivered",
    gateway_pb2.MESSAGE_STATE_EXPIRED: "expired",
    gateway_pb2.MESSAGE_STATE_REJECTED: "rejected",
}


@dataclass(frozen=True, slots=True)
class Copy:
    """One recipient's copy of a post, and what the gateway said about it.

    ``accepted`` and ``duplicate`` (the gateway had stored this very envelope before,
    on an earlier attempt) both mean stored durably: it will be delivered or expire.
    ``failed`` after a last attempt that timed out (DEADLINE_EXCEEDED in ``detail``)
    may still have been stored: :meth:`Mailer.receipts` tells.
    """

    recipient: str
    message_id: bytes
    status: CopyStatus
    sequence: int = 0
    detail: str = ""
    accepted_at_ms: int = 0

    @property
    def stored(self) -> bool:
        """Whether the gateway holds this copy (accepted now or before)."""
        return self.status in ("accepted", "duplicate")

    @property
    def message_hex(self) -> str:
        """The copy's message id as hex."""
        return self.message_id.hex()


@dataclass(frozen=True, slots=True)
class PostOutcome:
    """What became of one post: one :class:`Copy` per recipient, in recipient order."""

    post_id: bytes
    kind: int
    copies: list[Copy]
    attempts: int = 0
    """Gateway.Post calls made, retries included."""
    notice_id: bytes = b""
    """The notice a notice request (publication or withdrawal) is about; else empty."""

    @property
    def post_hex(self) -> str:
        """The post id as hex."""
        return self.post_id.hex()

    @property
    def stored(self) -> bool:
        """Whether the gateway holds every copy."""
        return bool(self.copies) and all(c.stored for c in self.copies)

    @property
    def recipients(self) -> list[str]:
        """Every recipient, in order."""
        return [c.recipient for c in self.copies]


@dataclass(frozen=True, slots=True)
class Delivered:
    """One copy this bureau posted, as the gateway reports it (Gateway.Receipts).

    ``verified`` is True only for a delivered copy whose receipt carries the
    recipient's valid signature and names this copy (message id, post id, both
    parties); ``processed_at_ms`` then comes from the receipt.
    """

    sequence: int
    message_id: bytes
    post_id: bytes
    recipient: str
    kind: int
    state: State
    accepted_at_ms: int
    expires_at_ms: int
    settled_at_ms: int
    attempts: int
    detail: str = ""
    verified: bool = False
    processed_at_ms: int = 0

    @property
    def message_hex(self) -> str:
        """The copy's message id as hex."""
        return self.message_id.hex()

    @property
    def post_hex(self) -> str:
        """The post id as hex."""
        return self.post_id.hex()


def addressees(sender: str, kind: int, to: Sequence[str]) -> list[str]:
    """``to`` as principals, bureau codes upper case, or ConfigError if it cannot be a
    post's address. A diffusion or a case message may name a bureau's user (``NG/x``):
    its bureau's node keeps the copy for it, sealed to the user (docs/users.md)."""
    codes = [_addressee(c) for c in to if c.strip()]
    if not codes:
        raise ConfigError("no recipient given")
    if ALL in codes and codes != [ALL]:
        raise ConfigError("ALL stands alone: give ALL or a list of bureaus")
    if sender in codes:
        raise ConfigError(f"{sender} cannot send to itself")
    users = [c for c in codes if principal.is_user(c)]
    if users and kind not in (envelope.DIFFUSION, envelope.MESSAGE):
        raise ConfigError(f"only diffusions and case messages go to users, not to {users[0]}")
    if kind == envelope.NOTICE_REQUEST and codes != [GENERAL_SECRETARIAT]:
        raise ConfigError("a notice request goes to GS only")
    return codes


def _addressee(text: str) -> str:
    """One recipient as typed: ``ALL``, a bureau or a user, its bureau part upper case."""
    bureau, slash, name = text.strip().partition("/")
    value = bureau.upper() + slash + name
    if value == ALL:
        return value
    try:
        return principal.check_principal(value)
    except PkiError as exc:
        raise ConfigError(str(exc)) from None


def attachment(name: str, data: bytes, media_type: str = "") -> messages_pb2.Attachment:
    """An attachment (``media_type`` defaults to application/octet-stream)."""
    return messages_pb2.Attachment(
        name=name, media_type=media_type or "application/octet-stream", data=data
    )


def notice_draft(
    color: int | str,
    subject: messages_pb2.NoticeSubject,
    summary: str = "",
    text: str = "",
    *,
    notice_id: bytes | None = None,
) -> messages_pb2.NoticeRequest:
    """A request to publish a notice (a fresh notice id unless given).

    ``color`` is a NoticeColor or its name (``red``, ``un-special``, ...); ConfigError
    if unknown or if the summary and text are too long.
    """
    value = messages.color(color) if isinstance(color, str) else color
    if value not in messages.COLOR_NAMES:
        raise ConfigError(f"unknown notice colour {color!r}")
    messages.check_size(summary + text, [])
    draft = messages_pb2.NoticeDraft(
        notice_id=os.urandom(envelope.MESSAGE_ID_LEN) if notice_id is None else notice_id,
        color=cast("messages_pb2.NoticeColor", value),
        subject=subject,
        summary=summary,
        text=text,
    )
    return messages_pb2.NoticeRequest(publish=draft)


def ttl_checked(ttl_ms: int) -> int:
    """``ttl_ms``, or ConfigError if a message cannot live that long."""
    if not 0 < ttl_ms <= envelope.MAX_TTL_MS:
        raise ConfigError(
            f"a message lives between 1 ms and {envelope.MAX_TTL_MS // 3_600_000} h, "
            f"not {ttl_ms} ms"
        )
    return ttl_ms


def delivered(
    row: gateway_pb2.PostedMessage, signer: Peer | None, *, sender: str, now_ms: int
) -> Delivered:
    """``row`` of Gateway.Receipts as a :class:`Delivered` of ``sender``'s: verified when
    its receipt carries ``signer``'s valid signature and names this very copy."""
    verified, processed_at_ms = False, 0
    if row.state == gateway_pb2.MESSAGE_STATE_DELIVERED and signer is not None:
        try:
            receipt = receipts.verify(row.receipt, signer=signer, now_ms=now_ms)
        except EnvelopeError:
            receipt = None
        if receipt is not None and (
            receipt.message_id == row.message_id
            and receipt.post_id == row.post_id
            and receipt.sender == sender
            and receipt.recipient == row.recipient
        ):
            verified, processed_at_ms = True, receipt.processed_at_ms
    return Delivered(
        sequence=row.sequence,
        message_id=row.message_id,
        post_id=row.post_id,
        recipient=row.recipient,
        kind=row.kind,
        state=_STATE.get(row.state, "unknown"),
        accepted_at_ms=row.accepted_at_ms,
        expires_at_ms=row.expires_at_ms,
        settled_at_ms=row.settled_at_ms,
        attempts=row.attempts,
        detail=row.detail,
        verified=verified,
        processed_at_ms=processed_at_ms,
    )
