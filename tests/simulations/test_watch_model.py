"""The figures of `ncbsim watch` (ncbsim.simulations.watch), from known events at known
times on a clock the test moves, and the view drawn from them at 80x24."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from ncbsim.events import Event, make
from ncbsim.simulations.watch import Fault, Liveness, State, WatchModel, percentile
from ncbsim.simulations.watch_sources import parse_mailbox
from ncbsim.simulations.watch_view import render

BUREAUS = ["FR", "DE", "IT", "NL"]


class Clock:
    """A clock the test sets."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def relayed(to: str, ms: int, outcome: str = "delivered", sender: str = "DE") -> Event:
    return make(
        "query.relayed",
        "gateway",
        1_000.0,
        {"sender": sender, "recipient": to, "kind": "query", "elapsed_ms": ms, "outcome": outcome},
    )


def refused(reason: str, kind: str = "query.refused") -> Event:
    return make(kind, "gateway", 1_000.0, {"sender": "DE", "recipient": "FR", "reason": reason})


def post(kind: str, to: str, outcome: str = "accepted") -> Event:
    view: dict[str, str | int] = {"sender": "DE", "recipient": to}
    if kind == "post.accepted":
        view["outcome"] = outcome
    return make(kind, "gateway", 1_000.0, view)


def model(clock: Clock, **kw: object) -> WatchModel:
    return WatchModel(bureaus=BUREAUS, network="small", clock=clock, **kw)  # type: ignore[arg-type]


def test_percentile_is_nearest_rank() -> None:
    """p50/p95/p99 are nearest-rank: an observed value, the smallest with that share below."""
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile([7.0], 99) == 7.0
    assert percentile([3, 1, 2], 50) == 2
    assert percentile([], 50) is None


def test_qps_and_percentiles_over_the_sliding_window() -> None:
    """Relays count in the 10 s window by arrival; older ones leave it, the total stays."""
    clock = Clock()
    m = model(clock)
    clock.now += 20  # the watch has run longer than the window
    m.feed([relayed("FR", ms) for ms in range(1, 101)])  # 100 relays, 1..100 ms
    snap = m.snapshot()
    assert snap.queries_window == 100
    assert snap.qps == pytest.approx(10.0)
    assert (snap.p50_ms, snap.p95_ms, snap.p99_ms) == (50, 95, 99)
    clock.now += 6
    m.feed([relayed("DE", 500)] * 20)
    snap = m.snapshot()
    assert snap.queries_window == 120
    assert snap.p99_ms == 500
    clock.now += 5  # the first 100 are now 11 s old
    snap = m.snapshot()
    assert snap.queries_window == 20
    assert snap.qps == pytest.approx(2.0)
    assert snap.p50_ms == 500
    assert snap.queries_total == 120
    clock.now += 10
    snap = m.snapshot()
    assert (snap.queries_window, snap.qps, snap.p50_ms) == (0, 0.0, None)


def test_qps_in_the_first_seconds_divides_by_the_time_watched() -> None:
    """Before a whole window has passed, the rate is over the time watched (at least 1 s)."""
    clock = Clock()
    m = model(clock)
    clock.now += 4
    m.feed([relayed("FR", 5)] * 8)
    assert m.snapshot().qps == pytest.approx(2.0)


def test_outcomes_and_per_bureau_figures() -> None:
    """Each bureau's queries and p95 come from the relays addressed to it."""
    clock = Clock()
    m = model(clock)
    m.feed([relayed("FR", 10)] * 3 + [relayed("FR", 40, "no_answer")] + [relayed("IT", 7)])
    snap = m.snapshot()
    rows = {r.name: r for r in snap.bureaus}
    assert (rows["FR"].queries, rows["FR"].p95_ms) == (4, 40)
    assert (rows["IT"].queries, rows["IT"].p95_ms) == (1, 7)
    assert (rows["DE"].queries, rows["DE"].p95_ms) == (0, None)
    assert snap.outcomes == {"delivered": 4, "no_answer": 1}


def test_refusals_by_reason_total_and_in_window() -> None:
    """Every kind of refusal counts under its reason; the window forgets, the total not."""
    clock = Clock()
    m = model(clock)
    m.feed([refused("rate_limited")] * 3 + [refused("identity_mismatch", "post.refused")])
    clock.now += 11
    m.feed([refused("rate_limited")])
    snap = m.snapshot()
    assert snap.refusals_total == {"rate_limited": 4, "identity_mismatch": 1}
    assert snap.refusals_window == {"rate_limited": 1}


