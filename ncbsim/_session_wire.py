"""Wire pieces of envelope format 2 shared by both sides of a query session (protocol.md §15).

The constants and labels, the signed message, the epoch key schedule, the header checks
every format 2 receiver makes, and :class:`HeaderTemplate`, which writes a format 2
``Header`` in protobuf's canonical encoding from the fields fixed for a session, so the
hot path does not build a protobuf message per request. ``tests/ncbsim/test_session.py``
checks its bytes against protobuf's own serializer.
"""

from __future__ import annotations

import hashlib

from ncbsim import _crypto, envelope
from ncbsim.envelope import Header
from ncbsim.errors import EnvelopeError
from ncbsim.v2 import envelope_pb2

VERSION = 2
SUITES = {"classic": _crypto.KEM_CLASSIC, "hybrid": _crypto.KEM_HYBRID}
SUITE_NAMES = {number: name for name, number in SUITES.items()}
DEFAULT_SUITE = _crypto.KEM_CLASSIC
EPOCH_MAX_MS = 60_000
EPOCH_MAX_REQUESTS = 10_000
REKEY_AFTER_MS = 50_000
REKEY_AFTER_REQUESTS = 9_000
CHECKPOINT_EVERY = 32
CHECKPOINT_AFTER_MS = 1_000
MAX_UNCOVERED = 128
MAX_SESSIONS_PER_PEER = 8
SESSION_ID_LEN = 16
SEED_LEN = 32
BITMAP_BYTES = EPOCH_MAX_REQUESTS // 8 + 1
"""A seen-set of one bit per seq, 0 to 10,000."""

SESSION_OPEN: int = envelope_pb2.MESSAGE_KIND_SESSION_OPEN
SESSION_ACCEPT: int = envelope_pb2.MESSAGE_KIND_SESSION_ACCEPT
SESSION_CLOSE: int = envelope_pb2.MESSAGE_KIND_SESSION_CLOSE
SESSION_CLOSED: int = envelope_pb2.MESSAGE_KIND_SESSION_CLOSED

ACCEPT_INFO = b"ncbsim/v2 accept"
SIGNATURE_CONTEXT = b"ncbsim/v2 envelope\x00"
EPOCH_INFO = b"ncbsim/v2 epoch keys"
KEY_COMMITMENT_LABEL = b"ncbsim/v2 key commitment\x00"
REQUEST_NONCE = b"\x00\x00\x00\x00"
"""The first 4 bytes of a request's nonce; the last 8 are u64be(seq)."""
RESPONSE_NONCE = b"\x00\x00\x00\x01"
"""The first 4 bytes of a response's nonce."""


def nonce(prefix: bytes, seq: int) -> bytes:
    """The AEAD nonce of ``seq`` in one direction: ``prefix`` (4 bytes) || u64be(seq)."""
    return prefix + seq.to_bytes(8, "big")


def bit(bits: bytearray, seq: int) -> bool:
    """Whether ``seq`` is in the bitmap."""
    return bool(bits[seq >> 3] & (1 << (seq & 7)))


def set_bit(bits: bytearray, seq: int) -> None:
    """Add ``seq`` to the bitmap."""
    bits[seq >> 3] |= 1 << (seq & 7)


def verify_envelope(key: _crypto.VerifyKey | None, env: envelope.Envelope) -> None:
    """Check a signed format 2 envelope with ``key`` (None: no usable key); EnvelopeError."""
    if key is None:
        raise EnvelopeError
    try:
        _crypto.ed25519_verify(key, signed_bytes_v2(env.header, env.sealed), env.signature)
    except _crypto.CryptoFailure:
        raise EnvelopeError from None


def accept_info(open_signed: bytes, accept_header: bytes) -> bytes:
    """The HPKE info of an ACCEPT: "ncbsim/v2 accept" || open_hash || SHA-256(header)."""
    return (
        ACCEPT_INFO + hashlib.sha256(open_signed).digest() + hashlib.sha256(accept_header).digest()
    )


def signed_bytes_v2(header: bytes, sealed: bytes) -> bytes:
    """ "ncbsim/v2 envelope" || 0x00 || u32be(len(header)) || header || sealed."""
    return SIGNATURE_CONTEXT + len(header).to_bytes(4, "big") + header + sealed


