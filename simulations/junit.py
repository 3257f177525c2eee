"""``simulate --junit PATH``: a run's checks as JUnit XML, the format CI systems read.

One ``<testsuite>`` (named after the scenario) in a ``<testsuites>`` root, one
``<testcase>`` per check, built-in and the scenario's own, in the report's order. A failed
check has a ``<failure>`` whose message is the check's detail and whose text adds its
expression. The suite's ``time`` is the run's duration and its ``timestamp`` when it
started; test cases carry no time, since every check is evaluated at once on the finished
run. ``<properties>`` name the scenario, its seed and file, and the run directory.

Written with :mod:`xml.etree.ElementTree` from the finished report, so a run in network
namespaces gets the same file.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["write"]

# Characters XML 1.0 cannot hold at all; a detail never should, but one must not break CI.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value: Any) -> str:
    return _NOT_XML.sub("?", str(value))


def _properties(parent: ET.Element, values: Mapping[str, Any]) -> None:
    properties = ET.SubElement(parent, "properties")
    for name, value in values.items():
        if value is not None:
            ET.SubElement(properties, "property", name=name, value=_text(value))


def tree(
    report: Mapping[str, Any], *, seed: int, scenario_file: Path | None, started: dt.datetime
) -> ET.ElementTree[ET.Element]:
    """The JUnit XML document of a finished report (with ``checks`` and ``duration_s``)."""
    checks = list(report.get("checks", []))
    failures = sum(not c.get("passed") for c in checks)
    name = _text(report.get("scenario", "scenario"))
    duration = f"{float(report.get('duration_s') or 0.0):.3f}"
    root = ET.Element(
        "testsuites",
        name="ncbsim simulate",
        tests=str(len(checks)),
        failures=str(failures),
        errors="0",
        time=duration,
    )
    suite = ET.SubElement(
        root,
        "testsuite",
        name=name,
        tests=str(len(checks)),
        failures=str(failures),
        errors="0",
        skipped="0",
        time=duration,
        timestamp=started.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
    )
    _properties(
        suite,
        {
            "scenario": report.get("scenario"),
            "seed": seed,
            "scenario_file": scenario_file,
            "run_dir": report.get("run_dir"),
            "passed": str(bool(report.get("passed"))).lower(),
        },
    )
    for check in checks:
        case = ET.SubElement(
            suite, "testcase", name=_text(check.get("name", "")), classname=f"simulate.{name}"
        )
        if not check.get("passed"):
            failure = ET.SubElement(
                case, "failure", message=_text(check.get("detail", "")), type="CheckFailed"
            )
            expect = check.get("expect") or "(built-in check)"
            failure.text = _text(f"expect: {expect}\n{check.get('detail', '')}")
    ET.indent(root)
    return ET.ElementTree(root)


def write(
    path: Path,
    report: Mapping[str, Any],
    *,
    seed: int,
    scenario_file: Path | None,
    started: dt.datetime,
) -> None:
    """Write the report's checks to ``path`` as JUnit XML (parent folders created)."""
    document = tree(report, seed=seed, scenario_file=scenario_file, started=started)
    path.parent.mkdir(parents=True, exist_ok=True)
    document.write(path, encoding="utf-8", xml_declaration=True)
