"""Envelope recipes: seal and open end-to-end encrypted, signed messages.

Node, gateway and clients call only these functions; the primitives live in
:mod:`ncbsim._crypto`. The wire format is specified in docs/protocol.md.

A request is sealed with HPKE to the recipient's directory X25519 key; its body
carries a fresh ephemeral X25519 public key. The response is sealed to that
ephemeral key with the request's message id bound into the HPKE ``info`` and the
header's ``correlation_id``, so responses have forward secrecy and cannot be
replayed against another request. Every envelope is signed by its sender with
Ed25519 over the header and the sealed body.

One-way envelopes (diffusions, notice requests, notices, case messages) are sealed
with HPKE to the recipient's directory X25519 key under their own ``info``; nothing
answers them but a signed delivery receipt (:mod:`ncbsim.receipts`). Their
``correlation_id`` is the post id, shared by every recipient's copy of one post.

Every failure to open raises :class:`~ncbsim.errors.EnvelopeError`, which never
says why.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from ncbsim import _crypto
from ncbsim.directory import Peer
from ncbsim.errors import DirectoryError, EnvelopeError
from ncbsim.identity import Identity
from ncbsim.v2 import envelope_pb2

VERSION = 1
MESSAGE_ID_LEN = 16
REQUEST_INFO = b"ncbsim/v1 request"
RESPONSE_INFO = b"ncbsim/v1 response"
MESSAGE_INFO = b"ncbsim/v1 message"
SIGNATURE_CONTEXT = b"ncbsim/v1 envelope\x00"
DEFAULT_TTL_MS = 30_000
MAX_TTL_MS = 24 * 3600 * 1000
DEFAULT_MESSAGE_TTL_MS = MAX_TTL_MS
"""One-way envelopes live as long as the protocol allows: they may wait in the gateway's
store for a bureau that is down."""
CLOCK_SKEW_MS = 30_000

Envelope = envelope_pb2.Envelope
Kind = envelope_pb2.MessageKind
QUERY_REQUEST: int = envelope_pb2.MESSAGE_KIND_QUERY_REQUEST
QUERY_RESPONSE: int = envelope_pb2.MESSAGE_KIND_QUERY_RESPONSE
DIFFUSION: int = envelope_pb2.MESSAGE_KIND_DIFFUSION
NOTICE_REQUEST: int = envelope_pb2.MESSAGE_KIND_NOTICE_REQUEST
NOTICE: int = envelope_pb2.MESSAGE_KIND_NOTICE
MESSAGE: int = envelope_pb2.MESSAGE_KIND_MESSAGE
ONE_WAY_KINDS = frozenset({DIFFUSION, NOTICE_REQUEST, NOTICE, MESSAGE})
"""Kinds the gateway stores and delivers (Gateway.Post, Bureau.Deliver)."""
_RESPONSE_KIND = {QUERY_REQUEST: QUERY_RESPONSE}
_KIND_NAMES = {
    value.number: value.name.removeprefix("MESSAGE_KIND_").lower()
    for value in Kind.DESCRIPTOR.values
    if value.number
}


def kind_name(kind: int) -> str:
    """An envelope kind as audit rows and listings name it (``query_request``, ``notice``,
    ...), from the proto enum; ``unknown(N)`` for a number it does not define."""
    return _KIND_NAMES.get(kind) or f"unknown({kind})"


@dataclass(frozen=True, slots=True)
class Header:
    """The routing header, in clear. ``raw`` is the exact serialized form that is signed."""

    version: int
    message_id: bytes
    sender: str
    recipient: str
    kind: int
    issued_at_ms: int
    expires_at_ms: int
    correlation_id: bytes
    sender_key_id: bytes
    recipient_key_id: bytes
    raw: bytes
    suite: int = 0
    """Format 2 (protocol.md §15.2): the session's suite; 0 in format 1."""
    session_id: bytes = b""
    """Format 2: the session; empty in format 1."""
    seq: int = 0
    """Format 2: the request's number in its session; 0 in format 1."""

    @classmethod
    def parse(cls, raw: bytes) -> Header:
        """Decode header bytes (not authenticated by this call)."""
        try:
            h = envelope_pb2.Header.FromString(raw)
        except DecodeError:
            raise EnvelopeError from None
        return cls(
            version=h.version,
            message_id=h.message_id,
            sender=h.sender,
            recipient=h.recipient,
            kind=h.kind,
            issued_at_ms=h.issued_at_ms,
            expires_at_ms=h.expires_at_ms,
            correlation_id=h.correlation_id,
            sender_key_id=h.sender_key_id,
            recipient_key_id=h.recipient_key_id,
            raw=raw,
            suite=h.suite,
            session_id=h.session_id,
            seq=h.seq,
        )

    @property
    def message_hex(self) -> str:
        """Message id as hex, for logs and audit."""
        return self.message_id.hex()

    @property
    def correlation_hex(self) -> str:
        """Correlation id as hex, for logs and audit."""
        return self.correlation_id.hex()


