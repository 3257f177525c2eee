"""latency.png: a real PNG of 1200 x 600 pixels, with or without queries, whose legend
counts what the report counts and whose series differ in greyscale too."""

from __future__ import annotations

import random
from pathlib import Path

from matplotlib import image

from ncbsim.simulations import report as reports
from ncbsim.simulations.outcomes import AnswerRecord, FaultRecord, QueryRecord
from ncbsim.simulations.plot import figure, latency_bounds, latency_png, series

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _queries(n: int) -> list[QueryRecord]:
    """``n`` queries over 30 s, the ones sent during 10-20 s to DE unanswered."""
    rng = random.Random(5)
    out = []
    for i in range(n):
        sent = 30.0 * i / n
        cut = 10.0 <= sent < 20.0
        kind = ("document", "person", "vehicle", "multi", "fetch")[i % 5]
        latency = 2000.0 if cut else rng.lognormvariate(2.5, 0.5)
        outcome = "no_answer" if cut else "hit"
        out.append(
            QueryRecord(
                label=f"{kind}-{i}",
                kind=kind,
                requester="FR",
                sent_s=sent,
                done_s=sent + latency / 1000,
                latency_ms=latency,
                answers=(AnswerRecord("DE", outcome, latency), AnswerRecord("IT", "no_hit", 5.0)),
            )
        )
    return out


def _dimensions(path: Path) -> tuple[int, int]:
    """(width, height) in pixels of the PNG at ``path``, read back by matplotlib."""
    pixels = image.imread(path)
    return pixels.shape[1], pixels.shape[0]


def test_plot_with_faults_and_checks(tmp_path: Path) -> None:
    """Queries, a healed and an unhealed fault and latency checks give a 1200x600 PNG."""
    faults = [
        FaultRecord(
            id="cut-DE",
            kind="partition",
            bureaus=("DE",),
            direction="both",
            params={},
            start_s=10.0,
            end_s=20.0,
        ),
        FaultRecord(
            id="slow-IT",
            kind="latency",
            bureaus=("IT",),
            direction="down",
            params={"ms": 50.0},
            start_s=25.0,
            end_s=None,
        ),
    ]
    checks = [
        {"name": "p99 bound", "passed": True, "expect": "latency_ms.p99 < 250", "detail": ""},
        {"name": "p50 bound", "passed": False, "expect": "latency_ms.p50 <= 5", "detail": ""},
        {"name": "no failures", "passed": True, "expect": "queries.failed == 0", "detail": ""},
    ]
    path = tmp_path / "latency.png"
    queries = _queries(600)
    latency_png(
        path,
        title="partition-heal: query latency",
        queries=queries,
        faults=faults,
        run_end_s=30.0,
        checks=checks,
        report=_report(queries),
    )
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert _dimensions(path) == (1200, 600)


def test_plot_with_nothing(tmp_path: Path) -> None:
    """No queries, faults or checks still give a valid 1200x600 PNG."""
    path = tmp_path / "empty.png"
    latency_png(
        path, title="empty", queries=[], faults=[], run_end_s=0.0, checks=[], report=_report([])
    )
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert _dimensions(path) == (1200, 600)


def test_latency_bounds_found_in_check_expressions() -> None:
    """Overall pNN/max bounds become lines; other paths and comparisons do not."""
    checks = [
        {"passed": True, "expect": "latency_ms.p99 < 250 and latency_ms.p50 <= 20.5"},
        {"passed": False, "expect": "latency_ms.max<2500"},
        {"passed": True, "expect": "kinds.fetch.latency_ms.p99 < 100"},
        {"passed": True, "expect": "latency_ms.p99 > 1"},
        {"passed": True},
    ]
    assert latency_bounds(checks) == [
        (250.0, "latency_ms.p99 < 250", True),
        (20.5, "latency_ms.p50 <= 20.5", True),
        (2500.0, "latency_ms.max<2500", False),
    ]


def _mixed() -> list[QueryRecord]:
    """Every kind, multi queries to three bureaus, and answers of every outcome."""
    out = _queries(200)
    outcomes = ("hit", "no_answer", "failed", "error", "record", "no_hit")
    for i in range(12):
        answers = tuple(
            AnswerRecord(b, outcomes[(i + j) % len(outcomes)], 10.0 + i + j)
            for j, b in enumerate(("DE", "IT", "NL"))
        )
        out.append(QueryRecord(f"multi-x{i}", "multi", "FR", 1.0 + i, 1.1 + i, 30.0, answers))
    return out


def _report(queries: list[QueryRecord]) -> dict[str, object]:
    return reports.build(
        scenario="t",
        bureaus=["FR", "DE", "IT", "NL"],
        kinds=["document", "person", "vehicle", "multi", "fetch"],
        queries=queries,
        faults=[],
        run_end_s=30.0,
        timings={},
        extra={},
    )


def test_legend_counts_are_the_reports_counts() -> None:
    """Each legend label carries the number the summary's tables show: answered pairs per
    kind (kinds.<kind>.queries.answered), queries.no_answer and queries.failed; and each
    series draws exactly that many points (issue 15: "multi (6)" against 11)."""
    queries = _mixed()
    report = _report(queries)
    drawn = series(queries, report)
    kinds = report["kinds"]
    assert isinstance(kinds, dict)
    expected = {f"{kind}: {entry['queries']['answered']} answered" for kind, entry in kinds.items()}
    totals = report["queries"]
    assert isinstance(totals, dict)
    expected |= {f"no answer: {totals['no_answer']}", f"failed: {totals['failed']}"}
    assert {s.label for s in drawn} == expected
    for s in drawn:
        assert len(s.xs) == len(s.ys) == s.count, s.label
    assert sum(s.count for s in drawn) == totals["sent"]  # every pair, once
    multi = next(s for s in drawn if s.label.startswith("multi"))
    assert multi.count == kinds["multi"]["queries"]["answered"] > 0


def test_the_drawn_legend_is_the_series_and_the_rolling_lines() -> None:
    """The figure's legend lists the series' labels, then the two rolling lines."""
    queries = _mixed()
    report = _report(queries)
    fig = figure(title="t", queries=queries, faults=[], run_end_s=30.0, checks=[], report=report)
    legend = fig.axes[0].get_legend()
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels == [s.label for s in series(queries, report)] + [
        "rolling p50 of query latency",
        "rolling p99 of query latency",
    ]


def test_every_series_is_told_apart_without_colour() -> None:
    """Each series has its own marker (so greyscale tells them apart) and its own colour;
    document and fetch, no-answer and failed, are no longer alike; the rolling lines
    differ by line style and the fault windows by hatching."""
    queries = _mixed()
    drawn = series(queries, _report(queries))
    markers = [s.marker for s in drawn]
    colours = [s.colour.lower() for s in drawn]
    assert len(set(markers)) == len(drawn)
    assert len(set(colours)) == len(drawn)
    assert len({(s.marker, s.colour) for s in drawn}) == len(drawn)
    faults = [
        FaultRecord(f"f{i}", "partition", ("DE",), "both", {}, 2.0 * i, 2.0 * i + 1)
        for i in range(6)
    ]
    fig = figure(
        title="t",
        queries=queries,
        faults=faults,
        run_end_s=30.0,
        checks=[],
        report=_report(queries),
    )
    styles = [line.get_linestyle() for line in fig.axes[0].get_lines()]
    assert len(styles) == len(set(styles)) == 2
    hatches = [patch.get_hatch() for patch in fig.axes[0].patches]
    assert len(hatches) == len(set(hatches)) == 6  # each fault window its own hatching
