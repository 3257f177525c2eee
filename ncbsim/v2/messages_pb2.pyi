from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NoticeColor(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOTICE_COLOR_UNSPECIFIED: _ClassVar[NoticeColor]
    NOTICE_COLOR_RED: _ClassVar[NoticeColor]
    NOTICE_COLOR_YELLOW: _ClassVar[NoticeColor]
    NOTICE_COLOR_BLUE: _ClassVar[NoticeColor]
    NOTICE_COLOR_BLACK: _ClassVar[NoticeColor]
    NOTICE_COLOR_GREEN: _ClassVar[NoticeColor]
    NOTICE_COLOR_ORANGE: _ClassVar[NoticeColor]
    NOTICE_COLOR_PURPLE: _ClassVar[NoticeColor]
    NOTICE_COLOR_UN_SPECIAL: _ClassVar[NoticeColor]
    NOTICE_COLOR_SILVER: _ClassVar[NoticeColor]

class NoticeStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOTICE_STATUS_UNSPECIFIED: _ClassVar[NoticeStatus]
    NOTICE_STATUS_REQUESTED: _ClassVar[NoticeStatus]
    NOTICE_STATUS_PUBLISHED: _ClassVar[NoticeStatus]
    NOTICE_STATUS_REFUSED: _ClassVar[NoticeStatus]
    NOTICE_STATUS_WITHDRAWN: _ClassVar[NoticeStatus]
NOTICE_COLOR_UNSPECIFIED: NoticeColor
NOTICE_COLOR_RED: NoticeColor
NOTICE_COLOR_YELLOW: NoticeColor
NOTICE_COLOR_BLUE: NoticeColor
NOTICE_COLOR_BLACK: NoticeColor
NOTICE_COLOR_GREEN: NoticeColor
NOTICE_COLOR_ORANGE: NoticeColor
NOTICE_COLOR_PURPLE: NoticeColor
NOTICE_COLOR_UN_SPECIAL: NoticeColor
NOTICE_COLOR_SILVER: NoticeColor
NOTICE_STATUS_UNSPECIFIED: NoticeStatus
NOTICE_STATUS_REQUESTED: NoticeStatus
NOTICE_STATUS_PUBLISHED: NoticeStatus
NOTICE_STATUS_REFUSED: NoticeStatus
NOTICE_STATUS_WITHDRAWN: NoticeStatus

class Attachment(_message.Message):
    __slots__ = ("name", "media_type", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    media_type: str
    data: bytes
    def __init__(self, name: _Optional[str] = ..., media_type: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class Diffusion(_message.Message):
    __slots__ = ("subject", "text", "distribution", "attachments", "padding")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    ATTACHMENTS_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    subject: str
    text: str
    distribution: _containers.RepeatedScalarFieldContainer[str]
    attachments: _containers.RepeatedCompositeFieldContainer[Attachment]
    padding: bytes
    def __init__(self, subject: _Optional[str] = ..., text: _Optional[str] = ..., distribution: _Optional[_Iterable[str]] = ..., attachments: _Optional[_Iterable[_Union[Attachment, _Mapping]]] = ..., padding: _Optional[bytes] = ...) -> None: ...

class CaseMessage(_message.Message):
    __slots__ = ("thread", "subject", "text", "in_reply_to", "attachments", "padding")
    THREAD_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IN_REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    ATTACHMENTS_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    thread: str
    subject: str
    text: str
    in_reply_to: bytes
    attachments: _containers.RepeatedCompositeFieldContainer[Attachment]
    padding: bytes
    def __init__(self, thread: _Optional[str] = ..., subject: _Optional[str] = ..., text: _Optional[str] = ..., in_reply_to: _Optional[bytes] = ..., attachments: _Optional[_Iterable[_Union[Attachment, _Mapping]]] = ..., padding: _Optional[bytes] = ...) -> None: ...

class NoticeSubject(_message.Message):
    __slots__ = ("surname", "given_names", "date_of_birth", "nationality", "sex", "description")
    SURNAME_FIELD_NUMBER: _ClassVar[int]
    GIVEN_NAMES_FIELD_NUMBER: _ClassVar[int]
    DATE_OF_BIRTH_FIELD_NUMBER: _ClassVar[int]
    NATIONALITY_FIELD_NUMBER: _ClassVar[int]
    SEX_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    surname: str
    given_names: str
    date_of_birth: str
    nationality: str
    sex: str
    description: str
    def __init__(self, surname: _Optional[str] = ..., given_names: _Optional[str] = ..., date_of_birth: _Optional[str] = ..., nationality: _Optional[str] = ..., sex: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class NoticeRequest(_message.Message):
    __slots__ = ("publish", "withdraw", "padding")
    PUBLISH_FIELD_NUMBER: _ClassVar[int]
    WITHDRAW_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    publish: NoticeDraft
    withdraw: NoticeWithdrawal
    padding: bytes
    def __init__(self, publish: _Optional[_Union[NoticeDraft, _Mapping]] = ..., withdraw: _Optional[_Union[NoticeWithdrawal, _Mapping]] = ..., padding: _Optional[bytes] = ...) -> None: ...

class NoticeDraft(_message.Message):
    __slots__ = ("notice_id", "color", "subject", "summary", "text")
    NOTICE_ID_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    notice_id: bytes
    color: NoticeColor
    subject: NoticeSubject
    summary: str
    text: str
    def __init__(self, notice_id: _Optional[bytes] = ..., color: _Optional[_Union[NoticeColor, str]] = ..., subject: _Optional[_Union[NoticeSubject, _Mapping]] = ..., summary: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class NoticeWithdrawal(_message.Message):
    __slots__ = ("notice_id", "reason")
    NOTICE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    notice_id: bytes
    reason: str
    def __init__(self, notice_id: _Optional[bytes] = ..., reason: _Optional[str] = ...) -> None: ...

class Notice(_message.Message):
    __slots__ = ("notice_id", "color", "status", "requested_by", "subject", "summary", "text", "reason", "requested_at_ms", "decided_at_ms", "reference", "padding")
    NOTICE_ID_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    notice_id: bytes
    color: NoticeColor
    status: NoticeStatus
    requested_by: str
    subject: NoticeSubject
    summary: str
    text: str
    reason: str
    requested_at_ms: int
    decided_at_ms: int
    reference: str
    padding: bytes
    def __init__(self, notice_id: _Optional[bytes] = ..., color: _Optional[_Union[NoticeColor, str]] = ..., status: _Optional[_Union[NoticeStatus, str]] = ..., requested_by: _Optional[str] = ..., subject: _Optional[_Union[NoticeSubject, _Mapping]] = ..., summary: _Optional[str] = ..., text: _Optional[str] = ..., reason: _Optional[str] = ..., requested_at_ms: _Optional[int] = ..., decided_at_ms: _Optional[int] = ..., reference: _Optional[str] = ..., padding: _Optional[bytes] = ...) -> None: ...

class DeliveryReceipt(_message.Message):
    __slots__ = ("version", "message_id", "post_id", "sender", "recipient", "envelope_sha256", "processed_at_ms", "signing_key_id")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    POST_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_SHA256_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SIGNING_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    version: int
    message_id: bytes
    post_id: bytes
    sender: str
    recipient: str
    envelope_sha256: bytes
    processed_at_ms: int
    signing_key_id: bytes
    def __init__(self, version: _Optional[int] = ..., message_id: _Optional[bytes] = ..., post_id: _Optional[bytes] = ..., sender: _Optional[str] = ..., recipient: _Optional[str] = ..., envelope_sha256: _Optional[bytes] = ..., processed_at_ms: _Optional[int] = ..., signing_key_id: _Optional[bytes] = ...) -> None: ...

class SignedReceipt(_message.Message):
    __slots__ = ("receipt", "signature")
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    receipt: bytes
    signature: bytes
    def __init__(self, receipt: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...
