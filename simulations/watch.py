"""The figures of ``ncbsim watch``: a pure model of a running network, fed and then read.

:class:`WatchModel` is fed what the sources of truth say (ncbsim.simulations.watch_sources
polls them): the merged event stream (:class:`~ncbsim.events.Event`), each process's
:class:`Liveness`, the :class:`Fault` values in force, and the mailbox depths a metrics
page gave. :meth:`WatchModel.snapshot` turns that into one :class:`Snapshot`: queries per
second and latency percentiles over a sliding window, each bureau's state, refusals by
reason, mailbox depth per recipient, the faults in force and the last few events. The
live view (ncbsim.simulations.watch_view) draws a snapshot; ``watch --json`` prints
:meth:`Snapshot.to_json` (docs/watch.md documents every key).

It does no I/O and reads time only from the clock it is given, so tests feed known
events at known times and check the numbers. Events count at the time they are fed (their
arrival at the watcher), not their emitter's clock: a skewed bureau cannot move them.
"""

from __future__ import annotations

import enum
import math
import statistics
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ncbsim.events import Event

__all__ = [
    "JSON_SCHEMA",
    "WINDOW_S",
    "Fault",
    "Liveness",
    "Row",
    "Snapshot",
    "State",
    "WatchModel",
    "percentile",
]

JSON_SCHEMA = 1
"""Version of the ``watch --json`` object; raised when a key changes meaning or goes away."""
WINDOW_S = 10.0
"""The sliding window of rates, percentiles and per-bureau figures."""
LAST_EVENTS = 8
"""How many of the latest events a snapshot carries."""
SLOW_FACTOR = 3.0
"""A bureau is slow when its relay p95 is this many times the other bureaus' median p95..."""
SLOW_MIN_MS = 50.0
"""... and at least this much above it (tiny latencies vary by large factors)."""
SLOW_MIN_SAMPLES = 5
"""Relays a bureau needs in the window before its p95 is compared."""

PARTITIONING = frozenset({"partition", "down", "blackhole"})
"""Link faults that cut a bureau off the gateway: it is ``partitioned`` while one holds."""
SLOWING = frozenset({"latency", "bandwidth", "slice", "loss"})
"""Link faults that delay a bureau's traffic: it is ``slow`` while one holds."""
GATEWAY = "gateway"
SERVING_HEALTH = "SERVING"

_SESSION_KINDS = frozenset({"session_open", "session_close"})
"""Envelope kinds (``envelope.kind_name``) the gateway relays that are not queries."""


