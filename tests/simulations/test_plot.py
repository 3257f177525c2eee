"""latency.png: a real PNG of about 1200 x 600 pixels, with or without queries."""

from __future__ import annotations

import random
from pathlib import Path

from matplotlib import image

from simulations.outcomes import AnswerRecord, FaultRecord, QueryRecord
from simulations.plot import latency_bounds, latency_png

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
    latency_png(
        path,
        title="partition-heal: query latency",
        queries=_queries(600),
        faults=faults,
        run_end_s=30.0,
        checks=checks,
    )
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert _dimensions(path) == (1200, 600)
    print(path, path.stat().st_size, "bytes")


def test_plot_with_nothing(tmp_path: Path) -> None:
    """No queries, faults or checks still give a valid 1200x600 PNG."""
    path = tmp_path / "empty.png"
    latency_png(path, title="empty", queries=[], faults=[], run_end_s=0.0, checks=[])
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
