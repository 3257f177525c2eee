from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MessageKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_KIND_UNSPECIFIED: _ClassVar[MessageKind]
    MESSAGE_KIND_QUERY_REQUEST: _ClassVar[MessageKind]
    MESSAGE_KIND_QUERY_RESPONSE: _ClassVar[MessageKind]
    MESSAGE_KIND_DIFFUSION: _ClassVar[MessageKind]
    MESSAGE_KIND_NOTICE_REQUEST: _ClassVar[MessageKind]
    MESSAGE_KIND_NOTICE: _ClassVar[MessageKind]
    MESSAGE_KIND_MESSAGE: _ClassVar[MessageKind]
    MESSAGE_KIND_SESSION_OPEN: _ClassVar[MessageKind]
    MESSAGE_KIND_SESSION_ACCEPT: _ClassVar[MessageKind]
    MESSAGE_KIND_SESSION_CLOSE: _ClassVar[MessageKind]
    MESSAGE_KIND_SESSION_CLOSED: _ClassVar[MessageKind]
MESSAGE_KIND_UNSPECIFIED: MessageKind
MESSAGE_KIND_QUERY_REQUEST: MessageKind
MESSAGE_KIND_QUERY_RESPONSE: MessageKind
MESSAGE_KIND_DIFFUSION: MessageKind
MESSAGE_KIND_NOTICE_REQUEST: MessageKind
MESSAGE_KIND_NOTICE: MessageKind
MESSAGE_KIND_MESSAGE: MessageKind
MESSAGE_KIND_SESSION_OPEN: MessageKind
MESSAGE_KIND_SESSION_ACCEPT: MessageKind
MESSAGE_KIND_SESSION_CLOSE: MessageKind
MESSAGE_KIND_SESSION_CLOSED: MessageKind

class Header(_message.Message):
    __slots__ = ("version", "message_id", "sender", "recipient", "kind", "issued_at_ms", "expires_at_ms", "correlation_id", "sender_key_id", "recipient_key_id", "suite", "session_id", "seq")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SUITE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    version: int
    message_id: bytes
    sender: str
    recipient: str
    kind: MessageKind
    issued_at_ms: int
    expires_at_ms: int
    correlation_id: bytes
    sender_key_id: bytes
    recipient_key_id: bytes
    suite: int
    session_id: bytes
    seq: int
    def __init__(self, version: _Optional[int] = ..., message_id: _Optional[bytes] = ..., sender: _Optional[str] = ..., recipient: _Optional[str] = ..., kind: _Optional[_Union[MessageKind, str]] = ..., issued_at_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., correlation_id: _Optional[bytes] = ..., sender_key_id: _Optional[bytes] = ..., recipient_key_id: _Optional[bytes] = ..., suite: _Optional[int] = ..., session_id: _Optional[bytes] = ..., seq: _Optional[int] = ...) -> None: ...

class Envelope(_message.Message):
    __slots__ = ("header", "sealed", "signature", "checkpoint")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    header: bytes
    sealed: bytes
    signature: bytes
    checkpoint: bytes
    def __init__(self, header: _Optional[bytes] = ..., sealed: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., checkpoint: _Optional[bytes] = ...) -> None: ...