def epoch_keys(open_signed: bytes, accept_signed: bytes, seed: bytes) -> tuple[bytes, bytes, bytes]:
    """(k_request, k_response, key_commitment) of an epoch (§15.4)."""
    transcript = hashlib.sha256(open_signed + accept_signed).digest()
    okm = _crypto.hkdf_sha256(salt=transcript, ikm=seed, info=EPOCH_INFO, length=64)
    k_request, k_response = okm[:32], okm[32:]
    return k_request, k_response, hashlib.sha256(KEY_COMMITMENT_LABEL + k_request).digest()


def check_header(
    header: Header,
    *,
    kind: int,
    sender: str,
    recipient: str,
    now_ms: int,
    clock_skew_ms: int = envelope.CLOCK_SKEW_MS,
) -> None:
    """The checks of §7.1 step 3 that every format 2 receiver makes; EnvelopeError."""
    if (
        header.version != VERSION
        or header.kind != kind
        or header.recipient != recipient
        or header.sender != sender
        or len(header.message_id) != envelope.MESSAGE_ID_LEN
        or not header.issued_at_ms <= now_ms + clock_skew_ms
        or not now_ms < header.expires_at_ms
        or header.expires_at_ms - header.issued_at_ms > envelope.MAX_TTL_MS
    ):
        raise EnvelopeError


_ONE_BYTE = [bytes((value,)) for value in range(0x80)]


def _varint(value: int) -> bytes:
    """Protobuf base-128 varint; fast paths for a seq and for a millisecond time."""
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
    if 0 < value < 0x4000:
        return bytes((value & 0x7F | 0x80, value >> 7))
    if 1 << 35 <= value < 1 << 42:  # Unix milliseconds from 1971 to 2109: six bytes
        return bytes(
            (
                value & 0x7F | 0x80,
                value >> 7 & 0x7F | 0x80,
                value >> 14 & 0x7F | 0x80,
                value >> 21 & 0x7F | 0x80,
                value >> 28 & 0x7F | 0x80,
                value >> 35,
            )
        )
    if value < 0:
        value += 1 << 64  # int64: two's complement, ten bytes
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _int(tag: int, value: int) -> bytes:
    return bytes((tag,)) + _varint(value) if value else b""


def _len(tag: int, value: bytes) -> bytes:
    return bytes((tag,)) + _varint(len(value)) + value if value else b""


class HeaderTemplate:
    """The fields of a format 2 header fixed for one kind of envelope of one session;
    :meth:`render` adds the varying ones and returns the canonical bytes."""

    __slots__ = (
        "_middle",
        "_tail",
        "kind",
        "recipient",
        "recipient_key_id",
        "sender",
        "sender_key_id",
        "session_id",
        "suite",
    )

    def __init__(
        self,
        *,
        sender: str,
        recipient: str,
        kind: int,
        sender_key_id: bytes,
        recipient_key_id: bytes,
        suite: int,
        session_id: bytes,
    ) -> None:
        self.sender, self.recipient, self.kind = sender, recipient, kind
        self.sender_key_id, self.recipient_key_id = sender_key_id, recipient_key_id
        self.suite, self.session_id = suite, session_id
        # Fields 3-5, then 9-12 (field 13, seq, is written by render).
        self._middle = (
            _len(0x1A, sender.encode()) + _len(0x22, recipient.encode()) + _int(0x28, kind)
        )
        self._tail = (
            _len(0x4A, sender_key_id)
            + _len(0x52, recipient_key_id)
            + _int(0x58, suite)
            + _len(0x62, session_id)
        )

    def render(
        self,
        message_id: bytes,
        issued_at_ms: int,
        expires_at_ms: int,
        correlation_id: bytes,
        seq: int,
    ) -> bytes:
        """The header's bytes, fields in number order, defaults omitted (§3.3)."""
        if (
            len(message_id) == 16
            and len(correlation_id) == 16
            and issued_at_ms > 0
            and expires_at_ms > 0
            and seq > 0
        ):  # every request and response: no field left out
            return b"".join(
                (
                    b"\x08\x02\x12\x10",
                    message_id,
                    self._middle,
                    b"\x30",
                    _varint(issued_at_ms),
                    b"\x38",
                    _varint(expires_at_ms),
                    b"\x42\x10",
                    correlation_id,
                    self._tail,
                    b"\x68",
                    _varint(seq),
                )
            )
        return b"".join(
            (
                b"\x08\x02",
                _len(0x12, message_id),
                self._middle,
                _int(0x30, issued_at_ms),
                _int(0x38, expires_at_ms),
                _len(0x42, correlation_id),
                self._tail,
                _int(0x68, seq),
            )
        )
