from ncbsim.v2 import envelope_pb2 as _envelope_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UserRights(_message.Message):
    __slots__ = ("query_kinds", "full_records", "receive_kinds", "send_kinds", "rate_per_s", "daily_limit")
    QUERY_KINDS_FIELD_NUMBER: _ClassVar[int]
    FULL_RECORDS_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_KINDS_FIELD_NUMBER: _ClassVar[int]
    SEND_KINDS_FIELD_NUMBER: _ClassVar[int]
    RATE_PER_S_FIELD_NUMBER: _ClassVar[int]
    DAILY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    query_kinds: _containers.RepeatedScalarFieldContainer[str]
    full_records: bool
    receive_kinds: _containers.RepeatedScalarFieldContainer[_envelope_pb2.MessageKind]
    send_kinds: _containers.RepeatedScalarFieldContainer[_envelope_pb2.MessageKind]
    rate_per_s: int
    daily_limit: int
    def __init__(self, query_kinds: _Optional[_Iterable[str]] = ..., full_records: _Optional[bool] = ..., receive_kinds: _Optional[_Iterable[_Union[_envelope_pb2.MessageKind, str]]] = ..., send_kinds: _Optional[_Iterable[_Union[_envelope_pb2.MessageKind, str]]] = ..., rate_per_s: _Optional[int] = ..., daily_limit: _Optional[int] = ...) -> None: ...

class UserEntry(_message.Message):
    __slots__ = ("version", "bureau", "name", "role", "rights", "signing_key", "encryption_key", "tls_cert_sha256", "not_before_ms", "not_after_ms", "serial", "issuer_key_id")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BUREAU_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    RIGHTS_FIELD_NUMBER: _ClassVar[int]
    SIGNING_KEY_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTION_KEY_FIELD_NUMBER: _ClassVar[int]
    TLS_CERT_SHA256_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_MS_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    ISSUER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    version: int
    bureau: str
    name: str
    role: str
    rights: UserRights
    signing_key: bytes
    encryption_key: bytes
    tls_cert_sha256: bytes
    not_before_ms: int
    not_after_ms: int
    serial: int
    issuer_key_id: bytes
    def __init__(self, version: _Optional[int] = ..., bureau: _Optional[str] = ..., name: _Optional[str] = ..., role: _Optional[str] = ..., rights: _Optional[_Union[UserRights, _Mapping]] = ..., signing_key: _Optional[bytes] = ..., encryption_key: _Optional[bytes] = ..., tls_cert_sha256: _Optional[bytes] = ..., not_before_ms: _Optional[int] = ..., not_after_ms: _Optional[int] = ..., serial: _Optional[int] = ..., issuer_key_id: _Optional[bytes] = ...) -> None: ...

class SignedUserEntry(_message.Message):
    __slots__ = ("entry", "signature")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    entry: bytes
    signature: bytes
    def __init__(self, entry: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class UserRevocation(_message.Message):
    __slots__ = ("bureau", "name", "serial", "revoked_at_ms", "issuer_key_id")
    BUREAU_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    ISSUER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    bureau: str
    name: str
    serial: int
    revoked_at_ms: int
    issuer_key_id: bytes
    def __init__(self, bureau: _Optional[str] = ..., name: _Optional[str] = ..., serial: _Optional[int] = ..., revoked_at_ms: _Optional[int] = ..., issuer_key_id: _Optional[bytes] = ...) -> None: ...

class SignedUserRevocation(_message.Message):
    __slots__ = ("revocation", "signature")
    REVOCATION_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    revocation: bytes
    signature: bytes
    def __init__(self, revocation: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...
