"""``simulate --junit PATH``: a run's checks as JUnit XML, the format CI systems read.

One ``<testsuite>`` (named after the scenario) in a ``<testsuites>`` root, one
``<testcase>`` per check, built-in and the scenario's own, in the report's order. A failed
check has a ``<failure>`` whose message is the check's detail and whose text adds its
expression. The suite's ``time`` is the run's duration and its ``timestamp`` when it
started; test cases carry no time, since every check is evaluated at once on the finished
run. ``<properties>`` name the scenario, its seed and file, and the run directory.

Built from the finished report with the shared writer :mod:`ncbsim.junit`, so a run in
network namespaces gets the same file, and so does ``ncbsim load --junit``'s layout.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ncbsim import junit

__all__ = ["suite", "write"]


def _case(check: Mapping[str, Any], classname: str) -> junit.Case:
    detail = str(check.get("detail", ""))
    if check.get("passed"):
        return junit.Case(name=str(check.get("name", "")), classname=classname)
    expect = check.get("expect") or "(built-in check)"
    return junit.Case(
        name=str(check.get("name", "")),
        classname=classname,
        failure=detail or "failed",
        detail=f"expect: {expect}\n{detail}",
    )


def suite(
    report: Mapping[str, Any], *, seed: int, scenario_file: Path | None, started: dt.datetime
) -> junit.Suite:
    """The JUnit suite of a finished report (with ``checks`` and ``duration_s``)."""
    name = str(report.get("scenario", "scenario"))
    properties = {
        "scenario": report.get("scenario"),
        "seed": seed,
        "scenario_file": scenario_file,
        "run_dir": report.get("run_dir"),
        "passed": str(bool(report.get("passed"))).lower(),
    }
    return junit.Suite(
        name=name,
        cases=[_case(check, f"simulate.{name}") for check in report.get("checks", [])],
        time_s=float(report.get("duration_s") or 0.0),
        timestamp=started.astimezone(dt.UTC).replace(microsecond=0),
        properties={key: str(value) for key, value in properties.items() if value is not None},
    )


def write(
    path: Path,
    report: Mapping[str, Any],
    *,
    seed: int,
    scenario_file: Path | None,
    started: dt.datetime,
) -> None:
    """Write the report's checks to ``path`` as JUnit XML (parent folders created)."""
    junit.write(path, suite(report, seed=seed, scenario_file=scenario_file, started=started))
