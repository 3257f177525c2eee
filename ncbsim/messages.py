"""Bodies of one-way envelopes: which body each kind carries, notice colours, packing.

Every body is padded like a query (ncbsim/padding.py), to 1 KiB, 2 KiB, 4 KiB, ..., so
the gateway learns the size of a message only to within a factor of two.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError, Message

from ncbsim import envelope, padding
from ncbsim.errors import ConfigError, EnvelopeError
from ncbsim.v2 import messages_pb2

MESSAGE_BYTES = 1024
"""Smallest padded one-way body."""
MAX_BODY_BYTES = 32 * 1024
"""Largest padded body. A sealed copy is then at most about 33 KiB, well inside the
gateway's 64 KiB envelope limit (``--max-envelope-bytes``), and 100 copies fit in one
gRPC message (4 MiB)."""
MAX_ATTACHMENT_BYTES = 16 * 1024
"""Attachments of one message, together."""
MAX_TEXT_CHARS = 8000
"""Longest subject plus text of one message (and at most MAX_BODY_BYTES in all)."""

BODY_TYPES: dict[int, type[Message]] = {
    envelope.DIFFUSION: messages_pb2.Diffusion,
    envelope.NOTICE_REQUEST: messages_pb2.NoticeRequest,
    envelope.NOTICE: messages_pb2.Notice,
    envelope.MESSAGE: messages_pb2.CaseMessage,
}

COLORS: dict[str, int] = {
    "red": messages_pb2.NOTICE_COLOR_RED,
    "yellow": messages_pb2.NOTICE_COLOR_YELLOW,
    "blue": messages_pb2.NOTICE_COLOR_BLUE,
    "black": messages_pb2.NOTICE_COLOR_BLACK,
    "green": messages_pb2.NOTICE_COLOR_GREEN,
    "orange": messages_pb2.NOTICE_COLOR_ORANGE,
    "purple": messages_pb2.NOTICE_COLOR_PURPLE,
    "un-special": messages_pb2.NOTICE_COLOR_UN_SPECIAL,
    "silver": messages_pb2.NOTICE_COLOR_SILVER,
}
"""Notice colours by their command-line names (DOMAIN.md)."""
COLOR_NAMES: dict[int, str] = {value: name for name, value in COLORS.items()}

STATUS_NAMES: dict[int, str] = {
    messages_pb2.NOTICE_STATUS_REQUESTED: "requested",
    messages_pb2.NOTICE_STATUS_PUBLISHED: "published",
    messages_pb2.NOTICE_STATUS_REFUSED: "refused",
    messages_pb2.NOTICE_STATUS_WITHDRAWN: "withdrawn",
}

_SUBJECT_FIELDS = ("surname", "given_names", "date_of_birth", "nationality", "sex", "description")


def color(name: str) -> int:
    """The NoticeColor for a colour name (``red``, ``un-special``, ...), or ConfigError."""
    try:
        return COLORS[name.strip().lower().replace("_", "-")]
    except KeyError:
        raise ConfigError(
            f"unknown notice colour {name!r}; expected one of {', '.join(COLORS)}"
        ) from None


def color_name(value: int) -> str:
    """``red``, ``yellow``, ... for a NoticeColor; ``unknown(N)`` otherwise."""
    return COLOR_NAMES.get(value) or f"unknown({value})"


def status_name(value: int) -> str:
    """``requested``, ``published``, ``refused`` or ``withdrawn``; ``unknown(N)`` otherwise."""
    return STATUS_NAMES.get(value) or f"unknown({value})"


def subject_from_dict(data: Any) -> messages_pb2.NoticeSubject:
    """A NoticeSubject from a JSON object (``ncbsim notice request --person-file``).

    Keys are the NoticeSubject fields; ``given`` and ``dob`` are accepted for
    ``given_names`` and ``date_of_birth``. ConfigError on an unknown key or a non-string.
    """
    if not isinstance(data, dict):
        raise ConfigError("the person file must hold one JSON object")
    aliases = {"given": "given_names", "dob": "date_of_birth"}
    values: dict[str, str] = {}
    for key, value in data.items():
        name = aliases.get(key, key)
        if name not in _SUBJECT_FIELDS:
            raise ConfigError(
                f"person file: unknown key {key!r}; expected {', '.join(_SUBJECT_FIELDS)}"
            )
        if not isinstance(value, str):
            raise ConfigError(f"person file: {key} must be a string")
        values[name] = value.strip()
    return messages_pb2.NoticeSubject(**values)


def check_size(text: str, attachments: list[messages_pb2.Attachment]) -> None:
    """ConfigError if the text or the attachments are over this module's limits."""
    if len(text) > MAX_TEXT_CHARS:
        raise ConfigError(f"text is {len(text)} characters; at most {MAX_TEXT_CHARS}")
    total = sum(len(a.data) for a in attachments)
    if total > MAX_ATTACHMENT_BYTES:
        raise ConfigError(f"attachments are {total} bytes; at most {MAX_ATTACHMENT_BYTES}")


def pack(body: Message) -> bytes:
    """``body`` serialized and padded (every body type has ``bytes padding = 15``).

    ConfigError if the padded body would be over :data:`MAX_BODY_BYTES`: long texts in
    scripts of four UTF-8 bytes a character, with attachments, can get there.
    """
    if padding.target_size(body.ByteSize(), MESSAGE_BYTES) > MAX_BODY_BYTES:
        raise ConfigError(
            f"the message is {body.ByteSize()} bytes encoded; at most about "
            f"{MAX_BODY_BYTES // 1024} KiB with its text and attachments"
        )
    return padding.padded(body, MESSAGE_BYTES)


def unpack(kind: int, plaintext: bytes) -> Message:
    """The body of a one-way envelope of ``kind``; EnvelopeError if it does not decode."""
    body_type = BODY_TYPES.get(kind)
    if body_type is None:
        raise EnvelopeError
    try:
        body = body_type.FromString(plaintext)
    except DecodeError:
        raise EnvelopeError from None
    body.ClearField("padding")
    return body
