"""The figures of ``scripts/bench_classroom.py``: one line per phase, and the summary.

Pure functions of the phases' results (the load's latencies and outcomes, the page's
samples of ``window.ncbsimStats``, the CPU meters): percentiles, one printed line per
phase, and per phase kind the median p50 and p99, their spread (min-max) and the ratio to
the phases without the classroom (A).
"""

from __future__ import annotations

import statistics
from typing import Any


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def figures(r: dict[str, Any]) -> dict[str, Any]:
    """One phase's figures from its raw results."""
    single = r["single_ms"]
    failures = sum(v for k, v in r["outcomes"].items() if k.split(":")[-1] in _FAILED)
    fig: dict[str, Any] = {
        "phase": r["phase"],
        "p50": _percentile(single, 50),
        "p90": _percentile(single, 90),
        "p99": _percentile(single, 99),
        "queries": len(single),
        "all_queries": len(r["all_ms"]),
        "all_p50": _percentile(r["all_ms"], 50),
        "failures": failures,
        "planted_no_hit": r["planted_no_hit"],
        "skipped": r["skipped"],
        "gateway_cpu_pct": r["gateway_cpu_pct"],
    }
    samples = r.get("samples") or []
    if r["phase"] == "C" and samples:
        fig |= {
            "classroom_cpu_pct": r["classroom_cpu_pct"],
            "classroom_rss_mib": max(s["rss_mib"] for s in samples),
        }
    if r["phase"] == "B" and samples:
        fps = [s["fps"] for s in samples]
        rate = [s["events_per_s"] for s in samples]
        fig |= {
            "fps_median": statistics.median(fps),
            "fps_min": min(fps),
            "events_per_s": statistics.median(rate),
            "events": samples[-1]["events"],
            "arrows": samples[-1]["arrows"],
            "dropped": samples[-1]["dropped"],
            "lag_ms_median": statistics.median(s["lag_ms"] for s in samples),
            "lag_ms_max": max(s["lag_ms"] for s in samples),
            "classroom_cpu_pct": r["classroom_cpu_pct"],
            "classroom_rss_mib": max(s["rss_mib"] for s in samples),
            "browser_cpu_pct": r["browser_cpu_pct"],
            "page_open_s": r.get("page_open_s"),
            "page_errors": len(r.get("page_errors", [])),
        }
    return fig


_FAILED = {"no_answer", "failed", "error"}


def line(i: int, f: dict[str, Any]) -> str:
    """One phase's line (two for a phase with the page or the classroom)."""
    text = (
        f"{i:2d} {f['phase']}  p50 {f['p50']:6.1f}  p90 {f['p90']:6.1f}  p99 {f['p99']:7.1f} ms"
        f"  queries {f['queries']:4d}  failures {f['failures']}  skipped {f['skipped']}"
        f"  ALL p50 {f['all_p50']:5.0f} ms ({f['all_queries']})"
        f"  gateway CPU {f['gateway_cpu_pct']:3.0f}%"
    )
    if f["phase"] == "C" and "classroom_cpu_pct" in f:
        text += (
            f"\n      no browser: classroom CPU {f['classroom_cpu_pct']:.0f}%"
            f" RSS {f['classroom_rss_mib']:.0f} MiB"
        )
    if "fps_median" in f:
        text += (
            f"\n      page: fps median {f['fps_median']:.0f} min {f['fps_min']:.0f}"
            f"  events/s {f['events_per_s']:.0f}  arrows {f['arrows']}  dropped {f['dropped']}"
            f"  lag median {f['lag_ms_median']:.0f} max {f['lag_ms_max']:.0f} ms"
            f"  classroom CPU {f['classroom_cpu_pct']:.0f}% RSS {f['classroom_rss_mib']:.0f} MiB"
            f"  browser CPU {f['browser_cpu_pct']:.0f}%  opened in {f['page_open_s']} s"
            f"  page errors {f['page_errors']}"
        )
    return text


def summary(figs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per phase kind: the median p50 and p99 and their spread (min, max); the ratios of B
    (and C) to A; the page's frame and event rates over every B phase."""
    out: dict[str, Any] = {}
    for kind in sorted({f["phase"] for f in figs}):
        runs = [f for f in figs if f["phase"] == kind]
        out[kind] = {
            key: {
                "median": statistics.median(f[key] for f in runs),
                "spread": [min(f[key] for f in runs), max(f[key] for f in runs)],
            }
            for key in ("p50", "p99")
        }
        out[kind]["failures"] = sum(f["failures"] for f in runs)
        out[kind]["phases"] = len(runs)
    for kind in ("B", "C"):
        if kind in out and "A" in out:
            out[f"{kind}/A"] = {
                key: out[kind][key]["median"] / out["A"][key]["median"] for key in ("p50", "p99")
            }
    pages = [f for f in figs if "fps_median" in f]
    if pages:
        out["page"] = {
            "fps_median": statistics.median(f["fps_median"] for f in pages),
            "fps_min": min(f["fps_min"] for f in pages),
            "events_per_s": statistics.median(f["events_per_s"] for f in pages),
            "dropped": sum(f["dropped"] for f in pages),
            "lag_ms_median": statistics.median(f["lag_ms_median"] for f in pages),
            "classroom_cpu_pct": statistics.median(f["classroom_cpu_pct"] for f in pages),
            "browser_cpu_pct": statistics.median(f["browser_cpu_pct"] for f in pages),
        }
    return out


_NAMES = {"A": "without the classroom", "B": "with the page", "C": "classroom, no browser"}


def print_summary(s: dict[str, Any]) -> None:
    """Print the summary: per phase kind, then the page's figures."""
    a = s.get("A")
    for kind in ("A", "B", "C"):
        if kind not in s:
            continue
        v = s[kind]
        text = f"{kind} ({_NAMES[kind]}, {v['phases']} phases):"
        for key in ("p50", "p99"):
            low, high = v[key]["spread"]
            text += f"  {key} median {v[key]['median']:.1f} ms (spread {low:.1f}-{high:.1f})"
        text += f"  failures {v['failures']}"
        if a is not None and kind != "A":
            ratio = s[f"{kind}/A"]
            inside = [
                "yes" if a[key]["spread"][0] <= v[key]["median"] <= a[key]["spread"][1] else "no"
                for key in ("p50", "p99")
            ]
            text += (
                f"\n    ratio to A: p50 {ratio['p50']:.2f}, p99 {ratio['p99']:.2f}; median inside"
                f" A's spread: p50 {inside[0]}, p99 {inside[1]}"
            )
        print(text)
    if "page" in s:
        pg = s["page"]
        print(
            f"page: fps median {pg['fps_median']:.0f} (min {pg['fps_min']:.0f}),"
            f" {pg['events_per_s']:.0f} events/s received, {pg['dropped']} dropped,"
            f" arrow lag median {pg['lag_ms_median']:.0f} ms; CPU: classroom"
            f" {pg['classroom_cpu_pct']:.0f}%, browser {pg['browser_cpu_pct']:.0f}% of one core"
        )
