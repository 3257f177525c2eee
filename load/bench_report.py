"""The figures and tables of ``ncbsim bench``, from its timed batches.

Pure statistics and reporting: percentiles, the crypto bounds, the per-side figures, the
ratios against the goals, and the rich tables. Nothing here measures or starts anything;
:mod:`ncbsim.load.bench` does that. See docs/bench.md for how to read the figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

SEQ_P50_GOAL = 1.25  # ncbsim ÷ floor, at most
C32_THROUGHPUT_GOAL = 0.8  # ncbsim ÷ floor, at least
ROLES = ("client", "relay", "server")  # for ncbsim: this process, the gateway, DE's node

OVERHEAD_GOAL_MS = 0.10  # ncbsim's own CPU per call beyond the floor and the crypto, at most
PROCESSES = {"client": "client", "gateway": "relay", "node": "server"}
"""Each process of ncbsim and the floor's process in the same place (its CPU role)."""

# The crypto each process does for one document check on its sequential path, by the
# envelope format the client speaks (see ncbsim/envelope.py and docs/protocol.md §15).
# Format 1: the client makes a response key, seals and signs the request; the node
# verifies and opens it, then seals and signs the response; the client verifies and
# opens that. Format 2, steady state: one AEAD seal and open each way, and one Ed25519
# signature per CHECKPOINT_EVERY (32) requests over the session's checkpoint. The
# gateway does no crypto of its own (mTLS is the floor's too).
CRYPTO_OPS: dict[int, dict[str, dict[str, float]]] = {
    1: {
        "client": {
            "x25519_keygen": 1,
            "hpke_seal": 1,
            "ed25519_sign": 1,
            "ed25519_verify": 1,
            "hpke_open": 1,
        },
        "gateway": {},
        "node": {"ed25519_verify": 1, "hpke_open": 1, "hpke_seal": 1, "ed25519_sign": 1},
    },
    2: {
        "client": {"aead_seal": 1, "aead_open": 1, "ed25519_sign": 1 / 32},
        "gateway": {},
        "node": {"aead_open": 1, "aead_seal": 1, "ed25519_verify": 1 / 32},
    },
}


def ops_per_query(protocol: int) -> dict[str, float]:
    """Every process's operations of one query added up, by operation."""
    total: dict[str, float] = {}
    for ops in CRYPTO_OPS[protocol].values():
        for op, count in ops.items():
            total[op] = total.get(op, 0) + count
    return total


def crypto_ms(ops: dict[str, float], crypto_us: dict[str, float]) -> float:
    """The time of ``ops`` (operation -> count) at ``crypto_us`` each, in ms."""
    return sum(crypto_us[op] * count for op, count in ops.items()) / 1000


def overhead(
    ncbsim: dict[str, Any], floor: dict[str, Any], crypto_us: dict[str, float], protocol: int
) -> dict[str, float]:
    """ncbsim's own CPU per call in each process: its CPU per call less the floor's in the
    same place less the crypto that process does per query (ms). ``ncbsim`` and ``floor``
    are the figures of one mode (:func:`mode_figures`)."""
    return {
        process: round(
            ncbsim["cpu_ms_per_call"][role]
            - floor["cpu_ms_per_call"][role]
            - crypto_ms(CRYPTO_OPS[protocol][process], crypto_us),
            4,
        )
        for process, role in PROCESSES.items()
    }


# ----------------------------------------------------------------------------- figures


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values``, interpolated linearly between ranks."""
    if not values:
        raise ValueError("no values")
    if not 0 <= fraction <= 1:
        raise ValueError("fraction must lie between 0 and 1")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * fraction
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def crypto_bound_seq(floor_p50_ms: float, crypto_ms: float) -> float:
    """The best seq p50 ratio possible if ncbsim paid the floor's time plus its crypto."""
    return (floor_p50_ms + crypto_ms) / floor_p50_ms


def crypto_bound_throughput(floor_cpu_ms: float, crypto_ms: float) -> float:
    """The best throughput ratio on CPU-bound cores if each call also paid its crypto."""
    return floor_cpu_ms / (floor_cpu_ms + crypto_ms)


@dataclass(slots=True)
class Batch:
    """One timed batch: per-call latencies, wall time, failures and CPU per process role."""

    side: str
    mode: str  # "seq" or "c32"
    round: int
    latencies_ms: list[float]
    wall_s: float
    failures: int
    cpu_s: dict[str, float]


