"""`ncbsim load` end to end: real networks, real locust processes, the SLO gate's exit code.

The first test is the CI load gate: 20 s of locust against the quickstart network,
judged by the shipped ``load/slo.toml``. The others use a shared running network
(``--target``) to show a breach exits non-zero and that distributed mode combines
its workers' figures.
"""

from __future__ import annotations

import csv
import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from load.plan import requester_codes
from simulations.network import Network, audit_path

pytestmark = [pytest.mark.integration, pytest.mark.load]

TASKS = {"document", "person", "vehicle", "fetch", "multi"}


def _load(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ncbsim", "load", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _csv_names(out: Path) -> set[str]:
    with (out / "locust_stats.csv").open() as f:
        return {row["Name"] for row in csv.DictReader(f)}


def test_load_gate_on_the_quickstart_network_meets_the_shipped_slo(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _load("--duration", "20s", "--out", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "SLO met: all" in result.stdout
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["passed"] is True
    assert verdict["overall"]["failures"] == 0
    assert set(verdict["requests"]) >= TASKS
    assert (out / "report.html").stat().st_size > 0
    assert _csv_names(out) >= {*TASKS, "Aggregated"}


def test_an_impossible_slo_breaches_and_exits_non_zero(network: Network, tmp_path: Path) -> None:
    slo = tmp_path / "impossible.toml"
    slo.write_text("[overall]\np50_ms = 0.001\nmin_rps = 1000000\n")
    out = tmp_path / "out"
    result = _load(
        "--target", str(network.workdir), "--duration", "4s", "--users", "2",
        "--slo", str(slo), "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "SLO BREACHED: 2 of 2 checks failed" in result.stdout
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["passed"] is False
    assert verdict["overall"]["requests"] > 0  # it ran; it was the objective that failed


def test_distributed_mode_combines_every_workers_figures(network: Network, tmp_path: Path) -> None:
    out = tmp_path / "out"
    started_ms = int(time.time() * 1000)
    result = _load(
        "--target", str(network.workdir), "--duration", "6s", "--spawn-rate", "10",
        "--workers", "2", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["workers"] == 2
    assert "(2 workers)" in result.stdout
    # Ten users, five on each worker, each its own requester bureau. The master's
    # figures must count every envelope the gateway relayed for all ten: one per
    # check or fetch, one per target bureau for a multi-bureau check.
    targets = sorted(p.bureau for p in network.procs if p.bureau)
    requesters = requester_codes(targets, 10)
    with sqlite3.connect(audit_path(network.workdir)) as db:
        rows = [
            row
            for row in db.execute(
                "SELECT sender, COUNT(*) FROM audit WHERE at_ms >= ? GROUP BY sender",
                (started_ms,),
            )
            if row[0] in requesters
        ]
    assert {sender for sender, _ in rows} == set(requesters)
    counts = {name: figures["requests"] for name, figures in verdict["requests"].items()}
    relayed = sum(counts[k] for k in ("document", "person", "vehicle", "fetch"))
    assert sum(n for _, n in rows) == relayed + counts["multi"] * len(targets)
    assert {"worker-1.log", "worker-2.log"} <= {p.name for p in out.iterdir()}


def test_workers_on_another_machine_join_with_the_same_command(
    network: Network, tmp_path: Path
) -> None:
    """A master waiting for a remote worker, and `ncbsim load --join` supplying it."""
    port = str(_free_port())
    master_out, worker_out = tmp_path / "master", tmp_path / "worker"
    slo = tmp_path / "two-users.toml"  # the shipped min_rps is for ten users
    slo.write_text("[overall]\nmax_failure_ratio = 0\np99_ms = 2000\n")
    master = subprocess.Popen(
        [
            sys.executable, "-m", "ncbsim", "load", "--target", str(network.workdir),
            "--duration", "4s", "--users", "2", "--spawn-rate", "2", "--remote-workers", "1",
            "--master-bind", f"127.0.0.1:{port}", "--slo", str(slo), "--out", str(master_out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (master_out / "plan.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        copy = tmp_path / "copied-plan.json"
        copy.write_bytes((master_out / "plan.json").read_bytes())
        worker = _load(
            "--join", f"127.0.0.1:{port}", "--plan", str(copy), "--workers", "1",
            "--out", str(worker_out), timeout=120,
        )  # fmt: skip
        output, _ = master.communicate(timeout=120)
    finally:
        if master.poll() is None:
            master.kill()
            master.wait()
    assert worker.returncode == 0, worker.stdout + worker.stderr
    assert master.returncode == 0, output
    verdict = json.loads((master_out / "verdict.json").read_text())
    assert verdict["workers"] == 1
    assert verdict["overall"]["requests"] > 0
    assert verdict["overall"]["failures"] == 0
    assert (worker_out / "worker-1.log").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--duration", "0s"], "--duration must be at least 1s"),
        (["--duration", "soon"], "--duration: expected a duration"),
        (["--users", "0"], "--users must be at least 1"),
        (["--slo", "/nonexistent/slo.toml"], "no such SLO file"),
        (["--target", "/nonexistent"], "no running network"),
        (["--plan", "plan.json"], "--plan, --gateway and --pki go with --join"),
        (["--join", "127.0.0.1:1"], "--join needs --plan"),
        (["--master-bind", "anywhere"], "not a host:port address"),
    ],
)
def test_bad_options_are_refused_before_anything_starts(
    args: list[str], message: str, tmp_path: Path
) -> None:
    result = _load(*args, "--out", str(tmp_path / "out"), timeout=60)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
