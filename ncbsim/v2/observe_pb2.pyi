from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ObserveRequest(_message.Message):
    __slots__ = ("kinds", "buffer")
    KINDS_FIELD_NUMBER: _ClassVar[int]
    BUFFER_FIELD_NUMBER: _ClassVar[int]
    kinds: _containers.RepeatedScalarFieldContainer[str]
    buffer: int
    def __init__(self, kinds: _Optional[_Iterable[str]] = ..., buffer: _Optional[int] = ...) -> None: ...

class ViewValue(_message.Message):
    __slots__ = ("text", "integer", "real", "flag")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    INTEGER_FIELD_NUMBER: _ClassVar[int]
    REAL_FIELD_NUMBER: _ClassVar[int]
    FLAG_FIELD_NUMBER: _ClassVar[int]
    text: str
    integer: int
    real: float
    flag: bool
    def __init__(self, text: _Optional[str] = ..., integer: _Optional[int] = ..., real: _Optional[float] = ..., flag: _Optional[bool] = ...) -> None: ...

class ObservedEvent(_message.Message):
    __slots__ = ("schema", "seq", "time", "party", "kind", "view", "message_id", "correlation_id", "trace_id")
    class ViewEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ViewValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ViewValue, _Mapping]] = ...) -> None: ...
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    schema: int
    seq: int
    time: float
    party: str
    kind: str
    view: _containers.MessageMap[str, ViewValue]
    message_id: str
    correlation_id: str
    trace_id: str
    def __init__(self, schema: _Optional[int] = ..., seq: _Optional[int] = ..., time: _Optional[float] = ..., party: _Optional[str] = ..., kind: _Optional[str] = ..., view: _Optional[_Mapping[str, ViewValue]] = ..., message_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., trace_id: _Optional[str] = ...) -> None: ...

class ObserveResponse(_message.Message):
    __slots__ = ("events", "dropped")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[ObservedEvent]
    dropped: int
    def __init__(self, events: _Optional[_Iterable[_Union[ObservedEvent, _Mapping]]] = ..., dropped: _Optional[int] = ...) -> None: ...
