"""Checkpoints of query sessions: amortized signatures over request leaves (protocol.md §15.6).

A requester signs its session requests in batches: a ``Checkpoint`` lists the leaf of
each request (a digest of its header and ciphertext) from ``first_seq`` on, and the
requester's Ed25519 signature over it makes every listed request provable to a third
party. This module holds the pure parts: the leaf, signing and verifying a checkpoint,
the requester's list of uncovered requests (:class:`Uncovered`) and the recipient's
bookkeeping of what is covered (:class:`Coverage`). :mod:`ncbsim.session` drives them.

Every failure raises the opaque :class:`~ncbsim.errors.EnvelopeError`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from ncbsim import _crypto
from ncbsim.errors import EnvelopeError
from ncbsim.v2 import session_pb2

CHECKPOINT_VERSION = 1
LEAF_LABEL = b"ncbsim/v2 leaf\x00"
CHECKPOINT_CONTEXT = b"ncbsim/v2 checkpoint\x00"
LEAF_LEN = 32
MAX_SEQ = 10_000
"""The highest seq of a session (protocol.md §15.7); bitmaps hold one bit per seq."""

Checkpoint = session_pb2.Checkpoint


def leaf(header: bytes, sealed_sha256: bytes) -> bytes:
    """SHA-256("ncbsim/v2 leaf" || 0x00 || u32be(len(header)) || header || SHA-256(sealed))."""
    return hashlib.sha256(
        LEAF_LABEL + len(header).to_bytes(4, "big") + header + sealed_sha256
    ).digest()


def sign_checkpoint(signing_key: _crypto.SigningKey, checkpoint: Checkpoint) -> bytes:
    """A serialized SignedCheckpoint: the checkpoint's bytes and the signature over them."""
    raw = checkpoint.SerializeToString()
    signature = _crypto.ed25519_sign(signing_key, CHECKPOINT_CONTEXT + raw)
    return session_pb2.SignedCheckpoint(checkpoint=raw, signature=signature).SerializeToString()


def verify_checkpoint(signed: bytes, verify_key: _crypto.VerifyKey) -> Checkpoint:
    """The Checkpoint inside a serialized SignedCheckpoint, once its signature verified
    with ``verify_key`` (the sender's directory Ed25519 key). Checks the signature and
    the form (version 1, 16-byte session id, 32-byte leaves, first_seq >= 1, at least one
    leaf, within 10,000), not which session it belongs to; EnvelopeError otherwise."""
    try:
        outer = session_pb2.SignedCheckpoint.FromString(signed)
        _crypto.ed25519_verify(verify_key, CHECKPOINT_CONTEXT + outer.checkpoint, outer.signature)
        checkpoint = Checkpoint.FromString(outer.checkpoint)
    except (DecodeError, _crypto.CryptoFailure):
        raise EnvelopeError from None
    leaves = checkpoint.leaves
    if (
        checkpoint.version != CHECKPOINT_VERSION
        or len(checkpoint.session_id) != 16
        or not leaves
        or checkpoint.first_seq < 1
        or checkpoint.first_seq + len(leaves) - 1 > MAX_SEQ
        or any(len(one) != LEAF_LEN for one in leaves)
    ):
        raise EnvelopeError
    return checkpoint


@dataclass(frozen=True, slots=True)
class CoveredRequest:
    """A request the recipient received and a verified checkpoint covers."""

    seq: int
    message_id: bytes
    header: bytes
    sealed_sha256: bytes


@dataclass(frozen=True, slots=True)
class Covered:
    """One verified checkpoint and the requests of it the recipient got: what the proof
    log keeps (``signed_checkpoint`` is the SignedCheckpoint's bytes, verbatim)."""

    sender: str
    session_id: bytes
    signed_checkpoint: bytes
    first_seq: int
    last_seq: int
    requests: tuple[CoveredRequest, ...]


