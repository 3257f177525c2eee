"""A one-way copy as the gateway's modules pass it around: its states and its records.

A copy the mailbox stores is ``queued`` until it is ``delivered``, ``rejected`` or
``expired`` (:data:`STATES`); a Post's copy is ``accepted``, a ``duplicate`` of one
stored before, or not stored (``queue_full``). The records carry a copy from admission
into the store (:class:`Incoming`, :class:`Acceptance`), from the store to its
recipient's node and back (:class:`Due`, :class:`Outcome`, :class:`Settled`) and to its
sender (:class:`Posted`). :mod:`ncbsim.gateway.mailbox` stores them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ncbsim import envelope

QUEUED = "queued"
DELIVERED = "delivered"
EXPIRED = "expired"
REJECTED = "rejected"
STATES = (QUEUED, DELIVERED, EXPIRED, REJECTED)

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
QUEUE_FULL = "queue_full"


@dataclass(frozen=True, slots=True)
class Incoming:
    """One admitted envelope to store: its parsed header and its serialized bytes."""

    header: envelope.Header
    data: bytes
    """The envelope as serialized protobuf bytes (sealed, never plaintext)."""
    sha256: bytes
    """:func:`ncbsim.envelope.envelope_digest` of the envelope."""


@dataclass(frozen=True, slots=True)
class Acceptance:
    """What became of one :class:`Incoming`: accepted, duplicate or queue_full."""

    status: str
    sequence: int
    """The stored row's sequence (the original one for a duplicate); 0 if not stored."""
    accepted_at_ms: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Due:
    """A queued copy to deliver, with what the audit row and the receipt check need."""

    sequence: int
    sender: str
    message_id: bytes
    post_id: bytes
    recipient: str
    kind: int
    data: bytes
    sha256: bytes
    issued_at_ms: int
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one delivery attempt of a copy.

    ``state`` is ``delivered`` (with ``receipt``, the serialized SignedReceipt),
    ``rejected`` or ``expired`` (with ``detail``: the recipient refused it) or ``queued``
    (not settled: try again later).
    """

    sequence: int
    state: str
    receipt: bytes = b""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Settled:
    """A copy that reached a final state by this call (one gateway audit row each)."""

    sequence: int
    sender: str
    message_id: bytes
    post_id: bytes
    recipient: str
    kind: int
    issued_at_ms: int
    expires_at_ms: int
    envelope_bytes: int
    state: str
    receipt_bytes: int
    detail: str
    attempts: int = 0
    """Delivery calls that carried the copy, this one included."""
    accepted_at_ms: int = 0
    """When the gateway stored it (the delivery lag runs from here)."""


@dataclass(frozen=True, slots=True)
class Posted:
    """One row as its sender sees it (Gateway.Receipts)."""

    sequence: int
    message_id: bytes
    post_id: bytes
    recipient: str
    kind: int
    state: str
    accepted_at_ms: int
    expires_at_ms: int
    settled_at_ms: int
    attempts: int
    receipt: bytes | None
    detail: str
