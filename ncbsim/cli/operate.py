"""``ncbsim up``, ``down``, ``status``, ``restart``, ``fault``, ``heal`` and ``faultd``:
operating a network of ``ncbsim up`` (docs/scenarios.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from ncbsim.cli._common import add_workdir_option, codes
from ncbsim.errors import NcbsimError

__all__ = [
    "add_faultd_parser",
    "add_parsers",
    "cmd_down",
    "cmd_fault",
    "cmd_heal",
    "cmd_restart",
    "cmd_status",
    "cmd_up",
]


def cmd_up(args: argparse.Namespace) -> int:
    from ncbsim.serving import wait_for_shutdown
    from ncbsim.simulations import operate
    from ncbsim.simulations import scenario as scenarios

    network = operate.up(
        args.workdir,
        scenarios.load(args.scenario),
        detach=args.detach,
        log_level=args.child_log_level,
        faults=args.faults,
        trace_dir=args.trace_dir,
        suite=args.suite,
    )
    # From here on a foreground network is ours to stop, however the command ends: a
    # Ctrl-C that lands before wait_for_shutdown installs its handlers is a stop request too.
    try:
        procs = [*network.procs, *([network.faultd] if network.faultd else [])]
        for proc in procs:
            name = proc.bureau or proc.role
            print(f"{name:8} pid {proc.pid:<8} {proc.address:22} log {proc.log}")
        print(f"network.json: {network.workdir / 'network.json'}")
        if network.trace_dir is not None:
            print(f"traces: {network.trace_dir} (gateway.jsonl, host-N.jsonl)")
        if args.faults:
            print(f"links through fault proxies: ncbsim fault --workdir {args.workdir} KIND ...")
        if args.detach:
            print(f"detached; stop it with: ncbsim down --workdir {args.workdir}")
            return 0
        print("running; press Ctrl-C to stop", flush=True)
        asyncio.run(wait_for_shutdown())
    except KeyboardInterrupt:
        if args.detach:
            raise
    finally:
        if not args.detach:
            network.stop()
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from ncbsim.simulations import operate

    print(f"{operate.down(args.workdir).describe()} in {args.workdir}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from ncbsim.simulations import operate

    if args.prometheus:
        return _prometheus(args)
    data = operate.status(args.workdir, timeout=args.timeout)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        operate.render(data)
    return 0 if data["up"] else 1


def _prometheus(args: argparse.Namespace) -> int:
    """``status --prometheus``: print (or write to --out) a prometheus.yml for the network."""
    from ncbsim.simulations import operate
    from ncbsim.simulations.scrape import prometheus_yml

    network = operate.load(args.workdir)
    made_by = f"ncbsim status --workdir {args.workdir} --prometheus"
    text = prometheus_yml(network.procs, workdir=str(network.workdir), made_by=made_by)
    if args.out is None:
        print(text, end="")
    else:
        args.out.write_text(text)
        print(f"wrote {args.out}: {text.count('- targets:')} targets")
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    from ncbsim.simulations import operate

    print(operate.restart(args.workdir, bureau=args.bureau, gateway=args.gateway))
    return 0


def cmd_fault(args: argparse.Namespace) -> int:
    from ncbsim.simulations import live_faults
    from ncbsim.simulations.scenario import FAULT_PARAMS, INSTANT_FAULTS

    table: dict[str, object] = {"fault": args.kind}
    for key in (
        "id",
        "bureaus",
        "target",
        "direction",
        "duration_s",
        *FAULT_PARAMS.get(args.kind, {}),
    ):
        value = getattr(args, key, None)
        if value is not None:
            table[key] = value
    result = live_faults.apply(args.workdir, table)
    if args.json:
        print(json.dumps(result))
        return 0
    print(result["detail"])
    fault = result["fault"]
    if args.kind not in INSTANT_FAULTS and fault["until_ms"] is None:
        print(f"in force until: ncbsim heal --workdir {args.workdir} {fault['id']}")
    return 0


def cmd_heal(args: argparse.Namespace) -> int:
    from ncbsim.simulations import live_faults

    if not args.ids and not args.all:
        raise NcbsimError("name the faults to heal (ids from `ncbsim status`), or --all")
    lines = live_faults.heal(args.workdir, args.ids, everything=args.all)
    print("\n".join(lines) if lines else "no faults in force")
    return 0


def _scalar(text: str) -> int | float | str:
    """A parameter as a scenario file would hold it: an integer, a decimal, or (an error
    the scenario's own check reports) text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


_FAULT_HELP = {
    "latency": "delay the bureau's link (needs up --faults)",
    "bandwidth": "cap the link's throughput (needs up --faults)",
    "loss": "hold back a share of chunks one retransmission timeout (needs up --faults)",
    "slice": "cut writes into small pieces (needs up --faults)",
    "blackhole": "bytes vanish, connections stay open (needs up --faults)",
    "reset": "reset the link's open connections, once (needs up --faults)",
    "down": "refuse new connections on the link (needs up --faults)",
    "partition": "cut bureaus off from the gateway, both ways (needs up --faults)",
    "kill": "SIGKILL the bureau's host process, or --target gateway",
    "restart": "start again what a live kill stopped",
    "pause": "SIGSTOP the bureau's host process, or --target gateway",
    "resume": "SIGCONT what a live pause stopped",
    "skew": "run the bureau's clock --offset-ms ahead (or behind, < 0)",
}


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register up, down, status, restart, fault and heal on the ``ncbsim`` subparsers."""
    from ncbsim.simulations import scenario as sc

    up = sub.add_parser("up", help="bring up a scenario's gateway and bureaus")
    up.add_argument("scenario", help="scenario name (simulations/scenarios) or .toml path")
    up.add_argument("--workdir", type=Path, required=True, help="PKI, data, logs and audit")
    up.add_argument("--detach", action="store_true", help="return once the network serves")
    up.add_argument(
        "--faults",
        action="store_true",
        help="put every bureau's link to the gateway through fault proxies (a process of "
        "their own), so `ncbsim fault` can apply link faults and partitions live",
    )
    up.add_argument(
        "--trace-dir",
        type=Path,
        metavar="DIR",
        help="every process appends its OpenTelemetry spans to DIR as JSON lines: "
        "gateway.jsonl, host-N.jsonl (docs/traces.md)",
    )
    up.add_argument(
        "--suite",
        help="query session suite of a new PKI: classic (default) or hybrid (post-quantum); "
        "a workdir's PKI keeps the suite it was made with",
    )
    up.set_defaults(func=cmd_up, server=False)

    down = sub.add_parser("down", help="stop a detached network")
    down.add_argument("--workdir", type=Path, required=True)
    down.set_defaults(func=cmd_down, server=False)
    status = sub.add_parser(
        "status", help="every process of a running network, alive and healthy? (exit 1 if not)"
    )
    add_workdir_option(status)
    status.add_argument("--json", action="store_true", help="one JSON object (docs/scenarios.md)")
    status.add_argument(
        "--timeout", type=float, default=2.0, help="seconds per health check (default 2)"
    )
    status.add_argument(
        "--prometheus",
        action="store_true",
        help="print a prometheus.yml scraping every party's metrics instead (docs/metrics.md)",
    )
    status.add_argument("--out", type=Path, help="with --prometheus: write it to this file")
    status.set_defaults(func=cmd_status, server=False)

    restart = sub.add_parser(
        "restart", help="restart one process with its files, ports and current certificate"
    )
    add_workdir_option(restart)
    which = restart.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--bureau", type=str.upper, help="the bureau (its host process: and the bureaus it serves)"
    )
    which.add_argument("--gateway", action="store_true", help="the gateway")
    restart.set_defaults(func=cmd_restart, server=False)

    fault = sub.add_parser(
        "fault",
        help="apply a scenario fault live (link faults need `up --faults`)",
        description="Apply a fault to a running network, with the kinds, keys and "
        "parameters of a scenario file's [[events]] (docs/scenarios.md). It stays in force "
        "until `ncbsim heal` (or its --duration-s, for a link fault).",
    )
    add_workdir_option(fault)
    fault.add_argument("--json", action="store_true", help="print the fault as JSON")
    kinds = fault.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind in sorted(sc.FAULTS):
        one = kinds.add_parser(kind, help=_FAULT_HELP.get(kind, f"a {kind} fault"))
        one.add_argument("--id", help="its name, for heal and status (default KIND_N)")
        one.add_argument("--bureaus", type=codes, help="bureaus it hits, e.g. DE,IT")
        if kind in sc.PROCESS_FAULTS:
            one.add_argument("--target", choices=sc.TARGETS, help="gateway: hit the gateway")
        if kind in sc.LINK_FAULTS:
            one.add_argument("--direction", choices=sc.DIRECTIONS, help="default both")
        if kind not in sc.INSTANT_FAULTS:
            one.add_argument(
                "--duration-s", "--duration_s", dest="duration_s", type=_scalar,
                help="link faults: heal by itself after this many seconds",
            )  # fmt: skip
        for name, param in sc.FAULT_PARAMS.get(kind, {}).items():
            one.add_argument(
                f"--{name.replace('_', '-')}", f"--{name}", dest=name, type=_scalar,
                help=f"{'required' if param.required else f'default {param.default:g}'}",
            )  # fmt: skip
    fault.set_defaults(func=cmd_fault, server=False)

    heal = sub.add_parser("heal", help="end live faults by id (see `ncbsim status`)")
    add_workdir_option(heal)
    heal.add_argument("ids", nargs="*", metavar="ID", help="fault ids, e.g. cut")
    heal.add_argument("--all", action="store_true", help="every fault in force")
    heal.set_defaults(func=cmd_heal, server=False)


def add_faultd_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``faultd``: the fault proxies of ``up --faults`` (a process of their own)."""
    from ncbsim.simulations import faultd

    faultd.add_parsers(sub)
