"""``latency.png``: query latency over a run, with fault windows shaded and checks marked.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no global
state), so it is safe in tests, threads and headless CI.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from simulations.outcomes import ANSWERED, FaultRecord, QueryRecord

__all__ = ["latency_bounds", "latency_png"]

_WIDTH_IN, _HEIGHT_IN, _DPI = 12.0, 6.0, 100  # 1200 x 600 pixels
_KIND_COLOURS = {
    "document": "tab:blue",
    "person": "tab:green",
    "vehicle": "tab:purple",
    "multi": "tab:orange",
    "fetch": "tab:cyan",
}
_FAULT_COLOURS = ("tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive")
#: A bound on the run's overall latency, such as ``latency_ms.p99 < 250`` (or ``.max``).
_LATENCY_CHECK = re.compile(r"(?<![\w.])latency_ms\.(?:p\d+|max)\s*<=?\s*(\d+(?:\.\d+)?)")
_WIDE_RANGE = 50.0  # max/min ratio above which the y axis is logarithmic
_MAX_CHECKS_LISTED = 18


def _rolling(
    times: np.ndarray[Any, np.dtype[np.float64]],
    values: np.ndarray[Any, np.dtype[np.float64]],
    run_end_s: float,
) -> tuple[list[float], list[float], list[float]]:
    """Rolling p50 and p99 over windows of ``width`` seconds, every ``width / 2`` seconds."""
    width = max(2.0, run_end_s / 60)
    xs: list[float] = []
    p50: list[float] = []
    p99: list[float] = []
    centre = width / 2
    while centre - width / 2 <= run_end_s:
        inside = values[(times >= centre - width / 2) & (times < centre + width / 2)]
        if inside.size:
            xs.append(centre)
            p50.append(float(np.percentile(inside, 50)))
            p99.append(float(np.percentile(inside, 99)))
        centre += width / 2
    return xs, p50, p99


def latency_bounds(checks: Sequence[dict[str, Any]]) -> list[tuple[float, str, bool]]:
    """(bound in ms, the bounding text, passed) for every overall latency bound in checks.

    ``latency_ms.p99 < 250 and latency_ms.p50 <= 20`` gives two bounds; paths such as
    ``kinds.fetch.latency_ms.p99`` are not overall latency and give none.
    """
    return [
        (float(match.group(1)), match.group(0), bool(c.get("passed")))
        for c in checks
        for match in _LATENCY_CHECK.finditer(str(c.get("expect", "")))
    ]


def _checks_text(checks: Sequence[dict[str, Any]]) -> str:
    lines = []
    for c in checks[:_MAX_CHECKS_LISTED]:
        name = str(c.get("name", ""))
        if len(name) > 34:
            name = name[:33] + "…"
        lines.append(f"{'PASS' if c.get('passed') else 'FAIL'}  {name}")
    if len(checks) > _MAX_CHECKS_LISTED:
        lines.append(f"... and {len(checks) - _MAX_CHECKS_LISTED} more (report.json)")
    return "checks\n" + "\n".join(lines) if lines else "no checks"


def latency_png(
    path: Path,
    *,
    title: str,
    queries: Sequence[QueryRecord],
    faults: Sequence[FaultRecord],
    run_end_s: float,
    checks: Sequence[dict[str, Any]],
) -> None:
    """Draw query latency over the run to ``path`` (a PNG of 1200 x 600 pixels).

    x is when each query was sent, y its latency (logarithmic if the range is wide).
    Fully answered queries are dots coloured by kind; queries with any no-answer, error or
    failed answer are red crosses. Rolling p50 and p99 lines follow the run. Fault windows
    are shaded and labelled (a fault never healed lasts until ``run_end_s``). Every check
    whose expectation bounds ``latency_ms.pNN`` or ``latency_ms.max`` draws a dashed line
    at its bound (green if it passed, red if not), and a box lists every check with PASS
    or FAIL. Bounds on per-kind or per-bureau latency are not drawn (the plot is of every
    query). Works with no queries at all.
    """
    figure = Figure(figsize=(_WIDTH_IN, _HEIGHT_IN), dpi=_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.06, 0.1, 0.66, 0.8))
    axes.set_title(title)
    axes.set_xlabel("sent at (s since traffic start)")
    axes.set_ylabel("latency (ms)")
    end = max([run_end_s, *(q.sent_s for q in queries)], default=run_end_s)
    axes.set_xlim(0.0, max(end, 1.0))

    good = [q for q in queries if all(a.outcome in ANSWERED for a in q.answers)]
    bad = [q for q in queries if not all(a.outcome in ANSWERED for a in q.answers)]
    order = list(_KIND_COLOURS)
    kinds = sorted({q.kind for q in good}, key=lambda k: (order.index(k) if k in order else 99, k))
    for kind in kinds:
        mine = [q for q in good if q.kind == kind]
        axes.scatter(
            [q.sent_s for q in mine],
            [q.latency_ms for q in mine],
            s=6,
            color=_KIND_COLOURS.get(kind, "tab:gray"),
            label=f"{kind} ({len(mine)})",
            alpha=0.7,
            linewidths=0,
        )
    if bad:
        axes.scatter(
            [q.sent_s for q in bad],
            [q.latency_ms for q in bad],
            s=18,
            marker="x",
            color="red",
            label=f"no-answer/failed ({len(bad)})",
            linewidths=1,
        )
    if good:
        times = np.array([q.sent_s for q in good], dtype=np.float64)
        values = np.array([q.latency_ms for q in good], dtype=np.float64)
        xs, p50, p99 = _rolling(times, values, end)
        axes.plot(xs, p50, color="black", linewidth=1.2, label="rolling p50")
        axes.plot(xs, p99, color="black", linewidth=1.2, linestyle=":", label="rolling p99")

    latencies = [q.latency_ms for q in queries if q.latency_ms > 0]
    bounds = latency_bounds(checks)
    levels = latencies + [b for b, _, _ in bounds if b > 0]
    if levels and max(levels) / min(levels) > _WIDE_RANGE:
        axes.set_yscale("log")
    elif not levels:
        axes.set_ylim(0.0, 100.0)
    if not queries:
        axes.text(0.5, 0.5, "no queries", transform=axes.transAxes, ha="center", color="0.5")

    top = blended_transform_factory(axes.transData, axes.transAxes)
    for i, fault in enumerate(sorted(faults, key=lambda f: f.start_s)):
        fault_end = run_end_s if fault.end_s is None else fault.end_s
        colour = _FAULT_COLOURS[i % len(_FAULT_COLOURS)]
        axes.axvspan(fault.start_s, max(fault_end, fault.start_s + 0.05), color=colour, alpha=0.15)
        axes.text(
            fault.start_s,
            0.98 - 0.05 * (i % 4),
            f" {fault.id} ({fault.kind})",
            transform=top,
            fontsize=8,
            color=colour,
            va="top",
            ha="left",
        )
    right = blended_transform_factory(axes.transAxes, axes.transData)
    for bound, text, passed in bounds:
        colour = "tab:green" if passed else "tab:red"
        axes.axhline(bound, color=colour, linestyle="--", linewidth=1)
        axes.text(
            0.995, bound, text, transform=right, fontsize=8, color=colour, ha="right", va="bottom"
        )
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    axes.grid(True, alpha=0.3)
    figure.text(
        0.745,
        0.1,
        _checks_text(checks),
        fontsize=8,
        family="monospace",
        va="bottom",
        ha="left",
        bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.7"},
    )
    figure.savefig(path, format="png")
