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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog
from rich.console import Console

from ncbsim import tracing
from ncbsim.errors import NcbsimError
from ncbsim.processes import cancel_on_sigterm
from ncbsim.simulations import biometric_report, junit, rundir, schema
from ncbsim.simulations import checks as expressions
from ncbsim.simulations import paths as report_paths
from ncbsim.simulations import report as reports
from ncbsim.simulations import scenario as scenarios
from ncbsim.simulations.engine import Engine
from ncbsim.simulations.outcomes import RunResult
from ncbsim.simulations.run_checks import (
    Check,
    builtin_checks,
    explicit_outcomes,
    message_checks,
    planted_summary,
)

log = structlog.get_logger()


def evaluate(
    scenario: scenarios.Scenario, result: RunResult, workdir: Path
) -> tuple[dict[str, Any], list[Check]]:
    """The report and every check, built-in and the scenario's."""
    explicit = explicit_outcomes(result.sent)
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
