"""The SLO gate inside locust: judge the run when locust quits, and set its exit code.

Installed by the locust file. On the master (or the single local process) the
``quitting`` hook reads the SLO file, judges locust's aggregated statistics,
prints the verdict table, writes ``--verdict`` JSON, and sets
``environment.process_exit_code``: 0 when every objective is met, 1 on any breach.
Workers only send their figures to the master; they do not judge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from locust.runners import WorkerRunner

from load import slo
from load.plan import LoadPlan


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
    overall = slo.from_locust(stats.total, "overall")
    per_name = {name: slo.from_locust(entry, name) for (name, _), entry in stats.entries.items()}
    exceptions = sum(e["count"] for e in runner.exceptions.values())
    checks = slo.evaluate(spec, overall, per_name)
    workers = LoadPlan.read(Path(options.plan)).workers if options.plan else 1
    result = slo.verdict(spec, checks, overall, per_name, workers=workers, exceptions=exceptions)
    print(slo.render(checks, exceptions=exceptions, source=spec.source), flush=True)
    if options.verdict:
        slo.write_verdict(Path(options.verdict), result)
    environment.process_exit_code = 0 if result["passed"] else 1
