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

from ncbsim.countries import INTERPOL_MEMBERS, UnknownCountry, country
from ncbsim.errors import ConfigError, PkiError
from ncbsim.pki import check_bureau_code
from simulations import checks

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
SCALAR_REPORT_KEYS = frozenset(
    {
        "prepare_s",
        "startup_s",
        "warmup_s",
        "traffic_s",
        "shutdown_s",
        "peak_rss_mib",
        "hosts",
        "processes",
        "late_sends",
        "max_send_delay_s",
    }
)
"""Top-level report keys that hold one number."""
REPORT_KEYS = SCALAR_REPORT_KEYS | {
    "queries",
    "latency_ms",
    "bureaus",
    "kinds",
    "faults",
    "explicit",
    "planted",
    "messages",
}
"""Top-level report keys a check expression may read."""
REPORT_KINDS = frozenset({"document", "person", "vehicle", "multi", "fetch"})

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


@dataclass(frozen=True, kw_only=True, slots=True)
class ExplicitQuery:
    """A query the timeline sends at a given time. ``to`` is bureaus, or ``("ALL",)``."""

    requester: str
    to: tuple[str, ...]
    kind: str
    planted: bool = True
    fetch: bool = False

    def __post_init__(self) -> None:
        _choice("query.kind", self.kind, QUERY_KINDS)
        _bool("query.planted", self.planted)
        _bool("query.fetch", self.fetch)
        if not self.to:
            raise _Invalid("query.to", 'expected at least one bureau, or ["ALL"]')
        if ALL in self.to and len(self.to) > 1:
            raise _Invalid("query.to", '"ALL" stands alone: to = ["ALL"]')
        if self.requester in self.to:
            raise _Invalid("query.to", f"a bureau does not query itself ({self.requester!r})")


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """One timeline event: a fault, the heal of an earlier fault, or an explicit query."""

    at_s: float
    id: str
    fault: str | None = None
    heal: str | None = None
    query: ExplicitQuery | None = None
    expect: str | None = None
    bureaus: tuple[str, ...] = ()
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
        given = [k for k in ("fault", "heal", "query") if getattr(self, k) is not None]
        if len(given) != 1:
            raise _Invalid(
                "fault", f"expected exactly one of fault, heal, query; got {given or 'none'}"
            )
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
        if not self.bureaus:
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
        """``"fault"``, ``"heal"`` or ``"query"``."""
        if self.fault is not None:
            return "fault"
        return "heal" if self.heal is not None else "query"

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
    if s.engine.hosts > len(s.bureaus):
        raise _Invalid(
            "engine.hosts",
            f"expected at most one host per bureau ({len(s.bureaus)}), got {s.engine.hosts}",
        )
    _check_events(s, events)
    fault_ids = {e.id for e in events if e.fault is not None}
    query_ids = {e.id for e in events if e.query is not None}
    for i, spec in enumerate(s.checks):
        _check_check(f"checks[{i}]", spec, s, fault_ids, query_ids)


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
    _check_timeline(events)


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
        """A kill or pause: each bureau must be running."""
        for code in e.bureaus:
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
        for code in e.bureaus:
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


def _check_check(
    where: str, spec: CheckSpec, s: Scenario, fault_ids: set[str], query_ids: set[str]
) -> None:
    _str(f"{where}.name", spec.name)
    _str(f"{where}.expect", spec.expect)
    try:
        parsed = checks.parse(spec.expect)
    except checks.CheckError as exc:
        raise _Invalid(f"{where}.expect", str(exc)) from None
    for path in parsed.paths:
        dotted = ".".join(path)
        head = path[0]
        if head not in REPORT_KEYS:
            raise _Invalid(
                f"{where}.expect",
                f"{dotted}: unknown report key {head!r}; expected one of"
                f" {', '.join(sorted(REPORT_KEYS))}",
            )
        if head in SCALAR_REPORT_KEYS and len(path) > 1:
            raise _Invalid(f"{where}.expect", f"{dotted}: {head} is a number, not a table")
        known = {
            "faults": (fault_ids, "a fault event id"),
            "explicit": (query_ids, "a query event id"),
            "bureaus": (set(s.bureaus), "a scenario bureau"),
            "kinds": (REPORT_KINDS, "a kind"),
        }.get(head)
        if known is not None and len(path) > 1 and path[1] not in known[0]:
            options = ", ".join(sorted(known[0])) or "none"
            raise _Invalid(
                f"{where}.expect",
                f"{dotted}: {path[1]!r} is not {known[1]}; expected one of {options}",
            )


# ---------------------------------------------------------------- reading tables

_TOP_KEYS = (
    "name", "description", "bureaus", "seed", "records", "traffic", "engine", "events", "checks"
)  # fmt: skip
_RECORD_KEYS = ("documents", "persons", "vehicles", "planted")
_TRAFFIC_KEYS = (
    "duration_s", "rate_per_s", "hit_ratio", "fetch_ratio", "deadline_ms", "max_in_flight",
    "requesters", "mix",
)  # fmt: skip
_MIX_KEYS = ("document", "person", "vehicle", "multi")
_ENGINE_KEYS = ("hosts", "proxy", "mode", "startup_timeout_s")
_EVENT_KEYS = ("at_s", "id", "fault", "heal", "query", "expect")
_FAULT_KEYS = ("bureaus", "duration_s", "settle_s", "direction")
_QUERY_KEYS = ("from", "to", "kind", "planted", "fetch")
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
    )


def _check_event_keys(
    where: str, value: Mapping[str, Any], fault: str | None, params: Mapping[str, _Param]
) -> None:
    allowed = _EVENT_KEYS + ((*_FAULT_KEYS, *params) if fault is not None else ())
    for name in value:
        if name in allowed:
            continue
        if name in _FAULT_KEYS or any(name in p for p in FAULT_PARAMS.values()):
            kind = f"a {fault} fault" if fault is not None else "a heal or query event"
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
    kinds = [k for k in ("fault", "heal", "query") if k in value]
    if len(kinds) != 1:
        raise _Invalid(where, f"expected exactly one of fault, heal, query; got {kinds or 'none'}")
    fault = _choice(f"{where}.fault", value["fault"], _FAULT_NAMES) if "fault" in value else None
    params = FAULT_PARAMS.get(fault, {}) if fault is not None else {}
    _check_event_keys(where, value, fault, params)
    if "at_s" not in value:
        raise _Invalid(f"{where}.at_s", "required: seconds after traffic starts")
    if "heal" in value:
        _str(f"{where}.heal", value["heal"])
    query = _read_query(f"{where}.query", value["query"]) if "query" in value else None
    bureaus: tuple[str, ...] = ()
    if "bureaus" in value:
        bureaus = _codes(f"{where}.bureaus", value["bureaus"])
    elif fault is not None:
        raise _Invalid(f"{where}.bureaus", f"required for a {fault} fault")
    return Event(
        at_s=value["at_s"],
        id=value.get("id", f"{fault or kinds[0]}_{i}"),
        fault=fault,
        heal=value.get("heal"),
        query=query,
        expect=value.get("expect"),
        bureaus=bureaus,
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


def resolve(name_or_path: str) -> Path:
    """A scenario file: a path, or the name of one under simulations/scenarios/."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        return path
    candidate = SCENARIOS / f"{name_or_path}.toml"
    if "/" not in name_or_path and candidate.exists():
        return candidate
    known = ", ".join(sorted(p.stem for p in SCENARIOS.glob("*.toml")))
    raise ScenarioError(f"no scenario {name_or_path!r}; known: {known}")


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
