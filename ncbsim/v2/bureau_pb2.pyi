from ncbsim.v2 import envelope_pb2 as _envelope_pb2
from ncbsim.v2 import messages_pb2 as _messages_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeliverStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELIVER_STATUS_UNSPECIFIED: _ClassVar[DeliverStatus]
    DELIVER_STATUS_PROCESSED: _ClassVar[DeliverStatus]
    DELIVER_STATUS_DUPLICATE: _ClassVar[DeliverStatus]
    DELIVER_STATUS_REJECTED: _ClassVar[DeliverStatus]
DELIVER_STATUS_UNSPECIFIED: DeliverStatus
DELIVER_STATUS_PROCESSED: DeliverStatus
DELIVER_STATUS_DUPLICATE: DeliverStatus
DELIVER_STATUS_REJECTED: DeliverStatus

class HandleRequest(_message.Message):
    __slots__ = ("envelope",)
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    envelope: _envelope_pb2.Envelope
    def __init__(self, envelope: _Optional[_Union[_envelope_pb2.Envelope, _Mapping]] = ...) -> None: ...

class HandleResponse(_message.Message):
    __slots__ = ("envelope",)
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    envelope: _envelope_pb2.Envelope
    def __init__(self, envelope: _Optional[_Union[_envelope_pb2.Envelope, _Mapping]] = ...) -> None: ...

class DeliverRequest(_message.Message):
    __slots__ = ("envelopes",)
    ENVELOPES_FIELD_NUMBER: _ClassVar[int]
    envelopes: _containers.RepeatedCompositeFieldContainer[_envelope_pb2.Envelope]
    def __init__(self, envelopes: _Optional[_Iterable[_Union[_envelope_pb2.Envelope, _Mapping]]] = ...) -> None: ...

class DeliverResult(_message.Message):
    __slots__ = ("message_id", "status", "receipt", "detail")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    message_id: bytes
    status: DeliverStatus
    receipt: _messages_pb2.SignedReceipt
    detail: str
    def __init__(self, message_id: _Optional[bytes] = ..., status: _Optional[_Union[DeliverStatus, str]] = ..., receipt: _Optional[_Union[_messages_pb2.SignedReceipt, _Mapping]] = ..., detail: _Optional[str] = ...) -> None: ...

class DeliverResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[DeliverResult]
    def __init__(self, results: _Optional[_Iterable[_Union[DeliverResult, _Mapping]]] = ...) -> None: ...
