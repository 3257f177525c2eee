from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DirectoryEntry(_message.Message):
    __slots__ = ("version", "bureau", "signing_key", "encryption_key", "not_before_ms", "not_after_ms", "serial", "previous_signing_key", "previous_encryption_key", "previous_until_ms", "requester_only")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BUREAU_FIELD_NUMBER: _ClassVar[int]
    SIGNING_KEY_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTION_KEY_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_MS_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SIGNING_KEY_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_ENCRYPTION_KEY_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_ONLY_FIELD_NUMBER: _ClassVar[int]
    version: int
    bureau: str
    signing_key: bytes
    encryption_key: bytes
    not_before_ms: int
    not_after_ms: int
    serial: int
    previous_signing_key: bytes
    previous_encryption_key: bytes
    previous_until_ms: int
    requester_only: bool
    def __init__(self, version: _Optional[int] = ..., bureau: _Optional[str] = ..., signing_key: _Optional[bytes] = ..., encryption_key: _Optional[bytes] = ..., not_before_ms: _Optional[int] = ..., not_after_ms: _Optional[int] = ..., serial: _Optional[int] = ..., previous_signing_key: _Optional[bytes] = ..., previous_encryption_key: _Optional[bytes] = ..., previous_until_ms: _Optional[int] = ..., requester_only: _Optional[bool] = ...) -> None: ...

class SignedDirectoryEntry(_message.Message):
    __slots__ = ("entry", "signature")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    entry: bytes
    signature: bytes
    def __init__(self, entry: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class Revocation(_message.Message):
    __slots__ = ("bureau", "entry_serial", "key_ids", "tls_cert_sha256", "revoked_at_ms", "reason")
    BUREAU_FIELD_NUMBER: _ClassVar[int]
    ENTRY_SERIAL_FIELD_NUMBER: _ClassVar[int]
    KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    TLS_CERT_SHA256_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    bureau: str
    entry_serial: int
    key_ids: _containers.RepeatedScalarFieldContainer[bytes]
    tls_cert_sha256: _containers.RepeatedScalarFieldContainer[bytes]
    revoked_at_ms: int
    reason: str
    def __init__(self, bureau: _Optional[str] = ..., entry_serial: _Optional[int] = ..., key_ids: _Optional[_Iterable[bytes]] = ..., tls_cert_sha256: _Optional[_Iterable[bytes]] = ..., revoked_at_ms: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class RevocationList(_message.Message):
    __slots__ = ("version", "sequence", "issued_at_ms", "revocations")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    REVOCATIONS_FIELD_NUMBER: _ClassVar[int]
    version: int
    sequence: int
    issued_at_ms: int
    revocations: _containers.RepeatedCompositeFieldContainer[Revocation]
    def __init__(self, version: _Optional[int] = ..., sequence: _Optional[int] = ..., issued_at_ms: _Optional[int] = ..., revocations: _Optional[_Iterable[_Union[Revocation, _Mapping]]] = ...) -> None: ...

class SignedRevocationList(_message.Message):
    __slots__ = ("list", "signature")
    LIST_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    list: bytes
    signature: bytes
    def __init__(self, list: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...
