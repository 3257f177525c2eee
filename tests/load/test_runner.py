"""`ncbsim load` around locust, without a network or locust: what a run leaves in its
reports folder and JUnit file when it fails before judging, or cannot write them at all."""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from junitparser import Error, JUnitXml

from ncbsim.cli import build_parser
from ncbsim.errors import NetworkError
from ncbsim.load import report, runner, slo


def _passing_verdict(tmp_path: Path) -> dict[str, Any]:
    """A verdict that passed, as a previous run would have left it."""
    path = tmp_path / "slo.toml"
    path.write_text("[overall]\nmax_failure_ratio = 0\n")
    spec = slo.load(path)
    overall = slo.Measured("overall", 4321, 0, 6, 14, 20, 90)
    checks = slo.evaluate(spec, overall, {})
    return slo.verdict(spec, checks, overall, {}, workers=1, exceptions=0)


def _args(out: Path, junit_path: Path, *extra: str) -> argparse.Namespace:
    args = build_parser().parse_args(
        ["load", "--out", str(out), "--junit", str(junit_path), *extra]
    )
    args.child_log_level = "info"
    return args


def _previous_run(tmp_path: Path) -> tuple[Path, Path]:
    """A reports folder and JUnit file as a previous run that passed left them."""
    out, junit_path = tmp_path / "out", tmp_path / "junit.xml"
    slo.write_verdict(out / "verdict.json", _passing_verdict(tmp_path))
    (out / "report.html").write_text("<html><body>old</body></html>")
    (out / "locust_stats.csv").write_text("Name\nAggregated\n")
    report.finish(out, 0, junit_path)
    (suite,) = JUnitXml.fromfile(str(junit_path))
    assert suite.tests > 0  # a pass, to be replaced
    assert suite.errors == suite.failures == 0
    return out, junit_path


@contextlib.contextmanager
def _no_network(args: argparse.Namespace) -> Iterator[tuple[Path, str, list[str], str]]:
    yield Path("/nonexistent"), "127.0.0.1:1", ["FR"], "quickstart"


def _no_verdict_error(junit_path: Path) -> str:
    """The message of the JUnit file's one case, which must be in error."""
    (suite,) = JUnitXml.fromfile(str(junit_path))
    assert (suite.tests, suite.errors, suite.failures) == (1, 1, 0)
    (case,) = suite
    (error,) = case.result
    assert isinstance(error, Error)
    return error.message or ""


def test_a_run_that_dies_before_judging_shows_nothing_of_the_previous_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Locust dying before it judges (exit 2) in a reused --out: no figure of the previous
    run is printed or kept (verdict.json, report.html, CSVs), and the JUnit file is an
    error, not the previous pass."""
    out, junit_path = _previous_run(tmp_path)
    monkeypatch.setattr(runner, "_network", _no_network)
    monkeypatch.setattr(runner, "prepare", lambda *a, **k: out / "plan.json")
    monkeypatch.setattr(runner, "run_locust", lambda *a, **k: 2)
    assert runner.cli(_args(out, junit_path)) == 2
    printed = capsys.readouterr().out
    assert "4321" not in printed
    assert "requests judged" not in printed
    assert not any((out / name).exists() for name in ("verdict.json", "report.html"))
    assert not (out / "locust_stats.csv").exists()
    assert "exit 2" in _no_verdict_error(junit_path)


def test_a_network_that_does_not_start_leaves_a_no_verdict_junit_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The network failing to start (exit 2) replaces the previous run's passing JUnit
    file with one case in error."""
    out, junit_path = _previous_run(tmp_path)

    @contextlib.contextmanager
    def failing(args: argparse.Namespace) -> Iterator[tuple[Path, str, list[str], str]]:
        raise NetworkError("gateway (pid 1) not ready in time")
        yield  # pragma: no cover - a generator, never reached

    monkeypatch.setattr(runner, "_network", failing)
    with pytest.raises(NetworkError):
        runner.cli(_args(out, junit_path))
    assert "without an SLO verdict" in _no_verdict_error(junit_path)
    assert not (out / "verdict.json").exists()


def test_a_verdict_its_exit_code_contradicts_is_not_a_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A passing verdict from a locust that then exited 2 (stopped at the time limit) gives
    a JUnit file with an error case, so CI and the exit code agree it failed."""
    out, junit_path = tmp_path / "out", tmp_path / "junit.xml"

    def judged_then_failed(plan: Path, args: argparse.Namespace, seconds: int, out: Path) -> int:
        slo.write_verdict(out / "verdict.json", _passing_verdict(tmp_path))
        return 2

    monkeypatch.setattr(runner, "_network", _no_network)
    monkeypatch.setattr(runner, "prepare", lambda *a, **k: out / "plan.json")
    monkeypatch.setattr(runner, "run_locust", judged_then_failed)
    assert runner.cli(_args(out, junit_path)) == 2
    (suite,) = JUnitXml.fromfile(str(junit_path))
    assert suite.errors == 1
    errors = [r.message for case in suite for r in case.result if isinstance(r, Error)]
    assert len(errors) == 1
    assert "exit 2" in (errors[0] or "")


@pytest.mark.parametrize("option", ["--junit", "--out"])
def test_an_output_that_cannot_be_written_is_refused_before_anything_starts(
    tmp_path: Path, option: str
) -> None:
    """--junit or --out under a file: exit 2, one line naming it, and no network started."""
    (tmp_path / "file").write_text("")
    paths = {"--junit": tmp_path / "junit.xml", "--out": tmp_path / "out"}
    paths[option] = tmp_path / "file" / "x"
    workdir = tmp_path / "net"
    done = subprocess.run(
        [
            sys.executable, "-m", "ncbsim", "load", "--workdir", str(workdir),
            "--junit", str(paths["--junit"]), "--out", str(paths["--out"]),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"ncbsim: {paths[option]}: cannot write: ")
    assert done.stderr.count("\n") == 1, done.stderr
    assert not workdir.exists()
