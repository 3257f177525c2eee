"""Scenario files: bureaus, data, traffic, a timeline of events and checks. TOML, validated.

docs/scenarios.md documents every key. :func:`load` reads a file with :mod:`tomllib` and
:func:`from_dict` validates a table; both raise :class:`ScenarioError`, whose message names
the file, the key and what was expected, e.g.
``sim.toml: traffic.rate_per_s: expected a number > 0, got 'fast'``. Unknown keys are errors
at every level, a bool is never a number and ``1.5`` never an int. Nothing starts until
a scenario is valid.
"""

from __future__ import annotations

import keyword
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ncbsim.countries import GENERAL_SECRETARIAT, INTERPOL_MEMBERS, UnknownCountry, country
from ncbsim.envelope import MAX_TTL_MS
from ncbsim.errors import ConfigError, PkiError
from ncbsim.messages import COLORS, MAX_TEXT_CHARS
from ncbsim.pki import check_bureau_code
from ncbsim.simulations import checks
from ncbsim.simulations import paths as report_paths

SCENARIOS = Path(__file__).resolve().parent / "scenarios"

ALL_MEMBERS = "all-members"
LINK_FAULTS = frozenset({"latency", "bandwidth", "loss", "slice", "blackhole", "reset", "down"})
"""Faults applied by the per-bureau TCP fault proxy, per direction."""
PROCESS_FAULTS = frozenset({"kill", "restart", "pause", "resume"})
"""Faults applied to a bureau's process with signals."""
INSTANT_FAULTS = frozenset({"reset", "restart", "resume"})
"""Faults that happen at one instant: no ``duration_s``, nothing to heal."""
FAULTS = LINK_FAULTS | PROCESS_FAULTS | frozenset({"partition", "skew"})
"""Every fault kind."""
PROXY_FAULTS = LINK_FAULTS | frozenset({"partition"})
"""Faults that need the fault proxy (refused with ``engine.proxy = "none"``)."""
_FAULT_NAMES = tuple(sorted(FAULTS))
DIRECTIONS = ("to-bureau", "from-bureau", "both")
QUERY_KINDS = ("document", "person", "vehicle")
EXPECTS = ("hit", "no_hit", "no_answer", "record", "not_found")
FETCH_EXPECTS = frozenset({"record", "not_found"})
PROXY_MODES = ("auto", "all", "none")
ENGINE_MODES = ("loopback", "netns")
ALL = "ALL"
GATEWAY = "gateway"
TARGETS = ("bureaus", GATEWAY)
"""What a fault hits: the bureaus it names (default), or the gateway process."""
POST_KINDS = ("diffusion", "message")
MESSAGE_EVENTS = (*POST_KINDS, "notice", "withdraw")
"""Timeline events that post one-way messages (simulations/messaging.py sends them)."""
EVENT_KINDS = ("fault", "heal", "query", *MESSAGE_EVENTS)
MAX_TTL_S = MAX_TTL_MS / 1000
SUBJECT_KEYS = ("surname", "given_names", "date_of_birth", "nationality", "sex", "description")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")

_ID = re.compile(r"[a-z][a-z0-9_]*\Z")


@dataclass(frozen=True, slots=True)
class _Param:
    """A fault parameter: its type ("number"/"int"), whether required, bounds and default."""

    kind: str
    required: bool
    default: float | None = None
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    nonzero: bool = False


FAULT_PARAMS: dict[str, dict[str, _Param]] = {
    "latency": {
        "latency_ms": _Param("number", True, gt=0),
        "jitter_ms": _Param("number", False, default=0, ge=0),
    },
    "bandwidth": {"kbit_per_s": _Param("number", True, gt=0)},
    "loss": {"loss": _Param("number", True, gt=0, le=1)},
    "slice": {
        "piece_bytes": _Param("int", False, default=1, ge=1),
        "pause_ms": _Param("number", False, default=0, ge=0),
    },
    "skew": {"offset_ms": _Param("int", True, nonzero=True)},
}
"""The parameters each fault kind takes; kinds not listed take none."""


class ScenarioError(ConfigError):
    """A scenario is invalid. The message is ``"{file}: {key}: {problem}"``."""


class _Invalid(ScenarioError):  # noqa: N818 - internal: (key, problem), the file added later
    """A ScenarioError that keeps its key apart, so the loader can add the file and section."""

    def __init__(self, key: str, problem: str = "invalid value") -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


# ---------------------------------------------------------------- value checks


def _got(value: object) -> str:
    return f"got {value!r}"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(
    key: str,
    value: object,
    *,
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
) -> float:
    bound = " and ".join(
        f"{op} {_fmt(b)}" for op, b in ((">", gt), (">=", ge), ("<=", le)) if b is not None
    )
    expected = f"expected a number{' ' + bound if bound else ''}"
    if not _is_number(value):
        raise _Invalid(key, f"{expected}, {_got(value)}")
    number = float(value)  # type: ignore[arg-type]
    if (
        not math.isfinite(number)
        or (gt is not None and not number > gt)
        or (ge is not None and not number >= ge)
        or (le is not None and not number <= le)
    ):
        raise _Invalid(key, f"{expected}, {_got(value)}")
    return number


