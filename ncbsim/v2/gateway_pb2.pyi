from ncbsim.v2 import directory_pb2 as _directory_pb2
from ncbsim.v2 import envelope_pb2 as _envelope_pb2
from ncbsim.v2 import messages_pb2 as _messages_pb2
from ncbsim.v2 import users_pb2 as _users_pb2
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

class PostStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POST_STATUS_UNSPECIFIED: _ClassVar[PostStatus]
    POST_STATUS_ACCEPTED: _ClassVar[PostStatus]
    POST_STATUS_DUPLICATE: _ClassVar[PostStatus]
    POST_STATUS_QUEUE_FULL: _ClassVar[PostStatus]

class MessageState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_STATE_UNSPECIFIED: _ClassVar[MessageState]
    MESSAGE_STATE_QUEUED: _ClassVar[MessageState]
    MESSAGE_STATE_DELIVERED: _ClassVar[MessageState]
    MESSAGE_STATE_EXPIRED: _ClassVar[MessageState]
    MESSAGE_STATE_REJECTED: _ClassVar[MessageState]
DELIVERY_STATUS_UNSPECIFIED: DeliveryStatus
DELIVERY_STATUS_DELIVERED: DeliveryStatus
DELIVERY_STATUS_NO_ANSWER: DeliveryStatus
DELIVERY_STATUS_REFUSED: DeliveryStatus
POST_STATUS_UNSPECIFIED: PostStatus
POST_STATUS_ACCEPTED: PostStatus
POST_STATUS_DUPLICATE: PostStatus
POST_STATUS_QUEUE_FULL: PostStatus
MESSAGE_STATE_UNSPECIFIED: MessageState
MESSAGE_STATE_QUEUED: MessageState
MESSAGE_STATE_DELIVERED: MessageState
MESSAGE_STATE_EXPIRED: MessageState
MESSAGE_STATE_REJECTED: MessageState

class QueryRequest(_message.Message):
    __slots__ = ("envelope",)
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    envelope: _envelope_pb2.Envelope
    def __init__(self, envelope: _Optional[_Union[_envelope_pb2.Envelope, _Mapping]] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("envelope",)
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    envelope: _envelope_pb2.Envelope
    def __init__(self, envelope: _Optional[_Union[_envelope_pb2.Envelope, _Mapping]] = ...) -> None: ...

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

class MultiQueryResponse(_message.Message):
    __slots__ = ("deliveries",)
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[Delivery]
    def __init__(self, deliveries: _Optional[_Iterable[_Union[Delivery, _Mapping]]] = ...) -> None: ...

class GetDirectoryRequest(_message.Message):
    __slots__ = ("bureaus",)
    BUREAUS_FIELD_NUMBER: _ClassVar[int]
    bureaus: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, bureaus: _Optional[_Iterable[str]] = ...) -> None: ...

class GetDirectoryResponse(_message.Message):
    __slots__ = ("entries", "revocations", "users", "user_revocations")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    REVOCATIONS_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    USER_REVOCATIONS_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[_directory_pb2.SignedDirectoryEntry]
    revocations: _directory_pb2.SignedRevocationList
    users: _containers.RepeatedCompositeFieldContainer[_users_pb2.SignedUserEntry]
    user_revocations: _containers.RepeatedCompositeFieldContainer[_users_pb2.SignedUserRevocation]
    def __init__(self, entries: _Optional[_Iterable[_Union[_directory_pb2.SignedDirectoryEntry, _Mapping]]] = ..., revocations: _Optional[_Union[_directory_pb2.SignedRevocationList, _Mapping]] = ..., users: _Optional[_Iterable[_Union[_users_pb2.SignedUserEntry, _Mapping]]] = ..., user_revocations: _Optional[_Iterable[_Union[_users_pb2.SignedUserRevocation, _Mapping]]] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("address",)
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    address: str
    def __init__(self, address: _Optional[str] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RoutesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RoutesResponse(_message.Message):
    __slots__ = ("bureaus",)
    BUREAUS_FIELD_NUMBER: _ClassVar[int]
    bureaus: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, bureaus: _Optional[_Iterable[str]] = ...) -> None: ...

class PostRequest(_message.Message):
    __slots__ = ("envelopes",)
    ENVELOPES_FIELD_NUMBER: _ClassVar[int]
    envelopes: _containers.RepeatedCompositeFieldContainer[_envelope_pb2.Envelope]
    def __init__(self, envelopes: _Optional[_Iterable[_Union[_envelope_pb2.Envelope, _Mapping]]] = ...) -> None: ...

class PostResult(_message.Message):
    __slots__ = ("message_id", "recipient", "status", "sequence", "accepted_at_ms", "detail")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    message_id: bytes
    recipient: str
    status: PostStatus
    sequence: int
    accepted_at_ms: int
    detail: str
    def __init__(self, message_id: _Optional[bytes] = ..., recipient: _Optional[str] = ..., status: _Optional[_Union[PostStatus, str]] = ..., sequence: _Optional[int] = ..., accepted_at_ms: _Optional[int] = ..., detail: _Optional[str] = ...) -> None: ...

class PostResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[PostResult]
    def __init__(self, results: _Optional[_Iterable[_Union[PostResult, _Mapping]]] = ...) -> None: ...

class ReceiptsRequest(_message.Message):
    __slots__ = ("after_sequence", "limit")
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    after_sequence: int
    limit: int
    def __init__(self, after_sequence: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class PostedMessage(_message.Message):
    __slots__ = ("sequence", "message_id", "post_id", "recipient", "kind", "state", "accepted_at_ms", "expires_at_ms", "settled_at_ms", "attempts", "receipt", "detail")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    POST_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SETTLED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    message_id: bytes
    post_id: bytes
    recipient: str
    kind: _envelope_pb2.MessageKind
    state: MessageState
    accepted_at_ms: int
    expires_at_ms: int
    settled_at_ms: int
    attempts: int
    receipt: _messages_pb2.SignedReceipt
    detail: str
    def __init__(self, sequence: _Optional[int] = ..., message_id: _Optional[bytes] = ..., post_id: _Optional[bytes] = ..., recipient: _Optional[str] = ..., kind: _Optional[_Union[_envelope_pb2.MessageKind, str]] = ..., state: _Optional[_Union[MessageState, str]] = ..., accepted_at_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., settled_at_ms: _Optional[int] = ..., attempts: _Optional[int] = ..., receipt: _Optional[_Union[_messages_pb2.SignedReceipt, _Mapping]] = ..., detail: _Optional[str] = ...) -> None: ...

class ReceiptsResponse(_message.Message):
    __slots__ = ("messages", "more")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[PostedMessage]
    more: bool
    def __init__(self, messages: _Optional[_Iterable[_Union[PostedMessage, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...
