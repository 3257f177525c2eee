"""One scenario and seed always give the same records and the same traffic schedule."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ncbsim.simulations import scenario
from ncbsim.simulations.prepare import prepare
from ncbsim.simulations.traffic import Planned, Planner, open_stores
from ncbsim.workdir import Workdir

SMALL = Path(__file__).resolve().parent.parent / "scenarios" / "small.toml"


def _schedule(workdir: Path, sim: scenario.Scenario) -> list[tuple[object, ...]]:
    prepare(workdir, sim)
    stores = open_stores(workdir, sim)
    try:
        plan = Planner(sim, stores).plan()
    finally:
        for store in stores.values():
            store.close()
    return [_key(p) for p in plan]


def _key(p: Planned) -> tuple[object, ...]:
    return (
        round(p.at_s, 9), p.label, p.kind, p.requester, tuple(p.to),
        p.query.SerializeToString(deterministic=True), tuple(sorted(p.expect_hit.items(),
        key=lambda kv: kv[0])), p.fetch,
    )  # fmt: skip


def _dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_same_seed_same_data_and_schedule(tmp_path: Path) -> None:
    """Two preparations with one seed: byte-identical records, identical schedules."""
    sim = scenario.load(str(SMALL))
    first = _schedule(tmp_path / "a", sim)
    second = _schedule(tmp_path / "b", sim)
    assert first == second
    assert len(first) > 10
    for code in sim.bureaus:
        assert _dump(Workdir(tmp_path / "a").bureau(code).records) == _dump(
            Workdir(tmp_path / "b").bureau(code).records
        )


def test_another_seed_another_schedule(tmp_path: Path) -> None:
    """A different seed changes the records and the schedule."""
    sim = scenario.load(str(SMALL))
    other = scenario.from_dict({**_raw(SMALL), "seed": sim.seed + 1}, path=SMALL, name=sim.name)
    assert _schedule(tmp_path / "a", sim) != _schedule(tmp_path / "b", other)
    assert _dump(Workdir(tmp_path / "a").bureau("FR").records) != _dump(
        Workdir(tmp_path / "b").bureau("FR").records
    )


def _raw(path: Path) -> dict[str, object]:
    import tomllib

    return tomllib.loads(path.read_text())