def test_states_from_faults_liveness_and_health() -> None:
    """Each bureau's state says what holds it, the most severe first."""
    clock = Clock()
    m = model(clock)
    m.set_faults(
        [
            Fault("cut", "partition", ("FR",)),
            Fault("slowde", "latency", ("DE",), {"latency_ms": 200}),
            Fault("zz", "pause", ("IT",)),
            Fault("lag", "latency", ("IT",), {"latency_ms": 50}),
        ]
    )
    m.set_liveness("NL", Liveness(alive=False))
    rows = {r.name: r for r in m.snapshot().bureaus}
    assert (rows["FR"].state, rows["FR"].why) == (State.PARTITIONED, "partition cut")
    assert (rows["DE"].state, rows["DE"].why) == (State.SLOW, "latency slowde")
    assert (rows["IT"].state, rows["IT"].why) == (State.PAUSED, "pause zz")
    assert (rows["NL"].state, rows["NL"].why) == (State.DOWN, "process not running")
    m.set_faults([])
    m.set_liveness("NL", Liveness(health="NOT_SERVING"))
    m.set_liveness("FR", Liveness(stream="lost"))
    m.set_liveness("DE", Liveness(stopped=True))
    m.set_liveness("IT", Liveness(health="SERVING", stream="unserved"))
    rows = {r.name: r for r in m.snapshot().bureaus}
    assert (rows["NL"].state, rows["NL"].why) == (State.DOWN, "health NOT_SERVING")
    assert (rows["FR"].state, rows["FR"].why) == (State.DOWN, "event stream lost")
    assert (rows["DE"].state, rows["DE"].why) == (State.PAUSED, "process stopped")
    assert rows["IT"].state == State.SERVING
    m.set_faults([Fault("gw", "kill", ("gateway",))])
    assert m.snapshot().gateway.state == State.DOWN


def test_a_bureau_far_slower_than_the_others_is_slow() -> None:
    """A p95 three times the others' median (and 50 ms above it) makes a bureau slow."""
    clock = Clock()
    m = model(clock)
    m.feed([relayed("FR", 400)] * 5 + [relayed("DE", 10)] * 5 + [relayed("IT", 12)] * 5)
    rows = {r.name: r for r in m.snapshot().bureaus}
    assert rows["FR"].state == State.SLOW
    assert rows["FR"].why == "p95 400 ms vs 11 ms"
    assert rows["DE"].state == rows["IT"].state == State.SERVING
    m.feed([relayed("NL", 30)] * 4)  # too few to judge, and 3x of 10 but not 50 ms above
    assert {r.name: r for r in m.snapshot().bureaus}["NL"].state == State.SERVING


def test_mailbox_depth_from_metrics_else_from_posts() -> None:
    """Depth per recipient: the gateway's metric when scraped, else posts seen accepted
    minus those settled (none below zero: a copy accepted before the watch began)."""
    clock = Clock()
    m = model(clock)
    m.feed(
        [post("post.accepted", "FR")] * 3
        + [post("post.accepted", "FR", "duplicate")]
        + [post("post.delivered", "FR"), post("post.expired", "IT")]
    )
    snap = m.snapshot()
    assert snap.mailbox_source == "events"
    assert {r.name: r.mailbox for r in snap.bureaus} == {"FR": 2, "DE": 0, "IT": 0, "NL": 0}
    m.set_mailbox({"FR": 7.0, "DE": 1.0})
    snap = m.snapshot()
    assert snap.mailbox_source == "metrics"
    assert {r.name: r.mailbox for r in snap.bureaus} == {"FR": 7, "DE": 1, "IT": None, "NL": None}


def test_mailbox_depth_parses_a_prometheus_page() -> None:
    """ncbsim_mailbox_depth{recipient} is read with prometheus_client's parser."""
    page = (
        "# HELP ncbsim_mailbox_depth Copies queued per recipient\n"
        "# TYPE ncbsim_mailbox_depth gauge\n"
        'ncbsim_mailbox_depth{recipient="FR"} 3.0\n'
        'ncbsim_mailbox_depth{recipient="DE"} 0.0\n'
        "# TYPE ncbsim_replays_total counter\n"
        "ncbsim_replays_total 2.0\n"
    )
    assert parse_mailbox(page) == {"FR": 3.0, "DE": 0.0}
    assert parse_mailbox("") == {}


