"""Admission: the checks that decide whether the gateway takes a request, without gRPC.

Each RPC parses its raw request here (:func:`parse`) and holds every envelope against
the caller's mTLS identity and the protocol's rules before it is relayed
(:func:`admit_query`, :func:`admit_queries`) or stored (:func:`admit_post`,
:func:`admit_posts`). Queries and posts share one header check (:func:`check_header`)
and differ only in the kinds they take and the one-way rules. A refusal is a domain
error (:mod:`ncbsim.errors`) that the RPC turns into its status. The directory, the
users' book, the rate limiter and the time are passed in, so every rule is tested
without a server.

A caller may be a bureau's user (``FR/x``, docs/users.md). Its bureau-signed rights
decide what it may do here: no query kinds, no query envelopes (RightsError); a one-way
copy only of a kind in its ``send_kinds``; a copy to a user only of a kind in that
user's ``receive_kinds``; its own rate and daily limit. A query's recipient is always a
bureau; a copy's may be a user, routed to its bureau's node.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from typing import Protocol, TypeVar

from google.protobuf.message import DecodeError, Message

from ncbsim import envelope, session
from ncbsim.countries import GENERAL_SECRETARIAT
from ncbsim.errors import (
    ConfigError,
    DirectoryError,
    EnvelopeError,
    IdentityError,
    PkiError,
    RevokedError,
    RightsError,
    RoutingError,
)
from ncbsim.gateway.copies import Incoming
from ncbsim.gateway.limits import BureauLimit, RateLimiter, check_size, user_limit
from ncbsim.pki import check_bureau_code
from ncbsim.principal import bureau_of, check_principal, is_user
from ncbsim.protocol import MAX_ENVELOPES_PER_CALL
from ncbsim.users import Rights, User

_Message = TypeVar("_Message", bound=Message)
QUERY_KINDS = frozenset({envelope.QUERY_REQUEST, session.SESSION_OPEN, session.SESSION_CLOSE})
"""The kinds ``Query`` and ``MultiQuery`` relay: a query, and a session's opening and
closing (docs/protocol.md §15); one-way kinds go to ``Post``."""
QUERY_VERSIONS = frozenset({envelope.VERSION, session.VERSION})
"""Query envelopes may be format 1 or 2 (sessions); one-way envelopes are format 1."""


class Directory(Protocol):
    """What admission asks of the directory (a :class:`DirectoryFiles`)."""

    def known(self, bureau: str) -> bool:
        """Whether ``bureau`` has an entry (DirectoryError if it is revoked)."""
        ...

    def send_only(self, bureau: str) -> bool:
        """Whether ``bureau`` runs no node to deliver to."""
        ...


class Users(Protocol):
    """What admission asks of the users' book (a :class:`~ncbsim.gateway.user_files.UserFiles`)."""

    def user(self, principal: str) -> User:
        """The current user ``FR/x``: RevokedError if revoked, DirectoryError if unknown."""
        ...


def _rights(users: Users | None, principal: str) -> Rights:
    """The rights of a user caller (checked already by the credentials step)."""
    if users is None:
        raise IdentityError(f"{principal}: this gateway serves no users")
    try:
        return users.user(principal).rights
    except DirectoryError as exc:
        raise IdentityError(str(exc)) from None


def limit_for(peer: str, users: Users | None) -> BureauLimit | None:
    """A user's own limit from its rights; None for a bureau (the limiter's own)."""
    return user_limit(_rights(users, peer)) if is_user(peer) else None


def is_principal(value: str) -> bool:
    """Whether ``value`` is a well-formed bureau code or user ``FR/x``."""
    try:
        check_principal(value)
    except PkiError:
        return False
    return True


def is_code(value: str) -> bool:
    """Whether ``value`` is a well-formed bureau code."""
    try:
        check_bureau_code(value)
    except PkiError:
        return False
    return True


def header_or_none(request: envelope.Envelope | None) -> envelope.Header | None:
    """The header of a refused envelope, if it parses, for the audit trail."""
    if request is None:
        return None
    try:
        return envelope.unverified_header(request)
    except EnvelopeError:
        return None


