"""Operating a network started with ``ncbsim up``: bring it up (with ``--faults``), look at
it (``status``), restart one process (``restart``) and stop it (``down``).

Every command here works from a fresh CLI invocation against a detached network: the
network is rebuilt from ``WORKDIR/network.json`` (:meth:`Network.load`), and what a
command changes (a restarted process's pid) is written back to it. Commands that change
the network take ``WORKDIR/run/operate.lock`` first, so two of them never interleave.
Faults applied live are ncbsim.simulations.live_faults'.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from ncbsim.errors import ConfigError, NcbsimError, NetworkError
from ncbsim.processes import terminate
from ncbsim.simulations import faultd
from ncbsim.simulations.manifest import Proc
from ncbsim.simulations.network import Network
from ncbsim.simulations.prepare import prepare
from ncbsim.simulations.scenario import Scenario
from ncbsim.simulations.supervise import Stopped, remove_socket, socket_path, start_process
from ncbsim.workdir import MANIFEST, Workdir

log = structlog.get_logger()

HEALTH_TIMEOUT_S = 2.0
"""Deadline of each health call of ``ncbsim status``: a stopped (SIGSTOP) process is down."""
UNREACHABLE = "UNREACHABLE"
NOT_CHECKED = "NOT_CHECKED"
SERVING = "SERVING"


@contextlib.contextmanager
def locked(workdir: Path) -> Iterator[None]:
    """Hold the work directory's operation lock (blocking) while changing its network.

    ``down`` removes the lock file while it holds it: a command that waited on that file
    takes the lock on the file now there (made afresh if need be), so all still queue on one.
    """
    path = Workdir(Path(workdir)).operate_lock
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # removed while we waited: lock the one there now
    try:
        yield
    finally:
        os.close(fd)  # releases the lock


def load(workdir: Path) -> Network:
    """The network running in ``workdir``, or a NcbsimError saying there is none."""
    if not Path(workdir).is_dir():
        raise NcbsimError(f"no such work directory: {workdir}")
    if not Workdir(Path(workdir)).manifest.exists():
        raise NcbsimError(
            f"no network runs in {workdir} (no {MANIFEST}); "
            f"start one with `ncbsim up SCENARIO --workdir {workdir} --detach`"
        )
    return Network.load(workdir)


# ---------------------------------------------------------------- up and down


def up(
    workdir: Path,
    scenario: Scenario,
    *,
    detach: bool,
    log_level: str,
    faults: bool,
    trace_dir: Path | None = None,
    attacks: bool = False,
    suite: str | None = None,
) -> Network:
    """Start ``scenario``'s network in ``workdir``; with ``faults``, every bureau's link
    to the gateway goes through the fault proxies of a fault daemon started first. With
    ``trace_dir`` every process appends its spans there. ``attacks`` starts the gateway
    in classroom mode (``ncbsim classroom`` only). ``suite`` names the query session
    suite of a new PKI."""
    if not faults:
        return Network.start(
            workdir,
            scenario,
            detach=detach,
            log_level=log_level,
            trace_dir=trace_dir,
            attacks=attacks,
            suite=suite,
        )
    workdir = workdir.resolve()
    files = Workdir(workdir)
    if files.manifest.exists():
        raise NetworkError(f"{workdir} already runs a network; run `ncbsim down` first")
    # PKI and records first: `pki init` wants an empty folder
    prepare(workdir, scenario, suite=suite)
    run = files.run
    run.mkdir(exist_ok=True)
    control = socket_path(run, files.faultd_socket.name)
    flog = files.faultd_log
    ready = files.faultd_ready
    try:
        child, info = start_process(
            [
                "--log-level", log_level, "faultd", "--workdir", str(workdir),
                "--bureaus", ",".join(scenario.bureaus), "--seed", str(scenario.seed),
                "--control", control, "--ready-file", str(ready),
            ],
            flog,
            ready,
            detach=detach,
            what="fault daemon",
        )  # fmt: skip
    except BaseException:  # stopped by start_process: its socket (and folder) stay behind
        remove_socket(control)
        ready.unlink(missing_ok=True)
        raise
    links: dict[str, dict[str, str]] = info["links"]

    def on_gateway(address: str) -> None:
        _upstreams(control, {"gateway": address})

    try:
        network = Network.start(
            workdir,
            scenario,
            detach=detach,
            log_level=log_level,
            gateway_for={code: link["to_gateway"] for code, link in links.items()},
            advertise_for={code: link["to_bureau"] for code, link in links.items()},
            on_gateway=on_gateway,
            started=[child],  # stopped with the others if the start fails
            faultd=Proc("faultd", None, child.pid, control, str(flog)),
            links=links,
            trace_dir=trace_dir,
            attacks=attacks,
        )
    except BaseException:
        if child.poll() is None:
            terminate([child.pid])
        child.wait()
        remove_socket(control)
        ready.unlink(missing_ok=True)
        raise
    try:
        _upstreams(control, {p.bureau: p.address for p in network.procs if p.bureau})
    except BaseException:
        network.stop()
        raise
    return network


def _upstreams(control: str, addresses: dict[str, str]) -> None:
    try:
        reply = faultd.request(control, {"op": "upstreams", "addresses": addresses})
    except (OSError, ValueError) as exc:
        raise NetworkError(f"the fault daemon does not answer ({exc})") from None
    if not reply.get("ok"):
        raise NetworkError(f"the fault daemon refused the addresses: {reply.get('error')}")


def down(workdir: Path) -> Stopped:
    """Stop the network of ``workdir`` (every process, the fault daemon too), and remove
    what said it runs: its manifest, ready files, sockets, live faults and this lock."""
    load(workdir)  # a clear error if none runs
    with locked(workdir):
        stopped = Network.load(workdir).stop()
        Workdir(Path(workdir)).operate_lock.unlink(missing_ok=True)  # held: see locked()
    return stopped


# ---------------------------------------------------------------- status


@dataclass(slots=True)
class Row:
    """One server of the network as ``ncbsim status`` shows it."""

    name: str
    role: str
    bureaus: list[str]
    pid: int
    address: str
    log: str
    host: int | None = None
    metrics: str = ""
    """Its Prometheus endpoint (HOST:PORT), "" if none."""
    alive: bool = False
    health: str = NOT_CHECKED
    services: dict[str, str] = field(default_factory=dict)

    @property
    def up(self) -> bool:
        """Alive and serving."""
        return self.alive and self.health == SERVING

    def as_dict(self) -> dict[str, Any]:
        """The row in ``status --json``."""
        return {
            "name": self.name,
            "role": self.role,
            "bureaus": self.bureaus,
            "host": self.host,
            "pid": self.pid,
            "address": self.address,
            "metrics": self.metrics,
            "alive": self.alive,
            "health": self.health,
            "services": self.services,
            "up": self.up,
            "log": self.log,
        }


def _status_name(value: int) -> str:
    from grpc_health.v1 import health_pb2

    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(value))


async def _services(channel: Any, timeout: float) -> list[str]:
    """The services a server lists by reflection (health and reflection left out)."""
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    names: list[str] = []
    async for reply in stub.ServerReflectionInfo(iter([request]), timeout=timeout):
        names += [s.name for s in reply.list_services_response.service]
        break
    return sorted(n for n in names if not n.startswith("grpc."))


async def check_health(
    address: str, peer_name: str, tls: Any, timeout: float
) -> tuple[str, dict[str, str]]:
    """The standard grpc.health.v1 Check of ``address`` over mTLS: overall status (the
    empty service name) and, where the server reports them, each service's status."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from ncbsim import transport

    channel = transport.secure_channel(address, tls, peer_name=peer_name)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            gone = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            return (UNREACHABLE if exc.code() in gone else exc.code().name), {}
        services: dict[str, str] = {}
        with contextlib.suppress(grpc.aio.AioRpcError):
            for name in await _services(channel, timeout):
                with contextlib.suppress(grpc.aio.AioRpcError):  # NOT_FOUND: not reported
                    one = await stub.Check(
                        health_pb2.HealthCheckRequest(service=name), timeout=timeout
                    )
                    services[name] = _status_name(one.status)
        return _status_name(reply.status), services
    finally:
        await channel.close()


