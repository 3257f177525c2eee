"""Query sessions, envelope format 2 (protocol.md §15): the handshake, epoch keys, AEAD
requests and responses, checkpoints, bounds and closing, for both sides.

Pure code: no I/O, no clock reads (every call takes ``now_ms``). The requester calls
:func:`open_session`, sends the OPEN, gives the ACCEPT to :func:`finish_session` and then
seals requests with :class:`ClientSession`; the recipient's node keeps one
:class:`ServerSessions` registry. Checkpoint primitives live in :mod:`ncbsim.checkpoints`.

Every failure raises the opaque :class:`~ncbsim.errors.EnvelopeError`, except
:class:`~ncbsim.errors.SessionRefused` (``session unknown``, ``checkpoint required``).
Keys live only in memory, inside :class:`ncbsim._crypto.AeadKey` objects that ``erase``
drops; nothing of a session is ever written anywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ncbsim import _crypto, envelope
from ncbsim._session_server import ServerSession, ServerSessions
from ncbsim._session_wire import (
    BITMAP_BYTES,
    CHECKPOINT_AFTER_MS,
    CHECKPOINT_EVERY,
    DEFAULT_SUITE,
    EPOCH_MAX_MS,
    EPOCH_MAX_REQUESTS,
    MAX_SESSIONS_PER_PEER,
    MAX_UNCOVERED,
    REKEY_AFTER_MS,
    REKEY_AFTER_REQUESTS,
    REQUEST_NONCE,
    RESPONSE_NONCE,
    SEED_LEN,
    SESSION_ACCEPT,
    SESSION_CLOSE,
    SESSION_CLOSED,
    SESSION_ID_LEN,
    SESSION_OPEN,
    SUITE_NAMES,
    SUITES,
    VERSION,
    HeaderTemplate,
    accept_info,
    bit,
    check_header,
    epoch_keys,
    nonce,
    set_bit,
    signed_bytes_v2,
    verify_envelope,
)
from ncbsim.checkpoints import (
    Checkpoint,
    Covered,
    CoveredRequest,
    Uncovered,
    leaf,
    sign_checkpoint,
    verify_checkpoint,
)
from ncbsim.directory import Peer
from ncbsim.envelope import Envelope, Header, Opened
from ncbsim.errors import EnvelopeError, SessionRefused
from ncbsim.identity import Identity
from ncbsim.v2 import session_pb2

__all__ = [
    "CHECKPOINT_AFTER_MS",
    "CHECKPOINT_EVERY",
    "DEFAULT_SUITE",
    "EPOCH_MAX_MS",
    "EPOCH_MAX_REQUESTS",
    "MAX_SESSIONS_PER_PEER",
    "MAX_UNCOVERED",
    "REKEY_AFTER_MS",
    "REKEY_AFTER_REQUESTS",
    "SESSION_ACCEPT",
    "SESSION_CLOSE",
    "SESSION_CLOSED",
    "SESSION_OPEN",
    "SUITES",
    "SUITE_NAMES",
    "VERSION",
    "ClientSession",
    "Covered",
    "CoveredRequest",
    "Opening",
    "ServerSession",
    "ServerSessions",
    "SessionRequest",
    "finish_session",
    "leaf",
    "open_session",
    "signed_bytes_v2",
    "verify_checkpoint",
]

_REQUEST, _RESPONSE = envelope.QUERY_REQUEST, envelope.QUERY_RESPONSE


# ----------------------------------------------------------------------------- requester


@dataclass
class Opening:
    """A's handshake in progress: the OPEN it sent, and privately the ephemeral key."""

    envelope: Envelope
    header: Header
    suite: int
    peer: str
    _ek: _crypto.KemPrivate | None = field(default=None, repr=False)
    _ek_public: bytes = field(default=b"", repr=False)

    def erase(self) -> None:
        """Forget the ephemeral private key (the handshake was given up or finished)."""
        self._ek = None


def open_session(
    sender: Identity,
    recipient: Peer,
    *,
    suite: int,
    now_ms: int,
    ttl_ms: int = envelope.DEFAULT_TTL_MS,
    message_id: bytes | None = None,
    session_id: bytes | None = None,
    correlation_id: bytes | None = None,
    ephemeral: tuple[_crypto.KemPrivate, bytes] | None = None,
) -> Opening:
    """A SESSION_OPEN from ``sender`` to ``recipient`` (§15.3). The ids and the ephemeral
    key pair are drawn fresh unless given (known-answer vectors only)."""
    if suite not in SUITE_NAMES or not 0 < ttl_ms <= envelope.MAX_TTL_MS:
        raise EnvelopeError
    ek, ek_public = ephemeral or _crypto.kem_generate(suite)
    raw = HeaderTemplate(
        sender=sender.bureau,
        recipient=recipient.bureau,
        kind=SESSION_OPEN,
        sender_key_id=sender.signing_key_id,
        recipient_key_id=recipient.encryption_key_id,
        suite=suite,
        session_id=session_id or os.urandom(SESSION_ID_LEN),
    ).render(
        message_id or os.urandom(envelope.MESSAGE_ID_LEN),
        now_ms,
        now_ms + ttl_ms,
        correlation_id or os.urandom(envelope.MESSAGE_ID_LEN),
        0,
    )
    sealed = session_pb2.SessionOpen(ephemeral_key=ek_public).SerializeToString()
    signature = _crypto.ed25519_sign(sender.signing_key, signed_bytes_v2(raw, sealed))
    env = Envelope(header=raw, sealed=sealed, signature=signature)
    return Opening(env, Header.parse(raw), suite, recipient.bureau, ek, ek_public)


