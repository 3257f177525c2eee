"""Time SLTD document lookups through :class:`ncbsim.node.store.RecordStore` on a large database.

Run ``python -m ncbsim.node.bench_lookup [--records 1000000] [--lookups 20000] [--db PATH]
[--threads N] [--json]``. It generates the database on first use (documents only, bureau FR,
seed 1) or reuses the one at ``--db``, then times ``find_document`` for numbers the bureau
holds and numbers it does not (half each, shuffled), after a short warm-up. It prints the
latency percentiles, the throughput, and SQLite's query plan for the lookup, which shows the
index it uses. This is a measurement tool, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ncbsim.node.datagen import generate
from ncbsim.node.store import RecordStore

BUREAU = "FR"
SEED = 1
WARM_UP = 1000


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m node.bench_lookup",
        description="Time document lookups (hit and no-hit) in a bureau's record store.",
    )
    parser.add_argument("--records", type=int, default=1_000_000, help="documents in the DB")
    parser.add_argument("--lookups", type=int, default=20_000, help="timed lookups")
    parser.add_argument(
        "--db", type=Path, default=None, help="database to reuse or create (default: temp dir)"
    )
    parser.add_argument("--threads", type=int, default=1, help="threads issuing lookups")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def _time_lookups(
    store: RecordStore, queries: Sequence[tuple[str, str]], threads: int
) -> tuple[list[float], int, float]:
    """Per-lookup latencies in µs, the number of hits, and the wall time in seconds."""

    def run(batch: Sequence[tuple[str, str]]) -> tuple[list[float], int]:
        latencies: list[float] = []
        hits = 0
        for number, issuer in batch:
            started = time.perf_counter_ns()
            found = store.find_document(number, issuer)
            latencies.append((time.perf_counter_ns() - started) / 1000)
            hits += bool(found)
        return latencies, hits

    batches = [queries[i::threads] for i in range(threads)]
    started = time.perf_counter()
    if threads == 1:
        results = [run(queries)]
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            results = list(pool.map(run, batches))
    wall = time.perf_counter() - started
    latencies = [value for batch_latencies, _ in results for value in batch_latencies]
    return latencies, sum(hits for _, hits in results), wall


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its figures. Returns the process exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.records < 1 or args.lookups < 2 or args.threads < 1:
        parser.error("--records must be >= 1, --lookups >= 2 and --threads >= 1")
    db: Path = args.db or Path(tempfile.gettempdir()) / f"ncbsim-bench-{args.records}.sqlite"
    generation_s = None
    if not db.exists():
        generation_s = generate(
            db, BUREAU, seed=SEED, documents=args.records, persons=0, vehicles=0
        ).seconds
    store = RecordStore(db)
    try:
        held = store.counts()["document"]
        if held != args.records:
            parser.error(f"{db} holds {held} documents, not {args.records}; pass another --db")
        rng = random.Random(SEED)
        existing = [(d.number, d.issuer) for d in store.sample("document", args.lookups // 2, rng)]
        existing = [existing[i % len(existing)] for i in range(args.lookups // 2)]
        # The generator never writes Q in a document number, so these are certain misses.
        absent = [
            (f"Q{rng.randrange(10**8):08d}", BUREAU) for _ in range(args.lookups - len(existing))
        ]
        queries = existing + absent
        rng.shuffle(queries)
        _time_lookups(store, queries[:WARM_UP], 1)
        latencies, hits, wall = _time_lookups(store, queries, args.threads)
        plan = store.query_plan("document")
    finally:
        store.close()
    ordered = sorted(latencies)
    figures = {
        "db": str(db),
        "documents": held,
        "generation_s": None if generation_s is None else round(generation_s, 1),
        "lookups": len(queries),
        "threads": args.threads,
        "hits": hits,
        "expected_hits": len(existing),
        "p50_us": round(_percentile(ordered, 0.50), 1),
        "p95_us": round(_percentile(ordered, 0.95), 1),
        "p99_us": round(_percentile(ordered, 0.99), 1),
        "mean_us": round(statistics.fmean(ordered), 1),
        "max_us": round(ordered[-1], 1),
        "lookups_per_s": round(len(queries) / wall),
        "query_plan": plan,
    }
    if args.json:
        print(json.dumps(figures))
    else:
        if generation_s is not None:
            print(f"generated {held:,} documents in {generation_s:.1f} s -> {db}")
        print(f"database     {db} ({held:,} documents)")
        print(
            f"lookups      {len(queries):,} on {args.threads} thread(s), "
            f"{hits:,} hits (expected {len(existing):,})"
        )
        print(
            f"latency µs   p50 {figures['p50_us']}  p95 {figures['p95_us']}  "
            f"p99 {figures['p99_us']}  mean {figures['mean_us']}  max {figures['max_us']}"
        )
        print(f"throughput   {figures['lookups_per_s']:,} lookups/s")
        for line in plan:
            print(f"query plan   {line}")
    return 0 if hits == len(existing) else 1


if __name__ == "__main__":
    raise SystemExit(main())
