"""Pad query bodies to fixed sizes, so that lengths tell the gateway nothing.

A sealed body is exactly 48 bytes longer than its plaintext (protocol.md §5.1), so
without padding the gateway could tell a hit from a no-hit, a released record from "no
such reference" (which data-owner control makes a denial look like), or a long name
from a short one, just by the size of what it relays. Every ``Query`` and
``Answer`` has a ``padding`` field (number 15) that receivers ignore; senders fill
it so that the serialized body is exactly the smallest size in the series ``minimum``,
``2 * minimum``, ``4 * minimum``, ... that holds it. Requests start at 256 bytes and
responses at 1,024, which every query, every step-1 answer (up to five matches) and
every record fits; so in practice all requests have one size and all answers another.
"""

from __future__ import annotations

from google.protobuf.message import Message

REQUEST_BYTES = 256
"""Smallest padded Query: a query with three 64-character fields fits."""
RESPONSE_BYTES = 1024
"""Smallest padded Answer: five matches, and any record, fit."""
BIOMETRIC_REQUEST_BYTES = 1024
"""Smallest padded biometric Query (a search or a confirmation, of either modality): a
512-byte face probe does not fit 512 bytes, so every biometric request takes 1,024 and a
fingerprint search looks like a face search or a confirmation."""
_BIOMETRIC_KINDS = frozenset({"biometric", "confirm"})

PADDING_FIELD = 15
_TAG = bytes([PADDING_FIELD << 3 | 2])  # field 15, wire type 2 (length-delimited): 0x7a


def _varint_len(value: int) -> int:
    length = 1
    while value >= 0x80:
        value >>= 7
        length += 1
    return length


def _varint(value: int, width: int) -> bytes:
    """``value`` as a base-128 varint of exactly ``width`` bytes (non-minimal if need be)."""
    out = bytearray()
    for i in range(width):
        out.append(value & 0x7F | (0x80 if i < width - 1 else 0))
        value >>= 7
    if value:
        raise ValueError("value does not fit the width")
    return bytes(out)


def target_size(natural: int, minimum: int) -> int:
    """The padded size of a body of ``natural`` bytes: the first of ``minimum``,
    ``2 * minimum``, ... with room for the body and a padding field."""
    target = minimum
    while target < natural + len(_TAG) + 1:
        target *= 2
    return target


def minimum_for(message: Message) -> int:
    """The smallest size of ``message``'s kind: :data:`BIOMETRIC_REQUEST_BYTES` for a
    biometric ``Query``, else 0 (the caller's minimum applies)."""
    oneof = message.DESCRIPTOR.oneofs_by_name.get("query")
    if oneof is not None and message.WhichOneof("query") in _BIOMETRIC_KINDS:
        return BIOMETRIC_REQUEST_BYTES
    return 0


def padded(message: Message, minimum: int) -> bytes:
    """``message`` serialized to exactly :func:`target_size` bytes.

    ``message`` must have a ``bytes padding = 15`` field; any value it holds is dropped.
    A biometric ``Query`` is padded to at least :data:`BIOMETRIC_REQUEST_BYTES`.
    The padding is appended as that field: tag, length, zero bytes (the body is
    encrypted, so their value is moot). The length prefix takes as many bytes as the
    space left needs; where one byte fewer would leave a byte over (127 bytes of padding
    in 129 bytes of room, for instance), it is written as a non-minimal varint, which
    protobuf parsers accept. Parsing the result gives ``message`` back, with padding.
    """
    field = message.DESCRIPTOR.fields_by_name.get("padding")
    if field is None or field.number != PADDING_FIELD:
        raise TypeError(f"{message.DESCRIPTOR.full_name} has no padding field 15")
    minimum = max(minimum, minimum_for(message))
    message.ClearField("padding")
    body = message.SerializeToString()
    room = target_size(len(body), minimum) - len(body) - len(_TAG)
    width = _varint_len(room)
    length = room - width
    return body + _TAG + _varint(length, width) + bytes(length)
