"""JUnit XML as CI systems read it: checked with junitparser, a reader we did not write."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml

from ncbsim import junit
from ncbsim.errors import NcbsimError


def _suite() -> junit.Suite:
    return junit.Suite(
        name="ncbsim load",
        time_s=20.25,
        timestamp=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        properties={"gateway": "127.0.0.1:7600", "scenario": "quickstart"},
        cases=[
            junit.Case(name="overall.p99_ms <= 120", classname="load.slo"),
            junit.Case(
                name="overall.min_rps >= 70",
                classname="load.slo",
                failure="measured 52.1/s, bound >= 70/s",
                properties={"measured": "52.1"},
            ),
            junit.Case(name="run", classname="load", error="locust exited 2 without a verdict"),
        ],
    )


def test_a_written_suite_reads_back_with_its_counts_and_messages(tmp_path: Path) -> None:
    """A CI reader sees every case, which failed or errored, and why."""
    path = tmp_path / "reports" / "load.xml"
    junit.write(path, _suite())
    (suite,) = JUnitXml.fromfile(str(path))
    assert (suite.name, suite.tests, suite.failures, suite.errors) == ("ncbsim load", 3, 1, 1)
    assert suite.time == pytest.approx(20.25)
    cases = {case.name: case for case in suite}
    assert cases["overall.p99_ms <= 120"].is_passed
    (failure,) = cases["overall.min_rps >= 70"].result
    assert isinstance(failure, Failure)
    assert failure.message == "measured 52.1/s, bound >= 70/s"
    (error,) = cases["run"].result
    assert isinstance(error, Error)
    assert {p.name: p.value for p in suite.properties()} == {
        "gateway": "127.0.0.1:7600",
        "scenario": "quickstart",
    }
    assert not path.with_name("load.xml.partial").exists()


def test_any_message_is_written_as_well_formed_xml() -> None:
    """Markup and control characters in a message cannot break the file."""
    message = 'p99 <= 5 & "fast"\x00\x1b[31m'
    case = junit.Case(name="<odd> & name", classname="x", failure=message)
    root = ET.fromstring(junit.to_bytes(junit.Suite(name="s", cases=[case])))
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None
    assert failure.get("message") == 'p99 <= 5 & "fast"\ufffd\ufffd[31m'
    assert root.find("testsuite/testcase").get("name") == "<odd> & name"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: junit.Case(name="", classname="x"), "needs a name"),
        (lambda: junit.Case(name="a", classname="x", time_s=-1), "time_s must be >= 0"),
        (lambda: junit.Case(name="a", classname="x", failure="f", error="e"), "not both"),
        (lambda: junit.Suite(name="", cases=[]), "needs a name"),
    ],
)
def test_a_case_or_suite_that_cannot_be_reported_is_refused(
    build: Callable[[], object], message: str
) -> None:
    """A nameless case, a negative time or a case both failed and in error is a caller bug."""
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("file/inside/junit.xml", "Not a directory"),  # a folder on the way is a file
        ("file/junit.xml", "is not a folder"),  # the folder itself is a file
        ("folder", "Is a directory"),  # the path is a folder
    ],
)
def test_a_path_that_cannot_be_written_is_a_one_line_error(
    tmp_path: Path, where: str, reason: str
) -> None:
    """An unwritable path is an NcbsimError naming it and why, not an OSError, and no
    partial file is left behind."""
    (tmp_path / "file").write_text("")
    (tmp_path / "folder").mkdir()
    path = tmp_path / where
    with pytest.raises(NcbsimError) as raised:
        junit.write(path, _suite())
    assert str(raised.value).startswith(f"{path}: cannot write: ")
    assert reason in str(raised.value)
    assert "\n" not in str(raised.value)
    assert not path.with_name(path.name + ".partial").exists()
