from ncbsim.v2 import records_pb2 as _records_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Modality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODALITY_UNSPECIFIED: _ClassVar[Modality]
    MODALITY_FINGERPRINT: _ClassVar[Modality]
    MODALITY_FACE: _ClassVar[Modality]
MODALITY_UNSPECIFIED: Modality
MODALITY_FINGERPRINT: Modality
MODALITY_FACE: Modality

class Query(_message.Message):
    __slots__ = ("response_key", "document", "person", "vehicle", "fetch", "biometric", "confirm", "padding")
    RESPONSE_KEY_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    PERSON_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_FIELD_NUMBER: _ClassVar[int]
    FETCH_FIELD_NUMBER: _ClassVar[int]
    BIOMETRIC_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    response_key: bytes
    document: DocumentQuery
    person: PersonQuery
    vehicle: VehicleQuery
    fetch: FetchQuery
    biometric: BiometricQuery
    confirm: ConfirmQuery
    padding: bytes
    def __init__(self, response_key: _Optional[bytes] = ..., document: _Optional[_Union[DocumentQuery, _Mapping]] = ..., person: _Optional[_Union[PersonQuery, _Mapping]] = ..., vehicle: _Optional[_Union[VehicleQuery, _Mapping]] = ..., fetch: _Optional[_Union[FetchQuery, _Mapping]] = ..., biometric: _Optional[_Union[BiometricQuery, _Mapping]] = ..., confirm: _Optional[_Union[ConfirmQuery, _Mapping]] = ..., padding: _Optional[bytes] = ...) -> None: ...

class DocumentQuery(_message.Message):
    __slots__ = ("number", "issuer")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    number: str
    issuer: str
    def __init__(self, number: _Optional[str] = ..., issuer: _Optional[str] = ...) -> None: ...

class PersonQuery(_message.Message):
    __slots__ = ("surname", "given_names", "date_of_birth")
    SURNAME_FIELD_NUMBER: _ClassVar[int]
    GIVEN_NAMES_FIELD_NUMBER: _ClassVar[int]
    DATE_OF_BIRTH_FIELD_NUMBER: _ClassVar[int]
    surname: str
    given_names: str
    date_of_birth: str
    def __init__(self, surname: _Optional[str] = ..., given_names: _Optional[str] = ..., date_of_birth: _Optional[str] = ...) -> None: ...

class VehicleQuery(_message.Message):
    __slots__ = ("vin", "plate")
    VIN_FIELD_NUMBER: _ClassVar[int]
    PLATE_FIELD_NUMBER: _ClassVar[int]
    vin: str
    plate: str
    def __init__(self, vin: _Optional[str] = ..., plate: _Optional[str] = ...) -> None: ...

class FetchQuery(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class BiometricQuery(_message.Message):
    __slots__ = ("modality", "template", "max_candidates")
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    MAX_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    modality: Modality
    template: bytes
    max_candidates: int
    def __init__(self, modality: _Optional[_Union[Modality, str]] = ..., template: _Optional[bytes] = ..., max_candidates: _Optional[int] = ...) -> None: ...

class ConfirmQuery(_message.Message):
    __slots__ = ("ref", "modality", "template")
    REF_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    ref: str
    modality: Modality
    template: bytes
    def __init__(self, ref: _Optional[str] = ..., modality: _Optional[_Union[Modality, str]] = ..., template: _Optional[bytes] = ...) -> None: ...

class Answer(_message.Message):
    __slots__ = ("hits", "record", "not_found", "error", "candidates", "confirmation", "padding")
    HITS_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATION_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    hits: Hits
    record: Record
    not_found: NotFound
    error: QueryError
    candidates: Candidates
    confirmation: Confirmation
    padding: bytes
    def __init__(self, hits: _Optional[_Union[Hits, _Mapping]] = ..., record: _Optional[_Union[Record, _Mapping]] = ..., not_found: _Optional[_Union[NotFound, _Mapping]] = ..., error: _Optional[_Union[QueryError, _Mapping]] = ..., candidates: _Optional[_Union[Candidates, _Mapping]] = ..., confirmation: _Optional[_Union[Confirmation, _Mapping]] = ..., padding: _Optional[bytes] = ...) -> None: ...

class Hits(_message.Message):
    __slots__ = ("matches",)
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    matches: _containers.RepeatedCompositeFieldContainer[Match]
    def __init__(self, matches: _Optional[_Iterable[_Union[Match, _Mapping]]] = ...) -> None: ...

class Match(_message.Message):
    __slots__ = ("ref", "kind", "score", "handling")
    REF_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    HANDLING_FIELD_NUMBER: _ClassVar[int]
    ref: str
    kind: _records_pb2.RecordKind
    score: float
    handling: _records_pb2.HandlingCode
    def __init__(self, ref: _Optional[str] = ..., kind: _Optional[_Union[_records_pb2.RecordKind, str]] = ..., score: _Optional[float] = ..., handling: _Optional[_Union[_records_pb2.HandlingCode, str]] = ...) -> None: ...

class Record(_message.Message):
    __slots__ = ("document", "person", "vehicle", "handling")
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    PERSON_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_FIELD_NUMBER: _ClassVar[int]
    HANDLING_FIELD_NUMBER: _ClassVar[int]
    document: _records_pb2.TravelDocument
    person: _records_pb2.Person
    vehicle: _records_pb2.Vehicle
    handling: _records_pb2.HandlingCode
    def __init__(self, document: _Optional[_Union[_records_pb2.TravelDocument, _Mapping]] = ..., person: _Optional[_Union[_records_pb2.Person, _Mapping]] = ..., vehicle: _Optional[_Union[_records_pb2.Vehicle, _Mapping]] = ..., handling: _Optional[_Union[_records_pb2.HandlingCode, str]] = ...) -> None: ...

class NotFound(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Candidates(_message.Message):
    __slots__ = ("candidates",)
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    def __init__(self, candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("ref", "score", "rank")
    REF_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    ref: str
    score: float
    rank: int
    def __init__(self, ref: _Optional[str] = ..., score: _Optional[float] = ..., rank: _Optional[int] = ...) -> None: ...

class Confirmation(_message.Message):
    __slots__ = ("confirmed", "score", "record")
    CONFIRMED_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    confirmed: bool
    score: float
    record: Record
    def __init__(self, confirmed: _Optional[bool] = ..., score: _Optional[float] = ..., record: _Optional[_Union[Record, _Mapping]] = ...) -> None: ...

class QueryError(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: str
    def __init__(self, message: _Optional[str] = ...) -> None: ...
