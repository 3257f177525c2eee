"""What the compromised gateway is told to do (``Mode``, read from the mode file) and the
small pure tools of its attacks: parse a request either way, flip a bit, tamper with one
field of an envelope, describe a header as metadata."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from ncbsim import envelope
from ncbsim.v2 import (
    envelope_pb2,
)

_NO_ANSWER = {
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.CANCELLED,
}
_Result = tuple[envelope.Envelope | None, grpc.StatusCode, str]


@dataclass(frozen=True)
class Mode:
    """What to do now, as read from the mode file."""

    name: str = "honest"
    variant: str = ""
    target: str = ""
    to: str = ""
    source: str = ""
    as_: str = ""
    swap: dict[str, str] = field(default_factory=dict)
    withhold_revocations: bool = False
    leaked: bool = False

    @classmethod
    def read(cls, path: Path | None) -> Mode:
        if path is None:
            return cls()
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls()
        return cls(
            name=str(data.get("mode", "honest")),
            variant=str(data.get("variant", "")),
            target=str(data.get("target", "")),
            to=str(data.get("to", "")),
            source=str(data.get("source", "")),
            as_=str(data.get("as", "")),
            swap={str(k): str(v) for k, v in dict(data.get("swap") or {}).items()},
            withhold_revocations=bool(data.get("withhold_revocations", False)),
            leaked=bool(data.get("leaked", False)),
        )


_M = TypeVar("_M", bound=Message)


def _parsed(request: object, message: type[_M]) -> _M | None:
    """The request as ``message``: the real gateway may take its requests as raw bytes
    (and parse them itself) or parsed by gRPC; the attacks work on either."""
    if isinstance(request, message):
        return request
    if isinstance(request, bytes):
        try:
            return message.FromString(request)
        except DecodeError:
            return None
    return None


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index % len(out)] ^= 0x01
    return bytes(out)


def _tamper(item: envelope.Envelope, variant: str) -> envelope.Envelope:
    """A copy of ``item`` with one bit flipped where ``variant`` says."""
    header, sealed, signature = item.header, item.sealed, item.signature
    if variant == "body":
        sealed = _flip(sealed, len(sealed) // 2)
    elif variant == "header":
        # A byte of the correlation id: still a well-formed header, so only the
        # signature and the AEAD can tell.
        correlation = envelope_pb2.Header.FromString(header).correlation_id
        header = _flip(header, header.find(correlation))
    elif variant == "signature":
        signature = _flip(signature, 0)
    else:
        raise ValueError(f"unknown variant {variant!r}")
    return envelope.Envelope(header=header, sealed=sealed, signature=signature)


def _meta(header: envelope.Header) -> dict[str, str]:
    return {
        "sender": header.sender,
        "recipient": header.recipient,
        "message_id": header.message_hex,
        "recipient_key_id": header.recipient_key_id.hex(),
    }