def test_fault_from_status_and_json_line() -> None:
    """A fault of `status --json` becomes a Fault; the --json object says how long it holds."""
    clock = Clock(2_000.0)
    m = model(clock)
    m.set_faults(
        [
            Fault.from_status(
                {
                    "id": "cut",
                    "kind": "partition",
                    "bureaus": ["FR"],
                    "held": ["FR"],
                    "direction": "both",
                    "params": {},
                    "started_ms": 1_990_000,
                    "until_ms": 2_030_000,
                }
            )
        ]
    )
    m.set_dropped(4)
    m.feed([relayed("FR", 9)])
    line = json.loads(json.dumps(m.snapshot().to_json()))
    assert line["faults"] == [
        {
            "id": "cut",
            "kind": "partition",
            "held": ["FR"],
            "params": {},
            "direction": "both",
            "since_s": 10.0,
            "until_s": 30.0,
        }
    ]
    assert line["bureaus"]["FR"]["state"] == "partitioned"
    assert line["queries"]["total"] == 1
    assert line["events"] == {"received": 1, "dropped": 4, "sources": {}}
    assert line["schema"] == 1


def test_last_events_keep_the_latest() -> None:
    """A snapshot carries the last N events, newest last."""
    clock = Clock()
    m = model(clock, last=3)
    m.feed([relayed("FR", ms) for ms in range(5)])
    assert [e.view["elapsed_ms"] for e in m.snapshot().last_events] == [2, 3, 4]


def _drawn(m: WatchModel, width: int, height: int) -> list[str]:
    out = io.StringIO()
    console = Console(file=out, width=width, height=height, color_system=None)
    console.print(render(m.snapshot(), width, height))
    return out.getvalue().rstrip("\n").split("\n")


def test_view_fits_80x24_with_many_bureaus_and_faults() -> None:
    """At 80x24 everything fits: bureaus not serving first, the rest as "+N more"."""
    clock = Clock()
    codes = [f"B{n:02d}" for n in range(40)]
    m = WatchModel(bureaus=codes, network="big", clock=clock)
    m.set_faults([Fault(f"f{n}", "partition", (codes[30 + n],)) for n in range(5)])
    m.feed([relayed("B00", 5)] * 20 + [refused("rate_limited")])
    lines = _drawn(m, 80, 24)
    assert len(lines) <= 24
    assert all(len(line) <= 80 for line in lines)
    text = "\n".join(lines)
    assert "B30" in text
    assert "partitioned" in text
    assert "more" in text
    assert "faults in force: 5" in text
    assert "rate_limited 1" in text
    assert "20.0 q/s" in text  # 20 relays in the first second: over 1 s, not 10


def test_view_lists_every_bureau_when_there_is_room() -> None:
    """A small network fits whole, with its events."""
    clock = Clock()
    m = model(clock)
    m.set_faults([Fault("cut", "partition", ("FR",))])
    m.feed([relayed("FR", 5)])
    lines = _drawn(m, 100, 30)
    fr = next(line for line in lines if line.lstrip().startswith("FR"))
    assert "partitioned" in fr
    assert "partition cut" in fr
    assert not any("more" in line for line in lines)
    assert any("query.relayed DE>FR" in line for line in lines)


def test_engine_faults_are_read_from_the_schedule() -> None:
    """`simulate --watch` reads the engine's faults in force: what each holds, since when."""
    from types import SimpleNamespace

    from ncbsim.simulations.watch_sources import engine_faults

    record = SimpleNamespace(
        id="cut", kind="partition", bureaus=("NL",), params={}, start_s=2.0, direction="both"
    )
    kill = SimpleNamespace(
        id="gw", kind="kill", bureaus=("FR", "NL"), params={}, start_s=5.0, direction="both"
    )
    active = {
        "cut": SimpleNamespace(record=record, held=set()),
        "gw": SimpleNamespace(record=kill, held={"gateway"}),
    }
    faults = engine_faults(active.values, lambda: 7.0)()
    assert [(f.id, f.kind, f.held) for f in faults] == [
        ("cut", "partition", ("NL",)),
        ("gw", "kill", ("gateway",)),
    ]
    assert faults[1].started - faults[0].started == pytest.approx(3.0)