class Uncovered:
    """The requester's requests not yet covered by a checkpoint it sent, in seq order."""

    __slots__ = ("first_seq", "leaves", "oldest_ms")

    def __init__(self) -> None:
        self.first_seq = 1
        self.leaves: list[bytes] = []
        self.oldest_ms = 0

    def add(self, header: bytes, sealed: bytes, now_ms: int) -> None:
        """Remember a request just sealed (the next seq)."""
        if not self.leaves:
            self.oldest_ms = now_ms
        self.leaves.append(leaf(header, hashlib.sha256(sealed).digest()))

    def due(self, now_ms: int, *, every: int, after_ms: int) -> bool:
        """Whether the cadence asks for a checkpoint now: ``every`` or more uncovered, or
        the oldest more than ``after_ms`` old."""
        count = len(self.leaves)
        return count >= every or (count > 0 and now_ms - self.oldest_ms > after_ms)

    def take(self) -> tuple[int, list[bytes]]:
        """(first_seq, leaves) of everything uncovered; they count as covered from now."""
        first, leaves = self.first_seq, self.leaves
        self.first_seq += len(leaves)
        self.leaves = []
        return first, leaves


def _bit(bits: bytearray, seq: int) -> bool:
    return bool(bits[seq >> 3] & (1 << (seq & 7)))


def _set(bits: bytearray, seq: int) -> None:
    bits[seq >> 3] |= 1 << (seq & 7)


class Coverage:
    """The recipient's view of one session's checkpoints.

    It keeps, for each request received and not yet covered, what its leaf needs; a
    checkpoint must list only seqs not covered before (so a reordered checkpoint that
    arrives ahead of an earlier one is taken, not refused), and every listed leaf of a
    request received must match. A request that arrives after a checkpoint covering it
    is matched against the leaf kept for it. ``next_uncovered`` is the first seq not
    covered: the bound of 128 counts from it.
    """

    __slots__ = ("_covered", "_late", "_pending", "next_uncovered")

    def __init__(self) -> None:
        self._covered = bytearray(MAX_SEQ // 8 + 1)
        self._pending: dict[int, tuple[bytes, bytes, bytes]] = {}
        self._late: dict[int, tuple[bytes, bytes, int, int]] = {}
        self.next_uncovered = 1

    def receive(
        self, seq: int, message_id: bytes, header: bytes, sealed: bytes, *, owner: tuple[str, bytes]
    ) -> Covered | None:
        """Record a request that opened. If a checkpoint already covered its seq, check its
        leaf against that checkpoint's (EnvelopeError if it differs) and return the
        :class:`Covered` that proves it; otherwise keep it for the next checkpoint."""
        if not _bit(self._covered, seq):
            self._pending[seq] = (message_id, header, sealed)
            return None
        late = self._late.pop(seq, None)
        if late is None:
            raise EnvelopeError
        expected, signed, first, last = late
        digest = hashlib.sha256(sealed).digest()
        if leaf(header, digest) != expected:
            raise EnvelopeError
        request = CoveredRequest(seq, message_id, header, digest)
        return Covered(owner[0], owner[1], signed, first, last, (request,))

    def apply(self, signed: bytes, checkpoint: Checkpoint, *, before: int) -> Covered:
        """Take a verified checkpoint of this session, which may list seqs below
        ``before`` only; EnvelopeError if it lists a covered seq or a leaf that differs."""
        first = checkpoint.first_seq
        leaves = checkpoint.leaves
        last = first + len(leaves) - 1
        if last >= before:
            raise EnvelopeError
        covered, pending = self._covered, self._pending
        for seq in range(first, last + 1):
            if _bit(covered, seq):
                raise EnvelopeError
        requests: list[CoveredRequest] = []
        for seq, expected in zip(range(first, last + 1), leaves, strict=True):
            got = pending.get(seq)
            if got is None:
                continue
            digest = hashlib.sha256(got[2]).digest()
            if leaf(got[1], digest) != expected:
                raise EnvelopeError
            requests.append(CoveredRequest(seq, got[0], got[1], digest))
        for seq, expected in zip(range(first, last + 1), leaves, strict=True):
            _set(covered, seq)
            if pending.pop(seq, None) is None:
                self._late[seq] = (expected, signed, first, last)
        while self.next_uncovered <= MAX_SEQ and _bit(covered, self.next_uncovered):
            self.next_uncovered += 1
        sender, session_id = checkpoint.sender, checkpoint.session_id
        return Covered(sender, session_id, signed, first, last, tuple(requests))

    def covers_all_below(self, end: int) -> bool:
        """Whether every seq from 1 to ``end`` (inclusive) is covered."""
        return self.next_uncovered > end

    def clear(self) -> None:
        """Forget everything kept (the session ended)."""
        self._pending.clear()
        self._late.clear()
