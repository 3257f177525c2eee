"""The verdict of a load run in the reports CI systems and people read: HTML and JUnit.

The SLO gate writes ``verdict.json`` inside locust (:mod:`ncbsim.load.gate`). Once locust
has exited, ``ncbsim load`` carries that verdict into two more places:

- **locust's HTML report.** Locust has no public hook to add content to its report
  (``--html`` renders a fixed template), so a section is inserted into the written
  file, right after its ``<body>`` tag: the target (gateway, network folder,
  scenario, SLO file) and the verdict table (each SLO line with its metric, bound,
  measured figure and PASS/FAIL, and the overall verdict), then the warm-up calls,
  marked as not judged. The target is also locust's own "Target Host", set through
  ``environment.host`` (:func:`ncbsim.load.bureau_user.name_target`).
- **JUnit XML** (``--junit PATH``): one test case per SLO line, named by the line
  (``overall.p99_ms <= 120``), failed with measured against bound when breached,
  and one case for exceptions in user code. A run that left no verdict gives one
  case in error, so a CI system never reads a missing verdict as a pass; so does a
  verdict whose exit code says otherwise (locust stopped after judging).

Before a run, :func:`begin` removes what a previous run left in ``--out`` (its
verdict, HTML and CSV reports) and writes the JUnit file as a run without a
verdict: whatever ends the run before it judges (locust dying, a network that
does not start), nothing of an earlier run can pass for this one's verdict.

Doing this after locust exits relies only on the files locust wrote, not on the
order of locust's shutdown steps.
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ncbsim import junit
from ncbsim.errors import cannot_write
from ncbsim.load.slo import format_value

VERDICT = "verdict.json"
HTML = "report.html"
_PREVIOUS = (
    VERDICT,
    HTML,
    "locust_stats.csv",
    "locust_stats_history.csv",
    "locust_failures.csv",
    "locust_exceptions.csv",
)
"""What a run writes in ``--out`` that a later run's failure must not leave standing."""
SECTION_ID = "ncbsim-verdict"
SUITE = "ncbsim load"
CLASSNAME = "ncbsim.load.slo"
EXCEPTIONS_LINE = "user_exceptions == 0"
_BODY = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_STYLE = (
    f"#{SECTION_ID}{{font-family:sans-serif;margin:1em 2em;}}"
    f"#{SECTION_ID} table{{border-collapse:collapse;margin:0.5em 0 1em;}}"
    f"#{SECTION_ID} th,#{SECTION_ID} td{{border:1px solid #999;padding:2px 8px;text-align:left;}}"
    f"#{SECTION_ID} .FAIL{{color:#b00;font-weight:bold;}}"
)


