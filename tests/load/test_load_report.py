"""The verdict in locust's HTML report and in JUnit XML, read back with independent parsers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from junitparser import Error, Failure, JUnitXml

from ncbsim.load import report, slo

if TYPE_CHECKING:
    from tests.load.conftest import ReportTables


def _verdict(tmp_path: Path, text: str, **figures: float) -> dict[str, Any]:
    path = tmp_path / "slo.toml"
    path.write_text(text)
    spec = slo.load(path)
    values = {"requests": 400, "failures": 0, "p50_ms": 6, "p95_ms": 14, "p99_ms": 20, "rps": 90}
    values.update(figures)
    overall = slo.Measured("overall", **values)  # type: ignore[arg-type]
    per_name = {"document": slo.Measured("document", **values)}  # type: ignore[arg-type]
    warm = {"directory": slo.Measured("directory", 10, 0, 40, 90, 95, 2)}
    checks = slo.evaluate(spec, overall, per_name)
    return slo.verdict(
        spec,
        checks,
        overall,
        per_name,
        workers=1,
        exceptions=0,
        warm_up=warm,
        target={"gateway": "127.0.0.1:7600", "network": "/tmp/net", "scenario": "quickstart"},
        duration_s=5.5,
    )


_SLO = "[overall]\np99_ms = 10\nmin_rps = 50\n[requests.multi]\np50_ms = 60\n"


def test_the_html_report_gains_the_target_and_every_slo_line(
    tmp_path: Path, read_html: Callable[[Path], ReportTables]
) -> None:
    """After the run, the report shows what was loaded and each line's verdict."""
    verdict = _verdict(tmp_path, _SLO)
    html = tmp_path / "report.html"
    html.write_text(
        "<html><head><script>var s = '<body>';</script></head>\n<body>\n"
        '<div id="root"></div>\n<script>window.templateArgs = {"host": "None"}\n'
        'window.theme = ""</script></body></html>\n'
    )
    assert report.add_to_html(html, verdict) is True
    parsed = read_html(html)
    assert parsed.section_ids == [report.SECTION_ID]
    target = {row[0]: row[1] for row in parsed.tables["ncbsim-target"]}
    assert target == {
        "gateway": "127.0.0.1:7600",
        "network": "/tmp/net",
        "scenario": "quickstart",
        "SLO file": str(tmp_path / "slo.toml"),
    }
    header, *rows, footer = parsed.tables["ncbsim-slo"]
    assert header == ["scope", "metric", "bound", "measured", "verdict"]
    assert rows == [
        ["overall", "p99_ms", "<= 10 ms", "20 ms", "FAIL"],
        ["overall", "min_rps", ">= 50.0/s", "90.0/s", "PASS"],
        ["multi", "p50_ms", "<= 60 ms", "no requests", "FAIL"],
        ["users", "exceptions", "== 0", "0", "PASS"],
    ]
    assert footer == ["overall verdict", "", "", "", "FAIL"]
    assert parsed.tables["ncbsim-warm-up"][1] == ["directory", "10", "0", "40 ms", "95 ms"]
    # The section goes into the real body, after the scripts in the head.
    text = html.read_text()
    assert text.index(report.SECTION_ID) > text.index("\n<body>")
    assert text.index(report.SECTION_ID) < text.index('<div id="root">')


def test_no_html_report_is_not_an_error(tmp_path: Path) -> None:
    """A run without an HTML report (locust stopped early) still finishes its other outputs."""
    assert report.add_to_html(tmp_path / "missing.html", _verdict(tmp_path, _SLO)) is False


def test_junit_has_one_case_per_slo_line_and_failures_say_measured_and_bound(
    tmp_path: Path,
) -> None:
    """A CI system lists each SLO line as a test case; breaches fail with both figures."""
    out = tmp_path / "out"
    out.mkdir()
    verdict = _verdict(tmp_path, _SLO)
    slo.write_verdict(out / "verdict.json", verdict)
    path = tmp_path / "junit" / "load.xml"
    assert report.finish(out, 1, path) == verdict
    (suite,) = JUnitXml.fromfile(str(path))
    assert (suite.name, suite.tests, suite.failures, suite.errors) == ("ncbsim load", 4, 2, 0)
    assert suite.time == 5.5
    messages = {}
    for case in suite:
        messages[case.name] = [r.message for r in case.result if isinstance(r, Failure)]
    assert messages == {
        "overall.p99_ms <= 10": ["measured 20 ms, bound <= 10 ms"],
        "overall.min_rps >= 50": [],
        "requests.multi.p50_ms <= 60": ["no multi request ran; bound <= 60 ms"],
        "user_exceptions == 0": [],
    }
    properties = {p.name: p.value for p in suite.properties()}
    assert properties["gateway"] == "127.0.0.1:7600"
    assert properties["warm-up directory"] == "10 calls, not judged"


def test_a_run_without_a_verdict_gives_a_junit_error_not_a_pass(tmp_path: Path) -> None:
    """When locust dies before judging, the JUnit file says so instead of being absent."""
    path = tmp_path / "load.xml"
    assert report.finish(tmp_path, 2, path) is None
    (suite,) = JUnitXml.fromfile(str(path))
    assert (suite.tests, suite.errors, suite.failures) == (1, 1, 0)
    (case,) = suite
    (error,) = case.result
    assert isinstance(error, Error)
    assert "exit 2" in (error.message or "")
