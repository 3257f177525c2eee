"""A run directory: its default name, making it, writing what a run leaves there, removing
it empty.

``report.json`` (the report, docs/scenarios.md), ``timeline.jsonl`` (one event of the
schema per line, ncbsim.simulations.run_events, in time order) and ``latency.png``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ncbsim.errors import cannot_write
from ncbsim.events import ViewValue
from ncbsim.simulations import plot, run_events
from ncbsim.simulations.outcomes import RunResult

RUNS = Path("runs")


def default_run_dir(name: str) -> Path:
    """runs/NAME-YYYYmmddTHHMMSSZ under the current directory."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return RUNS / f"{name}-{stamp}"


def create(folder: Path) -> bool:
    """Make the run directory (and its parents) before the run; True if this made it.

    NcbsimError (``FOLDER: cannot write: REASON``) if it cannot be made.
    """
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cannot_write(folder, exc) from None
    return created


def remove_if_empty(folder: Path, created: bool) -> None:
    """Remove the run directory this run created if it holds nothing (never one with files)."""
    if created and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def write(
    folder: Path,
    report: dict[str, Any],
    result: RunResult,
    checks: Sequence[dict[str, Any]],
    checked_s: float,
    *,
    report_path: Path | None,
) -> None:
    """report.json (and its copy), timeline.jsonl in time order, latency.png.

    NcbsimError (``PATH: cannot write: REASON``) names a file that cannot be written.
    """
    try:
        _write(folder, report, result, checks, checked_s, report_path=report_path)
    except OSError as exc:
        raise cannot_write(exc.filename or folder, exc) from None


def _write(
    folder: Path,
    report: dict[str, Any],
    result: RunResult,
    checks: Sequence[dict[str, Any]],
    checked_s: float,
    *,
    report_path: Path | None,
) -> None:
    text = json.dumps(report, indent=2) + "\n"
    (folder / "report.json").write_text(text)
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(text)
    # The checks are made once the network is down and the results are in: that is their
    # time. Each is named by its place in report.json's checks (a name is free text).
    for i, c in enumerate(checks):
        view: dict[str, ViewValue] = {"phase": "check", "check": i, "passed": c["passed"]}
        result.recorder.emit("scenario.phase", view, t_s=checked_s)
    run_events.write(folder / "timeline.jsonl", result.timeline)
    plot.latency_png(
        folder / "latency.png",
        title=f"{report['scenario']}: answer latency",
        queries=result.queries,
        faults=result.faults,
        run_end_s=result.run_end_s,
        checks=checks,
        report=report,
    )
