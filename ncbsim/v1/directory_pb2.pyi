from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class DirectoryEntry(_message.Message):
    __slots__ = ("version", "bureau", "signing_key", "encryption_key", "not_before_ms", "not_after_ms", "serial")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BUREAU_FIELD_NUMBER: _ClassVar[int]
    SIGNING_KEY_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTION_KEY_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_MS_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    version: int
    bureau: str
    signing_key: bytes
    encryption_key: bytes
    not_before_ms: int
    not_after_ms: int
    serial: int
    def __init__(self, version: _Optional[int] = ..., bureau: _Optional[str] = ..., signing_key: _Optional[bytes] = ..., encryption_key: _Optional[bytes] = ..., not_before_ms: _Optional[int] = ..., not_after_ms: _Optional[int] = ..., serial: _Optional[int] = ...) -> None: ...

class SignedDirectoryEntry(_message.Message):
    __slots__ = ("entry", "signature")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    entry: bytes
    signature: bytes
    def __init__(self, entry: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...
