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
    events = run.timeline()
    applied = {e["kind"] for e in events if e["event"] == "fault"}
    assert applied == KINDS
    faults = run.report["faults"]
    assert all(f["end_s"] is not None for f in faults.values()), faults
    resets = [e for e in events if e["event"] == "connections_reset" and e["id"] == "rst"]
    assert resets, events
    assert resets[0]["connections"] >= 1, resets  # BE's link really was reset
    assert not [e for e in events if e["event"] == "fault_failed"]


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
