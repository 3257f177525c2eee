"""`ncbsim simulate` around the engine: the multi-bureau built-in check, --validate of every
built-in scenario, the report schema and its docs, JUnit XML, and the run directory."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import junitparser
import pytest

from ncbsim.client import ALL, Answer, Outcome
from ncbsim.errors import NcbsimError
from ncbsim.simulations import describe, junit, rundir, scenario, schema
from ncbsim.simulations import paths as report_paths
from ncbsim.simulations.outcomes import RunResult, Sent
from ncbsim.simulations.run_checks import multi_bureau_check
from ncbsim.simulations.traffic import Planned
from ncbsim.v2 import query_pb2

DOCS = Path(__file__).resolve().parents[2] / "docs" / "scenarios.md"
SMALL = Path(__file__).resolve().parent.parent / "scenarios" / "small.toml"
BUILTIN = scenario.builtin_names()


# ---------------------------------------------------------------- multi-bureau replies


def _sent(to: list[str], bureaus: list[str], rows: list[tuple[str, Outcome]]) -> Sent:
    """A query from FR to ``to`` (asking ``bureaus``) and the rows its reply had."""
    planned = Planned(
        label="multi-1",
        requester="FR",
        to=to,
        query=query_pb2.Query(),
        expect_hit=dict.fromkeys(bureaus),
        kind="multi",
    )
    return Sent(planned, [Answer(b, o) for b, o in rows])


def test_a_reply_to_all_during_an_outage_lists_every_bureau_as_no_answer() -> None:
    """Every bureau's row, each no_answer, is a complete reply: the check passes."""
    rows = [(b, Outcome.NO_ANSWER) for b in ("DE", "IT", "NL")]
    check = multi_bureau_check([_sent([ALL], ["DE", "IT", "NL"], rows)])
    assert check is not None
    assert check.passed, check.detail
    assert check.detail == "1/1 complete, 3 bureau answers"


@pytest.mark.parametrize(
    "rows",
    [
        [(ALL, Outcome.NO_ANSWER)],  # issue 15: one row for ALL during the gateway's restart
        [("DE", Outcome.HIT), ("IT", Outcome.NO_HIT)],  # NL missing
        [("DE", Outcome.HIT), ("IT", Outcome.NO_HIT), ("IT", Outcome.NO_HIT)],  # IT twice
        [("DE", Outcome.HIT), ("IT", Outcome.NO_HIT), ("NL", Outcome.HIT), ("FR", Outcome.HIT)],
    ],
    ids=["one-row-for-all", "bureau-missing", "bureau-twice", "requester-itself"],
)
def test_an_incomplete_multi_bureau_reply_fails_and_is_named(
    rows: list[tuple[str, Outcome]],
) -> None:
    """A reply without one row per bureau asked, each once, fails; the detail names it."""
    good = _sent([ALL], ["DE", "IT", "NL"], [(b, Outcome.NO_HIT) for b in ("DE", "IT", "NL")])
    check = multi_bureau_check([good, _sent([ALL], ["DE", "IT", "NL"], rows)])
    assert check is not None
    assert not check.passed
    assert check.detail.startswith("1/2 complete")
    assert "incomplete: multi-1 (" in check.detail


def test_a_query_to_all_of_a_two_bureau_network_is_checked_too() -> None:
    """ALL with one other bureau is still a multi-bureau query; other queries are not."""
    only = _sent([ALL], ["DE"], [(ALL, Outcome.NO_ANSWER)])
    check = multi_bureau_check([only])
    assert check is not None
    assert not check.passed
    single = _sent(["DE"], ["DE"], [("DE", Outcome.HIT)])
    assert multi_bureau_check([single]) is None


# ---------------------------------------------------------------- --validate


@pytest.mark.parametrize("name", BUILTIN)
def test_every_builtin_scenario_validates(name: str) -> None:
    """Each built-in scenario is valid, every check path included, and --validate says
    what it would run."""
    lines = describe.validate(name)
    loaded = scenario.load(name)
    assert lines[-1] == "valid"
    assert lines[0] == f"scenario: {loaded.name} ({loaded.path})"
    assert lines[1].startswith(f"bureaus: {len(loaded.bureaus)} (")
    assert f"traffic: {loaded.traffic.duration_s:g} s at" in lines[3]
    for check in loaded.checks:
        assert any(line.strip().startswith(check.name) for line in lines), check.name


