"""Every fault kind, injected into real processes by `ncbsim simulate`, does what it says.

One run of tests/scenarios/faults.toml (ten bureaus in real host processes, fault proxies,
SIGKILL/SIGSTOP, a skewed clock) is shared by the module; each scenario check, which names
what one fault must do to the traffic, is its own test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "faults.toml"
CHECKS = [c["name"] for c in tomllib.loads(SCENARIO.read_text())["checks"]]
KINDS = {
    "latency", "bandwidth", "loss", "slice", "blackhole", "reset", "down", "partition",
    "kill", "restart", "pause", "resume", "skew",
}  # fmt: skip

pytestmark = pytest.mark.integration


def _ncbsim_pids(workdir: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"ncbsim" in cmdline and os.fsencode(str(workdir)) in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the fault scenario once with the real CLI; its report, run folder and output."""
    base = tmp_path_factory.mktemp("faults")
    workdir, run_dir = base / "work", base / "run"
    command = [
        sys.executable, "-m", "ncbsim", "simulate", str(SCENARIO),
        "--workdir", str(workdir), "--run-dir", str(run_dir), "--report", str(base / "r.json"),
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:  # timed out: stop the simulator and all it started
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in _ncbsim_pids(workdir):
            os.kill(pid, signal.SIGKILL)
    proc_result = subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)
    report = json.loads((base / "r.json").read_text())
    return {"proc": proc_result, "report": report, "workdir": workdir, "run_dir": run_dir}


@pytest.mark.parametrize("name", CHECKS)
def test_fault_check(run: dict[str, Any], name: str) -> None:
    """The scenario check for one fault kind passed in the real run."""
    check = next(c for c in run["report"]["checks"] if c["name"] == name)
    assert check["passed"], f"{name}: {check['detail']}"


def test_every_fault_kind_was_applied_and_healed(run: dict[str, Any]) -> None:
    """The timeline names every fault kind, and every healable fault was healed in time."""
    events = [
        json.loads(line) for line in (run["run_dir"] / "timeline.jsonl").read_text().splitlines()
    ]
    applied = {e["kind"] for e in events if e["event"] == "fault"}
    assert applied == KINDS
    faults = run["report"]["faults"]
    assert all(f["end_s"] is not None for f in faults.values()), faults
    resets = [e for e in events if e["event"] == "connections_reset" and e["id"] == "rst"]
    assert resets, events
    assert resets[0]["connections"] >= 1, resets  # BE's link really was reset
    assert not [e for e in events if e["event"] == "fault_failed"]


def test_built_in_checks_hold_under_faults(run: dict[str, Any]) -> None:
    """No wrong answer and no plaintext at the gateway, whatever the faults did."""
    builtin = {c["name"]: c for c in run["report"]["checks"] if not c["expect"]}
    assert builtin, run["report"]["checks"]
    assert all(c["passed"] for c in builtin.values()), builtin


def test_run_exits_zero_and_leaves_no_process(run: dict[str, Any]) -> None:
    """All checks pass, so the command exits 0; nothing it started is left running."""
    assert run["proc"].returncode == 0, run["proc"].stdout[-3000:] + run["proc"].stderr[-3000:]
    assert run["report"]["passed"]
    assert _ncbsim_pids(run["workdir"]) == []
    assert (run["run_dir"] / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