def mode_figures(batches: Sequence[Batch]) -> dict[str, Any]:
    """Figures of one side in one mode, pooled over its batches (one per round)."""
    latencies = [v for b in batches for v in b.latencies_ms]
    wall = sum(b.wall_s for b in batches)
    calls = len(latencies)
    cpu = {role: sum(b.cpu_s[role] for b in batches) for role in ROLES}
    cpu_ms = {role: round(seconds * 1000 / calls, 4) for role, seconds in cpu.items()}
    cpu_ms["total"] = round(sum(cpu.values()) * 1000 / calls, 4)
    return {
        "calls": calls,
        "failures": sum(b.failures for b in batches),
        "p50_ms": round(percentile(latencies, 0.50), 4),
        "p99_ms": round(percentile(latencies, 0.99), 4),
        "mean_ms": round(sum(latencies) / calls, 4),
        "calls_per_s": round(calls / wall, 1),
        "wall_s": round(wall, 3),
        "p50_ms_per_round": [round(percentile(b.latencies_ms, 0.5), 4) for b in batches],
        "calls_per_s_per_round": [round(len(b.latencies_ms) / b.wall_s, 1) for b in batches],
        "cpu_ms_per_call": cpu_ms,
        "busy_cores": round(sum(cpu.values()) / wall, 2),
    }


def _goal(value: float, target: float, *, at_most: bool) -> dict[str, Any]:
    met = value <= target if at_most else value >= target
    return {"goal": f"{'<=' if at_most else '>='} {target}", "value": value, "met": met}


def _round4(value: float) -> float:
    return round(value, 4)


def _round_figures(batches: Sequence[Batch], side: str, index: int) -> dict[str, float]:
    seq, c32 = (
        next(b for b in batches if (b.side, b.mode, b.round) == (side, mode, index))
        for mode in ("seq", "c32")
    )
    return {
        "seq_p50_ms": round(percentile(seq.latencies_ms, 0.5), 4),
        "c32_calls_per_s": round(len(c32.latencies_ms) / c32.wall_s, 1),
    }


def summarize(
    batches: Sequence[Batch],
    *,
    crypto_us: dict[str, float],
    orders: Sequence[Sequence[str]],
    protocol: int = 1,
) -> dict[str, Any]:
    """The ratios, goals, per-side figures, per-round figures, crypto bounds and ncbsim's
    own cost per process; ``protocol`` is the envelope format the client spoke."""
    figures = {
        side: {
            mode: mode_figures([b for b in batches if b.side == side and b.mode == mode])
            for mode in ("seq", "c32")
        }
        for side in ("ncbsim", "floor")
    }
    ncb, flo = figures["ncbsim"], figures["floor"]
    seq_p50 = _round4(ncb["seq"]["p50_ms"] / flo["seq"]["p50_ms"])
    c32_tput = _round4(ncb["c32"]["calls_per_s"] / flo["c32"]["calls_per_s"])
    per_query = ops_per_query(protocol)
    query_crypto_ms = crypto_ms(per_query, crypto_us)
    own = {mode: overhead(ncb[mode], flo[mode], crypto_us, protocol) for mode in ("seq", "c32")}
    rounds: list[dict[str, Any]] = []
    for index, order in enumerate(orders):
        ncb_round = _round_figures(batches, "ncbsim", index)
        flo_round = _round_figures(batches, "floor", index)
        rounds.append(
            {
                "round": index + 1,
                "order": list(order),
                "ncbsim": ncb_round,
                "floor": flo_round,
                "seq_p50_ratio": _round4(ncb_round["seq_p50_ms"] / flo_round["seq_p50_ms"]),
                "c32_throughput_ratio": _round4(
                    ncb_round["c32_calls_per_s"] / flo_round["c32_calls_per_s"]
                ),
            }
        )
    return {
        "seq_p50_ratio": seq_p50,
        "c32_throughput_ratio": c32_tput,
        "seq_p99_ratio": _round4(ncb["seq"]["p99_ms"] / flo["seq"]["p99_ms"]),
        "c32_p50_ratio": _round4(ncb["c32"]["p50_ms"] / flo["c32"]["p50_ms"]),
        "goals": {
            "seq_p50_ratio": _goal(seq_p50, SEQ_P50_GOAL, at_most=True),
            "c32_throughput_ratio": _goal(c32_tput, C32_THROUGHPUT_GOAL, at_most=False),
            "overhead_ms_per_call": {
                process: _goal(value, OVERHEAD_GOAL_MS, at_most=True)
                for process, value in own["seq"].items()
            },
        },
        "overhead_ms_per_call": own,
        "protocol": protocol,
        "crypto_bound_seq_p50_ratio": _round4(
            crypto_bound_seq(flo["seq"]["p50_ms"], query_crypto_ms)
        ),
        "crypto_bound_c32_throughput_ratio": _round4(
            crypto_bound_throughput(flo["c32"]["cpu_ms_per_call"]["total"], query_crypto_ms)
        ),
        "ncbsim": ncb,
        "floor": flo,
        "rounds": rounds,
        "stability": {
            key: {
                "min": min(r[key] for r in rounds),
                "median": _round4(percentile([r[key] for r in rounds], 0.5)),
                "max": max(r[key] for r in rounds),
            }
            for key in ("seq_p50_ratio", "c32_throughput_ratio")
        },
        "crypto": {
            "us_per_op": {op: round(us, 2) for op, us in crypto_us.items()},
            "ops_per_query": per_query,
            "ops_per_process": CRYPTO_OPS[protocol],
            "ms_per_query": round(query_crypto_ms, 4),
        },
    }