def test_builtin_scenarios_are_all_listed() -> None:
    """The seven built-in scenarios are found, so the test above covers each."""
    assert BUILTIN == [
        "all-members",
        "border-check",
        "epervier",
        "gateway-crash",
        "partition-heal",
        "quickstart",
        "red-notice",
    ]


def _ncbsim(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ncbsim", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def test_validate_prints_what_it_would_run_and_starts_nothing(tmp_path: Path) -> None:
    """`simulate --validate NAME` prints bureaus, duration and checks and 'valid'; exit 0;
    no run directory is made."""
    out = _ncbsim("simulate", "--validate", "partition-heal", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == "valid"
    assert "bureaus: 6 (FR, DE, IT, ES, NL, BE) and a gateway" in out.stdout
    assert "traffic: 28 s at 8 queries/s" in out.stdout
    assert "  8 s  cut: partition of IT, ES for 10 s" in lines
    assert "  recovered within 3 s of the heal: faults.cut.recovered_s < 3" in lines
    assert list(tmp_path.iterdir()) == []  # no run directory, nothing started


def test_validate_refuses_a_typo_in_one_line_with_exit_2(tmp_path: Path) -> None:
    """A check path typo: the one-line error (file, key, path, suggestion) and exit 2."""
    path = tmp_path / "typo.toml"
    path.write_text('bureaus = ["FR", "DE"]\n[[checks]]\nexpect = "queries.faild == 0"\n')
    out = _ncbsim("simulate", "--validate", str(path))
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr == (
        f"ncbsim: {path}: checks[0].expect: queries.faild: 'faild' is not a key of queries;"
        " expected one of sent, answered, hit, no_hit, no_answer, failed, refused;"
        " did you mean queries.failed?\n"
    )


def test_missing_file_and_unknown_name_say_which(tmp_path: Path) -> None:
    """A missing path says file not found; an unknown bare name lists the built-in ones."""
    missing = _ncbsim("simulate", "/x/missing.toml")
    assert (missing.returncode, missing.stderr) == (2, "ncbsim: /x/missing.toml: file not found\n")
    unknown = _ncbsim("simulate", "--validate", "quikstart")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("ncbsim: no built-in scenario 'quikstart'; the built-in")
    assert all(name in unknown.stderr for name in BUILTIN)


def test_a_run_dir_that_cannot_be_made_is_one_line_before_anything_starts(
    tmp_path: Path,
) -> None:
    """`--run-dir` under a file: exit 2 with `ncbsim: PATH: cannot write: ...` and no
    traceback, before any process or work directory exists."""
    (tmp_path / "file").write_text("")
    run_dir, workdir = tmp_path / "file" / "run", tmp_path / "work"
    out = _ncbsim("simulate", str(SMALL), "--run-dir", str(run_dir), "--workdir", str(workdir))
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr == f"ncbsim: {run_dir}: cannot write: Not a directory\n"
    assert not workdir.exists()


# ---------------------------------------------------------------- the schema


def test_docs_table_of_report_paths_is_the_schemas() -> None:
    """docs/scenarios.md's table of report paths is simulations/paths.markdown_table():
    every count, its meaning and its unit, from the one definition."""
    text = DOCS.read_text()
    found = re.search(
        r"<!-- report paths: generated.*?-->\n(.*?)<!-- end of report paths -->", text, re.S
    )
    assert found, "docs/scenarios.md lacks the generated report paths table"
    assert found.group(1) == report_paths.markdown_table()


def test_every_schema_row_has_a_unit() -> None:
    """No path is documented without what it counts and its unit."""
    for path, doc, unit in report_paths.doc_rows():
        assert doc.strip(), path
        assert unit.strip(), path


@pytest.mark.parametrize("name", BUILTIN)
def test_every_checkable_path_of_a_builtin_scenario_loads(name: str) -> None:
    """Each path the schema gives a check of the scenario is accepted in a check."""
    loaded = scenario.load(name)
    for dotted in report_paths.check_paths(loaded):
        report_paths.check_path(tuple(dotted.split(".")), loaded)


def test_kinds_follow_the_mix_the_canary_and_the_timeline() -> None:
    """person always (the canary); fetch only with hits to fetch; a timeline query to
    several bureaus adds multi."""
    border = scenario.load("border-check")  # documents, fingerprints, faces; fetch_ratio 0.5
    assert schema.kinds(border) == (
        "document",
        "person",
        "fetch",
        "fingerprint",
        "face",
        "confirm",
    )
    data: dict[str, Any] = {
        "bureaus": ["FR", "DE", "IT"],
        "traffic": {"hit_ratio": 0, "mix": {"document": 1, "person": 0, "vehicle": 0, "multi": 0}},
        "events": [{"at_s": 1, "query": {"from": "FR", "to": ["DE", "IT"], "kind": "vehicle"}}],
    }
    assert schema.kinds(scenario.from_dict(data)) == ("document", "person", "multi")


# ---------------------------------------------------------------- JUnit XML


def _finished(passed: list[bool]) -> dict[str, Any]:
    checks = [
        {
            "name": f"check {i} <&>",
            "passed": ok,
            "detail": f"queries.failed = {i}\x01",
            "expect": "queries.failed == 0" if i else "",
        }
        for i, ok in enumerate(passed)
    ]
    return {
        "scenario": "small",
        "checks": checks,
        "passed": all(passed),
        "duration_s": 12.5,
        "run_dir": "/tmp/run",
    }


def test_junit_file_is_read_by_an_independent_reader(tmp_path: Path) -> None:
    """junitparser reads one suite, one case per check, a failure with the detail for each
    failed check, the run's duration and the scenario's name and seed as properties."""
    path = tmp_path / "out" / "junit.xml"
    junit.write(
        path,
        _finished([True, False, True, False]),
        seed=7,
        scenario_file=Path("tests/scenarios/small.toml"),
        started=dt.datetime(2026, 1, 31, 9, 0, tzinfo=dt.UTC),
    )
    xml = junitparser.JUnitXml.fromfile(str(path))
    suites = list(xml)
    assert len(suites) == 1
    suite = suites[0]
    assert (suite.name, suite.tests, suite.failures, suite.errors) == ("small", 4, 2, 0)
    assert suite.time == 12.5
    assert suite.timestamp == "2026-01-31T09:00:00"
    assert {p.name: p.value for p in suite.properties()} == {
        "scenario": "small",
        "seed": "7",
        "scenario_file": "tests/scenarios/small.toml",
        "run_dir": "/tmp/run",
        "passed": "false",
    }
    cases = list(suite)
    assert [c.name for c in cases] == [f"check {i} <&>" for i in range(4)]
    assert [c.is_passed for c in cases] == [True, False, True, False]
    failure = cases[1].result[0]
    assert isinstance(failure, junitparser.Failure)
    assert failure.message == "queries.failed = 1\ufffd"
    assert failure.text == "expect: queries.failed == 0\nqueries.failed = 1\ufffd"


# ---------------------------------------------------------------- the run directory


def test_an_empty_run_directory_is_removed_one_with_files_never(tmp_path: Path) -> None:
    """Only a run directory this run created and that holds nothing is removed."""
    empty, full, theirs = tmp_path / "empty", tmp_path / "full", tmp_path / "theirs"
    for folder in (empty, full, theirs):
        folder.mkdir()
    (full / "report.json").write_text("{}")
    rundir.remove_if_empty(empty, created=True)
    rundir.remove_if_empty(full, created=True)
    rundir.remove_if_empty(theirs, created=False)
    assert not empty.exists()
    assert (full / "report.json").exists()
    assert theirs.exists()


def test_a_report_copy_that_cannot_be_written_is_a_one_line_error(tmp_path: Path) -> None:
    """`--report` under a file: NcbsimError naming that path, after report.json is written."""
    (tmp_path / "file").write_text("")
    folder, copy = tmp_path / "run", tmp_path / "file" / "sub" / "r.json"
    folder.mkdir()
    report = {"scenario": "t", "checks": []}
    with pytest.raises(NcbsimError) as raised:
        rundir.write(folder, report, RunResult(), [], 0.0, report_path=copy)
    assert str(raised.value) == f"{copy.parent}: cannot write: Not a directory"
    assert (folder / "report.json").exists()
