"""Every fault kind, injected into real processes by `ncbsim simulate`, does what it says.

One run of tests/scenarios/faults.toml (ten bureaus in real host processes, fault proxies,
SIGKILL/SIGSTOP, a skewed clock) is shared by the module; each scenario check, which names
what one fault must do to the traffic, is its own test.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import SimulationRun

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "faults.toml"
CHECKS = [c["name"] for c in tomllib.loads(SCENARIO.read_text())["checks"]]
KINDS = {
    "latency", "bandwidth", "loss", "slice", "blackhole", "reset", "down", "partition",
    "kill", "restart", "pause", "resume", "skew",
}  # fmt: skip

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, simulate: Any) -> SimulationRun:
    """Run the fault scenario once with the real CLI; its report, run folder and output."""
    return simulate(SCENARIO, tmp_path_factory.mktemp("faults"), 240)


@pytest.mark.parametrize("name", CHECKS)
def test_fault_check(run: SimulationRun, name: str) -> None:
    """The scenario check for one fault kind passed in the real run."""
    check = next(c for c in run.report["checks"] if c["name"] == name)
    assert check["passed"], f"{name}: {check['detail']}"


def test_every_fault_kind_was_applied_and_healed(run: SimulationRun) -> None:
    """The timeline names every fault kind, and every healable fault was healed in time."""
    events = [e for _, e in run.timeline() if e.party == "sim"]
    applied = {e.view["fault"] for e in events if e.kind == "fault.applied"}
    assert applied == KINDS
    faults = run.report["faults"]
    assert all(f["end_s"] is not None for f in faults.values()), faults
    resets = [e for e in events if e.kind == "fault.applied" and e.correlation_id == "rst"]
    assert resets, events
    assert int(resets[0].view["connections"]) >= 1, resets  # BE's link really was reset
    assert not [e for e in events if e.kind == "fault.failed"]


def test_each_fault_is_applied_then_healed_in_the_timeline_at_its_report_times(
    run: SimulationRun,
) -> None:
    """Every fault the report lists has, per target, a fault.applied at its start_s and
    (if it lasts) a fault.healed at its end_s, correlated by its id."""
    timeline = [(t, e) for t, e in run.timeline() if e.kind.startswith("fault.")]
    for fault_id, fault in run.report["faults"].items():
        mine = [(t, e) for t, e in timeline if e.correlation_id == fault_id]
        applied = [t for t, e in mine if e.kind == "fault.applied"]
        targets = ["gateway"] if fault.get("target") == "gateway" else fault["bureaus"]
        assert len(applied) == len(targets), (fault_id, mine)
        assert all(abs(t - fault["start_s"]) < 0.01 for t in applied), (fault_id, mine)
        healed = [t for t, e in mine if e.kind == "fault.healed"]
        if fault["end_s"] != fault["start_s"]:  # not an instant fault
            assert healed, (fault_id, mine)
            assert all(abs(t - fault["end_s"]) < 0.01 for t in healed), (fault_id, mine)


def test_built_in_checks_hold_under_faults(run: SimulationRun) -> None:
    """No wrong answer and no plaintext at the gateway, whatever the faults did."""
    builtin = {c["name"]: c for c in run.report["checks"] if not c["expect"]}
    assert builtin, run.report["checks"]
    assert all(c["passed"] for c in builtin.values()), builtin


def test_run_exits_zero_and_leaves_no_process(run: SimulationRun) -> None:
    """All checks pass, so the command exits 0; nothing it started is left running."""
    assert run.returncode == 0, run.output
    assert run.report["passed"]
    assert run.left_running() == []
    assert (run.run_dir / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
