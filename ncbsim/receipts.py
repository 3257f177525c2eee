"""Delivery receipts: what a recipient signs for each one-way envelope it processed.

A receipt names the envelope by message id, post id and digest
(:func:`ncbsim.envelope.envelope_digest`), the two parties and when the recipient first
processed it, and is signed with the recipient's Ed25519 directory key (a copy kept for
one of a bureau's users, ``NG/x``, with its bureau's). The gateway
stores it and hands it to the sender (Gateway.Receipts), which verifies it against the
recipient's directory entry: a gateway can withhold a receipt but not forge one, so
"delivered" is the recipient's word, not the gateway's (protocol.md §14.4).
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError

from ncbsim import _crypto, principal
from ncbsim.directory import Peer
from ncbsim.envelope import MESSAGE_ID_LEN, Header
from ncbsim.errors import EnvelopeError
from ncbsim.identity import Identity
from ncbsim.v2 import messages_pb2

VERSION = 1
SIGNATURE_CONTEXT = b"ncbsim/v1 receipt\x00"
DIGEST_LEN = 32

SignedReceipt = messages_pb2.SignedReceipt


@dataclass(frozen=True, slots=True)
class Receipt:
    """A parsed delivery receipt. Authenticated only if :func:`verify` returned it."""

    message_id: bytes
    post_id: bytes
    sender: str
    recipient: str
    envelope_sha256: bytes
    processed_at_ms: int
    signing_key_id: bytes

    @property
    def message_hex(self) -> str:
        """The delivered envelope's message id as hex."""
        return self.message_id.hex()


def sign(
    identity: Identity, header: Header, envelope_sha256: bytes, processed_at_ms: int
) -> SignedReceipt:
    """``identity``'s receipt for the envelope with ``header`` and digest ``envelope_sha256``.

    ``header`` must be the verified header of an envelope addressed to ``identity``, or
    to one of its users (``NG/x``): a bureau signs for the copies it keeps for them.
    """
    if (
        principal.is_user(identity.bureau)
        or principal.bureau_of(header.recipient) != identity.bureau
        or len(envelope_sha256) != DIGEST_LEN
    ):
        raise EnvelopeError
    body = messages_pb2.DeliveryReceipt(
        version=VERSION,
        message_id=header.message_id,
        post_id=header.correlation_id,
        sender=header.sender,
        recipient=header.recipient,
        envelope_sha256=envelope_sha256,
        processed_at_ms=processed_at_ms,
        signing_key_id=identity.signing_key_id,
    ).SerializeToString()
    signature = _crypto.ed25519_sign(identity.signing_key, SIGNATURE_CONTEXT + body)
    return SignedReceipt(receipt=body, signature=signature)


def parse(signed: SignedReceipt) -> Receipt:
    """The receipt's fields, not verified (the gateway matches them to what it sent).

    EnvelopeError if it does not decode or its ids have the wrong length.
    """
    try:
        body = messages_pb2.DeliveryReceipt.FromString(signed.receipt)
    except DecodeError:
        raise EnvelopeError from None
    if (
        body.version != VERSION
        or len(body.message_id) != MESSAGE_ID_LEN
        or len(body.post_id) != MESSAGE_ID_LEN
        or len(body.envelope_sha256) != DIGEST_LEN
    ):
        raise EnvelopeError
    return Receipt(
        message_id=body.message_id,
        post_id=body.post_id,
        sender=body.sender,
        recipient=body.recipient,
        envelope_sha256=body.envelope_sha256,
        processed_at_ms=body.processed_at_ms,
        signing_key_id=body.signing_key_id,
    )


def verify(signed: SignedReceipt, *, signer: Peer, now_ms: int) -> Receipt:
    """The receipt, if ``signer`` (the recipient's verified entry; for a copy addressed to
    a user ``NG/x``, its bureau's) signed it; else EnvelopeError.

    A receipt signed with a key ``signer`` rotated out verifies only within that key's
    grace period, judged at ``now_ms``.
    """
    receipt = parse(signed)
    if principal.bureau_of(receipt.recipient) != signer.bureau or principal.is_user(signer.bureau):
        raise EnvelopeError
    key = signer.verify_key_for(receipt.signing_key_id, now_ms)
    if key is None:
        raise EnvelopeError
    try:
        _crypto.ed25519_verify(key, SIGNATURE_CONTEXT + signed.receipt, signed.signature)
    except _crypto.CryptoFailure:
        raise EnvelopeError from None
    return receipt