@dataclass(frozen=True, slots=True)
class Opened:
    """An envelope that passed every check: its authenticated header and plaintext."""

    header: Header
    plaintext: bytes


@dataclass(frozen=True, slots=True)
class SealedRequest:
    """A sealed request and what the requester keeps to open the response."""

    envelope: Envelope
    header: Header
    response_key: _crypto.X25519PrivateKey


def _now_ms() -> int:
    return int(time.time() * 1000)


def _signed_bytes(header: bytes, sealed: bytes) -> bytes:
    return SIGNATURE_CONTEXT + len(header).to_bytes(4, "big") + header + sealed


def envelope_digest(envelope: Envelope) -> bytes:
    """SHA-256 over an envelope's three fields, each length-prefixed (protocol.md §14.4).

    Independent of how protobuf serializes the envelope, so the sender, the gateway and
    the recipient all compute the same value; a delivery receipt names it.
    """
    digest = hashlib.sha256()
    for part in (envelope.header, envelope.sealed):
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    digest.update(envelope.signature)
    return digest.digest()


def new_response_key() -> tuple[_crypto.X25519PrivateKey, bytes]:
    """A fresh ephemeral X25519 key pair for one request: (private, raw public)."""
    key = _crypto.x25519_generate()
    return key, _crypto.x25519_public_bytes(key)


def unverified_header(envelope: Envelope) -> Header:
    """The header of an envelope, for routing. Nothing about it is authenticated yet."""
    return Header.parse(envelope.header)


def _seal(
    plaintext: bytes,
    *,
    sender: Identity,
    recipient: str,
    recipient_key: _crypto.X25519PublicKey,
    recipient_key_id: bytes,
    kind: int,
    info: bytes,
    correlation_id: bytes,
    ttl_ms: int,
    now_ms: int | None,
    message_id: bytes | None,
) -> Envelope:
    issued = _now_ms() if now_ms is None else now_ms
    header = envelope_pb2.Header(
        version=VERSION,
        message_id=message_id or os.urandom(MESSAGE_ID_LEN),
        sender=sender.bureau,
        recipient=recipient,
        kind=kind,  # type: ignore[arg-type]
        issued_at_ms=issued,
        expires_at_ms=issued + ttl_ms,
        correlation_id=correlation_id,
        sender_key_id=sender.signing_key_id,
        recipient_key_id=recipient_key_id,
    ).SerializeToString()
    try:
        sealed = _crypto.hpke_seal(recipient_key, info=info, aad=header, plaintext=plaintext)
    except _crypto.CryptoFailure:  # a small-order recipient key: no shared secret
        raise EnvelopeError from None
    signature = _crypto.ed25519_sign(sender.signing_key, _signed_bytes(header, sealed))
    return Envelope(header=header, sealed=sealed, signature=signature)


def seal_request(
    plaintext: bytes,
    *,
    sender: Identity,
    recipient: Peer,
    response_key: _crypto.X25519PrivateKey,
    kind: int = QUERY_REQUEST,
    ttl_ms: int = DEFAULT_TTL_MS,
    now_ms: int | None = None,
    message_id: bytes | None = None,
    correlation_id: bytes | None = None,
) -> SealedRequest:
    """Seal a request body to ``recipient``'s directory key and sign it as ``sender``.

    ``plaintext`` must already carry the public half of ``response_key``.
    """
    envelope = _seal(
        plaintext,
        sender=sender,
        recipient=recipient.bureau,
        recipient_key=recipient.encryption_key,
        recipient_key_id=recipient.encryption_key_id,
        kind=kind,
        info=REQUEST_INFO,
        correlation_id=correlation_id or os.urandom(MESSAGE_ID_LEN),
        ttl_ms=ttl_ms,
        now_ms=now_ms,
        message_id=message_id,
    )
    return SealedRequest(
        envelope=envelope, header=Header.parse(envelope.header), response_key=response_key
    )


