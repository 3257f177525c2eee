"""``ncbsim load`` and ``ncbsim bench``: the load test with SLO gates, and the benchmark.

Both commands keep their options and their work in :mod:`ncbsim.load` (``runner`` and
``bench``); these are the entries of the command line.
"""

from __future__ import annotations

import argparse

__all__ = ["add_parsers", "cmd_bench", "cmd_bench_biometrics", "cmd_load"]


def cmd_load(args: argparse.Namespace) -> int:
    from ncbsim.load import runner

    return runner.cli(args)


def cmd_bench(args: argparse.Namespace) -> int:
    from ncbsim.load import bench

    return bench.cli(args)


def cmd_bench_biometrics(args: argparse.Namespace) -> int:
    from ncbsim.load import bench_biometrics

    return bench_biometrics.cli(args)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``load`` and ``bench`` on the ``ncbsim`` subparsers."""
    from ncbsim.load import bench, runner  # light modules: their heavy imports happen in cli()

    load = sub.add_parser("load", help="locust load test of the query path, with SLO gates")
    runner.add_arguments(load)
    load.set_defaults(func=cmd_load, server=False)

    bench_parser = sub.add_parser(
        "bench", help="precise benchmark: encrypted query path against a plain gRPC relay"
    )
    bench.add_arguments(bench_parser)
    bench_parser.set_defaults(func=cmd_bench, server=False)
    # `ncbsim bench biometrics`: an optional sub-command, so plain `ncbsim bench ...` is unchanged.
    targets = bench_parser.add_subparsers(dest="bench_target", metavar="{biometrics}")
    biometrics = targets.add_parser(
        "biometrics", help="accuracy (FMR, FNMR, DET) and 1:N search speed of the biometric model"
    )
    from ncbsim.load import bench_biometrics

    bench_biometrics.add_arguments(biometrics)
    biometrics.set_defaults(func=cmd_bench_biometrics, server=False)
