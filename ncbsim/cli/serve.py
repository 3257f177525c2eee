"""``ncbsim gateway``, ``node`` and ``host``: run the network's servers in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from pathlib import Path

from ncbsim.cli._trace import add_trace_file_option, traced
from ncbsim.errors import NcbsimError
from ncbsim.gateway.config import (
    DEFAULT_BURST,
    DEFAULT_CONTROL_BURST,
    DEFAULT_CONTROL_RATE_PER_S,
    DEFAULT_DAILY_QUOTA,
    DEFAULT_MAILBOX_RETENTION_H,
    DEFAULT_MAX_ENVELOPE_BYTES,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_QUEUE_PER_SENDER,
    DEFAULT_RATE_PER_S,
)
from ncbsim.pki import PkiDir
from ncbsim.workdir import BureauFiles, GatewayFiles, NoGatewayError, Workdir, find_gateway

__all__ = ["DEFAULT_GATEWAY_LISTEN", "add_host_parser", "add_parsers", "cmd_gateway", "cmd_node"]

DEFAULT_GATEWAY_LISTEN = "127.0.0.1:7600"


def cmd_gateway(args: argparse.Namespace) -> int:
    from ncbsim.gateway.config import GatewayConfig
    from ncbsim.gateway.limits import BureauLimit, load_overrides
    from ncbsim.gateway.server import serve

    default = BureauLimit(rate_per_s=args.rate, burst=args.burst, daily_quota=args.daily_quota)
    files = GatewayFiles.beside(args.audit or Workdir(args.dir).gateway.audit)
    if args.mailbox:
        files = dataclasses.replace(files, mailbox=args.mailbox)
    config = GatewayConfig(
        pki=PkiDir(args.dir),
        listen=args.listen,
        files=files,
        ready_file=args.ready_file or Workdir(args.dir).gateway.ready,
        max_envelope_bytes=args.max_envelope_bytes,
        rate_per_s=args.rate,
        burst=args.burst,
        daily_quota=args.daily_quota,
        bureau_limits=load_overrides(args.limits, default) if args.limits else {},
        control_rate_per_s=args.control_rate,
        control_burst=args.control_burst,
        max_queue=args.max_queue,
        max_queue_per_sender=args.max_queue_per_sender,
        mailbox_retention_h=args.retention_hours,
        metrics_listen=args.metrics_listen,
        metrics_any_address=args.metrics_any_address,
        health_listen=args.health_listen,
        classroom_attacks=args.classroom_attacks,
    )
    _check_listen(config.listen)  # before the mailbox and audit are opened
    if config.health_listen is not None:
        _check_listen(config.health_listen, "--health-listen")
    with traced("gateway", "gateway", args.trace_file):
        asyncio.run(serve(config))
    return 0


def _check_listen(listen: str, option: str = "--listen") -> None:
    """Refuse a --listen address that cannot be bound, in one line, before gRPC tries."""
    from ncbsim.serving import listen_problem

    problem = listen_problem(listen)
    if problem is not None:
        raise NcbsimError(f"{listen}: {problem}; pass {option} HOST:PORT (port 0 picks a free one)")


def cmd_node(args: argparse.Namespace) -> int:
    from ncbsim.node import datagen
    from ncbsim.node.config import NodeConfig
    from ncbsim.node.server import serve

    pki = PkiDir(args.dir)
    pki.require_bureau(args.bureau)
    _check_listen(args.listen)
    try:
        gateway = args.gateway or find_gateway(args.dir)
    except NoGatewayError:  # a corrupt network.json says so itself
        raise NcbsimError(
            f"no running gateway found in {args.dir}; start one with "
            f"`ncbsim gateway --dir {args.dir}`, or pass --gateway HOST:PORT"
        ) from None
    db = args.db or Workdir(args.dir).bureau(args.bureau).records
    files = BureauFiles.beside(db)
    if args.audit:
        files = dataclasses.replace(files, audit=args.audit)
    if args.replay_db:
        files = dataclasses.replace(files, replay=args.replay_db)
    config = NodeConfig(
        pki=pki,
        bureau=args.bureau,
        files=files,
        gateway=gateway,
        clock_skew_ms=args.clock_skew_ms,
        biometric_daily_cap=args.biometric_daily_cap,
        listen=args.listen,
        ready_file=args.ready_file,
        metrics_listen=args.metrics_listen,
        metrics_any_address=args.metrics_any_address,
        advertise=args.advertise,
    )
    if not db.exists():  # only once the options are known to be good
        datagen.generate(
            db,
            args.bureau,
            seed=args.seed,
            documents=2000,
            persons=500,
            vehicles=500,
            biometrics=100,
        )
    with traced("node", args.bureau, args.trace_file):
        asyncio.run(serve(config))
    return 0


def _add_metrics_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-listen",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="serve Prometheus metrics here, loopback only (port 0: any; the ready file "
        "and network.json say which); 'off': none (docs/metrics.md)",
    )
    add_metrics_any_address_option(parser)


def add_metrics_any_address_option(parser: argparse.ArgumentParser) -> None:
    """``--metrics-any-address``: the opt-in to metrics on a non-loopback address."""
    parser.add_argument(
        "--metrics-any-address",
        action="store_true",
        help="allow --metrics-listen on any address, not only loopback: in a pod, whose "
        "NetworkPolicy decides who scrapes (docs/metrics.md)",
    )


def add_health_listen_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--health-listen``: a plaintext port answering grpc.health.v1.Health alone."""
    parser.add_argument(
        "--health-listen",
        metavar="HOST:PORT",
        help=f"also answer grpc.health.v1.Health, and nothing else, without TLS here (the "
        f"kubelet's gRPC probe; any address; port 0: any): {what}",
    )


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``gateway`` and ``node`` on the ``ncbsim`` subparsers."""
    gw = sub.add_parser("gateway", help="run the gateway in the foreground")
    gw.add_argument("--dir", type=Path, required=True, help="PKI directory (from pki init)")
    gw.add_argument("--listen", default=DEFAULT_GATEWAY_LISTEN, help="host:port (port 0: any)")
    gw.add_argument("--audit", type=Path, help="audit database (default DIR/gateway/audit.sqlite)")
    gw.add_argument("--ready-file", type=Path, help="write pid and address here once serving")
    _add_metrics_option(gw)
    add_health_listen_option(gw, '"" and ncbsim.v2.GatewayService')
    gw.add_argument(
        "--mailbox",
        type=Path,
        help="store of one-way messages (default: mailbox.sqlite next to the audit database)",
    )
    limits = gw.add_argument_group("limits (docs/limits.md); over a limit: RESOURCE_EXHAUSTED")
    limits.add_argument(
        "--max-envelope-bytes",
        type=int,
        default=DEFAULT_MAX_ENVELOPE_BYTES,
        help=f"largest envelope accepted (default {DEFAULT_MAX_ENVELOPE_BYTES})",
    )
    limits.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE_PER_S,
        help=f"envelopes/s each bureau may send, sustained (default {DEFAULT_RATE_PER_S:g})",
    )
    limits.add_argument(
        "--burst",
        type=int,
        default=DEFAULT_BURST,
        help=f"envelopes each bureau may send at once (default {DEFAULT_BURST})",
    )
    limits.add_argument(
        "--daily-quota",
        type=int,
        default=DEFAULT_DAILY_QUOTA,
        help=f"envelopes each bureau may send per UTC day (default {DEFAULT_DAILY_QUOTA})",
    )
    limits.add_argument(
        "--limits", type=Path, metavar="FILE.toml", help="per-bureau overrides ([bureaus.FR])"
    )
    limits.add_argument(
        "--control-rate",
        type=float,
        default=DEFAULT_CONTROL_RATE_PER_S,
        help="GetDirectory/Register/Routes calls/s each bureau may make, sustained "
        f"(default {DEFAULT_CONTROL_RATE_PER_S:g})",
    )
    limits.add_argument(
        "--control-burst",
        type=int,
        default=DEFAULT_CONTROL_BURST,
        help=f"such calls each bureau may make at once (default {DEFAULT_CONTROL_BURST})",
    )
    limits.add_argument(
        "--max-queue",
        type=int,
        default=DEFAULT_MAX_QUEUE,
        help="undelivered messages a bureau may have queued before a Post to it is "
        f"refused as QUEUE_FULL (default {DEFAULT_MAX_QUEUE})",
    )
    limits.add_argument(
        "--max-queue-per-sender",
        type=int,
        default=DEFAULT_MAX_QUEUE_PER_SENDER,
        help="undelivered messages one bureau may have queued for another before its Post "
        f"to it is refused as QUEUE_FULL (default {DEFAULT_MAX_QUEUE_PER_SENDER})",
    )
    gw.add_argument(
        "--retention-hours",
        type=float,
        default=DEFAULT_MAILBOX_RETENTION_H,
        help="hours a delivered or expired message stays listable by `ncbsim receipts` "
        f"before the gateway deletes its row (default {DEFAULT_MAILBOX_RETENTION_H:g})",
    )
    add_trace_file_option(gw)
    gw.add_argument(
        "--classroom-attacks",
        type=Path,
        metavar="FILE",
        help="for `ncbsim classroom` only: serve as the classroom-mode gateway, which attacks "
        "on request; FILE (JSON, read on every call) names the attack, absent or "
        '{"mode": "honest"} = honest. Never on a real network',
    )
    gw.set_defaults(func=cmd_gateway, server=True)

    node = sub.add_parser("node", help="run one bureau's node in the foreground")
    node.add_argument("--dir", type=Path, required=True, help="PKI directory (from pki init)")
    node.add_argument("--bureau", required=True, type=str.upper, help="bureau code, e.g. FR")
    node.add_argument("--gateway", help="gateway host:port (default: found in DIR)")
    node.add_argument("--listen", default="127.0.0.1:0", help="host:port (port 0: any)")
    node.add_argument(
        "--advertise",
        metavar="HOST:PORT|auto",
        help="the address registered with the gateway (default: the bound one); 'auto': "
        "this machine's address toward the gateway with the bound port (in a pod)",
    )
    node.add_argument("--db", type=Path, help="records (default DIR/bureaus/XX/records.sqlite)")
    node.add_argument("--audit", type=Path, help="audit log (default: audit.sqlite next to --db)")
    node.add_argument(
        "--replay-db", type=Path, help="replay cache (default: replay.sqlite next to --db)"
    )
    node.add_argument(
        "--clock-skew-ms",
        type=int,
        default=30_000,
        help="how far ahead a sender's clock may be, in ms (default 30000)",
    )
    node.add_argument(
        "--biometric-daily-cap",
        type=int,
        default=500,
        help="biometric searches each requesting bureau may make here a UTC day (Prüm; "
        "default 500); beyond it RESOURCE_EXHAUSTED until midnight UTC",
    )
    node.add_argument("--seed", type=int, default=1, help="seed if records must be generated")
    node.add_argument("--ready-file", type=Path, help="write pid and address here once serving")
    _add_metrics_option(node)
    add_trace_file_option(node)
    node.set_defaults(func=cmd_node, server=True)


def add_host_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``host``: many bureau nodes in one process (the simulator's hosts)."""
    from ncbsim.cli import host

    host.add_parsers(sub)
