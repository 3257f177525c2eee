"""What observing its network costs a simulation: quickstart with and without it.

``python scripts/observe_cost.py [ROUNDS]`` runs the quickstart scenario ROUNDS times
(default 3) with the simulator observing the gateway's and nodes' events (the default of
``ncbsim simulate``) and as many times without (``simulate.run(observe=False)``),
alternately, on one kept work directory (its records made once, by the first run), and
prints each run's wall time, p50 and p99 latency, the events observed and the timeline's
lines, then the medians. Before the gateway and nodes emit events, both halves observe
nothing and cost the same.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from ncbsim.simulations import simulate


def main() -> None:
    """Run the rounds; print one line per run and the medians per mode."""
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    base = Path(tempfile.mkdtemp(prefix="ncbsim-observe-cost-"))
    quiet = Console(file=open("/dev/null", "w"))  # noqa: SIM115 - lives for the process
    simulate.run("quickstart", workdir=base / "work", run_dir=base / "warm", console=quiet)
    rows: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
    for i in range(2 * rounds):
        observe = i % 2 == 0
        began = time.monotonic()
        report = simulate.run(
            "quickstart",
            workdir=base / "work",
            run_dir=base / f"run{i}",
            console=quiet,
            observe=observe,
        )
        wall = time.monotonic() - began
        lines = len((base / f"run{i}" / "timeline.jsonl").read_text().splitlines())
        latency = report["latency_ms"]
        observed = sum(report["observation"]["events"].values())
        rows[observe].append((wall, latency["p50"], latency["p99"]))
        print(
            f"observe={'on ' if observe else 'off'} wall {wall:6.2f} s  p50 {latency['p50']:6.2f}"
            f" ms  p99 {latency['p99']:7.2f} ms  observed {observed:5d} events"
            f"  timeline {lines:5d} lines  passed {report['passed']}"
        )
    for observe, runs in rows.items():
        wall, p50, p99 = (statistics.median(r[k] for r in runs) for k in range(3))
        print(
            f"median observe={'on ' if observe else 'off'}: wall {wall:.2f} s, p50 {p50:.2f} ms,"
            f" p99 {p99:.2f} ms over {len(runs)} runs"
        )
    print(f"runs in {base}")


if __name__ == "__main__":
    main()
