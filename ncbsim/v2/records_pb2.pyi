from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class RecordKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECORD_KIND_UNSPECIFIED: _ClassVar[RecordKind]
    RECORD_KIND_DOCUMENT: _ClassVar[RecordKind]
    RECORD_KIND_PERSON: _ClassVar[RecordKind]
    RECORD_KIND_VEHICLE: _ClassVar[RecordKind]

class HandlingCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HANDLING_CODE_UNSPECIFIED: _ClassVar[HandlingCode]
    HANDLING_CODE_H0: _ClassVar[HandlingCode]
    HANDLING_CODE_H1: _ClassVar[HandlingCode]
    HANDLING_CODE_H2: _ClassVar[HandlingCode]
    HANDLING_CODE_H3: _ClassVar[HandlingCode]
RECORD_KIND_UNSPECIFIED: RecordKind
RECORD_KIND_DOCUMENT: RecordKind
RECORD_KIND_PERSON: RecordKind
RECORD_KIND_VEHICLE: RecordKind
HANDLING_CODE_UNSPECIFIED: HandlingCode
HANDLING_CODE_H0: HandlingCode
HANDLING_CODE_H1: HandlingCode
HANDLING_CODE_H2: HandlingCode
HANDLING_CODE_H3: HandlingCode

class TravelDocument(_message.Message):
    __slots__ = ("ref", "number", "issuer", "doc_type", "surname", "given_names", "nationality", "date_of_birth", "sex", "date_of_expiry", "mrz", "status", "reported_on")
    REF_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    DOC_TYPE_FIELD_NUMBER: _ClassVar[int]
    SURNAME_FIELD_NUMBER: _ClassVar[int]
    GIVEN_NAMES_FIELD_NUMBER: _ClassVar[int]
    NATIONALITY_FIELD_NUMBER: _ClassVar[int]
    DATE_OF_BIRTH_FIELD_NUMBER: _ClassVar[int]
    SEX_FIELD_NUMBER: _ClassVar[int]
    DATE_OF_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    MRZ_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REPORTED_ON_FIELD_NUMBER: _ClassVar[int]
    ref: str
    number: str
    issuer: str
    doc_type: str
    surname: str
    given_names: str
    nationality: str
    date_of_birth: str
    sex: str
    date_of_expiry: str
    mrz: str
    status: str
    reported_on: str
    def __init__(self, ref: _Optional[str] = ..., number: _Optional[str] = ..., issuer: _Optional[str] = ..., doc_type: _Optional[str] = ..., surname: _Optional[str] = ..., given_names: _Optional[str] = ..., nationality: _Optional[str] = ..., date_of_birth: _Optional[str] = ..., sex: _Optional[str] = ..., date_of_expiry: _Optional[str] = ..., mrz: _Optional[str] = ..., status: _Optional[str] = ..., reported_on: _Optional[str] = ...) -> None: ...

class Person(_message.Message):
    __slots__ = ("ref", "surname", "given_names", "date_of_birth", "nationality", "sex", "flag", "summary")
    REF_FIELD_NUMBER: _ClassVar[int]
    SURNAME_FIELD_NUMBER: _ClassVar[int]
    GIVEN_NAMES_FIELD_NUMBER: _ClassVar[int]
    DATE_OF_BIRTH_FIELD_NUMBER: _ClassVar[int]
    NATIONALITY_FIELD_NUMBER: _ClassVar[int]
    SEX_FIELD_NUMBER: _ClassVar[int]
    FLAG_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ref: str
    surname: str
    given_names: str
    date_of_birth: str
    nationality: str
    sex: str
    flag: str
    summary: str
    def __init__(self, ref: _Optional[str] = ..., surname: _Optional[str] = ..., given_names: _Optional[str] = ..., date_of_birth: _Optional[str] = ..., nationality: _Optional[str] = ..., sex: _Optional[str] = ..., flag: _Optional[str] = ..., summary: _Optional[str] = ...) -> None: ...

class Vehicle(_message.Message):
    __slots__ = ("ref", "vin", "plate", "make", "model", "year", "colour", "registration_country", "status", "reported_on")
    REF_FIELD_NUMBER: _ClassVar[int]
    VIN_FIELD_NUMBER: _ClassVar[int]
    PLATE_FIELD_NUMBER: _ClassVar[int]
    MAKE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    YEAR_FIELD_NUMBER: _ClassVar[int]
    COLOUR_FIELD_NUMBER: _ClassVar[int]
    REGISTRATION_COUNTRY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REPORTED_ON_FIELD_NUMBER: _ClassVar[int]
    ref: str
    vin: str
    plate: str
    make: str
    model: str
    year: int
    colour: str
    registration_country: str
    status: str
    reported_on: str
    def __init__(self, ref: _Optional[str] = ..., vin: _Optional[str] = ..., plate: _Optional[str] = ..., make: _Optional[str] = ..., model: _Optional[str] = ..., year: _Optional[int] = ..., colour: _Optional[str] = ..., registration_country: _Optional[str] = ..., status: _Optional[str] = ..., reported_on: _Optional[str] = ...) -> None: ...