class State(enum.StrEnum):
    """What a bureau (or the gateway) is doing, most severe first when several hold."""

    PAUSED = "paused"
    """Stopped by a ``pause`` fault or SIGSTOP: alive, answering nothing."""
    DOWN = "down"
    """Its process is not running, its health is not SERVING, or its event stream was lost."""
    PARTITIONED = "partitioned"
    """A partition or link cut (``down``, ``blackhole``) holds its link to the gateway."""
    SLOW = "slow"
    """A delay fault holds its link, or its relay p95 is far above the other bureaus'."""
    SERVING = "serving"


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault in force, as ``ncbsim status --json`` lists it (ids and codes only)."""

    id: str
    kind: str
    held: tuple[str, ...]
    """The bureaus (or "gateway") it holds."""
    params: Mapping[str, float] = field(default_factory=dict)
    started: float = 0.0
    """Unix time it was applied (0 if unknown)."""
    until: float | None = None
    """Unix time it heals by itself, if it does."""
    direction: str = "both"

    @classmethod
    def from_status(cls, data: Mapping[str, Any]) -> Fault:
        """From a fault of ``status --json`` (or the fault daemon's ``status`` reply)."""
        held = data.get("held") or data.get("bureaus") or []
        until_ms = data.get("until_ms")
        return cls(
            id=str(data["id"]),
            kind=str(data["kind"]),
            held=tuple(str(h) for h in held),
            params={str(k): float(v) for k, v in (data.get("params") or {}).items()},
            started=int(data.get("started_ms") or 0) / 1000,
            until=None if until_ms is None else int(until_ms) / 1000,
            direction=str(data.get("direction") or "both"),
        )

    def describe(self) -> str:
        """Its parameters in a few words: ``latency_ms=200 direction=to-bureau``."""
        parts = [f"{k}={v:g}" for k, v in self.params.items()]
        if self.direction != "both":
            parts.append(f"direction={self.direction}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Liveness:
    """What the watcher knows of one process (a bureau's host, or the gateway)."""

    alive: bool = True
    """Its pid runs (and is this network's)."""
    stopped: bool = False
    """Its process is stopped (SIGSTOP): alive, but paused."""
    health: str = ""
    """Its grpc.health.v1 status (``SERVING``, ``NOT_SERVING``, ``UNREACHABLE``...), "" if
    not checked yet."""
    stream: str = ""
    """Its event stream: ``connected``, ``lost``, or "" (not yet, or not served)."""


@dataclass(frozen=True, slots=True)
class Row:
    """One bureau (or the gateway) in a snapshot."""

    name: str
    state: State
    why: str
    """What made the state: ``partition cut``, ``process not running``..., "" if serving."""
    queries: int = 0
    """Queries relayed to it in the window."""
    p95_ms: float | None = None
    """p95 of those relays' elapsed time (None without any)."""
    mailbox: int | None = None
    """Copies queued for it at the gateway (None if unknown)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the view shows at one moment; :meth:`to_json` is ``watch --json``'s line."""

    time: float
    network: str
    uptime_s: float
    window_s: float
    queries_total: int
    queries_window: int
    qps: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    outcomes: Mapping[str, int]
    gateway: Row
    bureaus: tuple[Row, ...]
    refusals_total: Mapping[str, int]
    refusals_window: Mapping[str, int]
    mailbox_source: str
    """``metrics`` (the gateway's ncbsim_mailbox_depth) or ``events`` (counted from posts
    seen since the watch began)."""
    faults: tuple[Fault, ...]
    events_received: int
    events_dropped: int
    sources: Mapping[str, str]
    last_events: tuple[Event, ...]

    def to_json(self) -> dict[str, Any]:
        """The ``watch --json`` object (docs/watch.md)."""

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value, 1)

        return {
            "schema": JSON_SCHEMA,
            "time": round(self.time, 3),
            "network": self.network,
            "uptime_s": round(self.uptime_s, 1),
            "window_s": self.window_s,
            "queries": {
                "total": self.queries_total,
                "window": self.queries_window,
                "qps": round(self.qps, 2),
                "p50_ms": ms(self.p50_ms),
                "p95_ms": ms(self.p95_ms),
                "p99_ms": ms(self.p99_ms),
                "outcomes": dict(self.outcomes),
            },
            "gateway": {"state": str(self.gateway.state), "why": self.gateway.why},
            "bureaus": {
                row.name: {
                    "state": str(row.state),
                    "why": row.why,
                    "queries": row.queries,
                    "p95_ms": ms(row.p95_ms),
                    "mailbox": row.mailbox,
                }
                for row in self.bureaus
            },
            "refusals": {"total": dict(self.refusals_total), "window": dict(self.refusals_window)},
            "mailbox": {
                "source": self.mailbox_source,
                "depth": {r.name: r.mailbox for r in self.bureaus if r.mailbox is not None},
            },
            "faults": [
                {
                    "id": f.id,
                    "kind": f.kind,
                    "held": list(f.held),
                    "params": dict(f.params),
                    "direction": f.direction,
                    "since_s": round(self.time - f.started, 1) if f.started else None,
                    "until_s": round(f.until - self.time, 1) if f.until is not None else None,
                }
                for f in self.faults
            ],
            "events": {
                "received": self.events_received,
                "dropped": self.events_dropped,
                "sources": dict(self.sources),
            },
        }


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The nearest-rank ``pct`` percentile of ``values`` (None if empty): the smallest value
    with at least ``pct`` % of them at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class _Relay:
    at: float
    recipient: str
    elapsed_ms: float | None
    outcome: str


class WatchModel:
    """A running network as the watcher sees it; feed it, then take a :meth:`snapshot`."""

    def __init__(
        self,
        *,
        bureaus: Iterable[str],
        network: str = "",
        clock: Callable[[], float] = time.time,
        window_s: float = WINDOW_S,
        last: int = LAST_EVENTS,
        started: float | None = None,
    ) -> None:
        if not window_s > 0:
            raise ValueError("window_s must be > 0")
        self.network = network
        self.bureaus = list(bureaus)
        self.window_s = window_s
        self._clock = clock
        self._began = clock()
        self.started = self._began if started is None else started
        """When the network started (unix time), for the uptime."""
        self._relays: deque[_Relay] = deque()
        self._refused: deque[tuple[float, str]] = deque()
        self._refusals_total: Counter[str] = Counter()
        self._queries_total = 0
        self._events = 0
        self._dropped = 0
        self._last: deque[Event] = deque(maxlen=max(last, 0))
        self._posted: Counter[str] = Counter()  # queued copies per recipient, from events
        self._mailbox: dict[str, int] | None = None  # from a metrics page, when there is one
        self._faults: tuple[Fault, ...] = ()
        self._live: dict[str, Liveness] = {}

    # ------------------------------------------------------------------ feeding

    def feed(self, events: Iterable[Event]) -> None:
        """Take events of the merged stream (counted at the clock's time now)."""
        now = self._clock()
        for event in events:
            self._events += 1
            self._last.append(event)
            view = event.view
            kind = event.kind
            if kind == "query.relayed" and view.get("kind") not in _SESSION_KINDS:
                # A session's OPEN and CLOSE are relayed too (protocol.md §15): not queries.
                self._queries_total += 1
                elapsed = view.get("elapsed_ms")
                ms = float(elapsed) if isinstance(elapsed, int | float) else None
                self._relays.append(
                    _Relay(now, str(view.get("recipient", "")), ms, str(view.get("outcome", "")))
                )
            elif kind.endswith(".refused"):
                reason = str(view.get("reason") or "unknown")
                self._refusals_total[reason] += 1
                self._refused.append((now, reason))
            elif kind == "post.accepted":
                if view.get("outcome", "accepted") == "accepted":
                    self._posted[str(view.get("recipient", ""))] += 1
            elif kind in ("post.delivered", "post.expired", "post.rejected"):
                recipient = str(view.get("recipient", ""))
                if self._posted[recipient] > 0:  # accepted before the watch began: not counted
                    self._posted[recipient] -= 1
        self._prune(now)

    def set_faults(self, faults: Iterable[Fault]) -> None:
        """The faults in force now (replaces the last set)."""
        self._faults = tuple(sorted(faults, key=lambda f: (f.started, f.id)))

    @property
    def faults(self) -> tuple[Fault, ...]:
        """The faults in force, as last set."""
        return self._faults

    def liveness(self, party: str) -> Liveness | None:
        """What is known of ``party``'s process (None: nothing yet)."""
        return self._live.get(party)

    def set_liveness(self, party: str, live: Liveness) -> None:
        """What is known of ``party``'s process now (a bureau code, or "gateway")."""
        self._live[party] = live

    def set_mailbox(self, depth: Mapping[str, float] | None) -> None:
        """Queued copies per recipient from the gateway's metrics page; None: not known
        (the model then counts them from the post events it saw)."""
        self._mailbox = None if depth is None else {k: int(v) for k, v in depth.items()}

    def set_dropped(self, dropped: int) -> None:
        """Events the stream lost so far (the parties' buffers and the merged queue)."""
        self._dropped = dropped

    # ------------------------------------------------------------------ reading

    def _prune(self, now: float) -> None:
        edge = now - self.window_s
        while self._relays and self._relays[0].at <= edge:
            self._relays.popleft()
        while self._refused and self._refused[0][0] <= edge:
            self._refused.popleft()

    def _span(self, now: float) -> float:
        """The seconds the window covers: all of it, or since the watch began (>= 1 s)."""
        return max(1.0, min(self.window_s, now - self._began))

    def _held(self) -> dict[str, list[Fault]]:
        held: dict[str, list[Fault]] = {}
        for fault in self._faults:
            for target in fault.held:
                held.setdefault(target, []).append(fault)
        return held

    def _state(self, party: str, faults: list[Fault], slow_p95: str) -> tuple[State, str]:
        """The state of ``party`` and why: the first that holds, most severe first."""
        live = self._live.get(party, Liveness())
        kinds = {f.kind: f.id for f in faults}
        cut = next((f for f in faults if f.kind in PARTITIONING), None)
        slowed = next((f for f in faults if f.kind in SLOWING), None)
        unhealthy = bool(live.health) and live.health != SERVING_HEALTH
        found = [
            (State.PAUSED, f"pause {kinds.get('pause')}") if "pause" in kinds else None,
            (State.PAUSED, "process stopped") if live.alive and live.stopped else None,
            (State.DOWN, f"kill {kinds.get('kill')}") if "kill" in kinds else None,
            (State.DOWN, "process not running") if not live.alive else None,
            (State.DOWN, f"health {live.health}") if unhealthy else None,
            (State.DOWN, "event stream lost") if live.stream == "lost" else None,
            (State.PARTITIONED, f"{cut.kind} {cut.id}") if cut is not None else None,
            (State.SLOW, f"{slowed.kind} {slowed.id}") if slowed is not None else None,
            (State.SLOW, slow_p95) if slow_p95 else None,
        ]
        return next((f for f in found if f is not None), (State.SERVING, ""))

    def _slow(self, p95s: dict[str, float]) -> dict[str, str]:
        """Bureaus whose relay p95 stands far above the others' median p95."""
        slow: dict[str, str] = {}
        for code, p95 in p95s.items():
            others = [v for c, v in p95s.items() if c != code]
            if not others:
                continue
            typical = statistics.median(others)
            if p95 >= SLOW_FACTOR * typical and p95 - typical >= SLOW_MIN_MS:
                slow[code] = f"p95 {p95:.0f} ms vs {typical:.0f} ms"
        return slow

    def snapshot(self) -> Snapshot:
        """The figures now."""
        now = self._clock()
        self._prune(now)
        elapsed = [r.elapsed_ms for r in self._relays if r.elapsed_ms is not None]
        per: dict[str, list[_Relay]] = {}
        for relay in self._relays:
            per.setdefault(relay.recipient, []).append(relay)
        p95s: dict[str, float] = {}
        for code, relays in per.items():
            times = [r.elapsed_ms for r in relays if r.elapsed_ms is not None]
            if len(times) >= SLOW_MIN_SAMPLES:
                p95s[code] = percentile(times, 95) or 0.0
        slow = self._slow(p95s)
        held = self._held()
        mailbox = self._mailbox if self._mailbox is not None else dict(self._posted)
        rows = []
        for code in self.bureaus:
            state, why = self._state(code, held.get(code, []), slow.get(code, ""))
            times = [r.elapsed_ms for r in per.get(code, []) if r.elapsed_ms is not None]
            depth = mailbox.get(code)
            if depth is None and self._mailbox is None:
                depth = 0  # counted from events: none seen is none queued since
            rows.append(Row(code, state, why, len(per.get(code, [])), percentile(times, 95), depth))
        gw_state, gw_why = self._state(GATEWAY, held.get(GATEWAY, []), "")
        return Snapshot(
            time=now,
            network=self.network,
            uptime_s=max(0.0, now - self.started),
            window_s=self.window_s,
            queries_total=self._queries_total,
            queries_window=len(self._relays),
            qps=len(self._relays) / self._span(now),
            p50_ms=percentile(elapsed, 50),
            p95_ms=percentile(elapsed, 95),
            p99_ms=percentile(elapsed, 99),
            outcomes=dict(Counter(r.outcome for r in self._relays).most_common()),
            gateway=Row(GATEWAY, gw_state, gw_why),
            bureaus=tuple(rows),
            refusals_total=dict(self._refusals_total.most_common()),
            refusals_window=dict(Counter(reason for _, reason in self._refused).most_common()),
            mailbox_source="events" if self._mailbox is None else "metrics",
            faults=self._faults,
            events_received=self._events,
            events_dropped=self._dropped,
            sources={party: live.stream or "waiting" for party, live in self._live.items()},
            last_events=tuple(self._last),
        )
