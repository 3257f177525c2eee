"""The ``ncbsim`` command line: parse arguments, configure logging once, call the library."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from pathlib import Path

from ncbsim import log as logsetup
from ncbsim import private
from ncbsim.config import (
    DEFAULT_BURST,
    DEFAULT_CONTROL_BURST,
    DEFAULT_CONTROL_RATE_PER_S,
    DEFAULT_DAILY_QUOTA,
    DEFAULT_MAILBOX_RETENTION_H,
    DEFAULT_MAX_ENVELOPE_BYTES,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_QUEUE_PER_SENDER,
    DEFAULT_RATE_PER_S,
    log_level_from_env,
)
from ncbsim.errors import NcbsimError
from ncbsim.pki import PkiDir
from ncbsim.workdir import NoGatewayError, find_gateway, gateway_ready_file, require_pki

DEFAULT_GATEWAY_LISTEN = "127.0.0.1:7600"


def _codes(text: str) -> list[str]:
    return [c.strip().upper() for c in text.split(",") if c.strip()]


# --------------------------------------------------------------------------- commands


def cmd_pki_init(args: argparse.Namespace) -> int:
    from ncbsim import pki

    directory = pki.init(args.dir, _codes(args.bureaus))
    print(f"PKI for {', '.join(directory.bureaus())} written to {args.dir}")
    return 0


def cmd_pki_revoke(args: argparse.Namespace) -> int:
    from ncbsim import rekey

    item = rekey.revoke(PkiDir(args.dir), args.bureau)
    print(
        f"revoked {args.bureau}: directory entries up to serial {item.entry_serial}, "
        f"{len(item.key_ids)} E2E keys and its TLS certificate "
        f"(list {args.dir / 'revocations.list'})"
    )
    print(
        f"issue new keys and a new certificate with: ncbsim pki rotate --dir {args.dir} "
        f"--bureau {args.bureau}"
    )
    return 0


def cmd_pki_rotate(args: argparse.Namespace) -> int:
    from ncbsim import rekey
    from ncbsim.load.runner import parse_duration

    grace_s = parse_duration(args.grace, option="--grace", minimum_s=0)
    rotated = rekey.rotate(
        PkiDir(args.dir), args.bureau, grace_ms=grace_s * 1000, tls=args.tls, force=args.force
    )
    print(f"{args.bureau}: new E2E keys under directory entry serial {rotated.serial}")
    if rotated.previous_until_ms:
        until = dt.datetime.fromtimestamp(rotated.previous_until_ms / 1000, dt.UTC)
        print(f"the old keys stay acceptable until {until:%Y-%m-%dT%H:%M:%SZ} ({args.grace})")
    else:
        print("the old keys are refused from now on (no grace period)")
    if rotated.new_tls_certificate:
        print(
            f"new TLS certificate: restart {args.bureau}'s node to present it (a network of "
            f"`ncbsim up`: ncbsim restart --workdir {args.dir} --bureau {args.bureau})"
        )
    return 0


def cmd_gateway(args: argparse.Namespace) -> int:
    from ncbsim.config import GatewayConfig
    from ncbsim.gateway.limits import BureauLimit, load_overrides
    from ncbsim.gateway.server import serve

    default = BureauLimit(rate_per_s=args.rate, burst=args.burst, daily_quota=args.daily_quota)
    config = GatewayConfig(
        pki=PkiDir(args.dir),
        listen=args.listen,
        audit_path=args.audit or args.dir / "gateway" / "audit.sqlite",
        ready_file=args.ready_file or gateway_ready_file(args.dir),
        max_envelope_bytes=args.max_envelope_bytes,
        rate_per_s=args.rate,
        burst=args.burst,
        daily_quota=args.daily_quota,
        bureau_limits=load_overrides(args.limits, default) if args.limits else {},
        control_rate_per_s=args.control_rate,
        control_burst=args.control_burst,
        mailbox_path=args.mailbox,
        max_queue=args.max_queue,
        max_queue_per_sender=args.max_queue_per_sender,
        mailbox_retention_h=args.retention_hours,
    )
    _check_listen(config.listen)  # before the mailbox and audit are opened
    asyncio.run(serve(config))
    return 0


def _check_listen(listen: str) -> None:
    """Refuse a --listen address that cannot be bound, in one line, before gRPC tries."""
    from ncbsim.serving import listen_problem

    problem = listen_problem(listen)
    if problem is not None:
        raise NcbsimError(f"{listen}: {problem}; pass --listen HOST:PORT (port 0 picks a free one)")


def cmd_node(args: argparse.Namespace) -> int:
    from ncbsim.config import NodeConfig
    from ncbsim.node import datagen
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
    db = args.db or args.dir / "bureaus" / args.bureau / "records.sqlite"
    config = NodeConfig(
        pki=pki,
        bureau=args.bureau,
        db_path=db,
        gateway=gateway,
        audit_path=args.audit or db.with_name("audit.sqlite"),
        replay_path=args.replay_db or db.with_name("replay.sqlite"),
        clock_skew_ms=args.clock_skew_ms,
        listen=args.listen,
        ready_file=args.ready_file,
    )
    if not db.exists():  # only once the options are known to be good
        datagen.generate(db, args.bureau, seed=args.seed, documents=2000, persons=500, vehicles=500)
    asyncio.run(serve(config))
    return 0


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
    )
    # From here on a foreground network is ours to stop, however the command ends: a
    # Ctrl-C that lands before wait_for_shutdown installs its handlers is a stop request too.
    try:
        procs = [*network.procs, *([network.faultd] if network.faultd else [])]
        for proc in procs:
            name = proc.bureau or proc.role
            print(f"{name:8} pid {proc.pid:<8} {proc.address:22} log {proc.log}")
        print(f"network.json: {network.workdir / 'network.json'}")
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

    data = operate.status(args.workdir, timeout=args.timeout)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        operate.render(data)
    return 0 if data["up"] else 1


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


def cmd_query(args: argparse.Namespace) -> int:
    from ncbsim import query_input
    from ncbsim.console import run_query

    # Formats first: a query that cannot be right is refused before anything is read or sent.
    to = query_input.recipients(args.to)
    request = query_input.request(args, today=dt.date.today())
    gateway = find_gateway(args.workdir, args.as_bureau)
    return asyncio.run(run_query(args, request, to, gateway=gateway))


def cmd_send(args: argparse.Namespace) -> int:
    from ncbsim.mail_console import run_send

    return asyncio.run(run_send(args, gateway=find_gateway(args.workdir, args.as_bureau)))


def cmd_receipts(args: argparse.Namespace) -> int:
    from ncbsim.mail_console import run_receipts

    return asyncio.run(run_receipts(args, gateway=find_gateway(args.workdir, args.as_bureau)))


def cmd_inbox(args: argparse.Namespace) -> int:
    from ncbsim.mail_console import show_inbox

    require_pki(args.workdir)
    return show_inbox(args)


def cmd_notice_list(args: argparse.Namespace) -> int:
    from ncbsim.mail_console import show_notices

    require_pki(args.workdir)
    return show_notices(args)


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


def _parse_time_ms(text: str | None, option: str) -> int | None:
    """Milliseconds since the epoch from ISO 8601 (naive means UTC), or a clear error."""
    if text is None:
        return None
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise NcbsimError(f"{option}: not an ISO 8601 date or time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from ncbsim.auditlog import verify

    verdict = verify(args.path)
    for warning in verdict.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if verdict.intact:
        print(verdict.describe())
        return 0
    print(verdict.describe())
    print(
        f"{args.path}: {verdict.entries} entries verified before the first bad one",
        file=sys.stderr,
    )
    return 1


def cmd_audit_search(args: argparse.Namespace) -> int:
    from ncbsim.auditlog import Query, search

    if args.limit is not None and args.limit <= 0:
        raise NcbsimError("--limit must be positive")
    columns, rows = search(
        args.path,
        Query(
            sender=args.sender or "",
            recipient=args.recipient or "",
            kind=args.kind or "",
            message_id=args.message_id or "",
            since_ms=_parse_time_ms(args.since, "--since"),
            until_ms=_parse_time_ms(args.until, "--until"),
            limit=args.limit,
        ),
    )
    if args.json:
        for row in rows:
            print(json.dumps(dict(zip(columns, row, strict=True))))
        return 0
    from datetime import UTC, datetime

    from rich.console import Console
    from rich.table import Table

    # The table keeps to what fits a terminal; --json has every column.
    wanted = ("seq", "at_ms", "sender", "recipient", "kind", "message_id", "outcome", "reason")
    shown = [c for c in (*wanted, "status", "elapsed_ms") if c in columns]
    table = Table(show_header=True, header_style="bold")
    for column in shown:
        table.add_column({"at_ms": "time (UTC)", "elapsed_ms": "ms"}.get(column, column))
    for row in rows:
        values = dict(zip(columns, row, strict=True))
        cells = []
        for column in shown:
            value = values[column]
            if column == "at_ms":
                moment = datetime.fromtimestamp(value / 1000, UTC)
                value = moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
            elif column == "message_id":
                value = str(value)[:12]
            cells.append(str(value))
        table.add_row(*cells)
    console = Console()
    console.print(table)
    console.print(f"{len(rows)} entries")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from ncbsim.load import runner

    return runner.cli(args)


def cmd_bench(args: argparse.Namespace) -> int:
    from ncbsim.load import bench

    return bench.cli(args)


# --------------------------------------------------------------------------- parser


def _output_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """--fetch, --json and --timeout; without defaults they only override when given."""
    parser.add_argument(
        "--fetch",
        action="store_true",
        default=False if defaults else argparse.SUPPRESS,
        help="run step 2 on every hit",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if defaults else argparse.SUPPRESS,
        help="machine-readable output",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0 if defaults else argparse.SUPPRESS,
        help="deadline in seconds (default 5)",
    )


def _as_bureau(
    parser: argparse.ArgumentParser, role: str, *, send: bool, gateway: bool = True
) -> None:
    """--workdir, --as and --json; --ttl to post, --timeout to call the gateway."""
    parser.add_argument("--workdir", type=Path, required=True, help="workdir of `ncbsim up`")
    parser.add_argument("--as", dest="as_bureau", required=True, type=str.upper, help=role)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    if send:
        parser.add_argument(
            "--ttl", default="24h", help="expires undelivered after this, e.g. 90s, 2h (max 24h)"
        )
        parser.add_argument(
            "-q",
            "--quiet",
            action="store_true",
            help="print only the post id (a notice request: the notice id), for scripts; "
            "copies not stored are still reported on stderr, with exit 1",
        )
    if gateway:
        parser.add_argument(
            "--timeout",
            type=float,
            default=10.0,
            help="seconds to keep retrying an unreachable gateway (default 10)",
        )


def _attach_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--attach",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a file to attach (repeatable; 16 KiB in all)",
    )


def _add_mail_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """diffuse, notice, message, inbox, receipts: one-way messages (durable delivery)."""
    diffuse = sub.add_parser(
        "diffuse", help="alert some bureaus or ALL (GS gets a copy); delivered even if down"
    )
    _as_bureau(diffuse, "sending bureau", send=True)
    diffuse.add_argument("--to", required=True, type=str.upper, help="bureaus, e.g. NG,GH, or ALL")
    diffuse.add_argument("--subject", required=True)
    diffuse.add_argument("--text", required=True)
    diffuse.add_argument(
        "--no-gs-copy",
        action="store_true",
        help="do not copy GS (sending again to bureaus whose copies were not stored)",
    )
    _attach_option(diffuse)
    diffuse.set_defaults(func=cmd_send, send="diffusion", server=False)

    notice = sub.add_parser("notice", help="request, list or withdraw notices (GS reviews them)")
    notice_sub = notice.add_subparsers(dest="notice_command", required=True, metavar="ACTION")
    request = notice_sub.add_parser("request", help="ask GS to publish a notice; prints its id")
    _as_bureau(request, "requesting bureau", send=True)
    request.add_argument("--color", required=True, help="red, yellow, blue, black, green, ...")
    request.add_argument(
        "--person-file",
        type=Path,
        required=True,
        metavar="PERSON.json",
        help='the subject, e.g. {"surname": "DOE", "given_names": "John", "dob": "1980-02-03"}',
    )
    request.add_argument("--summary", default="", help="the facts or charges, in one line")
    request.add_argument("--text", default="")
    request.set_defaults(func=cmd_send, send="notice request", server=False)
    listing = notice_sub.add_parser("list", help="the notices a bureau knows, from its inbox")
    _as_bureau(listing, "bureau", send=False, gateway=False)
    listing.set_defaults(func=cmd_notice_list, server=False)
    withdraw = notice_sub.add_parser("withdraw", help="ask GS to withdraw a notice you requested")
    _as_bureau(withdraw, "requesting bureau", send=True)
    withdraw.add_argument("--id", required=True, help="notice id (hex, from notice request)")
    withdraw.add_argument("--reason", default="")
    withdraw.set_defaults(func=cmd_send, send="notice withdrawal", server=False)

    message = sub.add_parser("message", help="case messages from one bureau to another")
    message_sub = message.add_subparsers(dest="message_command", required=True, metavar="ACTION")
    send = message_sub.add_parser("send", help="send a message in a case thread")
    _as_bureau(send, "sending bureau", send=True)
    send.add_argument("--to", required=True, type=str.upper, help="one bureau")
    send.add_argument("--text", required=True)
    send.add_argument("--subject", default="")
    send.add_argument("--thread", default="", help="case thread (default: start a new one)")
    send.add_argument("--reply-to", metavar="POSTID", help="post id (hex) of the message answered")
    _attach_option(send)
    send.set_defaults(func=cmd_send, send="message", server=False)

    inbox = sub.add_parser("inbox", help="what a bureau received, decrypted, in order")
    _as_bureau(inbox, "receiving bureau", send=False, gateway=False)
    inbox.add_argument("--kind", choices=["diffusion", "message", "notice", "notice-request"])
    inbox.set_defaults(func=cmd_inbox, server=False)

    receipts = sub.add_parser(
        "receipts", help="each copy a bureau sent: queued, delivered (signed receipt) or expired"
    )
    _as_bureau(receipts, "sending bureau", send=False)
    receipts.add_argument("--after", type=int, default=0, help="only sequences above this")
    receipts.set_defaults(func=cmd_receipts, server=False)


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


def _add_operate_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """status, restart, fault, heal: operating a network of `ncbsim up` (docs/scenarios.md)."""
    from ncbsim.simulations import scenario as sc

    status = sub.add_parser(
        "status", help="every process of a running network, alive and healthy? (exit 1 if not)"
    )
    status.add_argument("--workdir", type=Path, required=True, help="workdir of `ncbsim up`")
    status.add_argument("--json", action="store_true", help="one JSON object (docs/scenarios.md)")
    status.add_argument(
        "--timeout", type=float, default=2.0, help="seconds per health check (default 2)"
    )
    status.set_defaults(func=cmd_status, server=False)

    restart = sub.add_parser(
        "restart", help="restart one process with its files, ports and current certificate"
    )
    restart.add_argument("--workdir", type=Path, required=True, help="workdir of `ncbsim up`")
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
    fault.add_argument("--workdir", type=Path, required=True, help="workdir of `ncbsim up`")
    fault.add_argument("--json", action="store_true", help="print the fault as JSON")
    kinds = fault.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind in sorted(sc.FAULTS):
        one = kinds.add_parser(kind, help=_FAULT_HELP.get(kind, f"a {kind} fault"))
        one.add_argument("--id", help="its name, for heal and status (default KIND_N)")
        one.add_argument("--bureaus", type=_codes, help="bureaus it hits, e.g. DE,IT")
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
    heal.add_argument("--workdir", type=Path, required=True, help="workdir of `ncbsim up`")
    heal.add_argument("ids", nargs="*", metavar="ID", help="fault ids, e.g. cut")
    heal.add_argument("--all", action="store_true", help="every fault in force")
    heal.set_defaults(func=cmd_heal, server=False)


def build_parser() -> argparse.ArgumentParser:  # noqa: PLR0915 - one flat, readable table
    parser = argparse.ArgumentParser(
        prog="ncbsim",
        description="Simulate an I-24/7 style police network: bureaus query each other's "
        "records end-to-end encrypted through an untrusted gateway.",
    )
    parser.add_argument(
        "--log-level",
        choices=logsetup.LEVELS,
        default=None,
        help="log level (default: NCBSIM_LOG_LEVEL or info for servers, warning for tools)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    pki = sub.add_parser("pki", help="create and manage the network's PKI")
    pki_sub = pki.add_subparsers(dest="pki_command", required=True, metavar="ACTION")
    init = pki_sub.add_parser("init", help="root CA, TLS certificates, E2E keys, directory")
    init.add_argument("--dir", type=Path, required=True, help="directory to create")
    init.add_argument("--bureaus", required=True, help="comma-separated codes, e.g. FR,DE,IT")
    init.set_defaults(func=cmd_pki_init, server=False)
    revoke = pki_sub.add_parser(
        "revoke", help="revoke a bureau's keys and certificate; running parties refuse them"
    )
    revoke.add_argument("--dir", type=Path, required=True, help="PKI directory (from pki init)")
    revoke.add_argument("--bureau", required=True, type=str.upper, help="bureau code, e.g. FR")
    revoke.set_defaults(func=cmd_pki_revoke, server=False)
    rotate = pki_sub.add_parser("rotate", help="issue a bureau new E2E keys; old ones get a grace")
    rotate.add_argument("--dir", type=Path, required=True, help="PKI directory (from pki init)")
    rotate.add_argument("--bureau", required=True, type=str.upper, help="bureau code, e.g. FR")
    rotate.add_argument(
        "--grace",
        default="1h",
        help="how long envelopes under the old keys stay acceptable, e.g. 0, 90s, 10m, 24h "
        "(default 1h; none if the old keys were revoked)",
    )
    rotate.add_argument(
        "--tls", action="store_true", help="issue a new TLS certificate too (always after revoke)"
    )
    rotate.add_argument(
        "--force",
        action="store_true",
        help="rotate even while the last rotation's grace period runs (cuts it short)",
    )
    rotate.set_defaults(func=cmd_pki_rotate, server=False)

    gw = sub.add_parser("gateway", help="run the gateway in the foreground")
    gw.add_argument("--dir", type=Path, required=True, help="PKI directory (from pki init)")
    gw.add_argument("--listen", default=DEFAULT_GATEWAY_LISTEN, help="host:port (port 0: any)")
    gw.add_argument("--audit", type=Path, help="audit database (default DIR/gateway/audit.sqlite)")
    gw.add_argument("--ready-file", type=Path, help="write pid and address here once serving")
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
    gw.set_defaults(func=cmd_gateway, server=True)

    node = sub.add_parser("node", help="run one bureau's node in the foreground")
    node.add_argument("--dir", type=Path, required=True, help="PKI directory (from pki init)")
    node.add_argument("--bureau", required=True, type=str.upper, help="bureau code, e.g. FR")
    node.add_argument("--gateway", help="gateway host:port (default: found in DIR)")
    node.add_argument("--listen", default="127.0.0.1:0", help="host:port (port 0: any)")
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
    node.add_argument("--seed", type=int, default=1, help="seed if records must be generated")
    node.add_argument("--ready-file", type=Path, help="write pid and address here once serving")
    node.set_defaults(func=cmd_node, server=True)

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
    up.set_defaults(func=cmd_up, server=False)

    down = sub.add_parser("down", help="stop a detached network")
    down.add_argument("--workdir", type=Path, required=True)
    down.set_defaults(func=cmd_down, server=False)
    _add_operate_parsers(sub)

    query = sub.add_parser(
        "query",
        help="query a running network as one bureau",
        description="Query a running network as one bureau. Every value is checked before "
        "anything is sent; a value that cannot be right exits 2 saying what is expected.",
    )
    query.add_argument("--workdir", type=Path, required=True, help="workdir of `ncbsim up`")
    query.add_argument("--as", dest="as_bureau", required=True, type=str.upper, help="requester")
    query.add_argument(
        "--to",
        required=True,
        type=str.upper,
        help="bureau codes, comma-separated (DE or DE,IT; GS is the General Secretariat), "
        "or ALL: every bureau of the root-signed directory but the requester",
    )
    # Output options are accepted before or after KIND, as users type them either way.
    _output_options(query, defaults=True)
    output = argparse.ArgumentParser(add_help=False)
    _output_options(output, defaults=False)
    kinds = query.add_subparsers(dest="kind", required=True, metavar="KIND")
    doc = kinds.add_parser(
        "document", parents=[output], help="travel document by number and issuer (SLTD)"
    )
    doc.add_argument(
        "--number",
        required=True,
        help="document number: letters A-Z and digits, at most 20 (spaces and - . / < are ignored)",
    )
    doc.add_argument(
        "--issuer",
        required=True,
        type=str.upper,
        help="issuing state: ISO 3166 alpha-2, e.g. FR (alpha-3 FRA and ICAO codes such as "
        "D are accepted); GS for INTERPOL travel documents",
    )
    person = kinds.add_parser(
        "person", parents=[output], help="person by name (fuzzy) and date of birth"
    )
    person.add_argument("--surname", required=True, help="family name, in any script")
    person.add_argument("--given-names", default="", help="given names (optional)")
    person.add_argument(
        "--dob", required=True, help="date of birth, YYYY-MM-DD: a real date, not in the future"
    )
    vehicle = kinds.add_parser(
        "vehicle", parents=[output], help="vehicle by VIN or plate (give at least one)"
    )
    vehicle.add_argument(
        "--vin",
        default="",
        help="17 characters, digits and letters except I, O and Q (ISO 3779). The check "
        "digit (position 9) is checked only for North American VINs (first character 1 to "
        "5), the only ones whose standard requires it",
    )
    vehicle.add_argument("--plate", default="", help="registration plate, e.g. 'AB-123-CD'")
    fetch = kinds.add_parser("fetch", parents=[output], help="step 2: full record for a reference")
    fetch.add_argument(
        "--ref",
        required=True,
        help="a reference from a step-1 hit: 20 characters a-z and 2-7 (N and 32 hex "
        "digits for the person record of a notice)",
    )
    query.set_defaults(func=cmd_query, server=False)
    _add_mail_parsers(sub)

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
        "--validate",
        action="store_true",
        help="check the scenario (keys, values, check paths) without starting anything; "
        "print what it would run and 'valid', or the error (exit 2)",
    )
    sim.set_defaults(func=cmd_simulate, server=False)

    audit = sub.add_parser("audit", help="verify or search a gateway's or a node's audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_sub.add_parser(
        "verify", help="check the hash chain; exit 1 naming the first bad entry"
    )
    verify.add_argument("path", type=Path, help="e.g. WORKDIR/gateway/audit.sqlite")
    verify.set_defaults(func=cmd_audit_verify, server=False)
    search = audit_sub.add_parser("search", help="list matching entries, oldest first")
    search.add_argument("path", type=Path, help="e.g. WORKDIR/bureaus/DE/audit.sqlite")
    search.add_argument("--sender", type=str.upper, help="bureau code")
    search.add_argument("--recipient", type=str.upper, help="bureau code")
    search.add_argument("--kind", help="query_request, query_response, or a prefix such as query")
    search.add_argument("--message-id", help="message id (hex)")
    search.add_argument("--since", help="ISO 8601, e.g. 2026-01-31T09:00:00Z (naive is UTC)")
    search.add_argument("--until", help="ISO 8601, exclusive")
    search.add_argument("--limit", type=int, help="at most N entries")
    search.add_argument("--json", action="store_true", help="one JSON object per line")
    search.set_defaults(func=cmd_audit_search, server=False)

    from ncbsim.load import bench, runner  # light modules: their heavy imports happen in cli()

    load = sub.add_parser("load", help="locust load test of the query path, with SLO gates")
    runner.add_arguments(load)
    load.set_defaults(func=cmd_load, server=False)

    bench_parser = sub.add_parser(
        "bench", help="precise benchmark: encrypted query path against a plain gRPC relay"
    )
    bench.add_arguments(bench_parser)
    bench_parser.set_defaults(func=cmd_bench, server=False)

    demo = sub.add_parser(
        "demo",
        help="trainer mode: a small network, five queries narrated step by step",
        description="Start a small real network and show, step by step, what the asking "
        "bureau, the gateway and the answering bureau each see.",
    )
    demo.add_argument("scenario", nargs="?", default="quickstart", help="default quickstart")
    demo.add_argument("--auto", action="store_true", help="run without pausing for Enter")
    demo.add_argument("--workdir", type=Path, help="keep the network's files here")
    demo.add_argument(
        "--deadline", type=float, default=2.0, help="multi-bureau deadline in s (default 2)"
    )
    demo.set_defaults(func=cmd_demo, server=False)
    from ncbsim.node import admin  # the owner's tools: hit notifications, record restrictions

    admin.add_parsers(sub)
    from ncbsim.node import host  # many bureau nodes in one process (the simulator's hosts)

    host.add_parsers(sub)
    from ncbsim.simulations import faultd  # the fault proxies of `up --faults`

    faultd.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ncbsim`` console script."""
    args = build_parser().parse_args(argv)
    if args.server:  # a bureau's data is as private as its keys (ncbsim.private)
        private.restrict_umask()
    role = args.command if args.server else ""
    if role == "node":
        role = f"node:{args.bureau}"
    # Servers log at info by default; tools stay quiet but start their servers at info.
    args.child_log_level = args.log_level or log_level_from_env("info")
    args.log_level = args.log_level or log_level_from_env("info" if args.server else "warning")
    logsetup.configure(args.log_level, role=role)
    try:
        result: int = args.func(args)
    except NcbsimError as exc:
        print(f"ncbsim: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result