def _int(key: str, value: object, *, ge: int | None = None, nonzero: bool = False) -> int:
    expected = "expected an integer" + (f" >= {ge}" if ge is not None else "")
    expected += " other than 0" if nonzero else ""
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Invalid(key, f"{expected}, {_got(value)}")
    if (ge is not None and value < ge) or (nonzero and value == 0):
        raise _Invalid(key, f"{expected}, {_got(value)}")
    return value


def _bool(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(key, f"expected true or false, {_got(value)}")
    return value


def _str(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid(key, f"expected a string, {_got(value)}")
    return value


def _choice(key: str, value: object, options: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in options:
        raise _Invalid(key, f"expected one of {', '.join(map(repr, options))}, {_got(value)}")
    return value


def _as_float(obj: object, *names: str) -> None:
    """Store validated numbers of a frozen dataclass as floats (an int 15 becomes 15.0)."""
    for name in names:
        value = getattr(obj, name)
        if _is_number(value):
            object.__setattr__(obj, name, float(value))


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _codes(key: str, value: object, *, within: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """A list of distinct bureau codes (each in ``within`` if given) as a tuple."""
    if not isinstance(value, list | tuple):
        raise _Invalid(key, f"expected a list of bureau codes, {_got(value)}")
    codes: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise _Invalid(key, f"expected bureau codes (strings), {_got(item)}")
        if within is not None and item not in within:
            raise _Invalid(key, f"{item!r} is not one of the scenario's bureaus")
        if item in codes:
            raise _Invalid(key, f"{item!r} appears twice")
        codes.append(item)
    return tuple(codes)


def _bureau_code(key: str, code: str) -> None:
    try:
        check_bureau_code(code)
        country(code)
    except PkiError:
        raise _Invalid(key, f"{code!r} is not a bureau code (two upper-case letters)") from None
    except UnknownCountry:
        raise _Invalid(key, f"{code!r} is not an assigned ISO 3166-1 alpha-2 code") from None


def _table(key: str, value: object, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    """``value`` as a table whose keys are all in ``allowed``."""
    if not isinstance(value, Mapping):
        raise _Invalid(key, f"expected a table, {_got(value)}")
    for name in value:
        if name not in allowed:
            where = f"{key}.{name}" if key else str(name)
            raise _Invalid(where, f"unknown key; expected one of {', '.join(allowed)}")
    return value


# ---------------------------------------------------------------- the dataclasses


@dataclass(frozen=True, kw_only=True, slots=True)
class Records:
    """How many records each bureau holds, and how many of them traffic aims hits at."""

    documents: int = 2000
    persons: int = 500
    vehicles: int = 500
    planted: int = 20

    def __post_init__(self) -> None:
        for name in ("documents", "persons", "vehicles", "planted"):
            _int(f"records.{name}", getattr(self, name), ge=1)
        if self.planted > self.documents + self.persons + self.vehicles:
            raise _Invalid(
                "records.planted",
                f"expected at most the bureau's {self.documents + self.persons + self.vehicles}"
                f" records, got {self.planted}",
            )


@dataclass(frozen=True, kw_only=True, slots=True)
class Mix:
    """Relative weights of the query kinds; ``multi`` is a document query to ALL bureaus."""

    document: float = 5
    person: float = 3
    vehicle: float = 2
    multi: float = 0.2

    def __post_init__(self) -> None:
        for name in ("document", "person", "vehicle", "multi"):
            _number(f"traffic.mix.{name}", getattr(self, name), ge=0)
        if not any(self.weights().values()):
            raise _Invalid("traffic.mix", "expected at least one weight > 0, all are 0")
        _as_float(self, "document", "person", "vehicle", "multi")

    def weights(self) -> dict[str, float]:
        """Kind -> weight, in a fixed order (document, person, vehicle, multi)."""
        return {
            "document": self.document,
            "person": self.person,
            "vehicle": self.vehicle,
            "multi": self.multi,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class Traffic:
    """The background traffic: an open loop of queries at a rate, for a duration."""

    duration_s: float = 15.0
    rate_per_s: float = 6.0
    hit_ratio: float = 0.4
    fetch_ratio: float = 0.5
    deadline_ms: int = 3000
    max_in_flight: int = 64
    requesters: tuple[str, ...] = ()
    mix: Mix = field(default_factory=Mix)

    def __post_init__(self) -> None:
        _number("traffic.duration_s", self.duration_s, gt=0)
        _number("traffic.rate_per_s", self.rate_per_s, gt=0)
        _number("traffic.hit_ratio", self.hit_ratio, ge=0, le=1)
        _number("traffic.fetch_ratio", self.fetch_ratio, ge=0, le=1)
        _int("traffic.deadline_ms", self.deadline_ms, ge=100)
        _int("traffic.max_in_flight", self.max_in_flight, ge=1)
        object.__setattr__(self, "requesters", _codes("traffic.requesters", self.requesters))
        _as_float(self, "duration_s", "rate_per_s", "hit_ratio", "fetch_ratio")


@dataclass(frozen=True, kw_only=True, slots=True)
class Engine:
    """How the network runs: host processes, fault proxy, loopback or network namespaces."""

    hosts: int = 0
    proxy: str = "auto"
    mode: str = "loopback"
    startup_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        _int("engine.hosts", self.hosts, ge=0)
        _choice("engine.proxy", self.proxy, PROXY_MODES)
        _choice("engine.mode", self.mode, ENGINE_MODES)
        _number("engine.startup_timeout_s", self.startup_timeout_s, gt=0)
        _as_float(self, "startup_timeout_s")


def _ttl(key: str, value: object) -> None:
    _number(key, value, gt=0, le=MAX_TTL_S)


def _text_bytes(key: str, value: object) -> None:
    _int(key, value, ge=1)
    assert isinstance(value, int)
    if value > MAX_TEXT_CHARS:
        raise _Invalid(key, f"expected an integer >= 1 and <= {MAX_TEXT_CHARS}, {_got(value)}")


def _recipients(key: str, to: tuple[str, ...], sender: str) -> None:
    if not to:
        raise _Invalid(key, 'expected at least one bureau, or ["ALL"]')
    if ALL in to and len(to) > 1:
        raise _Invalid(key, '"ALL" stands alone: to = ["ALL"]')
    if sender in to:
        raise _Invalid(key, f"a bureau does not send to itself ({sender!r})")


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageMix:
    """Relative weights of the steady stream's post kinds."""

    diffusion: float = 1
    message: float = 3

    def __post_init__(self) -> None:
        for name in POST_KINDS:
            _number(f"messages.mix.{name}", getattr(self, name), ge=0)
        if not any(self.weights().values()):
            raise _Invalid("messages.mix", "expected at least one weight > 0, all are 0")
        _as_float(self, *POST_KINDS)

    def weights(self) -> dict[str, float]:
        """Kind -> weight: diffusion, message."""
        return {"diffusion": self.diffusion, "message": self.message}


@dataclass(frozen=True, kw_only=True, slots=True)
class Messages:
    """One-way message traffic: a steady stream of posts, and how the run settles them.

    ``rate_per_s`` 0 (the default) means no stream: only the timeline's posts. Every
    post's copies are followed until delivered or expired, for at most ``drain_s`` after
    the traffic ends.
    """

    rate_per_s: float = 0.0
    mix: MessageMix = field(default_factory=MessageMix)
    diffusion_to: tuple[str, ...] = (ALL,)
    ttl_s: float = 3600.0
    text_bytes: int = 200
    senders: tuple[str, ...] = ()
    drain_s: float = 20.0
    post_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        _number("messages.rate_per_s", self.rate_per_s, ge=0)
        object.__setattr__(self, "diffusion_to", _codes("messages.diffusion_to", self.diffusion_to))
        if not self.diffusion_to:
            raise _Invalid("messages.diffusion_to", 'expected at least one bureau, or ["ALL"]')
        if ALL in self.diffusion_to and len(self.diffusion_to) > 1:
            raise _Invalid("messages.diffusion_to", '"ALL" stands alone: diffusion_to = ["ALL"]')
        _ttl("messages.ttl_s", self.ttl_s)
        _text_bytes("messages.text_bytes", self.text_bytes)
        object.__setattr__(self, "senders", _codes("messages.senders", self.senders))
        _number("messages.drain_s", self.drain_s, gt=0)
        _number("messages.post_timeout_s", self.post_timeout_s, gt=0)
        _as_float(self, "rate_per_s", "ttl_s", "drain_s", "post_timeout_s")


@dataclass(frozen=True, kw_only=True, slots=True)
class Post:
    """A diffusion or a case message the timeline sends. ``to`` is bureaus or ``("ALL",)``."""

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
    """A query the timeline sends at a given time. ``to`` is bureaus, or ``("ALL",)``.

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
        if self.requester in self.to:
            raise _Invalid("query.to", f"a bureau does not query itself ({self.requester!r})")


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """One timeline event: a fault, the heal of an earlier fault, an explicit query, or a
    post (diffusion, message, notice request or withdrawal)."""

    at_s: float
    id: str
    fault: str | None = None
    heal: str | None = None
    query: ExplicitQuery | None = None
    diffusion: Post | None = None
    message: Post | None = None
    notice: NoticeSpec | None = None
    withdraw: Withdrawal | None = None
    expect: str | None = None
    bureaus: tuple[str, ...] = ()
    target: str = "bureaus"
    duration_s: float | None = None
    settle_s: float = 2.0
    direction: str = "both"
    params: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _number("at_s", self.at_s, ge=0)
        if not isinstance(self.id, str) or not _ID.match(self.id):
            raise _Invalid("id", f"expected an identifier [a-z][a-z0-9_]*, {_got(self.id)}")
        if keyword.iskeyword(self.id):
            raise _Invalid("id", f"{self.id!r} is a Python keyword; checks could not name it")
        given = [k for k in EVENT_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise _Invalid(
                "fault",
                f"expected exactly one of {', '.join(EVENT_KINDS)}; got {given or 'none'}",
            )
        for kind in POST_KINDS:
            post = getattr(self, kind)
            if post is not None and post.kind != kind:
                raise _Invalid(kind, f"a {post.kind} given as {kind}")
        if self.fault is not None:
            self._check_fault(self.fault)
        if self.expect is not None:
            if self.query is None:
                raise _Invalid("expect", "only a query event has an expected outcome")
            _choice("expect", self.expect, EXPECTS)
            if self.expect in FETCH_EXPECTS and not self.query.fetch:
                raise _Invalid("expect", f"{self.expect!r} is a fetch outcome; set fetch = true")
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
    def kind(self) -> str:
        """``"fault"``, ``"heal"``, ``"query"``, or a post: ``"diffusion"``, ``"message"``,
        ``"notice"``, ``"withdraw"``."""
        return next(k for k in EVENT_KINDS if getattr(self, k) is not None)

    @property
    def targets(self) -> tuple[str, ...]:
        """What a fault holds: its bureaus, or ``("gateway",)`` for a fault of the gateway."""
        return (GATEWAY,) if self.target == GATEWAY else self.bureaus

    @property
    def end_s(self) -> float | None:
        """When a fault with ``duration_s`` heals by itself (None otherwise)."""
        return None if self.duration_s is None else self.at_s + self.duration_s


def _param(key: str, value: object, param: _Param) -> float:
    if param.kind == "int":
        return _int(
            key, value, ge=None if param.ge is None else int(param.ge), nonzero=param.nonzero
        )
    return _number(key, value, gt=param.gt, ge=param.ge, le=param.le)


@dataclass(frozen=True, kw_only=True, slots=True)
class CheckSpec:
    """A named condition on the report (see simulations/checks.py)."""

    name: str
    expect: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Scenario:
    """A network, its data, its traffic, a timeline of events and the checks to meet.

    Events are kept sorted by ``at_s`` (stable). Constructing one validates it; errors
    are :class:`ScenarioError` naming the key (``from_dict``/``load`` add the file).
    """

    name: str
    description: str = ""
    path: Path | None = None
    bureaus: tuple[str, ...]
    seed: int = 1
    records: Records = field(default_factory=Records)
    traffic: Traffic = field(default_factory=Traffic)
    messages: Messages = field(default_factory=Messages)
    engine: Engine = field(default_factory=Engine)
    events: tuple[Event, ...] = ()
    checks: tuple[CheckSpec, ...] = ()

    def __post_init__(self) -> None:
        _check_scenario(self, list(self.events))
        ordered = tuple(sorted(self.events, key=lambda e: e.at_s))
        object.__setattr__(self, "events", ordered)

    def event(self, event_id: str) -> Event:
        """The event with id ``event_id`` (KeyError if none)."""
        for item in self.events:
            if item.id == event_id:
                return item
        raise KeyError(event_id)


# ---------------------------------------------------------------- whole-scenario checks


def _check_scenario(s: Scenario, events: list[Event]) -> None:
    """Cross-field rules; ``events`` in file order so errors name ``events[i]`` as written."""
    _str("name", s.name)
    if not s.name:
        raise _Invalid("name", "expected a non-empty string")
    _str("description", s.description)
    _int("seed", s.seed)
    if len(s.bureaus) < 2:
        raise _Invalid("bureaus", f"expected at least two bureaus, got {len(s.bureaus)}")
    _codes("bureaus", s.bureaus)
    for code in s.bureaus:
        _bureau_code("bureaus", code)
    for code in s.traffic.requesters:
        if code not in s.bureaus:
            raise _Invalid("traffic.requesters", f"{code!r} is not one of the scenario's bureaus")
    for key, codes in (
        ("messages.senders", s.messages.senders),
        ("messages.diffusion_to", s.messages.diffusion_to),
    ):
        for code in codes:
            if code != ALL and code not in s.bureaus:
                raise _Invalid(key, f"{code!r} is not one of the scenario's bureaus")
    if s.engine.hosts > len(s.bureaus):
        raise _Invalid(
            "engine.hosts",
            f"expected at most one host per bureau ({len(s.bureaus)}), got {s.engine.hosts}",
        )
    _check_events(s, events)
    for i, spec in enumerate(s.checks):
        _check_check(f"checks[{i}]", spec, s)


def _check_events(s: Scenario, events: list[Event]) -> None:
    ids: dict[str, int] = {}
    for i, e in enumerate(events):
        where = f"events[{i}]"
        if e.id in ids:
            raise _Invalid(f"{where}.id", f"{e.id!r} is already the id of events[{ids[e.id]}]")
        ids[e.id] = i
        if not e.at_s < s.traffic.duration_s:
            raise _Invalid(
                f"{where}.at_s",
                f"expected a time before traffic.duration_s ({_fmt(s.traffic.duration_s)}),"
                f" got {e.at_s!r}",
            )
        for code in e.bureaus:
            if code not in s.bureaus:
                raise _Invalid(f"{where}.bureaus", f"{code!r} is not one of the scenario's bureaus")
        if e.fault in PROXY_FAULTS and s.engine.proxy == "none":
            raise _Invalid(
                f"{where}.fault", f"a {e.fault} fault needs the fault proxy; engine.proxy is none"
            )
        if e.query is not None:
            q = e.query
            if q.requester not in s.bureaus:
                raise _Invalid(
                    f"{where}.query.from", f"{q.requester!r} is not one of the scenario's bureaus"
                )
            for code in q.to:
                if code != ALL and code not in s.bureaus:
                    raise _Invalid(
                        f"{where}.query.to", f"{code!r} is not one of the scenario's bureaus"
                    )
        _check_message_event(s, where, e)
    _check_notices(events)
    _check_timeline(events)


def _check_message_event(s: Scenario, where: str, e: Event) -> None:
    """A post's bureaus are the scenario's; a notice needs GS to review it."""
    post = e.diffusion or e.message
    sender = post.sender if post else e.notice.requester if e.notice else None
    if sender is None:
        return
    if sender not in s.bureaus:
        raise _Invalid(f"{where}.{e.kind}.from", f"{sender!r} is not one of the scenario's bureaus")
    for code in post.to if post else ():
        if code != ALL and code not in s.bureaus:
            raise _Invalid(f"{where}.{e.kind}.to", f"{code!r} is not one of the scenario's bureaus")
    if e.notice is not None and GENERAL_SECRETARIAT not in s.bureaus:
        raise _Invalid(
            f"{where}.notice",
            f"a notice is reviewed by the General Secretariat: add {GENERAL_SECRETARIAT!r} to"
            " bureaus",
        )


def _check_notices(events: list[Event]) -> None:
    """Withdrawals and notice queries name a notice event; a withdrawal comes after it (once)."""
    notices = {e.id: e for e in events if e.notice is not None}
    withdrawn: dict[str, str] = {}
    for i, e in enumerate(events):
        ref, key = (
            (e.withdraw.notice, "withdraw.notice")
            if e.withdraw is not None
            else (e.query.notice, "query.notice")
            if e.query is not None
            else (None, "")
        )
        if ref is None:
            continue
        target = notices.get(ref)
        if target is None:
            options = ", ".join(sorted(notices)) or "none"
            raise _Invalid(
                f"events[{i}].{key}", f"{ref!r} is not a notice event id; expected one of {options}"
            )
        if e.withdraw is not None and not e.at_s > target.at_s:
            raise _Invalid(
                f"events[{i}].at_s",
                f"must come after the notice {ref!r} (at_s {_fmt(target.at_s)}), got {e.at_s!r}",
            )
        if e.withdraw is not None:
            if ref in withdrawn:
                raise _Invalid(
                    f"events[{i}].{key}", f"{ref!r} is already withdrawn by {withdrawn[ref]!r}"
                )
            withdrawn[ref] = e.id


def _check_timeline(events: list[Event]) -> None:
    """Heals and process faults in time order: each heals/restarts/resumes something open."""
    index = {id(e): i for i, e in enumerate(events)}
    timeline = _Timeline({e.id: e for e in events})
    for e in sorted(events, key=lambda e: e.at_s):
        where = f"events[{index[id(e)]}]"
        timeline.expire(e.at_s)
        if e.heal is not None:
            timeline.heal(where, e)
        elif e.fault in ("kill", "pause"):
            timeline.hold(where, e)
        elif e.fault in ("restart", "resume"):
            timeline.release(where, e)


class _Timeline:
    """Which bureaus are killed or paused, and which faults have ended, as time passes."""

    def __init__(self, by_id: dict[str, Event]) -> None:
        self.by_id = by_id
        self.ended: dict[str, str] = {}  # fault id -> what ended it
        self.held: dict[str, dict[str, Event]] = {"kill": {}, "pause": {}}  # bureau -> fault

    def expire(self, now: float) -> None:
        """Faults with a duration_s end by themselves."""
        for state in self.held.values():
            for code, cause in list(state.items()):
                if cause.end_s is not None and cause.end_s <= now:
                    del state[code]

    def hold(self, where: str, e: Event) -> None:
        """A kill or pause: each bureau (or the gateway) must be running."""
        for code in e.targets:
            for kind, state in self.held.items():
                if code in state:
                    raise _Invalid(
                        f"{where}.bureaus", f"{code} is already {kind}ed by {state[code].id!r}"
                    )
            assert e.fault is not None
            self.held[e.fault][code] = e

    def release(self, where: str, e: Event) -> None:
        """A restart or resume: each bureau must be held by an open kill or pause."""
        cause = "kill" if e.fault == "restart" else "pause"
        state = self.held[cause]
        for code in e.targets:
            holder = state.get(code)
            if holder is None or holder.end_s is not None:
                raise _Invalid(
                    f"{where}.bureaus",
                    f"{e.fault} of {code}, which no earlier {cause} without duration_s holds",
                )
            del state[code]
            if not any(h is holder for h in state.values()):
                self.ended[holder.id] = f"{e.fault} {e.id!r}"

    def heal(self, where: str, e: Event) -> None:
        """A heal: of an earlier, open fault that has no duration_s."""
        assert e.heal is not None
        target = self.by_id.get(e.heal)
        if target is None:
            raise _Invalid(f"{where}.heal", f"no event has the id {e.heal!r}")
        if target.fault is None:
            raise _Invalid(f"{where}.heal", f"{e.heal!r} is not a fault")
        if target.fault in INSTANT_FAULTS:
            raise _Invalid(f"{where}.heal", f"{e.heal!r} is a {target.fault}: instantaneous")
        if target.duration_s is not None:
            raise _Invalid(
                f"{where}.heal", f"{e.heal!r} heals by itself after its duration_s; drop one"
            )
        if not e.at_s > target.at_s:
            raise _Invalid(
                f"{where}.at_s",
                f"a heal must come after its fault {e.heal!r} (at_s {_fmt(target.at_s)}),"
                f" got {e.at_s!r}",
            )
        if e.heal in self.ended:
            raise _Invalid(f"{where}.heal", f"{e.heal!r} was already ended by {self.ended[e.heal]}")
        self.ended[e.heal] = f"heal {e.id!r}"
        for state in self.held.values():
            for code, cause in list(state.items()):
                if cause is target:
                    del state[code]


def _check_check(where: str, spec: CheckSpec, s: Scenario) -> None:
    """A valid expression whose every path a report of ``s`` holds (simulations/paths.py)."""
    _str(f"{where}.name", spec.name)
    _str(f"{where}.expect", spec.expect)
    try:
        parsed = checks.parse(spec.expect)
        for path in parsed.paths:
            report_paths.check_path(path, s)
    except (checks.CheckError, report_paths.PathError) as exc:
        raise _Invalid(f"{where}.expect", str(exc)) from None


# ---------------------------------------------------------------- reading tables

_TOP_KEYS = (
    "name", "description", "bureaus", "seed", "records", "traffic", "messages", "engine",
    "events", "checks",
)  # fmt: skip
_RECORD_KEYS = ("documents", "persons", "vehicles", "planted")
_TRAFFIC_KEYS = (
    "duration_s", "rate_per_s", "hit_ratio", "fetch_ratio", "deadline_ms", "max_in_flight",
    "requesters", "mix",
)  # fmt: skip
_MIX_KEYS = ("document", "person", "vehicle", "multi")
_ENGINE_KEYS = ("hosts", "proxy", "mode", "startup_timeout_s")
_EVENT_KEYS = ("at_s", "id", *EVENT_KINDS[:3], "expect", *MESSAGE_EVENTS)
_FAULT_KEYS = ("bureaus", "target", "duration_s", "settle_s", "direction")
_QUERY_KEYS = ("from", "to", "kind", "planted", "fetch", "notice")
_MESSAGES_KEYS = (
    "rate_per_s", "mix", "diffusion_to", "ttl_s", "text_bytes", "senders", "drain_s",
    "post_timeout_s",
)  # fmt: skip
_MESSAGE_MIX_KEYS = POST_KINDS
_POST_KEYS = {
    "diffusion": ("from", "to", "subject", "text_bytes", "ttl_s"),
    "message": ("from", "to", "subject", "text_bytes", "ttl_s"),
}
_NOTICE_KEYS = ("from", "color", "subject", "summary", "ttl_s")
_WITHDRAW_KEYS = ("notice", "reason")
_CHECK_KEYS = ("name", "expect")


def _read_records(value: object) -> Records:
    table = _table("records", value, _RECORD_KEYS)
    return Records(**table)


def _read_traffic(value: object) -> Traffic:
    table = dict(_table("traffic", value, _TRAFFIC_KEYS))
    if "mix" in table:
        table["mix"] = Mix(**_table("traffic.mix", table["mix"], _MIX_KEYS))
    if "requesters" in table:
        table["requesters"] = _codes("traffic.requesters", table["requesters"])
    return Traffic(**table)


def _read_messages(value: object) -> Messages:
    table = dict(_table("messages", value, _MESSAGES_KEYS))
    if "mix" in table:
        table["mix"] = MessageMix(**_table("messages.mix", table["mix"], _MESSAGE_MIX_KEYS))
    for key in ("diffusion_to", "senders"):
        if key in table:
            if isinstance(table[key], str):
                raise _Invalid(
                    f"messages.{key}", f'expected a list such as ["DE"], {_got(table[key])}'
                )
            table[key] = _codes(f"messages.{key}", table[key])
    return Messages(**table)


def _read_post(where: str, kind: str, value: object) -> Post:
    table = _table(where, value, _POST_KEYS[kind])
    for required in ("from", "to") if kind == "message" else ("from",):
        if required not in table:
            raise _Invalid(f"{where}.{required}", "required")
    to = table.get("to", [ALL])
    if isinstance(to, str):
        raise _Invalid(f"{where}.to", f'expected a list such as ["DE"] or ["ALL"], {_got(to)}')
    return Post(
        kind=kind,
        sender=_str(f"{where}.from", table["from"]),
        to=_codes(f"{where}.to", to),
        subject=table.get("subject", ""),
        text_bytes=table.get("text_bytes"),
        ttl_s=table.get("ttl_s"),
    )


def _read_notice(where: str, value: object) -> NoticeSpec:
    table = _table(where, value, _NOTICE_KEYS)
    if "from" not in table:
        raise _Invalid(f"{where}.from", "required: the requesting bureau")
    subject = table.get("subject")
    if subject is not None:
        _subject(f"{where}.subject", subject)
    return NoticeSpec(
        requester=_str(f"{where}.from", table["from"]),
        color=table.get("color", "red"),
        subject=dict(subject) if subject is not None else None,
        summary=table.get("summary", ""),
        ttl_s=table.get("ttl_s"),
    )


def _read_withdraw(where: str, value: object) -> Withdrawal:
    table = _table(where, value, _WITHDRAW_KEYS)
    if "notice" not in table:
        raise _Invalid(f"{where}.notice", "required: the id of a notice event")
    return Withdrawal(notice=table["notice"], reason=table.get("reason", ""))


def _read_engine(value: object) -> Engine:
    return Engine(**_table("engine", value, _ENGINE_KEYS))


def _read_query(where: str, value: object) -> ExplicitQuery:
    table = _table(where, value, _QUERY_KEYS)
    for required in ("from", "to", "kind"):
        if required not in table:
            raise _Invalid(f"{where}.{required}", "required")
    requester = _str(f"{where}.from", table["from"])
    to = table["to"]
    if isinstance(to, str):
        raise _Invalid(f"{where}.to", f'expected a list such as ["DE"] or ["ALL"], {_got(to)}')
    return ExplicitQuery(
        requester=requester,
        to=_codes(f"{where}.to", to),
        kind=table["kind"],
        planted=table.get("planted", True),
        fetch=table.get("fetch", False),
        notice=table.get("notice"),
    )


def _check_event_keys(
    where: str, value: Mapping[str, Any], fault: str | None, params: Mapping[str, _Param]
) -> None:
    allowed = _EVENT_KEYS + ((*_FAULT_KEYS, *params) if fault is not None else ())
    for name in value:
        if name in allowed:
            continue
        if name in _FAULT_KEYS or any(name in p for p in FAULT_PARAMS.values()):
            kind = (
                f"a {fault} fault"
                if fault is not None
                else f"a {next(k for k in EVENT_KINDS if k in value)} event"
            )
            expected = ", ".join(allowed[len(_EVENT_KEYS) :]) if fault is not None else ""
            raise _Invalid(
                f"{where}.{name}",
                f"not a key of {kind}" + (f"; it takes {expected}" if expected else ""),
            )
        raise _Invalid(f"{where}.{name}", f"unknown key; expected one of {', '.join(allowed)}")


def _fault_params(
    where: str, value: Mapping[str, Any], fault: str, params: Mapping[str, _Param]
) -> dict[str, float]:
    """The fault kind's parameters from the event table, defaults filled in."""
    found = {k: value[k] for k in params if k in value}
    for name, param in params.items():
        if name not in found:
            if param.required:
                raise _Invalid(f"{where}.{name}", f"required for a {fault} fault")
            assert param.default is not None
            found[name] = param.default
    return found


def _read_event(i: int, value: object) -> Event:
    where = f"events[{i}]"
    if not isinstance(value, Mapping):
        raise _Invalid(where, f"expected a table, {_got(value)}")
    kinds = [k for k in EVENT_KINDS if k in value]
    if len(kinds) != 1:
        raise _Invalid(
            where, f"expected exactly one of {', '.join(EVENT_KINDS)}; got {kinds or 'none'}"
        )
    fault = _choice(f"{where}.fault", value["fault"], _FAULT_NAMES) if "fault" in value else None
    params = FAULT_PARAMS.get(fault, {}) if fault is not None else {}
    _check_event_keys(where, value, fault, params)
    if "at_s" not in value:
        raise _Invalid(f"{where}.at_s", "required: seconds after traffic starts")
    if "heal" in value:
        _str(f"{where}.heal", value["heal"])
    query = _read_query(f"{where}.query", value["query"]) if "query" in value else None
    posts = {k: _read_post(f"{where}.{k}", k, value[k]) for k in POST_KINDS if k in value}
    notice = _read_notice(f"{where}.notice", value["notice"]) if "notice" in value else None
    withdraw = (
        _read_withdraw(f"{where}.withdraw", value["withdraw"]) if "withdraw" in value else None
    )
    target = (
        _choice(f"{where}.target", value["target"], TARGETS) if "target" in value else "bureaus"
    )
    bureaus: tuple[str, ...] = ()
    if "bureaus" in value:
        bureaus = _codes(f"{where}.bureaus", value["bureaus"])
    elif fault is not None and target != GATEWAY:
        raise _Invalid(f"{where}.bureaus", f"required for a {fault} fault")
    return Event(
        at_s=value["at_s"],
        id=value.get("id", f"{fault or kinds[0]}_{i}"),
        fault=fault,
        heal=value.get("heal"),
        query=query,
        diffusion=posts.get("diffusion"),
        message=posts.get("message"),
        notice=notice,
        withdraw=withdraw,
        expect=value.get("expect"),
        bureaus=bureaus,
        target=target,
        duration_s=value.get("duration_s"),
        settle_s=value.get("settle_s", 2.0),
        direction=value.get("direction", "both"),
        params=_fault_params(where, value, fault, params) if fault is not None else {},
    )


def _read_check(i: int, value: object) -> CheckSpec:
    where = f"checks[{i}]"
    table = _table(where, value, _CHECK_KEYS)
    if "expect" not in table:
        raise _Invalid(f"{where}.expect", "required: a check expression")
    expect = _str(f"{where}.expect", table["expect"])
    name = _str(f"{where}.name", table.get("name", expect))
    return CheckSpec(name=name, expect=expect)


def _array(key: str, value: object) -> list[Any]:
    if not isinstance(value, list):
        raise _Invalid(key, f"expected an array of tables ([[{key}]]), {_got(value)}")
    return value


def _in(where: str, exc: _Invalid) -> _Invalid:
    """An error from an event's own check (key relative to the event) with its full key."""
    return exc if exc.key.startswith(where) else _Invalid(f"{where}.{exc.key}", exc.problem)


def _build(data: Mapping[str, Any], path: Path | None, default_name: str) -> Scenario:
    _table("", data, _TOP_KEYS)
    if "bureaus" not in data:
        raise _Invalid("bureaus", 'required: a list of bureau codes, or "all-members"')
    raw = data["bureaus"]
    if isinstance(raw, str):
        if raw != ALL_MEMBERS:
            raise _Invalid(
                "bureaus", f'expected a list of bureau codes or "all-members", {_got(raw)}'
            )
        bureaus = INTERPOL_MEMBERS
    else:
        bureaus = _codes("bureaus", raw)
    records = _read_records(data.get("records", {}))
    traffic = _read_traffic(data.get("traffic", {}))
    messages = _read_messages(data.get("messages", {}))
    engine = _read_engine(data.get("engine", {}))
    events: list[Event] = []
    for i, item in enumerate(_array("events", data.get("events", []))):
        try:
            events.append(_read_event(i, item))
        except _Invalid as exc:
            raise _in(f"events[{i}]", exc) from None
    specs: list[CheckSpec] = []
    for i, item in enumerate(_array("checks", data.get("checks", []))):
        specs.append(_read_check(i, item))
    # Scenario checks the events in the order given, so errors name events[i] as in the file.
    return Scenario(
        name=data.get("name", default_name),
        description=data.get("description", ""),
        path=path,
        bureaus=bureaus,
        seed=data.get("seed", 1),
        records=records,
        traffic=traffic,
        messages=messages,
        engine=engine,
        events=tuple(events),
        checks=tuple(specs),
    )


def from_dict(
    data: Mapping[str, Any], *, path: Path | None = None, name: str | None = None
) -> Scenario:
    """Validate a scenario table (as tomllib reads it). Raises :class:`ScenarioError`.

    ``name`` is the default name when the table has none (else the file stem, else
    ``"scenario"``); ``path`` is the file, named in error messages.
    """
    where = str(path) if path is not None else "scenario"
    default = name or (path.stem if path is not None else "scenario")
    try:
        return _build(data, path, default)
    except _Invalid as exc:
        raise ScenarioError(f"{where}: {exc.key or '(top level)'}: {exc.problem}") from None
    except ScenarioError as exc:
        raise ScenarioError(f"{where}: {exc}") from None


def fault_event(table: Mapping[str, Any]) -> Event:
    """One fault event, validated exactly as a scenario file's ``[[events]]`` entry is.

    For a fault applied live (``ncbsim fault``), so its names and parameters are the
    scenario file's. Checks that need the whole scenario (its bureaus, the timeline)
    are the caller's. Raises :class:`ScenarioError` naming the key, e.g.
    ``latency_ms: required for a latency fault``.
    """
    where = "events[0]"
    try:
        event = _read_event(0, table)
    except _Invalid as exc:
        key = exc.key.removeprefix(f"{where}.").removeprefix(where) or "fault"
        raise ScenarioError(f"{key}: {exc.problem}") from None
    if event.fault is None:
        raise ScenarioError(f"fault: expected one of {', '.join(_FAULT_NAMES)}")
    return event


def builtin_names() -> list[str]:
    """The names of the built-in scenarios (simulations/scenarios/*.toml), sorted."""
    return sorted(p.stem for p in SCENARIOS.glob("*.toml"))


def resolve(name_or_path: str) -> Path:
    """A scenario file: a path, or the name of one under simulations/scenarios/.

    An argument with a ``/`` or ending in ``.toml`` is a path, and must be a file
    (``x.toml: file not found``); anything else is a built-in name (an unknown one lists
    the built-in names).
    """
    builtin = builtin_names()
    if "/" in name_or_path or name_or_path.endswith(".toml"):
        path = Path(name_or_path)
        if path.is_file():
            return path
        if path.exists():
            raise ScenarioError(f"{name_or_path}: not a file")
        stem = path.stem
        hint = (
            f" (the built-in scenario is named {stem!r}, without .toml)"
            if "/" not in name_or_path and stem in builtin
            else ""
        )
        raise ScenarioError(f"{name_or_path}: file not found{hint}")
    candidate = SCENARIOS / f"{name_or_path}.toml"
    if candidate.is_file():
        return candidate
    raise ScenarioError(
        f"no built-in scenario {name_or_path!r}; the built-in ones are {', '.join(builtin)}"
        " (or give the path of a .toml file)"
    )


def load(name_or_path: str) -> Scenario:
    """Read, parse and validate a scenario file. Raises :class:`ScenarioError`."""
    path = resolve(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: invalid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from None
    return from_dict(data, path=path, name=path.stem)
