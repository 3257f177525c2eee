"""Measure what tracing costs a simulation: the same scenario with and without --traces.

Usage: python scripts/bench_traces.py [--rate 30] [--seconds 12] [--rounds 2] [--dir DIR]

Runs ``ncbsim simulate`` on a four-bureau scenario without faults, alternating an
untraced and a traced run ``--rounds`` times, and prints for each: query latency
percentiles (report.json), the CPU seconds of the whole process tree (simulator, gateway,
hosts: ``RUSAGE_CHILDREN`` around the run), spans written and their bytes. The cost
printed last is traced over untraced, medians of the rounds.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SCENARIO = """
name = "bench-traces"
bureaus = ["FR", "DE", "IT", "NL"]
seed = 11
[records]
documents = 300
persons = 120
vehicles = 120
planted = 10
[traffic]
duration_s = {seconds}
rate_per_s = {rate}
hit_ratio = 0.5
fetch_ratio = 0.3
deadline_ms = 3000
max_in_flight = 32
"""


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_run(folder: Path, scenario: Path, traced: bool) -> dict[str, float]:
    """One ``ncbsim simulate`` run; its latency, CPU, spans and span bytes."""
    run_dir = folder / "run"
    command = [sys.executable, "-m", "ncbsim", "simulate", str(scenario), "--run-dir", str(run_dir)]
    before = _cpu_s()
    subprocess.run([*command, *(["--traces"] if traced else [])], capture_output=True, check=True)
    cpu = _cpu_s() - before
    report = json.loads((run_dir / "report.json").read_text())
    files = list((run_dir / "traces").glob("*.jsonl")) if traced else []
    spans = sum(len(p.read_text().splitlines()) for p in files)
    return {
        "requests": report["requests"],
        **{k: report["latency_ms"][k] for k in ("p50", "p95", "p99")},
        "cpu_s": round(cpu, 2),
        "spans": spans,
        "span_bytes": sum(p.stat().st_size for p in files),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=30.0, help="queries/s (default 30)")
    parser.add_argument("--seconds", type=float, default=12.0, help="traffic s (default 12)")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs (default 2)")
    parser.add_argument("--dir", type=Path, help="keep the runs here (default: a temp dir)")
    args = parser.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="bench-traces-"))
    base.mkdir(parents=True, exist_ok=True)
    scenario = base / "bench-traces.toml"
    scenario.write_text(SCENARIO.format(seconds=args.seconds, rate=args.rate))
    results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for i in range(args.rounds):
        for traced in (False, True):
            result = one_run(base / f"{i}-{'traced' if traced else 'plain'}", scenario, traced)
            results[traced].append(result)
            print(f"round {i} {'traced  ' if traced else 'untraced'} {json.dumps(result)}")
    for key in ("p50", "p95", "p99", "cpu_s"):
        plain = statistics.median(r[key] for r in results[False])
        traced_v = statistics.median(r[key] for r in results[True])
        print(f"{key:6} untraced {plain:8.2f}  traced {traced_v:8.2f}  x{traced_v / plain:.2f}")
    per_query = statistics.median(r["spans"] / r["requests"] for r in results[True])
    print(f"spans per query (all processes) {per_query:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