def id_hex(value: bytes) -> str:
    """An id of a refused envelope as hex, if it has the protocol's length (else empty)."""
    return value.hex() if len(value) == envelope.MESSAGE_ID_LEN else ""


def parse(raw: bytes, message: type[_Message], *, max_bytes: int | None) -> _Message:
    """One request parsed from its raw bytes: LimitExceeded if too large, else
    EnvelopeError if it is not a protobuf of that type."""
    if max_bytes is not None:
        check_size(len(raw), max_bytes)
    try:
        return message.FromString(raw)
    except DecodeError:
        raise EnvelopeError from None


def refused_rows(
    items: Sequence[envelope.Envelope], request_bytes: int
) -> list[tuple[int, envelope.Header | None]]:
    """The (size, header) to audit for each envelope of a refused call: one row per
    envelope; a single row for a request too odd to list (so an oversized fan-out
    cannot make the gateway write thousands of rows)."""
    if not 0 < len(items) <= MAX_ENVELOPES_PER_CALL:
        return [(request_bytes, None)]
    return [(i.ByteSize(), header_or_none(i)) for i in items]


def check_batch(items: Sequence[envelope.Envelope], request_bytes: int, max_bytes: int) -> None:
    """Refuse a call of no envelopes or too many (EnvelopeError), or one whose envelope is
    over ``max_bytes`` (LimitExceeded)."""
    if not items or len(items) > MAX_ENVELOPES_PER_CALL:
        raise EnvelopeError
    if request_bytes > max_bytes:  # only then can one envelope be over it
        for item in items:
            check_size(item.ByteSize(), max_bytes)


def meter_batch(
    peer: str | None,
    items: Sequence[envelope.Envelope],
    request_bytes: int,
    *,
    max_bytes: int,
    limiter: RateLimiter,
    users: Users | None = None,
) -> None:
    """:func:`check_batch`, then count every envelope against the caller's limit (before
    admission: refusals count too; a user's from its rights), or raise for the whole call."""
    check_batch(items, request_bytes, max_bytes)
    if peer is not None:
        limiter.take(peer, len(items), limit=limit_for(peer, users))


def check_header(
    peer: str | None,
    request: envelope.Envelope,
    kinds: Container[int],
    versions: Container[int] = (envelope.VERSION,),
    *,
    user_recipient: bool = False,
) -> envelope.Header:
    """The header of ``request`` if the caller may send it: IdentityError if there is no
    bureau or user certificate or the sender is not the caller, EnvelopeError if the
    header is not one of ``versions`` (default: 1) with ids of the protocol's length, one
    of ``kinds`` and a recipient that is a bureau code (or a user, if ``user_recipient``)."""
    if peer is None:
        raise IdentityError("a bureau certificate is required")
    header = envelope.unverified_header(request)
    if header.sender != peer:  # peer is a valid principal, so this also bounds the sender
        raise IdentityError("header sender does not match the authenticated bureau or user")
    recipient_ok = is_principal if user_recipient else is_code
    if (
        header.version not in versions
        or len(header.message_id) != envelope.MESSAGE_ID_LEN
        or len(header.correlation_id) != envelope.MESSAGE_ID_LEN
        or header.kind not in kinds
        or not recipient_ok(header.recipient)
    ):
        raise EnvelopeError
    return header


def admit_query(
    peer: str | None,
    request: envelope.Envelope,
    directory: Directory,
    users: Users | None = None,
) -> envelope.Header:
    """Check one query envelope against the caller's identity; raise a domain error if
    refused. A user whose bureau granted it no query kinds may not send one (RightsError;
    the recipient checks the kind itself, which only it can see)."""
    header = check_header(peer, request, QUERY_KINDS, QUERY_VERSIONS)
    if is_user(header.sender) and not _rights(users, header.sender).query_kinds:
        raise RightsError(f"{header.sender} may not query: its bureau granted no query kinds")
    if not directory.known(header.recipient):
        raise RoutingError(f"unknown bureau {header.recipient!r}")
    return header


