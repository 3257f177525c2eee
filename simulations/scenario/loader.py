"""Reading scenario files: TOML tables into a validated Scenario, errors naming file and key.

:func:`load` resolves a built-in name or a path and reads the file with :mod:`tomllib`;
:func:`from_dict` validates a table; :func:`fault_event` validates one fault event for
``ncbsim fault``. All raise :class:`ScenarioError`, whose message names the file, the key
and what was expected, e.g. ``sim.toml: traffic.rate_per_s: expected a number > 0, got
'fast'``. Unknown keys are errors at every level.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ncbsim.countries import INTERPOL_MEMBERS
from ncbsim.simulations.faults.kinds import Param
from ncbsim.simulations.faults.registry import FAULT_PARAMS, FAULTS
from ncbsim.simulations.scenario.events import (
    ALL,
    EVENT_KINDS,
    GATEWAY,
    MESSAGE_EVENTS,
    POST_KINDS,
    TARGETS,
    Event,
    ExplicitQuery,
    FaultEvent,
    HealEvent,
    NoticeEvent,
    NoticeSpec,
    Post,
    PostEvent,
    QueryEvent,
    Withdrawal,
    WithdrawEvent,
    _subject,
)
from ncbsim.simulations.scenario.model import (
    ALL_MEMBERS,
    CheckSpec,
    EngineSettings,
    MessageMix,
    Messages,
    Mix,
    Records,
    Scenario,
    Traffic,
)
from ncbsim.simulations.scenario.users import read_users
from ncbsim.simulations.scenario.values import (
    ScenarioError,
    _choice,
    _codes,
    _got,
    _Invalid,
    _str,
    _table,
)

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
"""The built-in scenarios (simulations/scenarios/*.toml)."""
_FAULT_NAMES = tuple(sorted(FAULTS))

_TOP_KEYS = (
    "name", "description", "bureaus", "seed", "records", "traffic", "messages", "engine",
    "users", "events", "checks",
)  # fmt: skip
_RECORD_KEYS = ("documents", "persons", "vehicles", "planted", "biometrics")
_TRAFFIC_KEYS = (
    "duration_s", "rate_per_s", "hit_ratio", "fetch_ratio", "deadline_ms", "max_in_flight",
    "requesters", "mix", "fingerprint_quality", "face_quality",
)  # fmt: skip
_MIX_KEYS = ("document", "person", "vehicle", "multi", "fingerprint", "face")
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


def _read_engine(value: object) -> EngineSettings:
    return EngineSettings(**_table("engine", value, _ENGINE_KEYS))


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
    where: str, value: Mapping[str, Any], fault: str | None, params: Mapping[str, Param]
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
    where: str, value: Mapping[str, Any], fault: str, params: Mapping[str, Param]
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
    at_s, event_id = value["at_s"], value.get("id", f"{fault or kinds[0]}_{i}")
    event: Event
    if fault is not None:
        event = FaultEvent(
            at_s=at_s,
            id=event_id,
            fault=fault,
            bureaus=bureaus,
            target=target,
            duration_s=value.get("duration_s"),
            settle_s=value.get("settle_s", 2.0),
            direction=value.get("direction", "both"),
            params=_fault_params(where, value, fault, params),
        )
    elif "heal" in value:
        event = HealEvent(at_s=at_s, id=event_id, heal=value["heal"])
    else:
        event = _message_event(value, at_s, event_id, query, posts, notice, withdraw)
    if value.get("expect") is not None and not isinstance(event, QueryEvent):
        raise _Invalid("expect", "only a query event has an expected outcome")
    return event


def _message_event(  # noqa: PLR0917 - one private call site, reads in order
    value: Mapping[str, Any],
    at_s: float,
    event_id: str,
    query: ExplicitQuery | None,
    posts: Mapping[str, Post],
    notice: NoticeSpec | None,
    withdraw: Withdrawal | None,
) -> Event:
    """The query or post event of the parts read (exactly one is given)."""
    if query is not None:
        return QueryEvent(at_s=at_s, id=event_id, query=query, expect=value.get("expect"))
    if notice is not None:
        return NoticeEvent(at_s=at_s, id=event_id, notice=notice)
    if withdraw is not None:
        return WithdrawEvent(at_s=at_s, id=event_id, withdraw=withdraw)
    (post,) = posts.values()
    return PostEvent(at_s=at_s, id=event_id, post=post)


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
    users = read_users(data.get("users", []))
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
        users=users,
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


def fault_event(table: Mapping[str, Any]) -> FaultEvent:
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
    if not isinstance(event, FaultEvent):
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
