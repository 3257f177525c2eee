"""The recipient's side of query sessions (protocol.md §15): accept, open requests, seal
responses, take checkpoints, close, and end sessions on rotation, revocation and bounds.

:class:`ServerSessions` is a node's registry, one per node identity; its names are
exported by :mod:`ncbsim.session`, the module callers import. Pure: no I/O, no clock
reads. Every failure is the opaque :class:`~ncbsim.errors.EnvelopeError`, except
:class:`~ncbsim.errors.SessionRefused`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from google.protobuf.message import DecodeError

from ncbsim import _crypto, envelope
from ncbsim._session_wire import (
    BITMAP_BYTES,
    EPOCH_MAX_MS,
    EPOCH_MAX_REQUESTS,
    MAX_SESSIONS_PER_PEER,
    MAX_UNCOVERED,
    REQUEST_NONCE,
    RESPONSE_NONCE,
    SEED_LEN,
    SESSION_ACCEPT,
    SESSION_CLOSE,
    SESSION_CLOSED,
    SESSION_ID_LEN,
    SESSION_OPEN,
    SUITE_NAMES,
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
from ncbsim.checkpoints import Coverage, Covered, verify_checkpoint
from ncbsim.directory import Peer
from ncbsim.envelope import Envelope, Header, Opened
from ncbsim.errors import DirectoryError, EnvelopeError, Replayed, SessionRefused
from ncbsim.identity import Identity
from ncbsim.v2 import session_pb2

_REQUEST, _RESPONSE = envelope.QUERY_REQUEST, envelope.QUERY_RESPONSE
_MAX_LATE = 1_024
"""Covered items :meth:`ServerSessions.drain_covered` keeps for its caller, newest last."""


def _parsed(env: Envelope, header: Header | None) -> Header:
    """``header`` if it was parsed from this envelope's header bytes, else a fresh parse."""
    if header is None or (header.raw is not env.header and header.raw != env.header):
        return Header.parse(env.header)
    return header


class ServerSession:
    """B's side of one epoch with one requester."""

    __slots__ = (
        "_answered",
        "_commitment",
        "_coverage",
        "_ended",
        "_max_seen",
        "_recipient",
        "_request_key",
        "_response_key",
        "_response_template",
        "_seen",
        "accepted_at_ms",
        "own_key_id",
        "recipient_key_id",
        "sender",
        "sender_key_id",
        "session_id",
        "suite",
    )

    def __init__(
        self,
        *,
        opening: Header,
        own_key_id: bytes,
        accepted_at_ms: int,
        keys: tuple[bytes, bytes, bytes],
    ) -> None:
        self.sender = opening.sender
        self.session_id = opening.session_id
        self.suite = opening.suite
        self.accepted_at_ms = accepted_at_ms
        self.sender_key_id = opening.sender_key_id
        self.recipient_key_id = opening.recipient_key_id
        self.own_key_id = own_key_id
        self._recipient = opening.recipient
        self._request_key = _crypto.AeadKey(keys[0])
        self._response_key = _crypto.AeadKey(keys[1])
        self._commitment = keys[2]
        self._seen = bytearray(BITMAP_BYTES)
        self._answered = bytearray(BITMAP_BYTES)
        self._max_seen = 0
        self._coverage = Coverage()
        self._ended = False
        self._response_template = HeaderTemplate(
            sender=opening.recipient,
            recipient=opening.sender,
            kind=_RESPONSE,
            sender_key_id=own_key_id,
            recipient_key_id=b"",
            suite=opening.suite,
            session_id=opening.session_id,
        )

    def live(self, now_ms: int) -> bool:
        """Whether requests are still taken: not ended, and within 60 s of the ACCEPT."""
        return not self._ended and now_ms < self.accepted_at_ms + EPOCH_MAX_MS

    def seal_response(
        self,
        plaintext: bytes,
        *,
        request: Header,
        now_ms: int,
        ttl_ms: int = envelope.DEFAULT_TTL_MS,
        message_id: bytes | None = None,
    ) -> Envelope:
        """The one response to ``request``, a request of this session that opened (§15.5).

        A second response to the same seq is refused: it would reuse the AEAD nonce.
        """
        seq = request.seq
        if (
            request.session_id != self.session_id
            or request.sender != self.sender
            or request.kind != _REQUEST
            or not 1 <= seq <= EPOCH_MAX_REQUESTS
            or not bit(self._seen, seq)
            or bit(self._answered, seq)
            or not 0 < ttl_ms <= envelope.MAX_TTL_MS
        ):
            raise EnvelopeError
        raw = self._response_template.render(
            message_id or os.urandom(16), now_ms, now_ms + ttl_ms, request.message_id, seq
        )
        try:
            sealed = self._response_key.seal(nonce(RESPONSE_NONCE, seq), raw, plaintext)
        except _crypto.CryptoFailure:  # the session ended meanwhile: its keys are gone
            raise EnvelopeError from None
        set_bit(self._answered, seq)
        return Envelope(header=raw, sealed=sealed)

    def _take_checkpoint(self, signed: bytes, sender: Peer, *, before: int, now_ms: int) -> Covered:
        key = sender.verify_key_for(self.sender_key_id, now_ms)
        if key is None:
            raise EnvelopeError
        checkpoint = verify_checkpoint(signed, key)
        if (
            checkpoint.sender != self.sender
            or checkpoint.recipient != self._recipient
            or checkpoint.session_id != self.session_id
            or checkpoint.key_commitment != self._commitment
        ):
            raise EnvelopeError
        return self._coverage.apply(signed, checkpoint, before=before)

    def end(self) -> None:
        """End the session and erase its keys and bookkeeping."""
        self._ended = True
        self._request_key.erase()
        self._response_key.erase()
        self._commitment = b""
        self._coverage.clear()

    @property
    def erased(self) -> bool:
        """Whether the keys are gone."""
        return self._request_key.erased


