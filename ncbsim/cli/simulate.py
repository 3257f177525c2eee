"""``ncbsim simulate`` and ``ncbsim demo``: run a scenario end to end, or narrate one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_demo_parser", "add_parsers", "cmd_demo", "cmd_simulate"]


def cmd_simulate(args: argparse.Namespace) -> int:
    from ncbsim.simulations.simulate import Interrupted, run

    if args.validate:
        from ncbsim.simulations.describe import validate

        print("\n".join(validate(args.scenario)))
        return 0
    try:
        report = run(
            args.scenario,
            workdir=args.workdir,
            report_path=args.report,
            run_dir=args.run_dir,
            junit_path=args.junit,
            log_level=args.child_log_level,
            traces=args.traces,
            watch=args.watch,
        )
    except Interrupted as exc:  # every process is stopped; say what was
        print(f"ncbsim: {exc}", file=sys.stderr)
        return 130
    return 0 if report["passed"] else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from ncbsim.simulations.demo import DemoConfig, run

    return run(
        DemoConfig(
            scenario=args.scenario,
            auto=args.auto,
            workdir=args.workdir,
            deadline_s=args.deadline,
            log_level=args.child_log_level,
        )
    )


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``simulate`` on the ``ncbsim`` subparsers."""
    sim = sub.add_parser("simulate", help="run a scenario end to end and check the results")
    sim.add_argument(
        "scenario",
        nargs="?",
        default="quickstart",
        help="a scenario file, or the name of one in simulations/scenarios/ (default quickstart)",
    )
    sim.add_argument("--workdir", type=Path, help="keep PKI, data, logs and audit here")
    sim.add_argument("--report", type=Path, help="also write the JSON report here")
    sim.add_argument(
        "--run-dir",
        type=Path,
        help="where report.json, timeline.jsonl and latency.png go (default runs/NAME-TIME)",
    )
    sim.add_argument(
        "--junit",
        type=Path,
        metavar="PATH",
        help="also write the checks as JUnit XML (one test case per check), for CI",
    )
    sim.add_argument(
        "--watch",
        action="store_true",
        help="show the live view of `ncbsim watch` during the run (on a terminal)",
    )
    sim.add_argument(
        "--validate",
        action="store_true",
        help="check the scenario (keys, values, check paths) without starting anything; "
        "print what it would run and 'valid', or the error (exit 2)",
    )
    sim.add_argument(
        "--traces",
        action="store_true",
        help="trace every query: each process appends its OpenTelemetry spans to the run "
        "directory's traces/ (sim.jsonl, gateway.jsonl, host-N.jsonl); report.json names "
        "the slowest queries' trace ids (docs/traces.md)",
    )
    sim.set_defaults(func=cmd_simulate, server=False)


def add_demo_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``demo``: trainer mode, a small network narrated step by step."""
    demo = sub.add_parser(
        "demo",
        help="trainer mode: a small network, the lesson narrated step by step",
        description="Start a small real network and walk through the lesson (the "
        "classroom's script): queries, a diffusion, a red notice published by GS, a border "
        "check that hits it and its withdrawal, showing what the asking bureau, the gateway "
        "and the answering bureau each see. Steps the scenario cannot run are skipped: "
        "notices need a GS node, attacks a classroom-mode gateway (ncbsim classroom).",
    )
    demo.add_argument(
        "scenario",
        nargs="?",
        default="red-notice",
        help="default red-notice (FR, DE, IT, ES, NL and GS); quickstart has no GS, so its "
        "notice steps are skipped",
    )
    demo.add_argument("--auto", action="store_true", help="run without pausing for Enter")
    demo.add_argument("--workdir", type=Path, help="keep the network's files here")
    demo.add_argument(
        "--deadline", type=float, default=2.0, help="multi-bureau deadline in s (default 2)"
    )
    demo.set_defaults(func=cmd_demo, server=False)
