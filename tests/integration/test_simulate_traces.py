"""`ncbsim simulate --traces`: every process of the run writes its spans to the run
directory's traces/, and report.json names the slowest queries with their trace ids,
each one a trace that crossed the simulator, the gateway and a node."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import ncbsim_pids

pytestmark = pytest.mark.integration

SMALL = Path(__file__).parents[1] / "scenarios" / "small.toml"


def _lines(folder: Path, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / name).read_text().splitlines()]


def test_slowest_queries_name_traces_that_cross_the_network(tmp_path: Path) -> None:
    """The report lists the 10 slowest queries, slowest first; each trace id is a root
    ncbsim.sim.query span of sim.jsonl with spans of the gateway and of the bureaus
    asked; no trace file holds the run's canary."""
    workdir, run_dir = tmp_path / "work", tmp_path / "run"
    command = [
        sys.executable, "-m", "ncbsim", "simulate", str(SMALL), "--traces",
        "--workdir", str(workdir), "--run-dir", str(run_dir),
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in ncbsim_pids(workdir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 0, stdout[-2000:] + stderr[-2000:]
    report = json.loads((run_dir / "report.json").read_text())
    traces = Path(report["traces"])
    assert traces == run_dir.resolve() / "traces"
    assert {"sim.jsonl", "gateway.jsonl", "host-0.jsonl"} <= {p.name for p in traces.iterdir()}
    slowest = report["slowest_queries"]
    assert len(slowest) == 10
    latencies = [row["latency_ms"] for row in slowest]
    assert latencies == sorted(latencies, reverse=True)
    assert latencies[-1] >= report["latency_ms"]["p50"]
    sim = {s["span_id"]: s for s in _lines(traces, "sim.jsonl")}
    gateway = _lines(traces, "gateway.jsonl")
    nodes = [s for p in traces.glob("host-*.jsonl") for s in _lines(traces, p.name)]
    for row in slowest:
        assert re.fullmatch(r"[0-9a-f]{32}", row["trace_id"]), row
        root = [
            s for s in sim.values() if s["trace_id"] == row["trace_id"] and not s["parent_span_id"]
        ]
        assert [s["name"] for s in root] == ["ncbsim.sim.query"], row
        answered = [
            r
            for r in row["recipients"]
            if row["outcome"] in ("hit", "no_hit", "record", "not_found")
        ]
        reached = {
            s["attributes"]["ncbsim.party"]
            for s in nodes
            if s["trace_id"] == row["trace_id"] and s["kind"] == "SERVER"
        }
        assert set(answered) <= reached, row
        assert any(s["trace_id"] == row["trace_id"] for s in gateway), row
    text = "".join(p.read_text() for p in traces.iterdir())
    assert not re.search(r"Canary[0-9a-f]{12}", text)