class ServerSessions:
    """A node's sessions, keyed by (requester, session id); one registry per identity."""

    def __init__(
        self, identity: Identity, *, suite: int, max_per_peer: int = MAX_SESSIONS_PER_PEER
    ) -> None:
        if suite not in SUITE_NAMES or max_per_peer < 1:
            raise ValueError(f"bad session registry settings: suite {suite}, {max_per_peer}")
        self._identity = identity
        self.suite = suite
        self._max_per_peer = max_per_peer
        self._by_peer: dict[str, dict[bytes, ServerSession]] = {}
        self._spent: dict[tuple[str, bytes], int] = {}
        """Session ids ever accepted, until their OPEN expires: a replayed OPEN is refused."""
        self._late: list[Covered] = []
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def get(self, sender: str, session_id: bytes) -> ServerSession | None:
        """The session, live or not yet swept, or None."""
        return self._by_peer.get(sender, {}).get(session_id)

    def _end(self, session: ServerSession) -> None:
        session.end()
        held = self._by_peer.get(session.sender)
        if held is not None and held.pop(session.session_id, None) is not None:
            self._count -= 1
            if not held:
                del self._by_peer[session.sender]

    def use_identity(self, identity: Identity) -> None:
        """Take the node's rotated identity; every session (under the old keys) ends."""
        for held in list(self._by_peer.values()):
            for session in list(held.values()):
                self._end(session)
        self._identity = identity

    def end_peer(self, sender: str) -> int:
        """End every session of ``sender`` (its keys were revoked); how many ended."""
        held = list(self._by_peer.get(sender, {}).values())
        for session in held:
            self._end(session)
        return len(held)

    def sweep(self, now_ms: int) -> int:
        """Erase the sessions past their bounds, forget spent ids whose OPEN expired."""
        ended = [
            session
            for held in self._by_peer.values()
            for session in held.values()
            if not session.live(now_ms)
        ]
        for session in ended:
            self._end(session)
        self._spent = {key: until for key, until in self._spent.items() if until > now_ms}
        return len(ended)

    def drain_covered(self) -> list[Covered]:
        """Checkpoints verified but not returned: a request that arrived after a checkpoint
        covering it, and carried one of its own (the call returns the latter)."""
        late, self._late = self._late, []
        return late

    def accept(
        self,
        opening: Envelope,
        header: Header,
        *,
        senders: Callable[[str], Peer],
        now_ms: int,
        clock_skew_ms: int = envelope.CLOCK_SKEW_MS,
        message_id: bytes | None = None,
        epoch_seed: bytes | None = None,
    ) -> Envelope:
        """Check a SESSION_OPEN (§15.3) and answer its SESSION_ACCEPT; EnvelopeError.

        ``message_id`` and ``epoch_seed`` are drawn fresh unless given (vectors only).
        """
        me = self._identity
        header = _parsed(opening, header)
        try:
            peer = senders(header.sender)
        except DirectoryError:
            raise EnvelopeError from None
        check_header(
            header,
            kind=SESSION_OPEN,
            sender=peer.bureau,
            recipient=me.bureau,
            now_ms=now_ms,
            clock_skew_ms=clock_skew_ms,
        )
        sid = header.session_id
        if (
            header.suite != self.suite
            or len(sid) != SESSION_ID_LEN
            or header.seq != 0
            or opening.checkpoint
            or me.decryption_key(header.recipient_key_id, now_ms) is None
            or (header.sender, sid) in self._spent
        ):
            raise EnvelopeError
        verify_envelope(peer.verify_key_for(header.sender_key_id, now_ms), opening)
        try:
            ek = session_pb2.SessionOpen.FromString(opening.sealed).ephemeral_key
            _crypto.kem_check_public(self.suite, ek)
        except (DecodeError, _crypto.CryptoFailure):
            raise EnvelopeError from None
        seed = epoch_seed or os.urandom(SEED_LEN)
        raw = HeaderTemplate(
            sender=me.bureau,
            recipient=header.sender,
            kind=SESSION_ACCEPT,
            sender_key_id=me.signing_key_id,
            recipient_key_id=_crypto.key_id(ek),
            suite=self.suite,
            session_id=sid,
        ).render(
            message_id or os.urandom(16),
            now_ms,
            now_ms + envelope.DEFAULT_TTL_MS,
            header.message_id,
            0,
        )
        open_signed = signed_bytes_v2(opening.header, opening.sealed)
        try:
            sealed = _crypto.kem_seal(
                self.suite, ek, info=accept_info(open_signed, raw), plaintext=seed
            )
        except _crypto.CryptoFailure:
            raise EnvelopeError from None
        accept_signed = signed_bytes_v2(raw, sealed)
        signature = _crypto.ed25519_sign(me.signing_key, accept_signed)
        keys = epoch_keys(open_signed, accept_signed, seed)
        del seed
        held = self._by_peer.setdefault(header.sender, {})
        while len(held) >= self._max_per_peer:  # the requester's oldest gives way
            self._end(next(iter(held.values())))
            held = self._by_peer.setdefault(header.sender, {})
        held[sid] = ServerSession(
            opening=header, own_key_id=me.signing_key_id, accepted_at_ms=now_ms, keys=keys
        )
        self._count += 1
        self._spent[(header.sender, sid)] = header.expires_at_ms + clock_skew_ms
        return Envelope(header=raw, sealed=sealed, signature=signature)

    def _session(
        self, header: Header, sender: Peer, now_ms: int, *, closing: bool = False
    ) -> ServerSession:
        """The live session a request names, still under its sender's key. A close may
        also name a session past its time bound that no sweep has erased yet."""
        session = self._by_peer.get(header.sender, {}).get(header.session_id)
        if session is None or not (closing or session.live(now_ms)):
            raise SessionRefused(SessionRefused.UNKNOWN)
        if sender.verify_key_for(session.sender_key_id, now_ms) is None:
            self._end(session)  # rotated out past its grace, or no longer certified
            raise SessionRefused(SessionRefused.UNKNOWN)
        if (
            header.suite != session.suite
            or header.sender_key_id != session.sender_key_id
            or header.recipient_key_id != session.recipient_key_id
        ):
            raise EnvelopeError
        return session

    def open_request(
        self,
        request: Envelope,
        header: Header,
        *,
        sender: Peer,
        now_ms: int,
        clock_skew_ms: int = envelope.CLOCK_SKEW_MS,
    ) -> tuple[Opened, ServerSession, Covered | None]:
        """Check and decrypt a session request (§15.5) and take its checkpoint (§15.6).

        ``sender`` is the verified directory peer of ``header.sender``. Returns the
        opened request, its session and the checkpoint it carried (or, for a request
        that arrived after the checkpoint covering it, that one), else None.
        """
        header = _parsed(request, header)
        check_header(
            header,
            kind=_REQUEST,
            sender=sender.bureau,
            recipient=self._identity.bureau,
            now_ms=now_ms,
            clock_skew_ms=clock_skew_ms,
        )
        if request.signature:
            raise EnvelopeError
        session = self._session(header, sender, now_ms)
        seq = header.seq
        if seq < 1:
            raise EnvelopeError
        # The AEAD opens before the seen-set and the bounds are read, so only a request
        # its sender really sealed is refused as a replay, "session unknown" or
        # "checkpoint required" (and audited so): one the gateway made up is the opaque
        # error, audited unverified.
        try:
            plaintext = session._request_key.open(
                nonce(REQUEST_NONCE, seq), request.header, request.sealed
            )
        except _crypto.CryptoFailure:
            raise EnvelopeError from None
        if seq > EPOCH_MAX_REQUESTS:
            raise SessionRefused(SessionRefused.UNKNOWN)
        if bit(session._seen, seq):
            raise Replayed
        coverage = session._coverage
        if seq >= coverage.next_uncovered + MAX_UNCOVERED:
            raise SessionRefused(SessionRefused.CHECKPOINT_REQUIRED)
        set_bit(session._seen, seq)
        session._max_seen = max(session._max_seen, seq)
        try:
            covered = coverage.receive(
                seq,
                header.message_id,
                request.header,
                request.sealed,
                owner=(session.sender, session.session_id),
            )
            if request.checkpoint:
                if covered is not None:
                    self._late = [*self._late[-(_MAX_LATE - 1) :], covered]
                covered = session._take_checkpoint(
                    request.checkpoint, sender, before=seq, now_ms=now_ms
                )
        except EnvelopeError:
            self._end(session)  # a bad checkpoint ends the session (§15.6)
            raise
        return Opened(header, plaintext), session, covered

    def close(
        self, close: Envelope, header: Header, *, sender: Peer, now_ms: int
    ) -> tuple[Envelope, Covered | None]:
        """Check a SESSION_CLOSE (§15.7), take its checkpoint, end the session and answer
        SESSION_CLOSED. A close that fails its checks after the signature still ends it."""
        me = self._identity
        header = _parsed(close, header)
        check_header(
            header, kind=SESSION_CLOSE, sender=sender.bureau, recipient=me.bureau, now_ms=now_ms
        )
        session = self._session(header, sender, now_ms, closing=True)
        if close.sealed or not session._max_seen <= header.seq <= EPOCH_MAX_REQUESTS:
            raise EnvelopeError
        verify_envelope(sender.verify_key_for(session.sender_key_id, now_ms), close)
        try:
            covered = None
            if close.checkpoint:
                covered = session._take_checkpoint(
                    close.checkpoint, sender, before=header.seq + 1, now_ms=now_ms
                )
        finally:
            self._end(session)
        raw = HeaderTemplate(
            sender=me.bureau,
            recipient=header.sender,
            kind=SESSION_CLOSED,
            sender_key_id=me.signing_key_id,
            recipient_key_id=b"",
            suite=session.suite,
            session_id=session.session_id,
        ).render(
            os.urandom(16), now_ms, now_ms + envelope.DEFAULT_TTL_MS, header.message_id, header.seq
        )
        signature = _crypto.ed25519_sign(me.signing_key, signed_bytes_v2(raw, b""))
        return Envelope(header=raw, sealed=b"", signature=signature), covered
