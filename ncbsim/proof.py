"""Proofs of origin for format-2 queries: build one from a proof log, check one with the root.

A bureau B that received a format-2 query from A keeps, in its proof log
(:mod:`ncbsim.node.proofs`), the checkpoint A signed over it (docs/protocol.md §15.6),
the request's header and the SHA-256 of its ciphertext. :func:`build` turns one logged
request and A's root-signed directory entry into a self-contained proof (a JSON object);
:func:`check` verifies it holding only the root's public key:

1. A's directory entry is signed by the root (:func:`ncbsim.directory.verify_entry`);
2. the header decodes, is a format-2 query request, names the proof's message id and
   seq, is from the entry's bureau and names a signing key the entry certifies;
3. the checkpoint's signature verifies with that key (:func:`ncbsim.session.verify_checkpoint`),
   and the key was A's when the checkpoint was signed (the entry's validity, or the
   grace period of a key it rotated out);
4. the checkpoint's sender, recipient and session are the header's, and it covers the seq;
5. ``leaf(header, sealed_sha256)`` is the checkpoint's leaf at ``seq - first_seq``.

Every failure raises :class:`~ncbsim.errors.NcbsimError` ``proof rejected: CHECK``,
naming the check: a proof is an auditor's tool, not an oracle an attacker can query, so
detail is fine here. A proof shows that A sent a request with that header and that
ciphertext; it does not show the query, whose keys were erased with its epoch.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.message import DecodeError

from ncbsim import envelope, session
from ncbsim.directory import Peer, parse_entry, verify_entry
from ncbsim.errors import DirectoryError, EnvelopeError, NcbsimError
from ncbsim.session import CoveredRequest
from ncbsim.v2 import directory_pb2, envelope_pb2, session_pb2

__all__ = ["FORMAT", "CheckedProof", "LoggedRequest", "build", "check"]

FORMAT = "ncbsim/v2 query proof"
"""The value of a proof's ``format`` field."""
_HEX_FIELDS = ("message_id", "header", "sealed_sha256", "signed_checkpoint", "sender_entry")
_DIGEST_SIZE = 32


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request of a recipient's proof log, with the signed checkpoint that covers it."""

    recorded_at_ms: int
    """When the recipient recorded the checkpoint (its own clock)."""
    sender: str
    session_id: bytes
    first_seq: int
    last_seq: int
    signed_checkpoint: bytes
    """The serialized SignedCheckpoint, as the sender sent it."""
    request: CoveredRequest


@dataclass(frozen=True, slots=True)
class CheckedProof:
    """What a verified proof shows: who sent which request to whom, and when."""

    sender: str
    recipient: str
    message_id: bytes
    session_id: bytes
    seq: int
    issued_at_ms: int
    expires_at_ms: int
    signed_at_ms: int
    """When the sender signed the checkpoint that covers the request (its own clock)."""
    key_id: bytes
    """The id of the sender's Ed25519 key that signed the checkpoint."""
    entry_serial: int

    def describe(self) -> str:
        """A one-line verdict."""
        return (
            f"proof valid: {self.sender} sent message {self.message_id.hex()} to "
            f"{self.recipient}, issued {_when(self.issued_at_ms)} (session "
            f"{self.session_id.hex()[:16]}, seq {self.seq}), signed with {self.sender}'s key "
            f"{self.key_id.hex()[:16]} in a checkpoint of {_when(self.signed_at_ms)}"
        )


def build(row: LoggedRequest, sender_entry: bytes) -> dict[str, Any]:
    """The proof of ``row``'s request: plain JSON-ready data (every byte string in hex)."""
    request = row.request
    return {
        "format": FORMAT,
        "message_id": request.message_id.hex(),
        "seq": request.seq,
        "header": request.header.hex(),
        "sealed_sha256": request.sealed_sha256.hex(),
        "signed_checkpoint": row.signed_checkpoint.hex(),
        "sender_entry": sender_entry.hex(),
    }


def check(proof: object, root_public_key: ec.EllipticCurvePublicKey) -> CheckedProof:
    """Verify ``proof`` (as :func:`build` made it, parsed from JSON) against the root.

    Returns what it shows; raises NcbsimError ``proof rejected: CHECK`` naming the first
    check that failed.
    """
    fields = _fields(proof)
    seq = _seq(proof)
    entry, peer = _entry(root_public_key, fields["sender_entry"])
    header = _header(fields["header"], fields["message_id"], seq, peer)
    checkpoint = _checkpoint(fields["signed_checkpoint"], header, entry, peer)
    first, count = checkpoint.first_seq, len(checkpoint.leaves)
    if not first <= seq < first + count:
        raise _rejected(
            f"the checkpoint does not cover seq {seq} (it covers {first} to {first + count - 1})"
        )
    if checkpoint.leaves[seq - first] != session.leaf(fields["header"], fields["sealed_sha256"]):
        raise _rejected(
            f"the checkpoint's leaf for seq {seq} is not that of the header and ciphertext digest"
        )
    return CheckedProof(
        sender=header.sender,
        recipient=header.recipient,
        message_id=fields["message_id"],
        session_id=header.session_id,
        seq=seq,
        issued_at_ms=header.issued_at_ms,
        expires_at_ms=header.expires_at_ms,
        signed_at_ms=checkpoint.signed_at_ms,
        key_id=bytes(header.sender_key_id),
        entry_serial=peer.serial,
    )


