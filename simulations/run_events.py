"""A run's events: the simulator's own, recorded and published; timeline.jsonl, written and read.

Every line of ``timeline.jsonl`` is one :class:`ncbsim.events.Event` (``Event.to_json``,
docs/events.md), in time order. The simulator plays two kinds of party:

- ``sim``, the engine: ``scenario.phase`` (traffic start and end, the drain, the network
  down, each check), ``fault.applied``, ``fault.healed`` and ``fault.failed``;
- ``client:XX``, the simulator's client acting as bureau XX: ``query.sealed`` and
  ``query.returned`` per recipient (message id: the envelope's), ``post.sealed`` and
  ``post.returned`` per post (correlation id: the post id).

A :class:`Recorder` holds one :class:`~ncbsim.eventbus.EventBus` per party, so a live
subscriber (``simulate --watch``) sees the simulator's events as they happen, and keeps
every event for the timeline. An event is dated when it happened, which may be before it
is recorded (a query is recorded once answered, at the time it was sent): its ``time`` is
the Unix time of the traffic start plus its offset. Relative times (``t_s``, seconds
since the traffic started) are read back with :func:`since_start`.

The guard against payloads is the schema's: ``make`` refuses a kind's unknown view keys and
any text that is not a short code, and :func:`write` checks every event again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import grpc

from ncbsim.client import Answer, Outcome
from ncbsim.eventbus import EventBus, Subscription
from ncbsim.events import Event, ViewValue, check_view, from_json

SIM = "sim"
START = "traffic_start"
"""The ``scenario.phase`` that dates the traffic's start: ``t_s`` 0."""
_STATUS = frozenset(code.name for code in grpc.StatusCode)


def client(code: str) -> str:
    """The party of the simulator's client acting as bureau ``code``."""
    return f"client:{code}"


class Recorder:
    """The simulator's buses and the events they carried, for the timeline."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        """Every event recorded, in the order recorded (not necessarily of time)."""
        self._buses: dict[str, EventBus] = {}
        self._own: dict[str, Subscription] = {}
        self._wall0 = time.time()
        self._mono0 = time.monotonic()
        self._at = 0.0

    def start(self, mono0: float) -> None:
        """Date offsets from ``mono0`` (time.monotonic() at the traffic's start)."""
        self._mono0 = mono0
        self._wall0 = time.time() - (time.monotonic() - mono0)

    def wall(self, t_s: float) -> float:
        """The Unix time ``t_s`` seconds after the traffic started."""
        return self._wall0 + t_s

    def bus(self, party: str) -> EventBus:
        """The bus of ``party`` (made on first use): subscribe to watch it live."""
        bus = self._buses.get(party)
        if bus is None:
            bus = self._buses[party] = EventBus(party, clock=lambda: self._at)
            self._own[party] = bus.subscribe(buffer=64)
        return bus

    @property
    def buses(self) -> dict[str, EventBus]:
        """Every party's bus made so far."""
        return dict(self._buses)

    def queried(
        self, requester: str, kind: str, sent_s: float, latency_ms: float, answers: list[Answer]
    ) -> None:
        """What ``requester``'s client did and saw of one query (now answered, sent at
        ``sent_s``): each envelope sealed, each answer back, by message id (the envelope's,
        as the gateway's and the recipient's events of the pair carry it)."""
        party = client(requester)
        many: dict[str, ViewValue] = {"recipients": len(answers)} if len(answers) > 1 else {}
        done_s = time.monotonic() - self._mono0
        for answer in answers:
            mid = answer.message_id
            sealed: dict[str, ViewValue] = {"recipient": answer.bureau, "kind": kind, **many}
            self.emit("query.sealed", sealed, party=party, t_s=sent_s, message_id=mid)
            returned: dict[str, ViewValue] = {
                "recipient": answer.bureau,
                "outcome": answer.outcome.value,
                "elapsed_ms": round(answer.latency_ms or latency_ms, 2),
            }
            status = answer.detail.split(":", 1)[0]  # "UNAVAILABLE: ..." of a failed call
            if answer.outcome in (Outcome.NO_ANSWER, Outcome.FAILED) and status in _STATUS:
                returned["status"] = status
            self.emit("query.returned", returned, party=party, t_s=done_s, message_id=mid)

    def emit(
        self,
        kind: str,
        view: dict[str, ViewValue],
        *,
        party: str = SIM,
        t_s: float | None = None,
        message_id: str = "",
        correlation_id: str = "",
    ) -> None:
        """Record one event of ``party`` at ``t_s`` (default now), and publish it live.

        ValueError if the schema refuses it (an unknown key, prose, a payload).
        """
        bus = self.bus(party)
        when = time.monotonic() - self._mono0 if t_s is None else t_s
        self._at = round(self.wall(when), 6)
        bus.emit(kind, view, message_id=message_id, correlation_id=correlation_id)
        self.events += self._own[party].drain()


def write(path: Path, events: Iterable[Event]) -> None:
    """Write ``events`` to ``path`` as JSON lines of the schema, in time order.

    Events of the same instant keep the order given. Each is checked against the schema
    again (ValueError before the file is touched): only metadata is ever written.
    """
    ordered = list(events)
    for event in ordered:
        if not event.party:
            raise ValueError(f"timeline event {event.kind}: no party")
        check_view(event.kind, event.view)
    ordered.sort(key=lambda e: e.time)
    path.write_text("".join(e.to_json() + "\n" for e in ordered))


def read(path: Path) -> list[Event]:
    """The events of a timeline.jsonl (ValueError on a line that is not one)."""
    return [from_json(line) for line in path.read_text().splitlines() if line.strip()]


def start_time(events: Iterable[Event]) -> float:
    """The Unix time the traffic started: the simulator's ``traffic_start`` phase.

    ValueError if the events hold none (not a run's timeline).
    """
    for event in events:
        if event.kind == "scenario.phase" and event.view.get("phase") == START:
            return event.time
    raise ValueError("no scenario.phase traffic_start event: not the timeline of a run")


def since_start(events: Iterable[Event]) -> list[tuple[float, Event]]:
    """Each event with ``t_s``, its seconds after the traffic started (negative before)."""
    events = list(events)
    t0 = start_time(events)
    return [(round(e.time - t0, 4), e) for e in events]


def code(text: str) -> str:
    """``text`` if it may stand in a view as a short code (a scenario's name), else ""."""
    try:
        check_view("scenario.phase", {"scenario": text})
    except ValueError:
        return ""
    return text
