"""``ncbsim simulate``: run a scenario end to end, check it, and write its run directory.

The run directory holds ``report.json`` (the report; its keys are a stable contract, see
docs/scenarios.md), ``timeline.jsonl`` (one metadata-only event per line) and
``latency.png``. It exits 0 only if every check passed, built-in and scenario's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from rich.console import Console

from ncbsim import tracing
from ncbsim.client import ALL, Answer, Outcome
from ncbsim.errors import NcbsimError
from ncbsim.gateway.audit import read_all
from ncbsim.processes import cancel_on_sigterm
from ncbsim.simulations import biometric_report, junit, message_report, rundir, schema
from ncbsim.simulations import checks as expressions
from ncbsim.simulations import paths as report_paths
from ncbsim.simulations import report as reports
from ncbsim.simulations import scenario as scenarios
from ncbsim.simulations.engine import Engine
from ncbsim.simulations.outcomes import ANSWERED, RunResult, Sent, outcome_of
from ncbsim.workdir import Workdir

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Check:
    """One pass/fail statement about the run."""

    name: str
    passed: bool
    detail: str
    expect: str = ""


def _scan(folder: Path, probes: list[str]) -> list[str]:
    """Probes found anywhere in the files under ``folder`` (as text or raw bytes)."""
    needles = {p: p.encode() for p in probes if len(p) >= 6}
    found = set()
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found |= {p for p, raw in needles.items() if raw in data}
    return sorted(found)


def _answered(outcome: Outcome) -> bool:
    return outcome.value in ANSWERED


def multi_bureau_check(sent: Sequence[Sent]) -> Check | None:
    """Every query to ALL or to several bureaus came back with one row per bureau asked.

    A reply must name each recipient exactly once, whatever became of it (a gateway that
    is down makes every row ``no_answer``): a row for ``ALL`` instead, a bureau missing,
    one twice, or one not asked (the requester itself) makes it incomplete. None when the
    run sent no such query.
    """
    multis = [s for s in sent if s.planned.to == [ALL] or len(s.planned.to) > 1]
    if not multis:
        return None
    incomplete = [
        s for s in multis if sorted(a.bureau for a in s.answers) != sorted(s.planned.expect_hit)
    ]
    shown = [
        f"{s.planned.label} ({', '.join(f'{a.bureau}:{a.outcome.value}' for a in s.answers[:3])}"
        + (", ..." if len(s.answers) > 3 else "")
        + f" for {len(s.planned.expect_hit)} bureaus)"
        for s in incomplete[:3]
    ]
    return Check(
        "multi-bureau replies list every bureau",
        not incomplete,
        f"{len(multis) - len(incomplete)}/{len(multis)} complete, "
        f"{sum(len(s.answers) for s in multis)} bureau answers"
        + (f"; incomplete: {'; '.join(shown)}" if shown else ""),
    )


def _found(ref: str, answer: Answer) -> bool:
    """Whether ``answer`` found the planted record ``ref``: among its matches, or a hit
    whose references are all withheld (a hit-only user's answer: docs/users.md)."""
    refs = {m.ref for m in answer.matches}
    return ref in refs or (answer.outcome == Outcome.HIT and refs == {""})


def builtin_checks(sent: list[Sent], workdir: Path) -> list[Check]:
    """What every run must show, whatever its faults: no wrong answer, no plaintext leak.

    Availability (no-answer) is the scenario's own checks' business: a partitioned bureau
    rightly does not answer. An answer that came back, though, must be right, and must be
    in the gateway's audit, even if the gateway was SIGKILLed right after (it commits an
    answer's row before the answer leaves: ncbsim.auditlog).
    """
    checks: list[Check] = []
    missed, false_hits, unanswered_planted, planted_total = [], [], 0, 0
    for s in sent:
        if biometric_report.is_biometric(s):  # right by degrees: see the report's biometric
            continue
        for a in s.answers:
            planted = s.planned.expect_hit.get(a.bureau)
            if planted is not None:
                planted_total += 1
                if not _answered(a.outcome):
                    unanswered_planted += 1
                elif not _found(planted, a):
                    missed.append(f"{s.planned.label}@{a.bureau}")
            elif a.outcome == Outcome.HIT:
                false_hits.append(f"{s.planned.label}@{a.bureau}")
    answered = planted_total - unanswered_planted
    checks.append(
        Check(
            "planted records hit when answered",
            not missed and answered > 0,
            f"{answered - len(missed)}/{answered} answered planted queries hit"
            + (f", {unanswered_planted} not answered" if unanswered_planted else "")
            + (f"; missed {missed[:5]}" if missed else ""),
        )
    )
    checks.append(
        Check(
            "no hit where the bureau holds nothing",
            not false_hits,
            f"{len(false_hits)} wrong" + (f": {false_hits[:5]}" if false_hits else ""),
        )
    )
    fetches = [
        s
        for s in sent
        if s.fetched is not None
        and _answered(s.fetched.outcome)
        and not biometric_report.is_biometric(s)
    ]
    good = [
        s
        for s in fetches
        if s.fetched is not None
        and s.fetched.outcome == Outcome.RECORD
        and s.fetched.response is not None
        and getattr(
            s.fetched.response.record, s.fetched.response.record.WhichOneof("record") or ""
        ).ref
        == s.planned.expect_hit[s.fetched.bureau]
    ]
    if fetches:
        checks.append(
            Check(
                "step-2 fetches returned the planted record",
                len(good) == len(fetches),
                f"{len(good)}/{len(fetches)} answered fetches",
            )
        )
    multi = multi_bureau_check(sent)
    if multi is not None:
        checks.append(multi)
    probes = [p for s in sent for p in s.planned.probes]
    leaked = _scan(Workdir(workdir).gateway.root, probes)
    checks.append(
        Check(
            "gateway files hold no plaintext",
            not leaked,
            f"{len(probes)} query strings and the canary searched in logs and audit"
            + (f"; found {leaked}" if leaked else ""),
        )
    )

    answered_ids = {a.message_id for s in sent for a in s.answers if _answered(a.outcome)}
    answered_ids |= {
        s.fetched.message_id for s in sent if s.fetched is not None and _answered(s.fetched.outcome)
    }
    delivered = {
        row.message_id
        for row in read_all(Workdir(workdir).gateway.audit)
        if row.message_id in answered_ids and row.outcome == "delivered"
    }
    checks.append(
        Check(
            "gateway audited every answered envelope",
            delivered == answered_ids,
            f"{len(delivered)}/{len(answered_ids)} answered envelopes audited as delivered",
        )
    )
    return checks


def message_checks(
    messages: dict[str, Any] | None, probes: list[str], workdir: Path
) -> list[Check]:
    """What every run that posts must show: no copy lost or processed twice, order kept
    per sender and recipient, and no post's text in the gateway's files."""
    if not messages or not messages.get("sent"):
        return []
    leaked = message_report.scan_gateway(workdir, probes)
    return [
        Check(
            "messages: nothing lost, nothing processed twice",
            messages["lost"] == 0 and messages["duplicates_processed"] == 0,
            f"{messages['recipients']} copies of {messages['sent']} posts:"
            f" {messages['delivered']} delivered, {messages['expired']} expired,"
            f" {messages['rejected']} rejected, {messages['pending']} pending,"
            f" {messages['lost']} lost, {messages['not_accepted']} not accepted;"
            f" {messages['duplicates_processed']} processed twice",
        ),
        Check(
            "messages kept their order per sender and recipient",
            messages["out_of_order"] == 0,
            f"{messages['out_of_order']} copies processed after a later post of their sender",
        ),
        Check(
            "gateway files hold no message text",
            not leaked,
            f"{len(probes)} strings of the posts (texts, notice subjects and summaries)"
            " searched in the gateway's files" + (f"; found {leaked}" if leaked else ""),
        ),
    ]


def planted_summary(sent: list[Sent]) -> dict[str, int]:
    """Answers to queries aimed at a planted record: how many, hit, missed, unanswered."""
    queries = hit = unanswered = 0
    for s in sent:
        if biometric_report.is_biometric(s):  # the report's biometric table counts it
            continue
        for a in s.answers:
            ref = s.planned.expect_hit.get(a.bureau)
            if ref is None:
                continue
            queries += 1
            if not _answered(a.outcome):
                unanswered += 1
            elif _found(ref, a):
                hit += 1
    return {
        "queries": queries,
        "hit": hit,
        "missed": queries - hit - unanswered,
        "unanswered": unanswered,
    }


def _explicit(sent: list[Sent]) -> dict[str, dict[str, Any]]:
    """The timeline's own queries: what came back, and whether it was what they expect."""
    out: dict[str, dict[str, Any]] = {}
    for s in sent:
        if not s.planned.explicit:
            continue
        outcomes = sorted({outcome_of(a) for a in s.answers})
        expected = s.planned.expect_hit
        owner = next((b for b, ref in expected.items() if ref is not None), next(iter(expected)))
        first = next((a for a in s.answers if a.bureau == owner), s.answers[0])
        outcome = outcome_of(s.fetched if s.fetched is not None else first)
        out[s.planned.label] = {
            "outcome": outcome,
            "outcomes": outcomes,
            "expected": s.planned.expect_outcome,
            "passed": s.planned.expect_outcome in (None, outcome),
        }
    return out


def evaluate(
    scenario: scenarios.Scenario, result: RunResult, workdir: Path
) -> tuple[dict[str, Any], list[Check]]:
    """The report and every check, built-in and the scenario's."""
    explicit = _explicit(result.sent)
    report = reports.build(
        scenario=scenario.name,
        bureaus=list(scenario.bureaus),
        kinds=schema.kinds(scenario),
        users={u.principal: u.role for u in scenario.users},
        queries=result.queries,
        faults=result.faults,
        run_end_s=result.run_end_s,
        timings=result.timings,
        extra={**result.extra, "planted": planted_summary(result.sent), "explicit": explicit},
    )
    if modalities := schema.biometric_kinds(scenario):
        report["biometric"] = biometric_report.summary(result.sent, modalities)
    for event in scenario.faults():
        if event.target == scenarios.GATEWAY and event.id in report["faults"]:
            report["faults"][event.id]["target"] = scenarios.GATEWAY
    drift = report_paths.differences(report, scenario, finished=False)
    if drift:  # a bug: the report builders and simulations/schema.py disagree
        log.error("report_schema_drift", missing=drift.missing, unexpected=drift.unexpected)
    checks = builtin_checks(result.sent, workdir)
    checks += message_checks(report.get("messages"), result.message_probes, workdir)
    errors = result.extra.get("fault_errors", [])
    if scenario.events and any(e.kind in ("fault", "heal") for e in scenario.events):
        checks.append(
            Check(
                "every fault applied and healed as scheduled",
                not errors,
                f"{len(errors)} failed" + (f": {'; '.join(errors[:3])}" if errors else ""),
            )
        )
    if explicit:
        wrong = [k for k, v in explicit.items() if not v["passed"]]
        checks.append(
            Check(
                "timeline queries answered as expected",
                not wrong,
                f"{len(explicit) - len(wrong)}/{len(explicit)}"
                + (f"; wrong: {', '.join(wrong)}" if wrong else ""),
            )
        )
    view = reports.check_view(report)
    for spec in scenario.checks:
        passed, detail = expressions.evaluate(spec.expect, view)
        checks.append(Check(spec.name, passed, detail, spec.expect))
    return report, checks


async def _until_sigterm(engine: Engine, watch: Console | None = None) -> RunResult:
    """Run the engine; SIGTERM cancels it, so it stops every process it started.
    ``watch``: the live view of ``ncbsim watch`` on that console meanwhile."""
    with cancel_on_sigterm():
        if watch is None:
            return await engine.run()
        from ncbsim.simulations.watch_view import watching

        async with watching(engine, watch):
            return await engine.run()


def _live_view(console: Console, watch: bool) -> Console | None:
    """The console of ``simulate --watch``'s live view: ``console`` if it is a terminal."""
    if watch and not console.is_terminal:
        console.print("--watch: not a terminal, so no live view; plain output follows")
    return console if watch and console.is_terminal else None


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run; the message says when, and what was stopped."""


def _intro(scenario: scenarios.Scenario) -> str:
    where = "in network namespaces" if scenario.engine.mode == "netns" else "on loopback"
    posts = scenario.messages.rate_per_s
    return (
        f"[bold]ncbsim simulate[/] {scenario.name}: {len(scenario.bureaus)} bureaus and a"
        f" gateway as real processes {where}; {scenario.traffic.duration_s:g} s of traffic"
        f" at {scenario.traffic.rate_per_s:g} queries/s"
        + (f" and {posts:g} posts/s" if posts else "")
    )


def _junit(
    path: Path | None, report: dict[str, Any], scenario: scenarios.Scenario, started: dt.datetime
) -> None:
    if path is not None:
        junit.write(path, report, seed=scenario.seed, scenario_file=scenario.path, started=started)


def _engine(
    scenario: scenarios.Scenario,
    work: Path,
    console: Console,
    log_level: str,
    trace_dir: Path | None,
    *,
    observe: bool = True,
) -> Engine:
    """The engine of the scenario's mode; ``trace_dir`` traces its processes, ``observe``
    merges the network's own events into the timeline."""
    if scenario.engine.mode != "netns":
        return Engine(
            scenario,
            work,
            console=console,
            log_level=log_level,
            trace_dir=trace_dir,
            observe=observe,
        )
    if trace_dir is not None:
        raise NcbsimError("--traces is not available for engine.mode = netns yet")
    from ncbsim.simulations.netns_engine import NetnsEngine

    return NetnsEngine(scenario, work, console=console, log_level=log_level, observe=observe)


@contextlib.contextmanager
def _traced(trace_dir: Path | None) -> Iterator[None]:
    """Trace the simulator into ``trace_dir/sim.jsonl`` while the block runs (None: not)."""
    traced = tracing.setup("sim", "sim", trace_dir / "sim.jsonl") if trace_dir else None
    try:
        yield
    finally:
        if traced is not None:
            traced.shutdown()


def run(  # noqa: PLR0915 - one run, start to finish, in the order it happens
    name: str,
    *,
    workdir: Path | None = None,
    report_path: Path | None = None,
    run_dir: Path | None = None,
    junit_path: Path | None = None,
    log_level: str = "info",
    console: Console | None = None,
    traces: bool = False,
    watch: bool = False,
    observe: bool = True,
) -> dict[str, Any]:
    """Run scenario ``name`` end to end; write the run directory; return the report.

    ``watch``: show the live view of ``ncbsim watch`` during the run (on a terminal).

    The scenario is validated before anything starts (ScenarioError names the file, the
    key and what was expected). ``junit_path`` also writes the checks as JUnit XML.
    ``observe=False`` leaves the network's own events out of the timeline (to measure
    what observing costs: scripts/observe_cost.py).
    Ctrl-C or SIGTERM stops every process the run started and raises :class:`Interrupted`
    saying what was stopped; the run directory is removed if it holds nothing. With
    ``traces`` every process of the run (the simulator included) appends its spans to
    the run directory's ``traces/``, one file each (docs/traces.md).
    """
    console = console or Console()
    scenario = scenarios.load(name)
    started_at = dt.datetime.now(dt.UTC)
    folder = (run_dir or rundir.default_run_dir(scenario.name)).resolve()
    if scenario.engine.mode == "netns":
        from ncbsim.simulations import netns_engine

        if not netns_engine.inside():
            # Root namespace: build the namespaces, run this again inside them, clean up.
            try:
                report = netns_engine.run_netns(
                    name, run_dir=folder, workdir=workdir, report_path=report_path,
                    log_level=log_level,
                )  # fmt: skip
            except KeyboardInterrupt:
                raise Interrupted(
                    "interrupted: the run in network namespaces stopped every process and its"
                    " namespaces were deleted; partial results not written"
                ) from None
            _junit(junit_path, report, scenario, started_at)
            return report
    created = rundir.create(folder)  # before anything starts: an unwritable one fails now
    temp = None if workdir is not None else Path(tempfile.mkdtemp(prefix="ncbsim-"))
    work = (workdir or temp or Path()).resolve()
    started = time.monotonic()
    trace_dir = folder / "traces" if traces else None
    try:
        console.print(_intro(scenario))
        live = _live_view(console, watch)  # the engine's progress then goes plain, above it
        engine_console = Console(force_terminal=False) if live else console
        engine = _engine(scenario, work, engine_console, log_level, trace_dir, observe=observe)
        try:
            # SIGTERM (a CI job cancelled, `timeout`) cancels the run like Ctrl-C does.
            with _traced(trace_dir):
                result = asyncio.run(_until_sigterm(engine, live))
        except (KeyboardInterrupt, asyncio.CancelledError):
            raise Interrupted(f"{engine.interrupted()}; partial results not written") from None
        try:
            report, checks = evaluate(scenario, result, work)
        except KeyboardInterrupt:
            raise Interrupted(
                "interrupted while checking the results (every process had stopped);"
                " results not written"
            ) from None
        checked_s = engine.now_s()
    except BaseException:
        rundir.remove_if_empty(folder, created)
        raise
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
    report["checks"] = [
        {"name": c.name, "passed": c.passed, "detail": c.detail, "expect": c.expect} for c in checks
    ]
    report["passed"] = all(c.passed for c in checks)
    report["duration_s"] = round(time.monotonic() - started, 2)
    report["workdir"] = str(work) if temp is None else None
    report["run_dir"] = str(folder)
    report["traces"] = str(trace_dir) if trace_dir is not None else None
    try:
        rundir.write(folder, report, result, report["checks"], checked_s, report_path=report_path)
        _junit(junit_path, report, scenario, started_at)
    except NcbsimError:  # a file that cannot be written: said in one line
        rundir.remove_if_empty(folder, created)
        raise
    except KeyboardInterrupt:
        rundir.remove_if_empty(folder, created)
        raise Interrupted(
            f"interrupted while writing the results (every process had stopped); {folder}"
            " holds what was written"
        ) from None
    reports.print_summary(console, report)
    console.print(f"run directory: {folder} (report.json, timeline.jsonl, latency.png)")
    if trace_dir is not None:
        console.print(f"traces: {trace_dir} (slowest queries' trace ids in report.json)")
    if junit_path is not None:
        console.print(f"JUnit XML: {junit_path}")
    return report
