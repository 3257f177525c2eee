"""The scenario: its bureaus, records, traffic, messages, engine settings and timeline.

Frozen, keyword-only dataclasses that validate themselves (ncbsim.simulations.scenario.values);
the rules across a scenario's parts and its timeline are ncbsim.simulations.scenario.timeline's,
and the events are ncbsim.simulations.scenario.events'.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ncbsim import biometrics
from ncbsim.simulations.scenario.events import ALL, POST_KINDS, Event, FaultEvent, QueryEvent
from ncbsim.simulations.scenario.timeline import check_scenario
from ncbsim.simulations.scenario.users import UserSpec
from ncbsim.simulations.scenario.values import (
    _as_float,
    _choice,
    _codes,
    _int,
    _Invalid,
    _number,
    _text_bytes,
    _ttl,
)

ALL_MEMBERS = "all-members"
PROXY_MODES = ("auto", "all", "none")
ENGINE_MODES = ("loopback", "netns")


@dataclass(frozen=True, kw_only=True, slots=True)
class Records:
    """How many records each bureau holds, and how many of them traffic aims hits at."""

    documents: int = 2000
    persons: int = 500
    vehicles: int = 500
    planted: int = 20
    biometrics: int = 0
    """Persons enrolled with a fingerprint and a face each (ncbsim.node.biogen)."""

    def __post_init__(self) -> None:
        for name in ("documents", "persons", "vehicles", "planted"):
            _int(f"records.{name}", getattr(self, name), ge=1)
        _int("records.biometrics", self.biometrics, ge=0)
        if self.biometrics > self.persons:
            raise _Invalid(
                "records.biometrics",
                f"expected at most the bureau's {self.persons} persons, got {self.biometrics}",
            )
        if self.planted > self.documents + self.persons + self.vehicles:
            raise _Invalid(
                "records.planted",
                f"expected at most the bureau's {self.documents + self.persons + self.vehicles}"
                f" records, got {self.planted}",
            )


_MIX = ("document", "person", "vehicle", "multi", "fingerprint", "face")


@dataclass(frozen=True, kw_only=True, slots=True)
class Mix:
    """Relative weights of the query kinds; ``multi`` is a document query to ALL bureaus."""

    document: float = 5
    person: float = 3
    vehicle: float = 2
    multi: float = 0.2
    fingerprint: float = 0
    """A 1:N fingerprint search of one bureau (needs ``records.biometrics``)."""
    face: float = 0
    """A 1:N face search of one bureau (needs ``records.biometrics``)."""

    def __post_init__(self) -> None:
        for name in _MIX:
            _number(f"traffic.mix.{name}", getattr(self, name), ge=0)
        if not any(self.weights().values()):
            raise _Invalid("traffic.mix", "expected at least one weight > 0, all are 0")
        _as_float(self, *_MIX)

    def weights(self) -> dict[str, float]:
        """Kind -> weight, in a fixed order (document, person, vehicle, multi, fingerprint,
        face): zero weights at the end change no draw of the kinds before them."""
        return {name: getattr(self, name) for name in _MIX}


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
    fingerprint_quality: str = "plain"
    """The capture quality of fingerprint probes: rolled, plain or latent."""
    face_quality: str = "border"
    """The capture quality of face probes: enrolment, border or cctv."""

    def __post_init__(self) -> None:
        for modality, qualities in biometrics.QUALITIES.items():
            key = f"{modality}_quality"
            _choice(f"traffic.{key}", getattr(self, key), qualities)
        _number("traffic.duration_s", self.duration_s, gt=0)
        _number("traffic.rate_per_s", self.rate_per_s, gt=0)
        _number("traffic.hit_ratio", self.hit_ratio, ge=0, le=1)
        _number("traffic.fetch_ratio", self.fetch_ratio, ge=0, le=1)
        _int("traffic.deadline_ms", self.deadline_ms, ge=100)
        _int("traffic.max_in_flight", self.max_in_flight, ge=1)
        object.__setattr__(self, "requesters", _codes("traffic.requesters", self.requesters))
        _as_float(self, "duration_s", "rate_per_s", "hit_ratio", "fetch_ratio")


@dataclass(frozen=True, kw_only=True, slots=True)
class EngineSettings:
    """The ``[engine]`` table: how the network runs (host processes, fault proxy, loopback
    or network namespaces)."""

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
    engine: EngineSettings = field(default_factory=EngineSettings)
    users: tuple[UserSpec, ...] = ()
    events: tuple[Event, ...] = ()
    checks: tuple[CheckSpec, ...] = ()

    def __post_init__(self) -> None:
        check_scenario(self, list(self.events))
        ordered = tuple(sorted(self.events, key=lambda e: e.at_s))
        object.__setattr__(self, "events", ordered)

    def event(self, event_id: str) -> Event:
        """The event with id ``event_id`` (KeyError if none)."""
        for item in self.events:
            if item.id == event_id:
                return item
        raise KeyError(event_id)

    def fault(self, event_id: str) -> FaultEvent:
        """The fault event with id ``event_id`` (KeyError if none)."""
        event = self.event(event_id)
        if not isinstance(event, FaultEvent):
            raise KeyError(event_id)
        return event

    def faults(self) -> list[FaultEvent]:
        """The fault events, in time order."""
        return [e for e in self.events if isinstance(e, FaultEvent)]

    def queries(self) -> list[QueryEvent]:
        """The explicit query events, in time order."""
        return [e for e in self.events if isinstance(e, QueryEvent)]