def summarize_observed(
    batches: Sequence[Batch], plain: dict[str, Any], *, events: int, dropped: int
) -> dict[str, Any]:
    """``--observe``: the observed side's figures and its ratios to plain ncbsim
    (``plain``, the ``ncbsim`` figures of :func:`summarize`) for p50 and throughput."""
    figures = {
        mode: mode_figures([b for b in batches if b.side == "observed" and b.mode == mode])
        for mode in ("seq", "c32")
    }
    return {
        **figures,
        "seq_p50_ratio": _round4(figures["seq"]["p50_ms"] / plain["seq"]["p50_ms"]),
        "c32_p50_ratio": _round4(figures["c32"]["p50_ms"] / plain["c32"]["p50_ms"]),
        "seq_throughput_ratio": _round4(
            figures["seq"]["calls_per_s"] / plain["seq"]["calls_per_s"]
        ),
        "c32_throughput_ratio": _round4(
            figures["c32"]["calls_per_s"] / plain["c32"]["calls_per_s"]
        ),
        "events": events,
        "dropped": dropped,
    }


def render_observed(report: dict[str, Any], console: Any) -> None:
    """The ``--observe`` line: observed and plain figures and their ratios."""
    obs, plain = report["observe"], report["ncbsim"]
    conc = report["parameters"]["concurrency"]
    console.print(
        f"Observed (the operator reading every event of the gateway and DE's node): "
        f"sequential p50 {obs['seq']['p50_ms']:.3f} ms against {plain['seq']['p50_ms']:.3f} "
        f"(ratio {obs['seq_p50_ratio']:.3f}); c{conc} {obs['c32']['calls_per_s']:,.0f} "
        f"calls/s against {plain['c32']['calls_per_s']:,.0f} (ratio "
        f"{obs['c32_throughput_ratio']:.3f}), p50 ratio {obs['c32_p50_ratio']:.3f}. "
        f"{obs['events']:,} events read, {obs['dropped']:,} dropped."
    )


# ----------------------------------------------------------------------------- the tables


def render_overhead(report: dict[str, Any], console: Any) -> None:
    """ncbsim's own CPU per call in each process, against its goal."""
    from rich import box
    from rich.table import Table

    own, goals = report["overhead_ms_per_call"], report["goals"]["overhead_ms_per_call"]
    conc = report["parameters"]["concurrency"]
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"ncbsim's own CPU per call in ms: its CPU less the floor's less its crypto "
        f"(envelope format {report['protocol']})",
    )
    for column in ("process", "sequential", f"c{conc}", "goal", "met"):
        table.add_column(column, justify="left" if column == "process" else "right")
    for process, goal in goals.items():
        table.add_row(
            process,
            f"{own['seq'][process]:.3f}",
            f"{own['c32'][process]:.3f}",
            goal["goal"],
            "[green]yes[/]" if goal["met"] else "[red]no[/]",
        )
    console.print(table)


def _spread(values: Sequence[float], digits: int) -> str:
    return f"{min(values):,.{digits}f}-{max(values):,.{digits}f}"


