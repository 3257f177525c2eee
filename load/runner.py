"""``ncbsim load``: bring up (or find) a network, prepare the requesters, run locust headless.

One command does the whole load test:

1. Bring up the scenario's network in a work directory, or use the running one at
   ``--target`` (a work directory of ``ncbsim up``, or a rendered deployment's folder with
   ``--gateway``: :mod:`ncbsim.load.deployed` makes its plan). With ``--plan`` (no
   ``--join``) the run is a master on a ready plan: there is no network to start, and
   step 2 is only the wait for the gateway.
2. Issue keys for one requester bureau per user and draw the query corpus from
   the nodes' records (:mod:`ncbsim.load.plan`), then wait until the gateway serves the
   requesters' directory entries.
3. Run locust headless on ``load/locustfile.py``: one process, or with
   ``--workers N`` locust's distributed mode, a master and N workers on this machine.
   Locust writes its CSV and HTML reports into ``--out``; its quitting hook prints
   the SLO verdict and sets the exit code (:mod:`ncbsim.load.gate`).
4. Put the verdict into locust's HTML report and, with ``--junit``, a JUnit file
   (:mod:`ncbsim.load.report`). Before step 1 the previous run's verdict and reports are
   removed from ``--out`` and the JUnit file says "no verdict", so a run that fails
   before judging never shows an earlier run's figures.
5. Stop the network if this command started it.

The exit code is locust's: 0 when every objective was met, 1 on a breach; 2 when
the run could not be made (bad options, a network that would not start).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ncbsim.config import check_address
from ncbsim.durations import parse_duration
from ncbsim.errors import ConfigError, NetworkError, cannot_write
from ncbsim.load import report

if TYPE_CHECKING:
    from ncbsim.load.plan import LoadPlan

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
_GRACE_S = 60  # beyond the run time: spawning users, stopping them, writing reports
_JOIN_WAIT_S = 60  # how long the master waits for its workers to connect
_DIRECTORY_WAIT_S = 60  # readiness, not speed: a busy machine may take a while


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ncbsim load``."""
    parser.add_argument(
        "scenario",
        nargs="?",
        default="quickstart",
        help="scenario to bring up (default quickstart); ignored with --target",
    )
    parser.add_argument("--users", type=int, default=10, help="simulated bureaus (default 10)")
    parser.add_argument(
        "--spawn-rate", type=float, default=5.0, help="users started per second (default 5)"
    )
    parser.add_argument("--duration", default="30s", help="run time, e.g. 20s or 2m (default 30s)")
    parser.add_argument(
        "--user-rate",
        type=float,
        default=10.0,
        help="mean checks per second of each user, arriving at random; 0 sends back to back "
        "(default 10)",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="gRPC deadline of each call; a slower answer is a failed request (default 5; "
        "with --join, the master's plan sets it)",
    )
    parser.add_argument("--slo", type=Path, help="SLO thresholds (default: load/slo.toml)")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="run locust distributed: a master and N worker processes (default 0: one process)",
    )
    parser.add_argument(
        "--target",
        type=Path,
        help="use the running network in this workdir of `ncbsim up`, or the deployment "
        "`ncbsim deploy render` wrote here (with --gateway)",
    )
    parser.add_argument(
        "--workdir", type=Path, help="bring the network up here (default: a temporary folder)"
    )
    parser.add_argument(
        "--out", type=Path, help="reports folder (default load-reports/YYYYmmdd-HHMMSS)"
    )
    parser.add_argument(
        "--junit",
        type=Path,
        metavar="PATH",
        help="also write the verdict as JUnit XML: one test case per SLO line",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the query corpus")
    spread = parser.add_argument_group(
        "spreading workers over machines (see docs/load.md)",
    )
    spread.add_argument(
        "--remote-workers",
        type=int,
        default=0,
        help="also wait for N workers that other machines start with --join",
    )
    spread.add_argument(
        "--master-bind",
        default="127.0.0.1:0",
        help="where the locust master listens for workers (default 127.0.0.1, any port)",
    )
    spread.add_argument(
        "--join",
        metavar="HOST:PORT",
        help="start --workers N workers here for the master at HOST:PORT, and nothing else",
    )
    spread.add_argument(
        "--plan",
        type=Path,
        help="with --join: the master's plan.json, copied; alone: run the master on this plan",
    )
    spread.add_argument(
        "--gateway",
        help="the gateway as seen from here: a deployment's (--target), or the plan's override",
    )
    spread.add_argument("--pki", type=Path, help="with --plan: the PKI folder as copied here")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _deployment(args: argparse.Namespace) -> bool:
    """Whether ``--target`` is a rendered deployment (not a workdir of ``ncbsim up``)."""
    return args.target is not None and (args.target / "deployment.json").is_file()


def _check(args: argparse.Namespace) -> int:
    from ncbsim.load import slo

    seconds = parse_duration(args.duration)
    if args.users < 1:
        raise ConfigError("--users must be at least 1")
    if args.spawn_rate <= 0:
        raise ConfigError("--spawn-rate must be positive")
    if args.user_rate < 0:
        raise ConfigError("--user-rate must be 0 or more")
    if not args.deadline > 0:
        raise ConfigError("--deadline must be a number of seconds > 0")
    if args.workers < 0 or args.remote_workers < 0:
        raise ConfigError("--workers and --remote-workers must be 0 or more")
    if args.join is None:
        if args.plan is not None and args.target is not None:
            raise ConfigError("--plan runs a ready plan and --target makes one: not both")
        if args.pki is not None and args.plan is None:
            raise ConfigError("--pki goes with --plan or --join")
        if args.gateway is not None and args.plan is None and args.target is None:
            raise ConfigError("--gateway goes with --target, --plan or --join")
    if args.gateway is not None:
        check_address(args.gateway)
    if _deployment(args) and not args.gateway:
        raise ConfigError(
            f"{args.target} holds a rendered deployment: say where its gateway is reachable "
            "from here with --gateway HOST:PORT"
        )
    if args.join is not None and args.junit is not None:
        raise ConfigError("--junit goes with the master, which judges; not with --join")
    check_address(args.master_bind)
    slo.load(args.slo or slo.DEFAULT_SLO)  # a bad SLO file fails before anything starts
    return seconds


@contextlib.contextmanager
def _network(args: argparse.Namespace) -> Iterator[tuple[Path, str, list[str], str]]:
    """(workdir, gateway address, node bureaus, scenario name) of the network under test."""
    from ncbsim.simulations import scenario as scenarios
    from ncbsim.simulations.network import Network

    if args.target is not None:
        if args.gateway is not None:
            raise ConfigError("--gateway goes with a rendered deployment, not a workdir of up")
        net = Network.load(args.target)
        bureaus = sorted(p.bureau for p in net.procs if p.bureau)
        yield net.workdir, net.gateway.address, bureaus, net.scenario
        return
    scenario = scenarios.load(args.scenario)
    temporary = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="ncbsim-load-")) if temporary else args.workdir
    print(f"bringing up {scenario.name} ({', '.join(scenario.bureaus)}) in {workdir}", flush=True)
    net = Network.start(workdir, scenario, log_level=args.child_log_level)
    ok = False
    try:
        yield net.workdir, net.gateway.address, sorted(scenario.bureaus), scenario.name
        ok = True
    finally:
        net.stop()
        if temporary and ok:
            shutil.rmtree(workdir, ignore_errors=True)
        elif temporary:
            print(f"network files kept for inspection in {workdir}", file=sys.stderr)