def finish_session(
    opening: Opening, accept: Envelope, *, sender: Identity, peer: Peer, now_ms: int
) -> ClientSession:
    """Check B's SESSION_ACCEPT (§15.3), derive the epoch keys (§15.4) and erase the
    ephemeral key. A refused ACCEPT (EnvelopeError) leaves the opening as it was, so a
    forged one does not spoil the handshake; call :meth:`Opening.erase` on giving up."""
    sent = opening.header
    header = Header.parse(accept.header)
    check_header(
        header, kind=SESSION_ACCEPT, sender=opening.peer, recipient=sent.sender, now_ms=now_ms
    )
    if (
        peer.bureau != opening.peer
        or opening._ek is None
        or header.suite != opening.suite
        or header.session_id != sent.session_id
        or header.correlation_id != sent.message_id
        or header.recipient_key_id != _crypto.key_id(opening._ek_public)
        or header.seq != 0
        or sender.bureau != sent.sender
        or accept.checkpoint
    ):
        raise EnvelopeError
    verify_envelope(peer.verify_key_for(header.sender_key_id, now_ms), accept)
    open_signed = signed_bytes_v2(opening.envelope.header, opening.envelope.sealed)
    accept_signed = signed_bytes_v2(accept.header, accept.sealed)
    info = accept_info(open_signed, accept.header)
    try:
        seed = _crypto.kem_open(opening.suite, opening._ek, info=info, sealed=accept.sealed)
    except _crypto.CryptoFailure:
        raise EnvelopeError from None
    if len(seed) != SEED_LEN:
        raise EnvelopeError
    opening.erase()
    k_request, k_response, commitment = epoch_keys(open_signed, accept_signed, seed)
    del seed
    return ClientSession(
        sender=sender,
        opening=sent,
        peer_signing_key_id=header.sender_key_id,
        keys=(k_request, k_response, commitment),
    )


@dataclass(frozen=True, slots=True)
class SessionRequest:
    """A sealed session request, and what opening its response needs."""

    envelope: Envelope
    header: Header
    seq: int
    session: ClientSession