def render(report: dict[str, Any], console: Any) -> None:
    """Print the report as tables: both sides, the ratios against the goals, the crypto."""
    from rich import box
    from rich.table import Table

    params = report["parameters"]
    conc = params["concurrency"]
    console.print(
        f"[bold]ncbsim bench[/]: document checks {params['requester']} -> gateway -> "
        f"{params['responder']}, against the floor (a plain mTLS gRPC relay). "
        f"{params['rounds']} rounds, each side in turn: {params['seq_calls']} sequential "
        f"calls, then {params['c32_calls']} at concurrency {conc}."
    )
    columns = [(side, mode) for mode in ("seq", "c32") for side in ("ncbsim", "floor")]
    sides = Table(
        box=box.SIMPLE_HEAD,
        title="times in ms; for ncbsim the relay is the gateway and the server DE's node",
    )
    sides.add_column("")
    for side, mode in columns:
        label = "sequential" if mode == "seq" else f"c{conc}"
        sides.add_column(f"{side}\n{label}", justify="right")
    figures = [report[side][mode] for side, mode in columns]
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("calls (failed)", lambda f: f"{f['calls']:,} ({f['failures']})"),
        ("p50", lambda f: f"{f['p50_ms']:.3f}"),
        ("p99", lambda f: f"{f['p99_ms']:.3f}"),
        ("calls/s", lambda f: f"{f['calls_per_s']:,.0f}"),
        ("p50, rounds", lambda f: _spread(f["p50_ms_per_round"], 3)),
        ("calls/s, rounds", lambda f: _spread(f["calls_per_s_per_round"], 0)),
        ("CPU/call client", lambda f: f"{f['cpu_ms_per_call']['client']:.3f}"),
        ("CPU relay", lambda f: f"{f['cpu_ms_per_call']['relay']:.3f}"),
        ("CPU server", lambda f: f"{f['cpu_ms_per_call']['server']:.3f}"),
        ("CPU total", lambda f: f"{f['cpu_ms_per_call']['total']:.3f}"),
        ("busy cores", lambda f: f"{f['busy_cores']:.2f}"),
    ]
    for label, cell in rows:
        sides.add_row(label, *(cell(f) for f in figures))
    console.print(sides)

    ratios = Table(
        box=box.SIMPLE_HEAD,
        title="ncbsim / floor; median and range over the rounds; bound: the crypto's limit",
    )
    for column in ("ratio", "value", "median", "range", "goal", "met", "bound"):
        ratios.add_column(column, justify="left" if column == "ratio" else "right")
    for key, bound in (
        ("seq_p50_ratio", "crypto_bound_seq_p50_ratio"),
        ("c32_throughput_ratio", "crypto_bound_c32_throughput_ratio"),
    ):
        goal, spread = report["goals"][key], report["stability"][key]
        ratios.add_row(
            key,
            f"{report[key]:.3f}",
            f"{spread['median']:.3f}",
            f"{spread['min']:.3f}-{spread['max']:.3f}",
            goal["goal"],
            "[green]yes[/]" if goal["met"] else "[red]no[/]",
            f"{report[bound]:.3f}",
        )
    for key in ("seq_p99_ratio", "c32_p50_ratio"):
        ratios.add_row(key, f"{report[key]:.3f}", "", "", "", "", "")
    console.print(ratios)

    render_overhead(report, console)
    crypto = report["crypto"]
    counts = crypto["ops_per_query"]
    ops = ", ".join(f"{counts[op]:g} x {op} {us:.1f} µs" for op, us in crypto["us_per_op"].items())
    console.print(
        f"Crypto per query on the sequential path: {crypto['ms_per_query']:.3f} ms ({ops}). "
        f"Added to the floor's p50 of {report['floor']['seq']['p50_ms']:.3f} ms it allows at "
        f"best seq_p50_ratio {report['crypto_bound_seq_p50_ratio']:.3f}; added to the floor's "
        f"{report['floor']['c32']['cpu_ms_per_call']['total']:.3f} ms of CPU per call on "
        f"busy cores, at best c32_throughput_ratio "
        f"{report['crypto_bound_c32_throughput_ratio']:.3f}."
    )
    payload = report["payload"]
    env = report["environment"]
    outcomes = ", ".join(f"{n:,} {name}" for name, n in report["ncbsim"]["outcomes"].items())
    console.print(
        f"Payload bytes, request/response: ncbsim {payload['ncbsim']['request_bytes']:.1f}/"
        f"{payload['ncbsim']['response_bytes']:.1f} (mean), floor "
        f"{payload['floor']['request_bytes']}/{payload['floor']['response_bytes']}. "
        f"ncbsim answers: {outcomes}. Python {env['python']}, grpc {env['grpc']}, "
        f"{env['cpu_count']} CPUs."
    )
    if "observe" in report:
        render_observed(report, console)
