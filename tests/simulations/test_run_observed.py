"""A simulation's timeline.jsonl holds, beside the simulator's own events, what the
gateway and the nodes emitted during the traffic: one query's sealing by the client, its
relay at the gateway and its opening at the recipient share the envelope's message id.

The network's half needs the gateway and nodes that emit events (issue 17's events
branch); before they do, the observation is empty and the first test fails on it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ncbsim.events import Event

pytestmark = pytest.mark.integration

SMALL = Path(__file__).resolve().parent.parent / "scenarios" / "small.toml"
BUREAUS = ["FR", "DE", "IT", "NL"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, simulate: Callable[..., Any]) -> Any:
    """The small scenario run once with the real CLI."""
    return simulate(SMALL, tmp_path_factory.mktemp("observed"), 240)


def _ids(events: list[Event], kind: str, party: str | None = None) -> set[str]:
    return {
        e.message_id
        for e in events
        if e.kind == kind and e.message_id and (party is None or e.party == party)
    }


def test_the_gateway_and_nodes_events_are_in_the_timeline(run: Any) -> None:
    """Every pair the client got an answer to was relayed by the gateway and opened by
    its recipient, under the same message id; the report counts what came from each
    party and says nothing was missed."""
    assert run.returncode == 0, run.output
    observation = run.report["observation"]
    assert set(observation["events"]) == {"gateway", *BUREAUS}
    assert observation["dropped"] == 0
    assert observation["events"]["gateway"] > 0, observation
    events = [e for _, e in run.timeline()]
    answered = {
        e.message_id: str(e.view["recipient"])
        for e in events
        if e.kind == "query.returned" and e.view["outcome"] not in ("no_answer", "failed")
    }
    assert answered
    assert set(answered) <= _ids(events, "query.relayed", "gateway")
    for mid, recipient in answered.items():
        assert mid in _ids(events, "query.opened", recipient), (mid, recipient)
    parties = {e.party for e in events}
    assert {"sim", "gateway", *BUREAUS} <= parties
    counted = {p: sum(e.party == p for e in events) for p in observation["events"]}
    assert counted == observation["events"]


def test_the_timeline_is_in_time_order_and_the_simulators_own_are_complete(run: Any) -> None:
    """Lines are in time order; the simulator's events (party sim, client:XX) are there
    whatever the network emits: a sealed and a returned event per pair, the phases."""
    timeline = run.timeline()
    times = [t for t, _ in timeline]
    assert times == sorted(times)
    events = [e for _, e in timeline]
    sealed = [e for e in events if e.kind == "query.sealed"]
    returned = [e for e in events if e.kind == "query.returned"]
    assert len(sealed) == len(returned) == run.report["queries"]["sent"]
    assert all(e.party.startswith("client:") for e in sealed + returned)
    assert {e.party for e in sealed} <= {f"client:{b}" for b in BUREAUS}
    phases = [e.view["phase"] for e in events if e.kind == "scenario.phase"]
    assert phases[:1] == ["traffic_start"]
    assert phases[1:3] == ["traffic_end", "network_down"]