def admit_queries(
    peer: str | None,
    items: Sequence[envelope.Envelope],
    request_bytes: int,
    *,
    max_bytes: int,
    limiter: RateLimiter,
    directory: Directory,
    users: Users | None = None,
) -> list[tuple[envelope.Envelope, envelope.Header]]:
    """Size, meter and admit every envelope of a MultiQuery (distinct recipients), or
    raise for the whole call."""
    meter_batch(peer, items, request_bytes, max_bytes=max_bytes, limiter=limiter, users=users)
    admitted = [(item, admit_query(peer, item, directory, users)) for item in items]
    recipients = [h.recipient for _, h in admitted]
    if len(set(recipients)) != len(recipients):
        raise EnvelopeError
    return admitted


def admit_post(
    peer: str | None,
    request: envelope.Envelope,
    now_ms: int,
    directory: Directory,
    users: Users | None = None,
) -> envelope.Header:
    """Check one envelope of a Post against the caller, its rights (a user's) and the
    one-way rules."""
    header = check_header(peer, request, envelope.ONE_WAY_KINDS, user_recipient=True)
    if header.recipient == header.sender:
        raise ConfigError("a bureau cannot post to itself")
    if is_user(header.sender) and not _rights(users, header.sender).may_send(header.kind):
        raise RightsError(f"{header.sender} may not send {envelope.kind_name(header.kind)}")
    if header.kind == envelope.NOTICE and peer != GENERAL_SECRETARIAT:
        raise IdentityError(f"only {GENERAL_SECRETARIAT} may post notices")
    if header.kind == envelope.NOTICE_REQUEST and header.recipient != GENERAL_SECRETARIAT:
        raise ConfigError(f"a notice request goes to {GENERAL_SECRETARIAT} only")
    if header.expires_at_ms <= now_ms:
        raise ConfigError("the envelope expired before it was posted")
    if header.expires_at_ms - header.issued_at_ms > envelope.MAX_TTL_MS:
        raise ConfigError(f"time to live over {envelope.MAX_TTL_MS // 3_600_000} h")
    # Future-dated copies would outlive the TTL bound in the store: every stored copy
    # expires within MAX_TTL_MS (plus the clock skew allowed) of its acceptance.
    if header.issued_at_ms > now_ms + envelope.CLOCK_SKEW_MS:
        raise ConfigError("the envelope is issued in the future")
    if header.expires_at_ms > now_ms + envelope.MAX_TTL_MS + envelope.CLOCK_SKEW_MS:
        raise ConfigError(
            f"the envelope expires more than {envelope.MAX_TTL_MS // 3_600_000} h from now"
        )
    node = bureau_of(header.recipient)  # a copy to a user goes to its bureau's node
    if not directory.known(node):
        raise RoutingError(f"unknown bureau {node!r}")
    if directory.send_only(node):
        raise DirectoryError(f"{node} only sends: it runs no node to deliver to")
    if is_user(header.recipient):
        _check_user_recipient(users, header)
    return header


def _check_user_recipient(users: Users | None, header: envelope.Header) -> None:
    """A copy to a user: the user is known, not revoked, and may receive its kind."""
    recipient = header.recipient
    if users is None:
        raise RoutingError(f"unknown user {recipient!r}")
    try:
        rights = users.user(recipient).rights
    except RevokedError as exc:
        raise DirectoryError(str(exc)) from None
    except DirectoryError:
        raise RoutingError(f"unknown user {recipient!r}") from None
    if not rights.may_receive(header.kind):
        raise RightsError(f"{recipient} may not receive {envelope.kind_name(header.kind)}")


def admit_posts(
    peer: str | None,
    items: Sequence[envelope.Envelope],
    request_bytes: int,
    *,
    max_bytes: int,
    limiter: RateLimiter,
    directory: Directory,
    clock_ms: Callable[[], int],
    users: Users | None = None,
) -> list[Incoming]:
    """Size, meter and admit every envelope of a Post, or raise for the whole call."""
    meter_batch(peer, items, request_bytes, max_bytes=max_bytes, limiter=limiter, users=users)
    now_ms = clock_ms()
    admitted = []
    for item in items:
        header = admit_post(peer, item, now_ms, directory, users)
        data = item.SerializeToString()
        admitted.append(Incoming(header, data, envelope.envelope_digest(item)))
    return admitted
