"""The timeline's events: one frozen type per kind, and the parts they carry.

:data:`Event` is the union of :class:`FaultEvent`, :class:`HealEvent`, :class:`QueryEvent`,
:class:`PostEvent` (a diffusion or a case message), :class:`NoticeEvent` and
:class:`WithdrawEvent`: each holds only its own keys, so no event can be two things. Each
validates its own fields; rules across events are ncbsim.simulations.scenario.timeline's.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from typing import ClassVar

from ncbsim.messages import COLORS
from ncbsim.simulations.faults.registry import (
    FAULT_PARAMS,
    FAULTS,
    INSTANT_FAULTS,
    LINK_FAULTS,
    PROCESS_FAULTS,
)
from ncbsim.simulations.scenario.values import (
    _as_float,
    _bool,
    _choice,
    _codes,
    _got,
    _Invalid,
    _number,
    _param,
    _str,
    _table,
    _text_bytes,
    _ttl,
)

DIRECTIONS = ("to-bureau", "from-bureau", "both")
QUERY_KINDS = ("document", "person", "vehicle")
EXPECTS = ("hit", "no_hit", "no_answer", "record", "not_found", "refused")
"""What a timeline query may expect; ``refused``: PERMISSION_DENIED (a user beyond its rights)."""
FETCH_EXPECTS = frozenset({"record", "not_found"})
ALL = "ALL"
GATEWAY = "gateway"
TARGETS = ("bureaus", GATEWAY)
"""What a fault hits: the bureaus it names (default), or the gateway process."""
POST_KINDS = ("diffusion", "message")
MESSAGE_EVENTS = (*POST_KINDS, "notice", "withdraw")
"""Timeline events that post one-way messages (simulations/messaging.py sends them)."""
EVENT_KINDS = ("fault", "heal", "query", *MESSAGE_EVENTS)
SUBJECT_KEYS = ("surname", "given_names", "date_of_birth", "nationality", "sex", "description")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_ID = re.compile(r"[a-z][a-z0-9_]*\Z")


def _recipients(key: str, to: tuple[str, ...], sender: str) -> None:
    if not to:
        raise _Invalid(key, 'expected at least one bureau, or ["ALL"]')
    if ALL in to and len(to) > 1:
        raise _Invalid(key, '"ALL" stands alone: to = ["ALL"]')
    if sender in to:
        raise _Invalid(key, f"a bureau does not send to itself ({sender!r})")


@dataclass(frozen=True, kw_only=True, slots=True)
class Post:
    """A diffusion or a case message the timeline sends. ``to`` is bureaus and users
    (``NG/x``, kept by node NG for that user), or ``("ALL",)``; ``sender`` a bureau or a
    user."""

    kind: str
    sender: str
    to: tuple[str, ...]
    subject: str = ""
    text_bytes: int | None = None  # None: messages.text_bytes
    ttl_s: float | None = None  # None: messages.ttl_s

    def __post_init__(self) -> None:
        _choice("kind", self.kind, POST_KINDS)
        _str(f"{self.kind}.subject", self.subject)
        _recipients(f"{self.kind}.to", self.to, self.sender)
        if self.kind == "message" and ALL in self.to:
            raise _Invalid("message.to", "a case message goes to named bureaus, not ALL")
        if self.text_bytes is not None:
            _text_bytes(f"{self.kind}.text_bytes", self.text_bytes)
        if self.ttl_s is not None:
            _ttl(f"{self.kind}.ttl_s", self.ttl_s)
        _as_float(self, "ttl_s")


@dataclass(frozen=True, kw_only=True, slots=True)
class NoticeSpec:
    """A notice a bureau asks GS to publish. Without ``subject``, the subject is a wanted
    person drawn (from the seed) from the requesting bureau's own records."""

    requester: str
    color: str = "red"
    subject: dict[str, str] | None = None
    summary: str = ""
    ttl_s: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.color, str) or self.color not in COLORS:
            raise _Invalid(
                "notice.color",
                f"expected one of {', '.join(map(repr, COLORS))}, {_got(self.color)}",
            )
        _str("notice.summary", self.summary)
        if self.subject is not None:
            _subject("notice.subject", self.subject)
            if self.color == "red" and not self.summary:
                raise _Invalid("notice.summary", "a red notice needs a summary (the charges)")
        if self.ttl_s is not None:
            _ttl("notice.ttl_s", self.ttl_s)
        _as_float(self, "ttl_s")


