"""A run's events: the Recorder dates and publishes the simulator's events, timeline.jsonl
holds events of the one schema in time order, and nothing but metadata gets in."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ncbsim.events import SCHEMA_VERSION, from_json, make
from ncbsim.simulations import run_events
from ncbsim.simulations.faults import observed
from ncbsim.simulations.scenario import FaultEvent


def started(recorder: run_events.Recorder) -> float:
    """Start ``recorder``'s traffic now; the Unix time it dates t_s 0 at."""
    recorder.start(time.monotonic())
    return recorder.wall(0.0)


def test_recorder_dates_events_at_their_offset_not_when_recorded() -> None:
    """An event recorded late (a query answered after 2 s) carries its sending time."""
    recorder = run_events.Recorder()
    t0 = started(recorder)
    recorder.emit("scenario.phase", {"phase": "traffic_start", "elapsed_s": 0.0})
    recorder.emit("query.sealed", {"recipient": "DE"}, party="client:FR", t_s=2.0)
    recorder.emit("query.sealed", {"recipient": "IT"}, party="client:FR", t_s=1.0)
    sealed = [e for e in recorder.events if e.kind == "query.sealed"]
    assert [round(e.time - t0, 3) for e in sealed] == [2.0, 1.0]
    assert [e.seq for e in sealed] == [1, 2]  # per party, in the order emitted
    assert {e.party for e in recorder.events} == {"sim", "client:FR"}


def test_recorder_publishes_live_on_each_partys_bus() -> None:
    """A subscriber of the sim's bus gets the same event the timeline keeps."""
    recorder = run_events.Recorder()
    started(recorder)
    sub = recorder.bus("sim").subscribe(kinds=["fault."])
    recorder.emit("scenario.phase", {"phase": "traffic_start"})
    recorder.emit("fault.applied", {"fault": "partition", "target": "FR"}, correlation_id="cut")
    live = sub.drain()
    assert live == [recorder.events[-1]]
    assert live[0].correlation_id == "cut"


def test_recorder_refuses_what_the_schema_refuses() -> None:
    """An unknown key or prose raises ValueError and records nothing."""
    recorder = run_events.Recorder()
    with pytest.raises(ValueError, match="not in its schema"):
        recorder.emit("query.sealed", {"surname": "MULLER"})
    with pytest.raises(ValueError, match="short code"):
        recorder.emit("fault.failed", {"reason": "it broke (badly!)"})
    assert recorder.events == []


def test_timeline_written_in_time_order_and_read_back(tmp_path: Path) -> None:
    """Lines are sorted by time; events of one instant keep their order; each line is an
    event of the schema, and t_s is read back from the traffic_start phase."""
    recorder = run_events.Recorder()
    started(recorder)
    recorder.emit("scenario.phase", {"phase": "traffic_start", "elapsed_s": 0.0}, t_s=0.0)
    recorder.emit("query.sealed", {"recipient": "DE"}, party="client:FR", t_s=2.0)
    recorder.emit("query.sealed", {"recipient": "IT"}, party="client:FR", t_s=1.0)
    recorder.emit("scenario.phase", {"phase": "network_down"}, t_s=9.5)
    for i in range(2):
        recorder.emit("scenario.phase", {"phase": "check", "check": i, "passed": True}, t_s=9.7)
    gateway = make("query.relayed", "gateway", recorder.wall(1.01), {"recipient": "IT"})
    path = tmp_path / "timeline.jsonl"
    run_events.write(path, [*recorder.events, gateway])
    lines = path.read_text().splitlines()
    assert all(json.loads(line)["schema"] == SCHEMA_VERSION for line in lines)
    events = run_events.read(path)
    assert [e == from_json(line) for e, line in zip(events, lines, strict=True)]
    timed = run_events.since_start(events)
    assert [t for t, _ in timed] == [0.0, 1.0, 1.01, 2.0, 9.5, 9.7, 9.7]
    assert [e.party for _, e in timed][1:4] == ["client:FR", "gateway", "client:FR"]
    assert [e.view.get("check") for _, e in timed][-2:] == [0, 1]


def test_timeline_refuses_an_event_the_schema_does_not_allow(tmp_path: Path) -> None:
    """An event built around the schema (a payload in its view) is refused before the
    file is touched."""
    good = make("scenario.phase", "sim", 1.0, {"phase": "traffic_start"})
    smuggled = good._replace(view={"phase": "x", "record": "surname=MULLER"})
    path = tmp_path / "timeline.jsonl"
    with pytest.raises(ValueError, match="not in its schema"):
        run_events.write(path, [good, smuggled])
    assert not path.exists()


def test_since_start_needs_the_traffic_start() -> None:
    """A file that is no run's timeline says so."""
    with pytest.raises(ValueError, match="traffic_start"):
        run_events.since_start([make("scenario.phase", "sim", 1.0, {"phase": "check"})])


def test_fault_views_one_per_target_with_codes_only() -> None:
    """A partition of two bureaus is two events; a link fault names its peer and its
    direction and parameters as k=v codes; a gateway kill has one target and no peer."""
    cut = FaultEvent(at_s=1.0, id="cut", fault="partition", bureaus=("FR", "DE"))
    assert observed.targets(cut) == ["FR", "DE"]
    assert observed.view(cut, "FR") == {
        "fault": "partition",
        "target": "FR",
        "peer": "gateway",
        "detail": "direction=both",
    }
    slow = FaultEvent(
        at_s=1.0,
        id="slow",
        fault="latency",
        bureaus=("IT",),
        params={"latency_ms": 200.0, "jitter_ms": 0.0},
    )
    assert observed.detail(slow) == "direction=both,jitter_ms=0,latency_ms=200"
    crash = FaultEvent(at_s=1.0, id="crash", fault="kill", target="gateway")
    assert observed.targets(crash) == ["gateway"]
    assert observed.view(crash, "gateway") == {"fault": "kill", "target": "gateway"}
    assert observed.failed(crash, "gateway", "heal", OSError("x"))["reason"] == "OSError"
    for event in (cut, slow, crash):
        for target in observed.targets(event):
            make(observed.APPLIED, "sim", 1.0, observed.view(event, target))  # the schema's
