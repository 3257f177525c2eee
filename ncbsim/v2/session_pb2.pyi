from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class SessionOpen(_message.Message):
    __slots__ = ("ephemeral_key",)
    EPHEMERAL_KEY_FIELD_NUMBER: _ClassVar[int]
    ephemeral_key: bytes
    def __init__(self, ephemeral_key: _Optional[bytes] = ...) -> None: ...

class Checkpoint(_message.Message):
    __slots__ = ("version", "sender", "recipient", "session_id", "key_commitment", "first_seq", "leaves", "signed_at_ms")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LEAVES_FIELD_NUMBER: _ClassVar[int]
    SIGNED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    version: int
    sender: str
    recipient: str
    session_id: bytes
    key_commitment: bytes
    first_seq: int
    leaves: _containers.RepeatedScalarFieldContainer[bytes]
    signed_at_ms: int
    def __init__(self, version: _Optional[int] = ..., sender: _Optional[str] = ..., recipient: _Optional[str] = ..., session_id: _Optional[bytes] = ..., key_commitment: _Optional[bytes] = ..., first_seq: _Optional[int] = ..., leaves: _Optional[_Iterable[bytes]] = ..., signed_at_ms: _Optional[int] = ...) -> None: ...

class SignedCheckpoint(_message.Message):
    __slots__ = ("checkpoint", "signature")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    checkpoint: bytes
    signature: bytes
    def __init__(self, checkpoint: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...