def _rows(network: Network) -> list[Row]:
    rows = [
        Row(
            name=p.bureau or p.role,
            role=p.role,
            bureaus=[p.bureau] if p.bureau else [],
            pid=p.pid,
            address=p.address,
            log=p.log,
            host=p.host if p.role == "node" else None,
            metrics=p.metrics,
        )
        for p in network.procs
    ]
    if network.faultd is not None:
        f = network.faultd
        rows.append(Row("faultd", "faultd", [], f.pid, f.address, f.log))
    return rows


async def _probe(network: Network, rows: list[Row], timeout: float) -> None:
    from ncbsim.pki import GATEWAY_NAME, PkiDir, bureau_dns_name

    tls = PkiDir(network.workdir).tls("operator")
    limit = asyncio.Semaphore(32)

    async def one(row: Row) -> None:
        row.alive = network.runs(row.pid)
        if not row.alive:
            return
        async with limit:
            if row.role == "faultd":
                row.health = await asyncio.to_thread(_faultd_health, row.address, timeout)
                return
            peer = GATEWAY_NAME if row.role == "gateway" else bureau_dns_name(row.bureaus[0])
            row.health, row.services = await check_health(row.address, peer, tls, timeout)

    await asyncio.gather(*(one(row) for row in rows))


def _faultd_health(control: str, timeout: float) -> str:
    try:
        reply = faultd.request(control, {"op": "status"}, timeout=timeout)
    except (OSError, ValueError):
        return UNREACHABLE
    return SERVING if reply.get("ok") else UNREACHABLE


