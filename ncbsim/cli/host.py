"""``ncbsim host``: many bureau nodes in one process (the simulator's hosts, and a pod's).

The spec, the control socket and the host itself are :mod:`ncbsim.node.host`; this is
the command's entry and its options.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from ncbsim.node.host import load_spec, run_host
from ncbsim.pki import PkiDir

__all__ = ["add_parsers", "cmd_host"]


def cmd_host(args: argparse.Namespace) -> int:
    """``ncbsim host``: run the bureaus of a spec in this process."""
    from ncbsim import tracing
    from ncbsim.config import metrics_listen_address
    from ncbsim.node.host_probes import check_health_listen

    # A bad option is named as such, in one line, before anything starts.
    any_address = args.metrics_any_address
    metrics_listen_address(args.metrics_listen, any_address=any_address)
    if args.pod_metrics_listen is not None:
        metrics_listen_address(args.pod_metrics_listen, any_address=any_address)
    if args.health_listen is not None:
        check_health_listen(args.health_listen)
    configs = load_spec(
        args.spec,
        PkiDir(args.dir),
        metrics_listen=args.metrics_listen,
        metrics_any_address=any_address,
    )
    # One trace file for the whole process; each span names its bureau (ncbsim.party).
    party = configs[0].bureau if len(configs) == 1 else "host"
    traced = tracing.setup("node", party, args.trace_file)
    try:
        return asyncio.run(
            run_host(
                configs,
                ready_file=args.ready_file,
                control=args.control,
                health_listen=args.health_listen,
                pod_metrics_listen=args.pod_metrics_listen,
                metrics_any_address=any_address,
            )
        )
    finally:
        if traced is not None:
            traced.shutdown()


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``host`` on the ``ncbsim`` subparsers."""
    host = sub.add_parser(
        "host",
        help="run many bureau nodes in one process (used by the simulator)",
        description="Run every bureau of a JSON spec in one process, each with its own "
        "port, keys, databases and clock. See node/host.py for the spec and the control "
        "socket.",
    )
    host.add_argument("--dir", type=Path, required=True, help="PKI (or work) directory")
    host.add_argument("--spec", type=Path, required=True, help="JSON spec of the bureaus")
    host.add_argument("--ready-file", type=Path, help="written once every bureau serves")
    host.add_argument("--control", type=Path, help="Unix socket for clock and status requests")
    host.add_argument(
        "--metrics-listen",
        default="127.0.0.1:0",
        help="loopback HOST:PORT of each bureau's Prometheus metrics (port 0: any), unless "
        "its spec says metrics_listen; 'off': none (docs/metrics.md)",
    )
    pod = host.add_argument_group("in a pod (node/host_probes.py)")
    pod.add_argument(
        "--health-listen",
        metavar="HOST:PORT",
        help="answer grpc.health.v1.Health, and nothing else, without TLS here (the "
        "kubelet's probe; any address): '' once every bureau serves, ncbsim.bureau.XX each",
    )
    pod.add_argument(
        "--pod-metrics-listen",
        metavar="HOST:PORT",
        help="serve every bureau's metrics on one page, each sample labelled bureau=XX",
    )
    pod.add_argument(
        "--metrics-any-address",
        action="store_true",
        help="allow the metrics options on any address, not only loopback: in a pod, whose "
        "NetworkPolicy decides who scrapes (docs/metrics.md)",
    )
    host.add_argument(
        "--trace-file",
        type=Path,
        metavar="PATH",
        help="append the spans of every bureau of the host to PATH, one JSON line each",
    )
    host.set_defaults(func=cmd_host, server=True)