def _await_directory(pki_dir: Path, gateway: str, requesters: list[str]) -> None:
    """Wait until the gateway serves every requester's directory entry (at most 60 s)."""
    import asyncio

    from ncbsim.client import BureauClient
    from ncbsim.pki import PkiDir

    async def wait() -> None:
        async with BureauClient.open(PkiDir(pki_dir), requesters[0], gateway) as client:
            deadline = time.monotonic() + _DIRECTORY_WAIT_S
            while True:
                served = set(await client.peers.load_all())
                if served >= set(requesters):
                    return
                if time.monotonic() > deadline:
                    raise NetworkError("the gateway does not serve the requesters' keys")
                await asyncio.sleep(0.2)

    asyncio.run(wait())


def prepare(
    workdir: Path,
    gateway: str,
    targets: list[str],
    args: argparse.Namespace,
    out: Path,
    *,
    scenario: str = "",
) -> Path:
    """Issue the requesters' keys, draw the corpus, write ``out/plan.json``; return its path."""
    from ncbsim.load.plan import LoadPlan, build_corpus, provision, requester_codes
    from ncbsim.node.store import RecordStore
    from ncbsim.pki import PkiDir
    from ncbsim.workdir import Workdir

    requesters = requester_codes(targets, args.users)
    new = provision(PkiDir(workdir), requesters)
    if new:
        print(f"issued keys for {len(new)} requester bureaus: {', '.join(new)}", flush=True)
    _await_directory(workdir, gateway, requesters)
    stores = {b: RecordStore(Workdir(workdir).bureau(b).records) for b in targets}
    try:
        corpus = build_corpus(stores, args.seed)
    finally:
        for store in stores.values():
            store.close()
    plan = LoadPlan(
        gateway=gateway,
        pki_dir=str(workdir),
        targets=targets,
        requesters=requesters,
        corpus=corpus,
        workers=max(args.workers + args.remote_workers, 1),
        deadline_s=args.deadline,
        scenario=scenario,
    )
    path = out / "plan.json"
    plan.save(path)
    return path


