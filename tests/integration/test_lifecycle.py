"""The user-facing lifecycle commands: up --detach / down, and simulate with a report."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ncbsim.processes import alive
from ncbsim.simulations.network import Network

pytestmark = pytest.mark.integration

SMALL = Path(__file__).resolve().parent.parent / "scenarios" / "small.toml"


def _ncbsim(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ncbsim", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_up_detach_then_down(tmp_path: Path) -> None:
    """`up --detach` leaves every listed process running; `down` stops them all."""
    workdir = tmp_path / "w"
    up = _ncbsim("up", str(SMALL), "--workdir", str(workdir), "--detach")
    pids: list[int] = []
    try:
        assert up.returncode == 0, up.stderr
        manifest = json.loads((workdir / "network.json").read_text())
        pids = [p["pid"] for p in manifest["processes"]]
        roles = sorted((p["role"], p["bureau"]) for p in manifest["processes"])
        assert roles == [("gateway", None)] + [("node", b) for b in ["DE", "FR", "IT", "NL"]]
        assert all(alive(pid) for pid in pids)
        assert all(p["address"].startswith("127.0.0.1:") for p in manifest["processes"])
    finally:
        down = _ncbsim("down", "--workdir", str(workdir))
    assert down.returncode == 0, down.stderr
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids)
    assert not (workdir / "network.json").exists()


def test_simulate_passes_and_writes_the_report(tmp_path: Path) -> None:
    """`simulate` exits 0 with every query answered, hits and no-hits, and the report keys."""
    report_path = tmp_path / "report.json"
    out = _ncbsim(
        "simulate",
        str(SMALL),
        "--report",
        str(report_path),
        "--run-dir",
        str(tmp_path / "run"),
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(report_path.read_text())
    assert report["scenario"] == "small"
    assert report["bureaus"] == ["FR", "DE", "IT", "NL"]
    q = report["queries"]
    assert set(q) == {"sent", "answered", "hit", "no_hit", "no_answer", "failed", "refused"}
    assert q["answered"] == q["sent"] > 0
    assert q["hit"] > 0
    assert q["no_hit"] > 0
    assert q["failed"] == q["no_answer"] == q["refused"] == 0
    assert set(report["latency_ms"]) == {"p50", "p95", "p99", "max"}
    assert report["passed"] is True
    assert all(c["passed"] for c in report["checks"])
    assert {c["name"] for c in report["checks"]} >= {
        "every query answered",
        "gateway files hold no plaintext",
        "multi-bureau replies list every bureau",
    }


def test_up_in_the_foreground_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    """`up` without --detach runs until SIGINT, then stops every process it started."""
    workdir = tmp_path / "w"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ncbsim", "up", str(SMALL), "--workdir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        manifest = workdir / "network.json"
        deadline = time.monotonic() + 60
        while not manifest.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        pids = [p["pid"] for p in json.loads(manifest.read_text())["processes"]]
        assert all(alive(p) for p in pids)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if manifest.exists():  # `up` died without cleaning up: stop what it started
            Network.load(workdir).stop()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert not any(alive(p) for p in pids)
    assert not manifest.exists()
