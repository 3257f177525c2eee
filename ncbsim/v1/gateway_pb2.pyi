from ncbsim.v1 import directory_pb2 as _directory_pb2
from ncbsim.v1 import envelope_pb2 as _envelope_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeliveryStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELIVERY_STATUS_UNSPECIFIED: _ClassVar[DeliveryStatus]
    DELIVERY_STATUS_DELIVERED: _ClassVar[DeliveryStatus]
    DELIVERY_STATUS_NO_ANSWER: _ClassVar[DeliveryStatus]
    DELIVERY_STATUS_REFUSED: _ClassVar[DeliveryStatus]
DELIVERY_STATUS_UNSPECIFIED: DeliveryStatus
DELIVERY_STATUS_DELIVERED: DeliveryStatus
DELIVERY_STATUS_NO_ANSWER: DeliveryStatus
DELIVERY_STATUS_REFUSED: DeliveryStatus

class MultiQueryRequest(_message.Message):
    __slots__ = ("envelopes",)
    ENVELOPES_FIELD_NUMBER: _ClassVar[int]
    envelopes: _containers.RepeatedCompositeFieldContainer[_envelope_pb2.Envelope]
    def __init__(self, envelopes: _Optional[_Iterable[_Union[_envelope_pb2.Envelope, _Mapping]]] = ...) -> None: ...

class Delivery(_message.Message):
    __slots__ = ("bureau", "status", "response", "detail", "elapsed_ms")
    BUREAU_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    bureau: str
    status: DeliveryStatus
    response: _envelope_pb2.Envelope
    detail: str
    elapsed_ms: int
    def __init__(self, bureau: _Optional[str] = ..., status: _Optional[_Union[DeliveryStatus, str]] = ..., response: _Optional[_Union[_envelope_pb2.Envelope, _Mapping]] = ..., detail: _Optional[str] = ..., elapsed_ms: _Optional[int] = ...) -> None: ...

class MultiQueryReply(_message.Message):
    __slots__ = ("deliveries",)
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[Delivery]
    def __init__(self, deliveries: _Optional[_Iterable[_Union[Delivery, _Mapping]]] = ...) -> None: ...

class DirectoryRequest(_message.Message):
    __slots__ = ("bureaus",)
    BUREAUS_FIELD_NUMBER: _ClassVar[int]
    bureaus: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, bureaus: _Optional[_Iterable[str]] = ...) -> None: ...

class Directory(_message.Message):
    __slots__ = ("entries", "revocations")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    REVOCATIONS_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[_directory_pb2.SignedDirectoryEntry]
    revocations: _directory_pb2.SignedRevocationList
    def __init__(self, entries: _Optional[_Iterable[_Union[_directory_pb2.SignedDirectoryEntry, _Mapping]]] = ..., revocations: _Optional[_Union[_directory_pb2.SignedRevocationList, _Mapping]] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("address",)
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    address: str
    def __init__(self, address: _Optional[str] = ...) -> None: ...

class RegisterReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RoutesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RoutesReply(_message.Message):
    __slots__ = ("bureaus",)
    BUREAUS_FIELD_NUMBER: _ClassVar[int]
    bureaus: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, bureaus: _Optional[_Iterable[str]] = ...) -> None: ...
