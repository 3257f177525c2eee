"""JUnit XML for CI systems: suites of test cases, written with the standard library.

CI systems (Jenkins, GitLab, GitHub's test reporters) read the JUnit XML that
Surefire and pytest write. This module writes that format for ncbsim's own
verdicts, so a command hands a CI pipeline one test case per thing it judged::

    from ncbsim import junit

    suite = junit.Suite(
        name="ncbsim load",
        time_s=20.4,
        properties={"gateway": "127.0.0.1:7600"},
        cases=[
            junit.Case(name="overall.p99_ms <= 120", classname="load.slo"),
            junit.Case(
                name="overall.min_rps >= 70",
                classname="load.slo",
                failure="measured 52.1/s, bound >= 70/s",
            ),
        ],
    )
    junit.write(Path("load.xml"), suite)

A case passes unless it has a ``failure`` (it was judged and missed) or an
``error`` (it could not be judged at all). The layout is the subset Jenkins'
JUnit plugin, GitLab and pytest's ``--junitxml`` agree on: one ``<testsuites>``
holding ``<testsuite>`` elements with their counts, ``<properties>`` and
``<testcase>`` elements. Text is cleaned of the control characters XML 1.0
cannot carry, so any message can be written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ncbsim.errors import cannot_write

# Characters XML 1.0 forbids even escaped: C0 controls other than tab, LF and CR.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value: str) -> str:
    return _NOT_XML.sub("\ufffd", value)


def _seconds(value: float) -> str:
    return f"{value:.3f}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Case:
    """One test case: passed, failed (judged and missed) or in error (not judged)."""

    name: str
    """What was judged, as a CI system lists it (e.g. an SLO line or a check)."""
    classname: str
    """The group the case belongs to; CI systems show ``classname.name``."""
    time_s: float = 0.0
    """How long the case took, in seconds (0 for a case judged from figures)."""
    failure: str | None = None
    """Why the case failed, in one line (e.g. measured against bound); None if it did not."""
    error: str | None = None
    """Why the case could not be judged at all; None if it could."""
    detail: str = ""
    """Longer text for a failure or error (its element's body); the message if empty."""
    properties: Mapping[str, str] = field(default_factory=dict)
    """Figures attached to the case (pytest's ``record_property`` writes the same)."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a JUnit case needs a name")
        if self.time_s < 0:
            raise ValueError(f"case {self.name!r}: time_s must be >= 0, not {self.time_s}")
        if self.failure is not None and self.error is not None:
            raise ValueError(f"case {self.name!r}: a failure or an error, not both")

    @property
    def passed(self) -> bool:
        """True when the case has neither a failure nor an error."""
        return self.failure is None and self.error is None


@dataclass(frozen=True, kw_only=True, slots=True)
class Suite:
    """A named suite of cases, e.g. one run of ``ncbsim load`` or one scenario."""

    name: str
    """The suite's name, e.g. ``ncbsim load`` or a scenario name."""
    cases: Sequence[Case]
    """The cases, in the order they were judged."""
    time_s: float = 0.0
    """How long the whole suite ran, in seconds."""
    timestamp: dt.datetime | None = None
    """When the suite started (written in ISO 8601, as UTC with no offset, the form the JUnit
    schema takes; a naive time is taken to be UTC already); None to leave it out."""
    properties: Mapping[str, str] = field(default_factory=dict)
    """Facts about the run (target, settings), listed once for the suite."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a JUnit suite needs a name")
        if self.time_s < 0:
            raise ValueError(f"suite {self.name!r}: time_s must be >= 0, not {self.time_s}")

    @property
    def failures(self) -> int:
        """Cases that were judged and failed."""
        return sum(c.failure is not None for c in self.cases)

    @property
    def errors(self) -> int:
        """Cases that could not be judged."""
        return sum(c.error is not None for c in self.cases)


def _properties(parent: ET.Element, properties: Mapping[str, str]) -> None:
    if properties:
        holder = ET.SubElement(parent, "properties")
        for key, value in properties.items():
            ET.SubElement(holder, "property", name=_text(key), value=_text(str(value)))


def _case(parent: ET.Element, case: Case) -> None:
    element = ET.SubElement(
        parent,
        "testcase",
        classname=_text(case.classname),
        name=_text(case.name),
        time=_seconds(case.time_s),
    )
    _properties(element, case.properties)
    for tag, message in (("failure", case.failure), ("error", case.error)):
        if message is not None:
            result = ET.SubElement(element, tag, message=_text(message))
            result.text = _text(case.detail or message)


def to_element(suites: Sequence[Suite]) -> ET.Element:
    """The ``<testsuites>`` element holding ``suites``."""
    root = ET.Element(
        "testsuites",
        tests=str(sum(len(s.cases) for s in suites)),
        failures=str(sum(s.failures for s in suites)),
        errors=str(sum(s.errors for s in suites)),
        time=_seconds(sum(s.time_s for s in suites)),
    )
    for suite in suites:
        element = ET.SubElement(
            root,
            "testsuite",
            name=_text(suite.name),
            tests=str(len(suite.cases)),
            failures=str(suite.failures),
            errors=str(suite.errors),
            skipped="0",
            time=_seconds(suite.time_s),
        )
        if suite.timestamp is not None:  # the JUnit schema's form: UTC, no offset
            moment = suite.timestamp
            if moment.tzinfo is not None:
                moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
            element.set("timestamp", moment.isoformat(timespec="seconds"))
        _properties(element, suite.properties)
        for case in suite.cases:
            _case(element, case)
    return root


def to_bytes(*suites: Suite) -> bytes:
    """The JUnit XML document (UTF-8, with an XML declaration) for ``suites``."""
    root = to_element(suites)
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def write(path: Path, *suites: Suite) -> None:
    """Write ``suites`` to ``path`` as JUnit XML (the folder is created if needed).

    The file is written next to its final name and then renamed, so a CI system
    never reads half a report. A path that cannot be written raises NcbsimError
    (``PATH: cannot write: REASON``), leaving no partial file.
    """
    document = to_bytes(*suites)
    partial = path.with_name(path.name + ".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(document)
        partial.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise cannot_write(path, exc) from None