def _subject(key: str, value: object) -> None:
    table = _table(key, value, SUBJECT_KEYS)
    for name, item in table.items():
        _str(f"{key}.{name}", item)
    if not table.get("surname"):
        raise _Invalid(f"{key}.surname", "required: the subject's surname")
    dob = table.get("date_of_birth", "")
    if not _DATE.match(dob):
        raise _Invalid(f"{key}.date_of_birth", f"required: a date YYYY-MM-DD, {_got(dob)}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Withdrawal:
    """The withdrawal of a notice the timeline requested (by its event id)."""

    notice: str
    reason: str = ""

    def __post_init__(self) -> None:
        _str("withdraw.notice", self.notice)
        _str("withdraw.reason", self.reason)


@dataclass(frozen=True, kw_only=True, slots=True)
class ExplicitQuery:
    """A query the timeline sends at a given time. ``to`` is bureaus, or ``("ALL",)``;
    ``requester`` a bureau or one of its users (``NG/x``), who queries other bureaus.

    ``notice`` names a notice event: the query is a person search for its subject.
    """

    requester: str
    to: tuple[str, ...]
    kind: str
    planted: bool = True
    fetch: bool = False
    notice: str | None = None

    def __post_init__(self) -> None:
        _choice("query.kind", self.kind, QUERY_KINDS)
        _bool("query.planted", self.planted)
        _bool("query.fetch", self.fetch)
        if self.notice is not None:
            _str("query.notice", self.notice)
            if self.kind != "person":
                raise _Invalid("query.kind", "a query for a notice's subject is a person search")
        if not self.to:
            raise _Invalid("query.to", 'expected at least one bureau, or ["ALL"]')
        if ALL in self.to and len(self.to) > 1:
            raise _Invalid("query.to", '"ALL" stands alone: to = ["ALL"]')
        own = self.requester.partition("/")[0]  # a user's bureau answers for it
        if own in self.to:
            who = (
                "a user queries other bureaus, not its own"
                if own != self.requester
                else ("a bureau does not query itself")
            )
            raise _Invalid("query.to", f"{who} ({own!r})")
        for code in self.to:
            if "/" in code:
                raise _Invalid("query.to", f"a query goes to bureaus; users answer none ({code!r})")


def _check_when(at_s: object, event_id: object) -> None:
    """Every event's ``at_s`` and ``id``."""
    _number("at_s", at_s, ge=0)
    if not isinstance(event_id, str) or not _ID.match(event_id):
        raise _Invalid("id", f"expected an identifier [a-z][a-z0-9_]*, {_got(event_id)}")
    if keyword.iskeyword(event_id):
        raise _Invalid("id", f"{event_id!r} is a Python keyword; checks could not name it")


@dataclass(frozen=True, kw_only=True, slots=True)
class FaultEvent:
    """A fault of some bureaus (or of the gateway), healed after ``duration_s`` or by a
    heal event; ``params`` are its kind's (ncbsim.simulations.faults.registry)."""

    kind: ClassVar[str] = "fault"
    at_s: float
    id: str
    fault: str
    bureaus: tuple[str, ...] = ()
    target: str = "bureaus"
    duration_s: float | None = None
    settle_s: float = 2.0
    direction: str = "both"
    params: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_when(self.at_s, self.id)
        self._check_fault(self.fault)
        _as_float(self, "at_s", "duration_s", "settle_s")

    def _check_fault(self, fault: str) -> None:
        if fault not in FAULTS:
            raise _Invalid("fault", f"expected one of {', '.join(sorted(FAULTS))}, {_got(fault)}")
        _choice("target", self.target, TARGETS)
        if self.target == GATEWAY:
            if fault not in PROCESS_FAULTS:
                raise _Invalid(
                    "target",
                    f"only process faults ({', '.join(sorted(PROCESS_FAULTS))}) hit the"
                    f" gateway, not {fault}",
                )
            if self.bureaus:
                raise _Invalid("bureaus", "a fault of the gateway names no bureaus")
        elif not self.bureaus:
            raise _Invalid("bureaus", f"a {fault} fault needs at least one bureau")
        object.__setattr__(self, "bureaus", _codes("bureaus", self.bureaus))
        if self.duration_s is not None:
            if fault in INSTANT_FAULTS:
                raise _Invalid("duration_s", f"{fault} is instantaneous; it takes no duration_s")
            _number("duration_s", self.duration_s, gt=0)
        _number("settle_s", self.settle_s, ge=0)
        _choice("direction", self.direction, DIRECTIONS)
        if self.direction != "both" and fault not in LINK_FAULTS:
            raise _Invalid("direction", f"only link faults have a direction, not {fault}")
        spec = FAULT_PARAMS.get(fault, {})
        for name in self.params:
            if name not in spec:
                raise _Invalid(name, f"not a parameter of {fault}")
        for name, param in spec.items():
            if name not in self.params:
                raise _Invalid(name, f"required for a {fault} fault")
            _param(name, self.params[name], param)

    @property
    def targets(self) -> tuple[str, ...]:
        """What the fault holds: its bureaus, or ``("gateway",)`` for a fault of the gateway."""
        return (GATEWAY,) if self.target == GATEWAY else self.bureaus

    @property
    def end_s(self) -> float | None:
        """When a fault with ``duration_s`` heals by itself (None otherwise)."""
        return None if self.duration_s is None else self.at_s + self.duration_s


@dataclass(frozen=True, kw_only=True, slots=True)
class HealEvent:
    """The heal of an earlier fault (by its id) that has no ``duration_s``."""

    kind: ClassVar[str] = "heal"
    at_s: float
    id: str
    heal: str

    def __post_init__(self) -> None:
        _check_when(self.at_s, self.id)
        _as_float(self, "at_s")


@dataclass(frozen=True, kw_only=True, slots=True)
class QueryEvent:
    """An explicit query, and the outcome it must have (``expect``, optional)."""

    kind: ClassVar[str] = "query"
    at_s: float
    id: str
    query: ExplicitQuery
    expect: str | None = None

    def __post_init__(self) -> None:
        _check_when(self.at_s, self.id)
        if self.expect is not None:
            _choice("expect", self.expect, EXPECTS)
            if self.expect in FETCH_EXPECTS and not self.query.fetch:
                raise _Invalid("expect", f"{self.expect!r} is a fetch outcome; set fetch = true")
        _as_float(self, "at_s")


@dataclass(frozen=True, kw_only=True, slots=True)
class PostEvent:
    """A diffusion or a case message the timeline posts."""

    at_s: float
    id: str
    post: Post

    def __post_init__(self) -> None:
        _check_when(self.at_s, self.id)
        _as_float(self, "at_s")

    @property
    def kind(self) -> str:
        """``"diffusion"`` or ``"message"``: the post's kind."""
        return self.post.kind


@dataclass(frozen=True, kw_only=True, slots=True)
class NoticeEvent:
    """A notice a bureau asks the General Secretariat to publish."""

    kind: ClassVar[str] = "notice"
    at_s: float
    id: str
    notice: NoticeSpec

    def __post_init__(self) -> None:
        _check_when(self.at_s, self.id)
        _as_float(self, "at_s")


@dataclass(frozen=True, kw_only=True, slots=True)
class WithdrawEvent:
    """The withdrawal of a notice the timeline requested."""

    kind: ClassVar[str] = "withdraw"
    at_s: float
    id: str
    withdraw: Withdrawal

    def __post_init__(self) -> None:
        _check_when(self.at_s, self.id)
        _as_float(self, "at_s")


Event = FaultEvent | HealEvent | QueryEvent | PostEvent | NoticeEvent | WithdrawEvent
"""One timeline event: a fault, the heal of an earlier fault, an explicit query, or a
post (diffusion, message, notice request or withdrawal). ``kind`` names which."""
