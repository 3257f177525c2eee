"""Engine parts that need no running network: host layout, link faults, releases, stamps."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ncbsim.errors import ConfigError
from ncbsim.simulations import network, scenario
from ncbsim.simulations.engine import Engine
from ncbsim.simulations.faults.schedule import _Active
from ncbsim.simulations.outcomes import FaultRecord
from ncbsim.simulations.prepare import prepare
from ncbsim.simulations.proxy import FaultProxy, Link

SMALL = Path(__file__).resolve().parent.parent / "scenarios" / "small.toml"


def _scenario(events: list[dict[str, object]]) -> scenario.Scenario:
    return scenario.from_dict(
        {"bureaus": ["FR", "DE", "IT", "NL"], "traffic": {"duration_s": 30}, "events": events},
        name="parts",
    )


def test_small_networks_get_a_host_per_bureau_large_ones_share() -> None:
    """Up to 8 bureaus: one host each; more: one per CPU (at least two), solo ones alone."""
    assert network.plan_hosts(["FR", "DE", "IT"]) == [["FR"], ["DE"], ["IT"]]
    many = [f"{a}{b}" for a in "ABCD" for b in "ABCDE"]  # 20 codes
    layout = network.plan_hosts(many, hosts=2, solo={"BB"})
    assert layout[0] == ["BB"]
    assert len(layout) == 3
    assert sorted(b for host in layout for b in host) == sorted(many)


def test_healing_one_link_fault_keeps_the_others() -> None:
    """A latency fault survives the heal of a blackhole on the same link, and vice versa."""
    sim = _scenario(
        [
            {"at_s": 1, "id": "slow", "fault": "latency", "bureaus": ["IT"], "latency_ms": 300},
            {"at_s": 2, "id": "hole", "fault": "blackhole", "bureaus": ["IT"]},
        ]
    )

    async def main() -> None:
        engine = Engine(sim, Path("/nonexistent"))
        link = Link(
            "IT",
            to_gateway=FaultProxy("it>gw", lambda: None),
            to_bureau=FaultProxy("gw>it", lambda: None),
        )
        assert link.to_gateway is not None
        assert link.to_bureau is not None
        await link.to_gateway.start()
        await link.to_bureau.start()
        engine.links["IT"] = link
        try:
            for event in sim.faults():
                link.apply(event.fault, event.direction, event.params)
                engine.faults.link_faults["IT"][event.id] = event
            engine.faults.link_faults["IT"].pop("slow")
            await engine.faults.relink("IT")
            assert link.to_bureau.forward.blackhole  # the hole stays, without a reset
            assert link.to_bureau.forward.latency_ms == 0
            engine.faults.link_faults["IT"]["slow"] = sim.fault("slow")
            engine.faults.link_faults["IT"].pop("hole")
            await engine.faults.relink("IT")
            assert link.to_bureau.forward.latency_ms == 300
            assert not link.to_bureau.forward.blackhole
            engine.faults.link_faults["IT"].pop("slow")
            await engine.faults.relink("IT")
            assert link.to_bureau.forward.is_clear()
            assert not link.to_bureau.is_down
        finally:
            await link.close()

    asyncio.run(main())


def test_a_kill_of_two_ends_when_both_are_restarted() -> None:
    """Restarting the bureaus of one kill one at a time ends it with the last restart."""
    sim = _scenario(
        [
            {"at_s": 1, "id": "k", "fault": "kill", "bureaus": ["DE", "NL"]},
            {"at_s": 3, "id": "r1", "fault": "restart", "bureaus": ["DE"]},
            {"at_s": 4, "id": "r2", "fault": "restart", "bureaus": ["NL"]},
        ]
    )
    engine = Engine(sim, Path("/nonexistent"))
    kill = sim.fault("k")
    record = FaultRecord("k", "kill", ("DE", "NL"), "both", {}, 1.0, None)
    engine.faults.active["k"] = _Active(record, kill, {"DE", "NL"})
    engine.faults.release("kill", sim.fault("r1"), 3.0)
    assert "k" in engine.faults.active
    engine.faults.release("kill", sim.fault("r2"), 4.0)
    assert "k" not in engine.faults.active
    assert [(f.id, f.end_s) for f in engine.result.faults] == [("k", 4.0)]


def test_records_of_another_seed_are_refused(tmp_path: Path) -> None:
    """A work directory keeps the records of one seed and counts: another scenario is refused."""
    small = scenario.load(str(SMALL))
    prepare(tmp_path, small)
    other = scenario.from_dict({"bureaus": list(small.bureaus), "seed": small.seed + 1}, name="x")
    with pytest.raises(ConfigError, match="seed"):
        prepare(tmp_path, other)
    prepare(tmp_path, small)  # the same scenario again: fine, records reused