def seal_response(
    plaintext: bytes,
    *,
    sender: Identity,
    request: Header,
    response_key: bytes,
    ttl_ms: int = DEFAULT_TTL_MS,
    now_ms: int | None = None,
    message_id: bytes | None = None,
) -> Envelope:
    """Seal a response to the ephemeral key the request carried, bound to its message id."""
    try:
        key = _crypto.x25519_public_from_bytes(response_key)
        kind = _RESPONSE_KIND[request.kind]
    except (_crypto.CryptoFailure, KeyError):
        raise EnvelopeError from None
    return _seal(
        plaintext,
        sender=sender,
        recipient=request.sender,
        recipient_key=key,
        recipient_key_id=_crypto.key_id(response_key),
        kind=kind,
        info=RESPONSE_INFO + request.message_id,
        correlation_id=request.message_id,
        ttl_ms=ttl_ms,
        now_ms=now_ms,
        message_id=message_id,
    )


def _check(
    envelope: Envelope,
    header: Header,
    *,
    recipient: str,
    kind: int,
    sender: Peer,
    recipient_key_id: bytes,
    now_ms: int,
    clock_skew_ms: int = CLOCK_SKEW_MS,
) -> None:
    if (
        header.version != VERSION
        or header.recipient != recipient
        or header.kind != kind
        or header.sender != sender.bureau
        or len(header.message_id) != MESSAGE_ID_LEN
        or not header.issued_at_ms <= now_ms + clock_skew_ms
        or not now_ms < header.expires_at_ms
        or header.expires_at_ms - header.issued_at_ms > MAX_TTL_MS
        or header.recipient_key_id != recipient_key_id
    ):
        raise EnvelopeError
    verify_key = sender.verify_key_for(header.sender_key_id, now_ms)
    if verify_key is None:  # unknown, or a rotated-out key past its grace period
        raise EnvelopeError
    try:
        _crypto.ed25519_verify(
            verify_key, _signed_bytes(envelope.header, envelope.sealed), envelope.signature
        )
    except _crypto.CryptoFailure:
        raise EnvelopeError from None


def open_request(
    envelope: Envelope,
    *,
    recipient: Identity,
    senders: Callable[[str], Peer],
    kind: int = QUERY_REQUEST,
    now_ms: int | None = None,
    header: Header | None = None,
    clock_skew_ms: int = CLOCK_SKEW_MS,
) -> Opened:
    """Verify and decrypt a request addressed to ``recipient``.

    ``senders`` resolves the header's sender to a verified directory peer. ``header``
    may pass on what :func:`unverified_header` returned for this envelope, to save
    parsing it again; it is used only if its ``raw`` bytes are the envelope's header.
    ``clock_skew_ms`` is how far ahead of ``now_ms`` the sender's clock may be
    (``issued_at_ms``); expiry gets no allowance.
    """
    if header is None or header.raw != envelope.header:
        header = Header.parse(envelope.header)
    try:
        sender = senders(header.sender)
    except DirectoryError:
        raise EnvelopeError from None
    now_ms = _now_ms() if now_ms is None else now_ms
    key = recipient.decryption_key(header.recipient_key_id, now_ms)
    if key is None:  # sealed to a key we never had, or one rotated out past its grace
        raise EnvelopeError
    _check(
        envelope,
        header,
        recipient=recipient.bureau,
        kind=kind,
        sender=sender,
        recipient_key_id=header.recipient_key_id,
        now_ms=now_ms,
        clock_skew_ms=clock_skew_ms,
    )
    try:
        plaintext = _crypto.hpke_open(
            key,
            info=REQUEST_INFO,
            aad=envelope.header,
            sealed=envelope.sealed,
        )
    except _crypto.CryptoFailure:
        raise EnvelopeError from None
    return Opened(header=header, plaintext=plaintext)


