"""What the classroom-mode gateway is told to do, and the small pure tools of its attacks.

:class:`Mode` is one reading of the *mode file* (JSON, ``ncbsim gateway
--classroom-attacks FILE``); :class:`ModeFile` reads it on every call and treats a file
that is absent, unreadable or malformed as ``honest`` (logging a malformed one once).
The rest parse a request either way, flip a bit, tamper with one field of an envelope
and describe a header as metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import structlog
from google.protobuf.message import DecodeError, Message

from ncbsim import envelope
from ncbsim.v2 import envelope_pb2

log = structlog.get_logger()

NO_ANSWER = frozenset(
    {
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
    }
)
"""Statuses a requester reads as "no answer" (never as a no-hit)."""

Result = tuple[envelope.Envelope | None, grpc.StatusCode, str]
"""What forwarding one envelope came to: the response (or None), its status, a detail."""

HONEST = "honest"
MODES = frozenset(
    {
        HONEST,
        "swap-key",
        "alter-request",
        "alter-response",
        "replay-response",
        "replay-request",
        "reroute",
        "forge",
        "forge-request",
        "mix-deliveries",
        "hide-route",
        "drop",
    }
)
"""Every mode the gateway knows (service.py's docstring says what each does)."""


class ModeError(ValueError):
    """The mode file holds something that is not a mode (the gateway then stays honest)."""


@dataclass(frozen=True)
class Mode:
    """What to do now, as read from the mode file."""

    name: str = HONEST
    variant: str = ""
    target: str = ""
    sender: str = ""
    """Attack only envelopes (and directory fetches) of this bureau; "" = anyone's."""
    to: str = ""
    source: str = ""
    as_: str = ""
    swap: dict[str, str] = field(default_factory=dict)
    withhold_revocations: bool = False
    leaked: bool = False

    @classmethod
    def parse(cls, text: str) -> Mode:
        """The mode a file's text says; ModeError if it is not JSON of the mode format."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModeError(f"not JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise ModeError("not a JSON object")
        name = str(data.get("mode", HONEST))
        if name not in MODES:
            raise ModeError(f"unknown mode {name!r}")
        swap: Any = data.get("swap") or {}
        if not isinstance(swap, dict):
            raise ModeError("swap is not an object")
        return cls(
            name=name,
            variant=str(data.get("variant", "")),
            target=str(data.get("target", "")),
            sender=str(data.get("sender", "")),
            to=str(data.get("to", "")),
            source=str(data.get("source", "")),
            as_=str(data.get("as", "")),
            swap={str(k): str(v) for k, v in swap.items()},
            withhold_revocations=bool(data.get("withhold_revocations", False)),
            leaked=bool(data.get("leaked", False)),
        )

    @classmethod
    def read(cls, path: Path | None) -> Mode:
        """The mode in ``path``; honest if there is none; ModeError if it is malformed."""
        if path is None:
            return cls()
        try:
            text = path.read_text()
        except FileNotFoundError:
            return cls()
        except OSError as exc:
            raise ModeError(f"cannot read it ({exc.strerror})") from None
        return cls.parse(text)


class ModeFile:
    """The mode file, read on every call: one running gateway serves every attack."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._problem = ""

    def read(self) -> Mode:
        """The current mode; honest when the file is absent or malformed (logged once)."""
        try:
            mode = Mode.read(self.path)
        except ModeError as exc:
            if str(exc) != self._problem:
                log.warning("attack_mode_ignored", path=str(self.path), problem=str(exc))
                self._problem = str(exc)
            return Mode()
        self._problem = ""
        return mode


_M = TypeVar("_M", bound=Message)


def parse_request(request: object, message: type[_M]) -> _M | None:
    """The request as ``message``: the real gateway takes its requests as raw bytes (and
    parses them itself), a test may pass them parsed; the attacks work on either."""
    if isinstance(request, message):
        return request
    if isinstance(request, bytes):
        try:
            return message.FromString(request)
        except DecodeError:
            return None
    return None


def flip(data: bytes, index: int) -> bytes:
    """``data`` with the lowest bit of byte ``index`` (modulo its length) flipped; an
    empty field (a format 2 query's signature) becomes one byte, which its receiver
    refuses as it refuses a flipped bit."""
    if not data:
        return b"\x01"
    out = bytearray(data)
    out[index % len(out)] ^= 0x01
    return bytes(out)


def tamper(item: envelope.Envelope, variant: str) -> envelope.Envelope:
    """A copy of ``item`` with one bit flipped where ``variant`` says (``body``,
    ``header`` or ``signature``). A format-2 request or response carries no signature
    (docs/protocol.md §15.5): ``signature`` flips its authenticator instead, the AEAD
    tag that ends ``sealed``."""
    header, sealed, signature = item.header, item.sealed, item.signature
    if variant == "body":
        sealed = flip(sealed, len(sealed) // 2)
    elif variant == "header":
        # A byte of the correlation id: still a well-formed header, so only the
        # signature and the AEAD can tell.
        correlation = envelope_pb2.Header.FromString(header).correlation_id
        header = flip(header, header.find(correlation))
    elif variant == "signature" and not signature:
        sealed = flip(sealed, -1)
    elif variant == "signature":
        signature = flip(signature, 0)
    else:
        raise ValueError(f"unknown variant {variant!r}")
    return envelope.Envelope(
        header=header, sealed=sealed, signature=signature, checkpoint=item.checkpoint
    )


def meta(header: envelope.Header) -> dict[str, str]:
    """The metadata of a header the attack record keeps (ids and parties, no payload)."""
    return {
        "sender": header.sender,
        "recipient": header.recipient,
        "message_id": header.message_hex,
        "recipient_key_id": header.recipient_key_id.hex(),
    }
