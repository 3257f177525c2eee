"""A scenario's rules across its parts, and its timeline's semantics.

:func:`check_scenario` runs when a :class:`~ncbsim.simulations.scenario.model.Scenario` is built:
codes that must be the scenario's bureaus, unique event ids, events before the traffic
ends, notices and their withdrawals, and the timeline played in time order: a heal heals
an open fault, a restart or resume releases what an open kill or pause holds
(ncbsim.simulations.faults.process). Errors name ``events[i]`` as the file orders them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ncbsim.countries import GENERAL_SECRETARIAT
from ncbsim.simulations import checks
from ncbsim.simulations import paths as report_paths
from ncbsim.simulations.faults import process
from ncbsim.simulations.faults.registry import INSTANT_FAULTS, PROXY_FAULTS
from ncbsim.simulations.scenario.events import (
    ALL,
    Event,
    FaultEvent,
    HealEvent,
    NoticeEvent,
    PostEvent,
    QueryEvent,
    WithdrawEvent,
)
from ncbsim.simulations.scenario.users import check_principal_ref, check_users
from ncbsim.simulations.scenario.values import _bureau_code, _codes, _fmt, _int, _Invalid, _str

if TYPE_CHECKING:
    from ncbsim.simulations.scenario.model import CheckSpec, Scenario


def check_scenario(s: Scenario, events: list[Event]) -> None:
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
    for modality in ("fingerprint", "face"):
        if getattr(s.traffic.mix, modality) > 0 and not s.records.biometrics:
            raise _Invalid(
                f"traffic.mix.{modality}",
                "biometric searches need enrolled persons: set records.biometrics",
            )
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
    check_users(s)
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
        if isinstance(e, FaultEvent):
            for code in e.bureaus:
                if code not in s.bureaus:
                    raise _Invalid(
                        f"{where}.bureaus", f"{code!r} is not one of the scenario's bureaus"
                    )
            if e.fault in PROXY_FAULTS and s.engine.proxy == "none":
                raise _Invalid(
                    f"{where}.fault",
                    f"a {e.fault} fault needs the fault proxy; engine.proxy is none",
                )
        if isinstance(e, QueryEvent):
            q = e.query
            check_principal_ref(f"{where}.query.from", q.requester, s)
            for code in q.to:
                if code != ALL and code not in s.bureaus:
                    raise _Invalid(
                        f"{where}.query.to", f"{code!r} is not one of the scenario's bureaus"
                    )
        _check_message_event(s, where, e)
    _check_notices(events)
    _check_timeline(events)


def _check_message_event(s: Scenario, where: str, e: Event) -> None:
    """A post's parties are the scenario's bureaus or users; a notice needs GS to review it
    (and comes from a bureau)."""
    post = e.post if isinstance(e, PostEvent) else None
    if post is not None:
        sender = post.sender
    elif isinstance(e, NoticeEvent):
        sender = e.notice.requester
    else:
        return
    check_principal_ref(f"{where}.{e.kind}.from", sender, s, users=post is not None)
    for code in post.to if post else ():
        if code != ALL:
            check_principal_ref(f"{where}.{e.kind}.to", code, s)
    if isinstance(e, NoticeEvent) and GENERAL_SECRETARIAT not in s.bureaus:
        raise _Invalid(
            f"{where}.notice",
            f"a notice is reviewed by the General Secretariat: add {GENERAL_SECRETARIAT!r} to"
            " bureaus",
        )


def _check_notices(events: list[Event]) -> None:
    """Withdrawals and notice queries name a notice event; a withdrawal comes after it (once)."""
    notices = {e.id: e for e in events if isinstance(e, NoticeEvent)}
    withdrawn: dict[str, str] = {}
    for i, e in enumerate(events):
        if isinstance(e, WithdrawEvent):
            ref, key = e.withdraw.notice, "withdraw.notice"
        elif isinstance(e, QueryEvent) and e.query.notice is not None:
            ref, key = e.query.notice, "query.notice"
        else:
            continue
        target = notices.get(ref)
        if target is None:
            options = ", ".join(sorted(notices)) or "none"
            raise _Invalid(
                f"events[{i}].{key}", f"{ref!r} is not a notice event id; expected one of {options}"
            )
        if isinstance(e, WithdrawEvent) and not e.at_s > target.at_s:
            raise _Invalid(
                f"events[{i}].at_s",
                f"must come after the notice {ref!r} (at_s {_fmt(target.at_s)}), got {e.at_s!r}",
            )
        if isinstance(e, WithdrawEvent):
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
        if isinstance(e, HealEvent):
            timeline.heal(where, e)
        elif isinstance(e, FaultEvent) and e.fault in process.HEALS:
            timeline.hold(where, e)
        elif isinstance(e, FaultEvent) and e.fault in process.RELEASES:
            timeline.release(where, e)


class _Timeline:
    """Which bureaus are killed or paused, and which faults have ended, as time passes."""

    def __init__(self, by_id: dict[str, Event]) -> None:
        self.by_id = by_id
        self.ended: dict[str, str] = {}  # fault id -> what ended it
        # kill/pause -> bureau (or "gateway") -> the fault that holds it
        self.held: dict[str, dict[str, FaultEvent]] = {hold: {} for hold in process.HEALS}

    def expire(self, now: float) -> None:
        """Faults with a duration_s end by themselves."""
        for state in self.held.values():
            for code, cause in list(state.items()):
                if cause.end_s is not None and cause.end_s <= now:
                    del state[code]

    def hold(self, where: str, e: FaultEvent) -> None:
        """A kill or pause: each bureau (or the gateway) must be running."""
        for code in e.targets:
            for kind, state in self.held.items():
                if code in state:
                    raise _Invalid(
                        f"{where}.bureaus", f"{code} is already {kind}ed by {state[code].id!r}"
                    )
            self.held[e.fault][code] = e

    def release(self, where: str, e: FaultEvent) -> None:
        """A restart or resume: each bureau must be held by an open kill or pause."""
        cause = process.RELEASES[e.fault]
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

    def heal(self, where: str, e: HealEvent) -> None:
        """A heal: of an earlier, open fault that has no duration_s."""
        target = self.by_id.get(e.heal)
        if target is None:
            raise _Invalid(f"{where}.heal", f"no event has the id {e.heal!r}")
        if not isinstance(target, FaultEvent):
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