def _locust(common: list[str], extra: list[str], log: Path | None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "GRPC_VERBOSITY": "ERROR"}
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *common, *extra]
    if log is None:
        return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)


def _master_address(args: argparse.Namespace) -> tuple[str, int]:
    host, _, port = args.master_bind.rpartition(":")
    return host, int(port) or _free_port()


def run_locust(plan: Path, args: argparse.Namespace, seconds: int, out: Path) -> int:
    """Run locust headless (distributed with workers); its exit code is the verdict."""
    from ncbsim.load import slo

    common = ["--plan", str(plan), "--user-rate", str(args.user_rate), "--loglevel", "WARNING"]
    master = [
        "--headless",
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.spawn_rate),
        "--run-time",
        f"{seconds}s",
        "--stop-timeout",
        "5",
        "--only-summary",
        "--slo",
        str(args.slo or slo.DEFAULT_SLO),
        "--verdict",
        str(out / "verdict.json"),
        "--csv",
        str(out / "locust"),
        "--html",
        str(out / "report.html"),
    ]
    expected = args.workers + args.remote_workers
    host, port = _master_address(args)
    if expected:
        master += [
            "--master",
            "--master-bind-host",
            host,
            "--master-bind-port",
            str(port),
            "--expect-workers",
            str(expected),
            "--expect-workers-max-wait",
            str(_JOIN_WAIT_S),
        ]
    if args.remote_workers:
        print(
            f"waiting up to {_JOIN_WAIT_S}s for {args.remote_workers} remote workers; on each "
            f"machine run: ncbsim load --join THIS_HOST:{port} --plan COPY_OF/{plan.name} "
            "--workers N [--gateway ADDR] [--pki DIR]",
            flush=True,
        )
    proc = _locust(common, master, None)
    workers = []
    try:
        workers = _start_workers(common, args.workers, "127.0.0.1", port, out)
        limit = seconds + args.users / args.spawn_rate + _JOIN_WAIT_S + _GRACE_S
        try:
            return proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            print(f"ncbsim: locust did not finish within {limit:.0f}s; stopped", file=sys.stderr)
            return 2
    finally:
        _stop([proc, *workers])


def _start_workers(
    common: list[str], count: int, host: str, port: int, out: Path
) -> list[subprocess.Popen[bytes]]:
    workers = []
    for i in range(count):
        worker = ["--worker", "--master-host", host, "--master-port", str(port)]
        workers.append(_locust(common, worker, out / f"worker-{i + 1}.log"))
    return workers