def open_response(
    envelope: Envelope,
    *,
    request: SealedRequest,
    sender: Peer,
    now_ms: int | None = None,
) -> Opened:
    """Verify and decrypt the response to ``request``, which must come from ``sender``."""
    sent = request.header
    if sender.bureau != sent.recipient or sent.kind not in _RESPONSE_KIND:
        raise EnvelopeError
    header = Header.parse(envelope.header)
    _check(
        envelope,
        header,
        recipient=sent.sender,
        kind=_RESPONSE_KIND[sent.kind],
        sender=sender,
        recipient_key_id=_crypto.key_id(_crypto.x25519_public_bytes(request.response_key)),
        now_ms=_now_ms() if now_ms is None else now_ms,
    )
    if header.correlation_id != sent.message_id:
        raise EnvelopeError
    try:
        plaintext = _crypto.hpke_open(
            request.response_key,
            info=RESPONSE_INFO + sent.message_id,
            aad=header.raw,
            sealed=envelope.sealed,
        )
    except _crypto.CryptoFailure:
        raise EnvelopeError from None
    return Opened(header=header, plaintext=plaintext)


def seal_message(
    plaintext: bytes,
    *,
    sender: Identity,
    recipient: Peer,
    kind: int,
    post_id: bytes,
    ttl_ms: int = DEFAULT_MESSAGE_TTL_MS,
    now_ms: int | None = None,
    message_id: bytes | None = None,
) -> Envelope:
    """Seal a one-way body to ``recipient``'s directory key and sign it as ``sender``.

    ``post_id`` (16 bytes) becomes the correlation id: every recipient's copy of one post
    carries the same one, and each copy has a message id of its own.
    """
    if kind not in ONE_WAY_KINDS or len(post_id) != MESSAGE_ID_LEN:
        raise EnvelopeError
    return _seal(
        plaintext,
        sender=sender,
        recipient=recipient.bureau,
        recipient_key=recipient.encryption_key,
        recipient_key_id=recipient.encryption_key_id,
        kind=kind,
        info=MESSAGE_INFO,
        correlation_id=post_id,
        ttl_ms=ttl_ms,
        now_ms=now_ms,
        message_id=message_id,
    )


def check_message(
    envelope: Envelope,
    *,
    recipient: str,
    recipient_key_id: bytes,
    senders: Callable[[str], Peer],
    now_ms: int,
    header: Header | None = None,
    clock_skew_ms: int = CLOCK_SKEW_MS,
) -> Header:
    """The verified header of a one-way envelope to ``recipient``, sealed to key
    ``recipient_key_id``: :func:`open_message`'s checks without opening it (a node keeps
    a copy for one of its users, ``NG/x``, this way)."""
    if header is None or header.raw != envelope.header:
        header = Header.parse(envelope.header)
    if header.kind not in ONE_WAY_KINDS or len(header.correlation_id) != MESSAGE_ID_LEN:
        raise EnvelopeError
    try:
        sender = senders(header.sender)
    except DirectoryError:
        raise EnvelopeError from None
    _check(
        envelope,
        header,
        recipient=recipient,
        kind=header.kind,
        sender=sender,
        recipient_key_id=recipient_key_id,
        now_ms=now_ms,
        clock_skew_ms=clock_skew_ms,
    )
    return header


def open_message(
    envelope: Envelope,
    *,
    recipient: Identity,
    senders: Callable[[str], Peer],
    now_ms: int | None = None,
    header: Header | None = None,
    clock_skew_ms: int = CLOCK_SKEW_MS,
) -> Opened:
    """Verify and decrypt a one-way envelope addressed to ``recipient``.

    The same checks as :func:`open_request` (protocol.md §7.1), for any of
    :data:`ONE_WAY_KINDS`; the post id must be 16 bytes. The caller looks at
    ``header.kind`` to parse the body (:func:`ncbsim.messages.unpack`).
    """
    now_ms = _now_ms() if now_ms is None else now_ms
    if header is None or header.raw != envelope.header:
        header = Header.parse(envelope.header)
    key = recipient.decryption_key(header.recipient_key_id, now_ms)
    if key is None:
        raise EnvelopeError
    header = check_message(
        envelope,
        recipient=recipient.bureau,
        recipient_key_id=header.recipient_key_id,
        senders=senders,
        now_ms=now_ms,
        header=header,
        clock_skew_ms=clock_skew_ms,
    )
    try:
        plaintext = _crypto.hpke_open(
            key, info=MESSAGE_INFO, aad=envelope.header, sealed=envelope.sealed
        )
    except _crypto.CryptoFailure:
        raise EnvelopeError from None
    return Opened(header=header, plaintext=plaintext)
