"""Every built-in scenario, run for real with the CLI (shortened to a few seconds, on small
records), writes a report whose paths are exactly the schema's for that scenario, a JUnit
file an independent reader (junitparser) accepts with the report's counts, and a timeline
of events of the schema whose traffic ends before the network goes down and whose checks
come last (the timeline's writing itself is tests/simulations/test_run_events.py's).

Shortening keeps what decides the report's shape: the bureaus (all-members aside, cut to
six), the traffic mix, the fetch and hit ratios, the messages and every event, their
times scaled down. Each run adds one check that fails, so every JUnit file has failures.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import junitparser
import pytest

from ncbsim.simulations import paths as report_paths
from ncbsim.simulations import run_events, scenario

pytestmark = pytest.mark.integration

SHORT_S = 4.0
FAILING = {"name": "deliberately failing check", "expect": "requests < 0"}


def _toml(value: Any) -> str:
    """TOML for the values a scenario holds: inline tables and arrays, JSON-quoted strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


def shortened(name: str, folder: Path) -> Path:
    """Built-in scenario ``name``, shortened to about SHORT_S seconds, as a file."""
    data = tomllib.loads(scenario.resolve(name).read_text())
    traffic = data.setdefault("traffic", {})
    factor = min(1.0, SHORT_S / traffic.get("duration_s", 15.0))
    traffic["duration_s"] = traffic.get("duration_s", 15.0) * factor
    for event in data.get("events", []):
        for key in ("at_s", "duration_s", "settle_s"):
            if key in event:
                event[key] = round(event[key] * factor, 3)
    planted = data.get("records", {}).get("planted", 20)
    enrolled = min(data.get("records", {}).get("biometrics", 0), 40)
    data["records"] = {"documents": 200, "persons": 80, "vehicles": 80, "planted": min(planted, 8)}
    if enrolled:  # biometric traffic needs enrolled persons
        data["records"]["biometrics"] = enrolled
    if data["bureaus"] == scenario.ALL_MEMBERS:
        data["bureaus"] = ["FR", "DE", "IT", "ES", "NL", "BE"]
    if "messages" in data:
        data["messages"]["drain_s"] = min(data["messages"].get("drain_s", 20.0), 10.0)
    data["checks"] = [*data.get("checks", []), FAILING]
    path = folder / f"{name}.toml"
    path.write_text("".join(f"{json.dumps(k)} = {_toml(v)}\n" for k, v in data.items()))
    return path


def _leaves(value: Any, ctx: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, (*ctx, k))]
    return [(ctx, value)]


@pytest.mark.parametrize("name", scenario.builtin_names())
def test_builtin_scenario_report_is_the_schemas(tmp_path: Path, name: str) -> None:
    """The real report has every path the schema gives the scenario and no other; its
    JUnit file has one case per check, passed and failed as the report says; its
    timeline has traffic_end before network_down and the checks last, with traffic_end's
    counts named as the report's and one query.returned per pair."""
    from support import ncbsim_pids

    path = shortened(name, tmp_path)
    loaded = scenario.load(str(path))
    workdir, run_dir, xml = tmp_path / "work", tmp_path / "run", tmp_path / "junit.xml"
    command = [
        sys.executable, "-m", "ncbsim", "simulate", str(path), "--workdir", str(workdir),
        "--run-dir", str(run_dir), "--junit", str(xml),
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in ncbsim_pids(workdir):
            with contextlib.suppress(ProcessLookupError):  # it may exit on its own meanwhile
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 1, stdout[-3000:] + stderr[-3000:]  # the failing check fails
    report = json.loads((run_dir / "report.json").read_text())

    drift = report_paths.differences(report, loaded)
    assert drift.missing == [], drift.missing
    assert drift.unexpected == [], drift.unexpected
    schema_paths = report_paths.paths(loaded)
    for leaf, _ in _leaves(report):
        if schema_paths[leaf].checkable:
            check = ("bureaus", *leaf[1:]) if leaf[0] == "per_bureau" else leaf
            report_paths.check_path(check, loaded)  # the loader accepts it in a check

    suites = list(junitparser.JUnitXml.fromfile(str(xml)))
    assert len(suites) == 1
    cases = list(suites[0])
    checks = report["checks"]
    assert [c.name for c in cases] == [c["name"] for c in checks]
    assert [c.is_passed for c in cases] == [c["passed"] for c in checks]
    assert suites[0].tests == len(checks)
    assert suites[0].failures == sum(not c["passed"] for c in checks) >= 1
    assert {p.name: p.value for p in suites[0].properties()}["seed"] == str(loaded.seed)

    events = run_events.read(run_dir / "timeline.jsonl")
    phases = [e.view["phase"] for e in events if e.kind == "scenario.phase"]
    assert [p for p in phases if p in ("traffic_end", "network_down")] == [
        "traffic_end",
        "network_down",
    ]
    checked = [e for e in events if e.view.get("phase") == "check"]
    assert events[-len(checked) :] == checked  # the checks last, one per check, in order
    assert [(e.view["check"], e.view["passed"]) for e in checked] == [
        (i, c["passed"]) for i, c in enumerate(checks)
    ]
    end = next(e for e in events if e.view.get("phase") == "traffic_end")
    assert (end.view["requests"], end.view["pairs"]) == (
        report["requests"],
        report["queries"]["sent"],
    )
    returned = [e for e in events if e.kind == "query.returned"]
    assert len(returned) == report["queries"]["sent"]  # one per (query, recipient) pair
    if name == "epervier":
        _epervier_partners(report)


def _epervier_partners(report: dict[str, Any]) -> None:
    """Epervier with its partners: the partners' checks and the timeline's passed (those on
    latency are the busy machine's business), the partners' two searches and the
    prosecutor's vehicle search were refused, no bureau's query was, and the alert reached
    the fifteen partners once."""
    passed = {c["name"]: c["passed"] for c in report["checks"]}
    for name in (
        "the alert reached every partner once",
        "the partners' queries were all refused",
        "no bureau query was refused, only users beyond their rights",
        "timeline queries answered as expected",
    ):
        assert passed[name], (name, report["checks"])
    assert report["roles"]["partner"]["queries"]["sent"] == 2
    assert report["roles"]["partner"]["queries"]["refused"] == 2
    assert report["roles"]["investigator"]["queries"]["refused"] == 1  # outside its kinds
    assert report["roles"]["investigator"]["queries"]["hit"] == 2  # the check, then the record
    assert report["queries"]["refused"] == report["users"]["queries"]["refused"] == 3
    assert [report["explicit"][e]["outcome"] for e in ("ngo_search", "prosecutor_check")] == [
        "refused",
        "record",
    ]
    assert report["messages"]["users"]["recipients"] == 15
    assert report["messages"]["users"]["delivered"] == 15