def _verdict_word(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def _rows(verdict: Mapping[str, Any]) -> list[tuple[str, str, str, str, bool]]:
    """(scope, metric, bound, measured, passed) for every SLO line and user exceptions."""
    rows = [
        (
            c["scope"],
            c["metric"],
            f"{c['relation']} {format_value(c['metric'], c['limit'])}",
            format_value(c["metric"], c["measured"]),
            bool(c["passed"]),
        )
        for c in verdict["checks"]
    ]
    exceptions = int(verdict["user_exceptions"])
    rows.append(("users", "exceptions", "== 0", str(exceptions), exceptions == 0))
    return rows


def _cells(tag: str, values: list[str], *, css: str = "") -> str:
    attr = f' class="{css}"' if css else ""
    inner = "".join(f"<{tag}>{html.escape(v)}</{tag}>" for v in values)
    return f"<tr{attr}>{inner}</tr>"


def verdict_html(verdict: Mapping[str, Any]) -> str:
    """The HTML section holding the target and the verdict table."""
    word = _verdict_word(bool(verdict["passed"]))
    target = {**verdict.get("target", {}), "SLO file": verdict["slo"]}
    parts = [
        f'<section id="{SECTION_ID}"><style>{_STYLE}</style>',
        f'<h2>ncbsim SLO verdict: <span class="{word}">{word}</span></h2>',
        '<table id="ncbsim-target"><tbody>',
        *(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in target.items()
        ),
        "</tbody></table>",
        '<table id="ncbsim-slo"><thead>',
        _cells("th", ["scope", "metric", "bound", "measured", "verdict"]),
        "</thead><tbody>",
    ]
    for scope, metric, bound, measured, passed in _rows(verdict):
        verdict_cell = _verdict_word(passed)
        parts.append(_cells("td", [scope, metric, bound, measured, verdict_cell], css=verdict_cell))
    parts += [
        "</tbody><tfoot>",
        _cells("th", ["overall verdict", "", "", "", word], css=word),
        "</tfoot></table>",
    ]
    warm_up = verdict.get("warm_up", {})
    if warm_up:
        parts += [
            '<table id="ncbsim-warm-up"><caption>warm-up calls, not judged</caption><thead>',
            _cells("th", ["name", "calls", "failed", "p50", "p99"]),
            "</thead><tbody>",
            *(
                _cells(
                    "td",
                    [
                        name,
                        str(m["requests"]),
                        str(m["failures"]),
                        format_value("p50_ms", m["p50_ms"]),
                        format_value("p99_ms", m["p99_ms"]),
                    ],
                )
                for name, m in warm_up.items()
            ),
            "</tbody></table>",
        ]
    parts.append("</section>")
    return "\n".join(parts) + "\n"


def add_to_html(report: Path, verdict: Mapping[str, Any]) -> bool:
    """Insert the verdict section into locust's HTML report; False if there is no report.

    The section goes right after the document's last ``<body>`` tag (the report's
    scripts come before it), or at the end if a future template has none.
    """
    try:
        text = report.read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    section = verdict_html(verdict)
    body = next(reversed(list(_BODY.finditer(text))), None)
    if body is None:
        text += section
    else:
        text = text[: body.end()] + "\n" + section + text[body.end() :]
    report.write_text(text, encoding="utf-8")
    return True


def junit_suite(verdict: Mapping[str, Any]) -> junit.Suite:
    """One JUnit case per SLO line, and one for exceptions in user code."""
    cases = []
    for c in verdict["checks"]:
        bound = f"{c['relation']} {format_value(c['metric'], c['limit'])}"
        measured = format_value(c["metric"], c["measured"])
        if c["measured"] is None:
            failure = f"no {c['scope']} request ran; bound {bound}"
        else:
            failure = f"measured {measured}, bound {bound}"
        cases.append(
            junit.Case(
                name=c["line"],
                classname=CLASSNAME,
                failure=None if c["passed"] else failure,
                properties={
                    "scope": c["scope"],
                    "metric": c["metric"],
                    "bound": bound,
                    "measured": measured,
                },
            )
        )
    exceptions = int(verdict["user_exceptions"])
    cases.append(
        junit.Case(
            name=EXCEPTIONS_LINE,
            classname=CLASSNAME,
            failure=f"{exceptions} exceptions in user code" if exceptions else None,
            properties={"measured": str(exceptions)},
        )
    )
    overall = verdict["overall"]
    properties = {
        **verdict.get("target", {}),
        "slo": verdict["slo"],
        "workers": str(verdict["workers"]),
        "requests": str(overall["requests"]),
        "failed requests": str(overall["failures"]),
        **{
            f"warm-up {name}": f"{m['requests']} calls, not judged"
            for name, m in verdict.get("warm_up", {}).items()
        },
    }
    return junit.Suite(
        name=SUITE,
        cases=cases,
        time_s=float(verdict.get("duration_s", 0.0)),
        properties=properties,
    )


_RUN_CASE = "load run"
_RUN_CLASSNAME = "ncbsim.load"


def no_verdict_suite(code: int | None) -> junit.Suite:
    """The suite of a run that left no verdict: one case in error. ``code`` is the run's
    exit code, or None while it has not ended (what :func:`begin` writes)."""
    ended = "the run ended" if code is None else f"the run ended (exit {code})"
    return junit.Suite(
        name=SUITE,
        cases=[
            junit.Case(
                name=_RUN_CASE,
                classname=_RUN_CLASSNAME,
                error=f"{ended} without an SLO verdict; see its output",
            )
        ],
    )


def begin(out: Path, junit_path: Path | None) -> None:
    """Before a run: make ``out``, remove what a previous run left in it, and write
    ``junit_path`` as a run without a verdict (replaced once this run judges).

    NcbsimError (``PATH: cannot write: REASON``) if either cannot be written, before
    anything starts.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in _PREVIOUS:
            (out / name).unlink(missing_ok=True)
    except OSError as exc:
        raise cannot_write(out, exc) from None
    if junit_path is not None:
        junit.write(junit_path, no_verdict_suite(None))


def finish(out: Path, code: int, junit_path: Path | None) -> dict[str, Any] | None:
    """After locust: put the verdict in the HTML report and the JUnit file; return it.

    Returns None when locust left no ``verdict.json`` (the run failed before judging).
    A verdict whose exit code is not its own (0 for a pass, 1 for a breach) gets one
    more JUnit case, in error, naming the exit code.
    """
    try:
        verdict: dict[str, Any] = json.loads((out / VERDICT).read_text(encoding="utf-8"))
    except FileNotFoundError:
        if junit_path is not None:
            junit.write(junit_path, no_verdict_suite(code))
        return None
    add_to_html(out / HTML, verdict)
    if junit_path is not None:
        suite = junit_suite(verdict)
        if code != (0 if verdict["passed"] else 1):
            ended = junit.Case(
                name=_RUN_CASE,
                classname=_RUN_CLASSNAME,
                error=f"the run ended with exit {code} after its SLO verdict; see its output",
            )
            suite = dataclasses.replace(suite, cases=[*suite.cases, ended])
        junit.write(junit_path, suite)
    return verdict