def _entry(
    root: ec.EllipticCurvePublicKey, signed: bytes
) -> tuple[directory_pb2.DirectoryEntry, Peer]:
    """Check 1: the sender's entry is the root's. Its times are checked against the
    checkpoint's (:func:`_checkpoint`), not against today: a proof outlives its entry."""
    try:
        entry = parse_entry(root, signed)
        return entry, verify_entry(root, signed, now_ms=entry.not_before_ms)
    except DirectoryError as exc:
        raise _rejected(f"the sender's directory entry: {exc}") from None


def _header(raw: bytes, message_id: bytes, seq: int, peer: Peer) -> envelope_pb2.Header:
    """Check 2: a format-2 query request, the proof's, from the entry's bureau."""
    try:
        header = envelope_pb2.Header.FromString(raw)
    except DecodeError:
        raise _rejected("the request header does not decode") from None
    if header.version != session.VERSION or header.kind != envelope.QUERY_REQUEST:
        raise _rejected("the header is not that of a format-2 query request")
    if header.message_id != message_id:
        raise _rejected("the header's message id is not the proof's")
    if header.seq != seq:
        raise _rejected(f"the proof's seq {seq} is not the header's ({header.seq})")
    if header.sender != peer.bureau:
        raise _rejected(
            f"the header's sender {header.sender!r} is not the directory entry's {peer.bureau}"
        )
    return header


def _checkpoint(
    signed: bytes, header: envelope_pb2.Header, entry: directory_pb2.DirectoryEntry, peer: Peer
) -> session_pb2.Checkpoint:
    """Checks 3 and 4: signed by the key the header names, the sender's at the time, and
    about the header's sender, recipient and session."""
    current = header.sender_key_id == peer.signing_key_id
    if current:
        key = peer.verify_key
    elif peer.previous_verify_key is not None and peer.signs_with(header.sender_key_id):
        key = peer.previous_verify_key
    else:
        raise _rejected(
            f"{peer.bureau}'s directory entry does not certify the key the header names"
        )
    try:
        checkpoint = session.verify_checkpoint(signed, key)
    except EnvelopeError:
        raise _rejected(
            f"the checkpoint's signature does not verify with {peer.bureau}'s key"
        ) from None
    signed_at = checkpoint.signed_at_ms
    if current and not entry.not_before_ms <= signed_at < entry.not_after_ms:
        raise _rejected(
            f"{peer.bureau}'s directory entry was not valid when the checkpoint was signed"
        )
    if not current and signed_at >= peer.previous_until_ms:
        raise _rejected(
            f"the checkpoint was signed after {peer.bureau}'s rotated-out key was retired"
        )
    for name, mine, theirs in (
        ("sender", checkpoint.sender, header.sender),
        ("recipient", checkpoint.recipient, header.recipient),
        ("session", checkpoint.session_id, header.session_id),
    ):
        if mine != theirs:
            raise _rejected(f"the checkpoint's {name} is not the header's")
    return checkpoint


def _fields(proof: object) -> dict[str, bytes]:
    """The proof's byte fields, decoded from hex; rejected if any is missing or malformed."""
    if not isinstance(proof, dict) or proof.get("format") != FORMAT:
        raise _rejected(f'not a proof (no "format": {FORMAT!r})')
    fields: dict[str, bytes] = {}
    for name in _HEX_FIELDS:
        value = proof.get(name)
        if not isinstance(value, str):
            raise _rejected(f"the field {name!r} is missing or not a string")
        try:
            fields[name] = bytes.fromhex(value)
        except ValueError:
            raise _rejected(f"the field {name!r} is not hex") from None
    if len(fields["sealed_sha256"]) != _DIGEST_SIZE:
        raise _rejected("the ciphertext digest is not a SHA-256 digest")
    return fields


def _seq(proof: object) -> int:
    seq = proof.get("seq") if isinstance(proof, dict) else None
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise _rejected("the field 'seq' is missing or not a positive integer")
    return seq


def _rejected(what: str) -> NcbsimError:
    return NcbsimError(f"proof rejected: {what}")


def _when(ms: int) -> str:
    try:
        moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    except (OverflowError, ValueError, OSError):  # signed by the sender, but absurd
        return f"{ms} ms after the epoch"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
