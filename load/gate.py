"""The SLO gate inside locust: judge the run when locust quits, and set its exit code.

Installed by the locust file. On the master (or the single local process) the
``quitting`` hook reads the SLO file, judges locust's aggregated statistics,
prints the verdict table, writes ``--verdict`` JSON, and sets
``environment.process_exit_code``: 0 when every objective is met, 1 on any breach.
Workers only send their figures to the master; they do not judge.

Requests of type :data:`ncbsim.load.slo.WARM_UP` (a user's directory fetch) are left out
of every judged figure, ``overall`` included: :func:`figures` rebuilds the overall
figures from the other entries rather than reading locust's total, which counts
them. The verdict lists them apart, as warm-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from locust.runners import WorkerRunner
from locust.stats import StatsEntry

from ncbsim.load import slo
from ncbsim.load.plan import LoadPlan


def add_arguments(parser: Any) -> None:
    """Locust command-line options of the gate (``init_command_line_parser``)."""
    parser.add_argument(
        "--slo",
        env_var="NCBSIM_LOAD_SLO",
        default=str(slo.DEFAULT_SLO),
        help="SLO thresholds (TOML) the run must meet",
    )
    parser.add_argument(
        "--verdict", env_var="NCBSIM_LOAD_VERDICT", default="", help="write the verdict JSON here"
    )


def check_slo_file(environment: Any, **_kwargs: Any) -> None:
    """``init`` hook: refuse to start with an SLO file that does not parse."""
    if not isinstance(environment.runner, WorkerRunner):
        slo.load(Path(environment.parsed_options.slo))


def figures(stats: Any) -> tuple[slo.Measured, dict[str, slo.Measured], dict[str, slo.Measured]]:
    """(overall, by request name, warm-up by name) from locust's ``RequestStats``.

    ``overall`` merges every entry that is not warm-up, the way locust's master
    merges its workers' entries (``StatsEntry.extend``); its requests per second
    are over the whole run, like locust's own total.
    """
    judged = StatsEntry(stats, "overall", "", use_response_times_cache=False)
    per_name: dict[str, slo.Measured] = {}
    warm_up: dict[str, slo.Measured] = {}
    for (name, method), entry in stats.entries.items():
        if method == slo.WARM_UP:
            warm_up[name] = slo.from_locust(entry, name)
        else:
            per_name[name] = slo.from_locust(entry, name)
            judged.extend(entry)
    return slo.from_locust(judged, "overall"), per_name, warm_up


def judge(environment: Any, **_kwargs: Any) -> None:
    """``quitting`` hook: print the verdict and set the exit code."""
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        # The master judges the combined figures; a worker's exit says only that it ran.
        environment.process_exit_code = 0
        return
    options = environment.parsed_options
    spec = slo.load(Path(options.slo))
    stats = environment.stats
    overall, per_name, warm_up = figures(stats)
    exceptions = sum(e["count"] for e in runner.exceptions.values())
    checks = slo.evaluate(spec, overall, per_name)
    plan = LoadPlan.read(Path(options.plan)) if options.plan else None
    ended = stats.last_request_timestamp or stats.start_time
    result = slo.verdict(
        spec,
        checks,
        overall,
        per_name,
        workers=plan.workers if plan else 1,
        exceptions=exceptions,
        warm_up=warm_up,
        target=plan.target() if plan else None,
        duration_s=max(ended - stats.start_time, 0.0),
    )
    text = slo.render(checks, exceptions=exceptions, source=spec.source, warm_up=warm_up)
    print(text, flush=True)
    if options.verdict:
        slo.write_verdict(Path(options.verdict), result)
    environment.process_exit_code = 0 if result["passed"] else 1