class ClientSession:
    """A's side of one epoch: seals requests, opens their responses, signs checkpoints."""

    __slots__ = (
        "_answered",
        "_close_template",
        "_closed",
        "_commitment",
        "_request_key",
        "_response_key",
        "_sender",
        "_template",
        "_uncovered",
        "opened_at_ms",
        "peer",
        "peer_encryption_key_id",
        "peer_signing_key_id",
        "sent",
        "session_id",
        "suite",
    )

    def __init__(
        self,
        *,
        sender: Identity,
        opening: Header,
        peer_signing_key_id: bytes,
        keys: tuple[bytes, bytes, bytes],
    ) -> None:
        self.peer = opening.recipient
        self.session_id = opening.session_id
        self.suite = opening.suite
        self.opened_at_ms = opening.issued_at_ms
        self.peer_signing_key_id = peer_signing_key_id
        self.peer_encryption_key_id = opening.recipient_key_id
        self.sent = 0
        self._sender = sender
        self._request_key = _crypto.AeadKey(keys[0])
        self._response_key = _crypto.AeadKey(keys[1])
        self._commitment = keys[2]
        self._answered = bytearray(BITMAP_BYTES)
        self._uncovered = Uncovered()
        self._closed = False
        fixed = {
            "sender": opening.sender,
            "recipient": opening.recipient,
            "sender_key_id": opening.sender_key_id,
            "recipient_key_id": opening.recipient_key_id,
            "suite": opening.suite,
            "session_id": opening.session_id,
        }
        self._template = HeaderTemplate(kind=_REQUEST, **fixed)  # type: ignore[arg-type]
        self._close_template = HeaderTemplate(kind=SESSION_CLOSE, **fixed)  # type: ignore[arg-type]

    def usable(self, now_ms: int) -> bool:
        """Whether a request may still be sealed: not closed, within 60 s and 10,000."""
        return (
            not self._closed
            and now_ms < self.opened_at_ms + EPOCH_MAX_MS
            and self.sent < EPOCH_MAX_REQUESTS
        )

    def due_for_rekey(self, now_ms: int) -> bool:
        """Whether to open the next session now (50 s or 9,000 requests reached)."""
        return now_ms >= self.opened_at_ms + REKEY_AFTER_MS or self.sent >= REKEY_AFTER_REQUESTS

    def _checkpoint(self, now_ms: int) -> bytes:
        first, leaves = self._uncovered.take()
        checkpoint = Checkpoint(
            version=1,
            sender=self._sender.bureau,
            recipient=self.peer,
            session_id=self.session_id,
            key_commitment=self._commitment,
            first_seq=first,
            leaves=leaves,
            signed_at_ms=now_ms,
        )
        return sign_checkpoint(self._sender.signing_key, checkpoint)

    def seal_request(
        self,
        plaintext: bytes,
        *,
        now_ms: int,
        ttl_ms: int = envelope.DEFAULT_TTL_MS,
        correlation_id: bytes | None = None,
        message_id: bytes | None = None,
    ) -> SessionRequest:
        """Seal the next request (§15.5), with a checkpoint when the cadence asks for one.

        SessionRefused("session unknown") once the session is closed or past a bound.
        """
        if not self.usable(now_ms):
            raise SessionRefused(SessionRefused.UNKNOWN)
        if not 0 < ttl_ms <= envelope.MAX_TTL_MS:
            raise EnvelopeError
        seq = self.sent + 1
        fresh = os.urandom(32)  # one call for both ids
        message_id = message_id or fresh[:16]
        correlation_id = correlation_id or fresh[16:]
        expires = now_ms + ttl_ms
        raw = self._template.render(message_id, now_ms, expires, correlation_id, seq)
        try:
            sealed = self._request_key.seal(nonce(REQUEST_NONCE, seq), raw, plaintext)
        except _crypto.CryptoFailure:
            raise SessionRefused(SessionRefused.UNKNOWN) from None
        checkpoint = b""
        if self._uncovered.due(now_ms, every=CHECKPOINT_EVERY, after_ms=CHECKPOINT_AFTER_MS):
            checkpoint = self._checkpoint(now_ms)
        self._uncovered.add(raw, sealed, now_ms)
        self.sent = seq
        t = self._template
        header = Header(
            VERSION,
            message_id,
            t.sender,
            t.recipient,
            _REQUEST,
            now_ms,
            expires,
            correlation_id,
            t.sender_key_id,
            t.recipient_key_id,
            raw,
            t.suite,
            t.session_id,
            seq,
        )
        env = Envelope(header=raw, sealed=sealed, checkpoint=checkpoint)
        return SessionRequest(env, header, seq, self)

    def open_response(self, request: SessionRequest, response: Envelope, *, now_ms: int) -> Opened:
        """Check and decrypt the one response to ``request`` (§15.5); EnvelopeError."""
        sent = request.header
        header = Header.parse(response.header)
        check_header(header, kind=_RESPONSE, sender=self.peer, recipient=sent.sender, now_ms=now_ms)
        seq = sent.seq
        if (
            request.session is not self
            or header.correlation_id != sent.message_id
            or header.session_id != self.session_id
            or header.suite != self.suite
            or header.seq != seq
            or header.sender_key_id != self.peer_signing_key_id
            or header.recipient_key_id
            or response.signature
            or response.checkpoint
            or bit(self._answered, seq)
        ):
            raise EnvelopeError
        try:
            plaintext = self._response_key.open(
                nonce(RESPONSE_NONCE, seq), response.header, response.sealed
            )
        except _crypto.CryptoFailure:
            raise EnvelopeError from None
        set_bit(self._answered, seq)
        return Opened(header, plaintext)

    def close(
        self,
        *,
        now_ms: int,
        message_id: bytes | None = None,
        correlation_id: bytes | None = None,
    ) -> Envelope:
        """The SESSION_CLOSE (§15.7): the final checkpoint, signed; no request after it."""
        self._closed = True
        checkpoint = self._checkpoint(now_ms) if self._uncovered.leaves else b""
        raw = self._close_template.render(
            message_id or os.urandom(16),
            now_ms,
            now_ms + envelope.DEFAULT_TTL_MS,
            correlation_id or os.urandom(16),
            self.sent,
        )
        signature = _crypto.ed25519_sign(self._sender.signing_key, signed_bytes_v2(raw, b""))
        return Envelope(header=raw, sealed=b"", signature=signature, checkpoint=checkpoint)

    def check_closed(self, close: Envelope, closed: Envelope, *, peer: Peer, now_ms: int) -> None:
        """Check B's SESSION_CLOSED for ``close``; erase the keys whatever the outcome."""
        try:
            sent = Header.parse(close.header)
            header = Header.parse(closed.header)
            check_header(
                header, kind=SESSION_CLOSED, sender=self.peer, recipient=sent.sender, now_ms=now_ms
            )
            if (
                peer.bureau != self.peer
                or header.correlation_id != sent.message_id
                or header.session_id != self.session_id
                or header.suite != self.suite
                or header.seq != sent.seq
                or closed.sealed
                or closed.checkpoint
            ):
                raise EnvelopeError
            verify_envelope(peer.verify_key_for(header.sender_key_id, now_ms), closed)
        finally:
            self.erase()

    def erase(self) -> None:
        """Forget the epoch keys; the session is unusable from now on."""
        self._closed = True
        self._request_key.erase()
        self._response_key.erase()
        self._commitment = b""
        self._uncovered = Uncovered()

    @property
    def erased(self) -> bool:
        """Whether the keys are gone."""
        return self._request_key.erased
