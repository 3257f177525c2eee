"""SLO files and verdicts: what a CI pipeline relies on to pass or fail a load run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ncbsim.errors import ConfigError
from ncbsim.load import slo


def _measured(name: str = "overall", **kw: float) -> slo.Measured:
    values = {"requests": 1000, "failures": 0, "p50_ms": 10, "p95_ms": 20, "p99_ms": 30, "rps": 90}
    values.update(kw)
    return slo.Measured(
        name=name,
        requests=int(values["requests"]),
        failures=int(values["failures"]),
        p50_ms=values["p50_ms"],
        p95_ms=values["p95_ms"],
        p99_ms=values["p99_ms"],
        rps=values["rps"],
    )


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "slo.toml"
    path.write_text(text)
    return path


def test_the_shipped_slo_file_is_valid_and_gates_every_task() -> None:
    """The shipped SLO file loads and bounds latency and failures of every task."""
    spec = slo.load()
    assert spec.overall.max_failure_ratio is not None
    assert spec.overall.min_rps is not None
    assert {"document", "person", "vehicle", "fetch", "multi"} <= set(spec.requests)
    for limits in [spec.overall, *spec.requests.values()]:
        assert limits.p50_ms is not None
        assert limits.p99_ms is not None


def test_a_run_within_every_limit_passes(tmp_path: Path) -> None:
    """Figures exactly at their limits pass: every limit is inclusive."""
    spec = slo.load(_write(tmp_path, "[overall]\np50_ms = 10\np99_ms = 30\nmin_rps = 90\n"))
    checks = slo.evaluate(spec, _measured(), {})
    assert [c.passed for c in checks] == [True, True, True]  # limits are inclusive


@pytest.mark.parametrize(
    ("line", "figures"),
    [
        ("p50_ms = 9", {"p50_ms": 10}),
        ("p95_ms = 19", {"p95_ms": 20}),
        ("p99_ms = 29", {"p99_ms": 30}),
        ("max_failure_ratio = 0.001", {"failures": 2}),
        ("min_rps = 91", {"rps": 90}),
    ],
)
def test_each_kind_of_breach_fails(tmp_path: Path, line: str, figures: dict[str, float]) -> None:
    """Each kind of limit fails a figure beyond it."""
    spec = slo.load(_write(tmp_path, f"[overall]\n{line}\n"))
    (check,) = slo.evaluate(spec, _measured(**figures), {})
    assert not check.passed


def test_a_request_name_that_never_ran_fails_its_objective(tmp_path: Path) -> None:
    """An objective for a request that never ran fails rather than passing unseen."""
    spec = slo.load(_write(tmp_path, "[requests.multi]\np50_ms = 100\n"))
    (check,) = slo.evaluate(spec, _measured(), {"document": _measured("document")})
    assert check.scope == "multi"
    assert not check.passed
    assert math.isnan(check.measured)


def test_per_request_limits_judge_that_request_only(tmp_path: Path) -> None:
    """A [requests.NAME] table judges that request, not the overall figures."""
    spec = slo.load(_write(tmp_path, "[requests.person]\np99_ms = 50\n"))
    per_name = {"person": _measured("person", p99_ms=60), "document": _measured("document")}
    (check,) = slo.evaluate(spec, _measured(p99_ms=60), per_name)
    assert (check.scope, check.measured, check.passed) == ("person", 60, False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[overall]\np42_ms = 1\n", "p42_ms: unknown key"),
        ("[overall]\np50_ms = -1\n", "p50_ms: expected a number >= 0"),
        ("[overall]\np50_ms = 'fast'\n", "p50_ms: expected a number >= 0"),
        ("[overall]\nmax_failure_ratio = 2\n", "expected a ratio between 0 and 1"),
        ("[limits]\np50_ms = 1\n", "unknown table 'limits'"),
        ("[overall\n", "not valid TOML"),
    ],
)
def test_a_bad_slo_file_is_refused_naming_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    """A bad SLO file is refused with the file and the key named."""
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        slo.load(path)
    assert str(path) in str(info.value)


def test_verdict_table_marks_breaches_and_json_records_them(tmp_path: Path) -> None:
    """The printed table marks breaches and verdict.json records each check."""
    spec = slo.load(_write(tmp_path, "[overall]\np50_ms = 5\nmin_rps = 10\n"))
    overall = _measured()
    checks = slo.evaluate(spec, overall, {})
    text = slo.render(checks, exceptions=0, source=spec.source)
    assert "FAIL" in text
    assert "PASS" in text
    assert "SLO BREACHED: 1 of 2 checks failed" in text
    data = slo.verdict(spec, checks, overall, {}, workers=2, exceptions=0)
    path = tmp_path / "out" / "verdict.json"
    slo.write_verdict(path, data)
    saved = json.loads(path.read_text())
    assert saved["passed"] is False
    assert saved["workers"] == 2
    assert [c["passed"] for c in saved["checks"]] == [False, True]


def test_exceptions_in_user_code_fail_the_run_even_within_limits(tmp_path: Path) -> None:
    """An exception in user code fails the run even when every figure is within its limits."""
    spec = slo.load(_write(tmp_path, "[overall]\np50_ms = 100\n"))
    checks = slo.evaluate(spec, _measured(), {})
    assert all(c.passed for c in checks)
    assert slo.verdict(spec, checks, _measured(), {}, workers=1, exceptions=3)["passed"] is False
    assert "SLO BREACHED" in slo.render(checks, exceptions=3, source=spec.source)


def test_each_check_is_named_by_its_slo_line(tmp_path: Path) -> None:
    """A check names its line as the file does, so a CI report points at the line to read."""
    spec = slo.load(
        _write(tmp_path, "[overall]\nmin_rps = 70\np99_ms = 0.5\n[requests.multi]\np99_ms = 200\n")
    )
    checks = slo.evaluate(spec, _measured(), {"multi": _measured("multi")})
    assert [c.line for c in checks] == [
        "overall.p99_ms <= 0.5",
        "overall.min_rps >= 70",
        "requests.multi.p99_ms <= 200",
    ]


def test_warm_up_figures_are_listed_apart_and_marked_not_judged(tmp_path: Path) -> None:
    """Warm-up calls appear in the verdict and the table, outside every judged figure."""
    spec = slo.load(_write(tmp_path, "[overall]\np99_ms = 50\n"))
    warm = {"directory": _measured("directory", requests=10, p50_ms=300, p99_ms=900)}
    checks = slo.evaluate(spec, _measured(), {})
    data = slo.verdict(spec, checks, _measured(), {}, workers=1, exceptions=0, warm_up=warm)
    assert data["passed"] is True
    assert data["warm_up"]["directory"]["requests"] == 10
    assert "directory" not in data["requests"]
    text = slo.render(checks, exceptions=0, source=spec.source, warm_up=warm)
    assert "warm-up, not judged: directory 10 calls, 0 failed, p50 300 ms, p99 900 ms" in text
