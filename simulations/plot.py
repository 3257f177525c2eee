"""``latency.png``: answer latency over a run, with fault windows shaded and checks marked.

One point per (query, recipient) pair, as the report counts them: the answered pairs of
each kind, then every pair with no answer and every failed one. Each legend entry gives
the report's own count of its points (``kinds.<kind>.queries.answered``,
``queries.no_answer``, ``queries.failed``), the numbers of the summary's tables. Every
series has a marker of its own as well as a colour of its own, from the Okabe-Ito palette
(safe for colour-blind readers), so the plot reads in greyscale too; the rolling lines
and the fault windows differ by line style and hatching.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no global
state), so it is safe in tests, threads and headless CI.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from ncbsim.simulations.outcomes import ANSWERED, FaultRecord, QueryRecord

__all__ = ["Series", "figure", "latency_bounds", "latency_png", "series"]

_WIDTH_IN, _HEIGHT_IN, _DPI = 12.0, 6.0, 100  # 1200 x 600 pixels
# Okabe & Ito's palette: told apart with any colour vision, and each with its own marker.
_KIND_STYLES = {
    "document": ("#0072B2", "o"),  # blue, circle
    "person": ("#009E73", "s"),  # bluish green, square
    "vehicle": ("#CC79A7", "^"),  # reddish purple, triangle up
    "multi": ("#E69F00", "D"),  # orange, diamond
    "fetch": ("#56B4E9", "v"),  # sky blue, triangle down
}
_OTHER_KIND = ("#999999", "P")  # grey, filled plus: a kind this module does not know
_OUTCOME_STYLES = {
    "no_answer": ("#D55E00", "x"),  # vermillion, cross
    "failed": ("#000000", "*"),  # black, star
}
_ROLLING = {"p50": "-", "p99": ":"}  # solid and dotted black lines
# Fault windows in greys, told apart by their hatching: no colour of a series is reused.
_FAULT_STYLES = (
    ("#6e6e6e", "//"),
    ("#8c8c8c", "\\\\"),
    ("#5a5a5a", "xx"),
    ("#a0a0a0", ".."),
    ("#787878", "++"),
    ("#969696", "--"),
)
_BOUND_STYLES = {True: ("#009E73", "--"), False: ("#D55E00", "-.")}  # passed, failed
#: A bound on the run's overall latency, such as ``latency_ms.p99 < 250`` (or ``.max``).
_LATENCY_CHECK = re.compile(r"(?<![\w.])latency_ms\.(?:p\d+|max)\s*<=?\s*(\d+(?:\.\d+)?)")
_WIDE_RANGE = 50.0  # max/min ratio above which the y axis is logarithmic
_MAX_CHECKS_LISTED = 18


@dataclass(frozen=True, slots=True)
class Series:
    """One scatter series of the plot: its legend label and count, style and points."""

    label: str
    count: int  # the report's count of these pairs, shown in the label
    colour: str
    marker: str
    xs: list[float] = field(default_factory=list)  # when each pair's query was sent, s
    ys: list[float] = field(default_factory=list)  # each pair's answer latency, ms


def series(queries: Sequence[QueryRecord], report: Mapping[str, Any]) -> list[Series]:
    """The scatter series: answered pairs by kind, then pairs with no answer, failed pairs.

    Labels carry the counts of ``report`` (made from ``queries``), so the legend says what
    the summary's tables say.
    """
    out: list[Series] = []
    for kind, entry in report.get("kinds", {}).items():
        colour, marker = _KIND_STYLES.get(kind, _OTHER_KIND)
        count = int(entry.get("queries", {}).get("answered", 0))
        answered = [
            (q.sent_s, a.latency_ms)
            for q in queries
            if q.kind == kind
            for a in q.answers
            if a.outcome in ANSWERED
        ]
        out.append(
            Series(
                f"{kind}: {count} answered",
                count,
                colour,
                marker,
                [x for x, _ in answered],
                [y for _, y in answered],
            )
        )
    totals = report.get("queries", {})
    for outcome, name in (("no_answer", "no answer"), ("failed", "failed")):
        colour, marker = _OUTCOME_STYLES[outcome]
        count = int(totals.get(outcome, 0))
        pairs = [  # counts(): failed is every outcome but answered and no_answer
            (q.sent_s, a.latency_ms)
            for q in queries
            for a in q.answers
            if a.outcome not in ANSWERED and (a.outcome == "no_answer") == (outcome == "no_answer")
        ]
        out.append(
            Series(
                f"{name}: {count}",
                count,
                colour,
                marker,
                [x for x, _ in pairs],
                [y for _, y in pairs],
            )
        )
    return out


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


def figure(
    *,
    title: str,
    queries: Sequence[QueryRecord],
    faults: Sequence[FaultRecord],
    run_end_s: float,
    checks: Sequence[dict[str, Any]],
    report: Mapping[str, Any],
) -> Figure:
    """The plot of the run (1200 x 600 pixels); :func:`latency_png` saves it.

    x is when each pair's query was sent, y the pair's answer latency (logarithmic if the
    range is wide), one point per (query, recipient) pair: :func:`series`. Rolling p50 and
    p99 of the queries' latency (as ``latency_ms`` counts it: a query until its last
    answer) follow the run, solid and dotted. Fault windows are shaded, hatched and
    labelled (a fault never healed lasts until ``run_end_s``). Every check whose
    expectation bounds ``latency_ms.pNN`` or ``latency_ms.max`` draws a line at its bound
    (green dashed if it passed, vermillion dash-dotted if not), and a box lists every
    check with PASS or FAIL. Bounds on per-kind or per-bureau latency are not drawn.
    Works with no queries at all.
    """
    fig = Figure(figsize=(_WIDTH_IN, _HEIGHT_IN), dpi=_DPI)
    FigureCanvasAgg(fig)
    axes = fig.add_axes((0.06, 0.1, 0.66, 0.8))
    axes.set_title(title)
    axes.set_xlabel("query sent at (s since traffic start)")
    axes.set_ylabel("answer latency (ms), one point per (query, recipient) pair")
    end = max([run_end_s, *(q.sent_s for q in queries)], default=run_end_s)
    axes.set_xlim(0.0, max(end, 1.0))

    for item in series(queries, report):
        axes.scatter(
            item.xs,
            item.ys,
            s=16 if item.marker in "x*" else 10,
            marker=item.marker,
            color=item.colour,
            label=item.label,
            alpha=0.75,
            linewidths=0.8 if item.marker in "x*" else 0,
        )
    if queries:
        times = np.array([q.sent_s for q in queries], dtype=np.float64)
        values = np.array([q.latency_ms for q in queries], dtype=np.float64)
        xs, p50, p99 = _rolling(times, values, end)
        for name, line in zip(("p50", "p99"), (p50, p99), strict=True):
            label = f"rolling {name} of query latency"
            axes.plot(xs, line, color="black", linewidth=1.2, linestyle=_ROLLING[name], label=label)

    latencies = [a.latency_ms for q in queries for a in q.answers if a.latency_ms > 0]
    latencies += [q.latency_ms for q in queries if q.latency_ms > 0]
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
        colour, hatch = _FAULT_STYLES[i % len(_FAULT_STYLES)]
        axes.axvspan(
            fault.start_s,
            max(fault_end, fault.start_s + 0.05),
            facecolor=colour,
            edgecolor=colour,
            hatch=hatch,
            alpha=0.15,
            linewidth=0,
        )
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
        colour, style = _BOUND_STYLES[passed]
        axes.axhline(bound, color=colour, linestyle=style, linewidth=1)
        axes.text(
            0.995, bound, text, transform=right, fontsize=8, color=colour, ha="right", va="bottom"
        )
    if axes.get_legend_handles_labels()[0]:
        axes.legend(
            loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, markerscale=2
        )
    axes.grid(True, alpha=0.3)
    fig.text(
        0.745,
        0.1,
        _checks_text(checks),
        fontsize=8,
        family="monospace",
        va="bottom",
        ha="left",
        bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.7"},
    )
    return fig


def latency_png(
    path: Path,
    *,
    title: str,
    queries: Sequence[QueryRecord],
    faults: Sequence[FaultRecord],
    run_end_s: float,
    checks: Sequence[dict[str, Any]],
    report: Mapping[str, Any],
) -> None:
    """Draw the run to ``path``: a PNG of 1200 x 600 pixels (see :func:`figure`)."""
    drawn = figure(
        title=title,
        queries=queries,
        faults=faults,
        run_end_s=run_end_s,
        checks=checks,
        report=report,
    )
    drawn.savefig(path, format="png")