def _ready_plan(args: argparse.Namespace, out: Path) -> LoadPlan:
    """``--plan``, with ``--gateway`` and ``--pki`` as seen from here, as ``out/plan.json``."""
    from ncbsim.load.plan import LoadPlan

    plan = LoadPlan.read(args.plan)
    local = LoadPlan(
        gateway=args.gateway or plan.gateway,
        pki_dir=str((args.pki or Path(plan.pki_dir)).resolve()),
        targets=plan.targets,
        requesters=plan.requesters,
        corpus=plan.corpus,
        workers=plan.workers,
        deadline_s=plan.deadline_s,
        scenario=plan.scenario,
    )
    local.save(out / "plan.json")
    return local


def join(args: argparse.Namespace, out: Path) -> int:
    """``--join``: run this machine's share of workers for a master elsewhere."""
    if args.plan is None:
        raise ConfigError("--join needs --plan: a copy of the master's plan.json")
    host, _, port = args.join.rpartition(":")
    check_address(args.join)
    _ready_plan(args, out)
    path = out / "plan.json"
    count = max(args.workers, 1)
    print(f"joining {args.join} with {count} workers (logs in {out})", flush=True)
    common = ["--plan", str(path), "--user-rate", str(args.user_rate), "--loglevel", "WARNING"]
    workers = _start_workers(common, count, host, int(port), out)
    try:
        codes = [w.wait() for w in workers]
    finally:
        _stop(workers)
    # A worker's own exit code says only whether it ran; the master judges the SLO.
    return 0 if all(c == 0 for c in codes) else 2


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM, then SIGKILL after 10 s, each process we started that is still running."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _announce(targets: list[str], gateway: str, args: argparse.Namespace, seconds: int) -> None:
    """Say what the run is and what it is aimed at."""
    total = args.workers + args.remote_workers
    mode = f"distributed, {total} workers" if total else "one process"
    print(
        f"locust: {args.users} users at {args.user_rate:g} checks/s each, {seconds}s, "
        f"{mode}, against {', '.join(targets)} via {gateway}",
        flush=True,
    )


def cli(args: argparse.Namespace) -> int:
    """Run ``ncbsim load``."""
    seconds = _check(args)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out: Path = (args.out or Path("load-reports") / stamp).resolve()
    if args.join:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise cannot_write(out, exc) from None
        return join(args, out)
    report.begin(out, args.junit)  # nothing of a previous run stands until this one judges
    if args.plan is not None or _deployment(args):
        from ncbsim.load import deployed

        # A master on a ready plan, or a deployed network's: no network to start.
        plan = _ready_plan(args, out) if args.plan is not None else deployed.write_plan(args, out)
        total = max(args.workers + args.remote_workers, 1)
        if plan.workers != total:  # each worker numbers its users by the plan's count
            raise ConfigError(
                f"{args.plan}: a plan for {plan.workers} locust workers, not {total} "
                "(--workers + --remote-workers)"
            )
        _await_directory(Path(plan.pki_dir), plan.gateway, plan.requesters)
        _announce(plan.targets, plan.gateway, args, seconds)
        code = run_locust(out / "plan.json", args, seconds, out)
    else:
        with _network(args) as (workdir, gateway, targets, scenario):
            path = prepare(workdir, gateway, targets, args, out, scenario=scenario)
            _announce(targets, gateway, args, seconds)
            code = run_locust(path, args, seconds, out)
    data = report.finish(out, code, args.junit)
    if data is not None:
        overall = data["overall"]
        print(
            f"{overall['requests']} requests judged, {overall['failures']} failed, "
            f"{overall['rps']:.1f}/s, p50 {overall['p50_ms']:g} ms, p99 {overall['p99_ms']:g} ms"
            f" ({data['workers']} worker{'s' if data['workers'] != 1 else ''})"
        )
    print(f"reports: {out} (report.html, locust_stats.csv, verdict.json)")
    if args.junit is not None:
        print(f"JUnit: {args.junit}")
    print("SLO met" if code == 0 else f"SLO not met or run failed (exit {code})")
    return code