def status(workdir: Path, *, timeout: float = HEALTH_TIMEOUT_S) -> dict[str, Any]:
    """What ``ncbsim status --json`` prints (docs/scenarios.md, "Operating a running
    network", documents every key)."""
    from ncbsim.simulations import live_faults

    if not timeout > 0:
        raise ConfigError("--timeout must be a number of seconds > 0")
    network = load(workdir)
    rows = _rows(network)
    asyncio.run(_probe(network, rows, timeout))
    faults = live_faults.in_force(network, timeout=timeout)
    return {
        "workdir": str(network.workdir),
        "scenario": network.scenario,
        "faults_enabled": network.faultd is not None,
        "up": all(row.up for row in rows),
        "processes": [row.as_dict() for row in rows],
        "faults": faults,
    }


# ---------------------------------------------------------------- restart


def restart(workdir: Path, *, bureau: str | None = None, gateway: bool = False) -> str:
    """Restart one process of the network with its files, same ports, same records, its
    current certificate and keys: the gateway, or the host serving ``bureau``.

    Returns what was done, in a sentence or two. A fault that held the process (a live
    ``kill`` or ``pause``) ends with the restart; a live clock skew carries over.
    """
    from ncbsim.simulations import live_faults

    load(workdir)
    with locked(workdir):
        network = Network.load(workdir)
        if gateway:
            network.stop_gateway()
            network.restart_gateway()
            live_faults.released(network, ["gateway"])
            gw = network.gateway
            return f"restarted the gateway (pid {gw.pid}, {gw.address})"
        if bureau is None:
            raise ConfigError("name a bureau (--bureau DE) or --gateway")
        codes = [p.bureau for p in network.procs if p.bureau]
        if bureau not in codes:
            raise ConfigError(f"{bureau} is not a bureau of this network ({', '.join(codes)})")
        host = network.host_of(bureau)
        network.stop_host(host)
        network.restart_host(host, clock_offsets=live_faults.skews(network))
        live_faults.released(network, host.bureaus)
        node = network.node(bureau)
        text = f"restarted {bureau} (pid {node.pid}, {node.address})"
        others = [code for code in host.bureaus if code != bureau]
        if others:
            text += (
                f"; its host process {host.index} also serves {', '.join(others)}, "
                "restarted with it"
            )
        return text


# ---------------------------------------------------------------- human output


def _utc(ms: int | None) -> str:
    if ms is None:
        return ""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S")


def _fault_params(fault: dict[str, Any]) -> str:
    parts = [f"{key}={value:g}" for key, value in fault["params"].items()]
    if fault["direction"] != "both":
        parts.append(f"direction={fault['direction']}")
    return " ".join(parts)


def _services_text(overall: str, services: dict[str, str]) -> str:
    """The services whose health differs from the server's, by short name (``--json`` has
    every one): ``" (BureauService NOT_SERVING)"``, or nothing when all agree."""
    odd = [f"{name.rsplit('.', 1)[-1]} {state}" for name, state in services.items()]
    odd = [text for text, state in zip(odd, services.values(), strict=True) if state != overall]
    return f" ({', '.join(odd)})" if odd else ""


def render(data: dict[str, Any]) -> None:
    """Print ``status`` data as tables: the processes, then the faults in force."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(header_style="bold")
    rows = data["processes"]
    columns = ["name", "role", "pid", "address", "metrics", "alive", "health"]
    for column in columns:
        table.add_column(column, no_wrap=column in {"name", "pid", "address", "metrics", "health"})
    for row in rows:
        colour = "green" if row["up"] else "red"
        cells = [
            row["name"],
            row["role"],
            str(row["pid"]),
            row["address"].removeprefix(f"{data['workdir']}/"),  # a socket: WORKDIR/run/...
            row["metrics"] or "-",
            "yes" if row["alive"] else "[red]no[/]",
            f"[{colour}]{row['health']}[/]" + _services_text(row["health"], row["services"]),
        ]
        table.add_row(*cells)
    console.print(table)
    if data["faults"]:
        faults = Table(header_style="bold", title="faults in force")
        for column in ("id", "kind", "holds", "parameters", "since (UTC)", "until"):
            faults.add_column(column)
        for fault in data["faults"]:
            faults.add_row(
                fault["id"],
                fault["kind"],
                ", ".join(fault["held"]),
                _fault_params(fault),
                _utc(fault["started_ms"]),
                _utc(fault["until_ms"]) or "heal",
            )
        console.print(faults)
    else:
        link = "" if data["faults_enabled"] else " (link faults need `ncbsim up --faults`)"
        console.print(f"no faults in force{link}")
    down = [row["name"] for row in rows if not row["up"]]
    if down:
        console.print(f"[red]{len(down)} of {len(rows)} down: {', '.join(down)}[/]")
    else:
        console.print(f"all {len(rows)} up")
