"""The engine in real-network mode (``[engine] mode = "netns"``): namespaces, kernel faults.

Two processes share the work. :func:`run_netns`, in the root namespace, checks the
requirements, removes what crashed runs left, builds the :class:`~simulations.netns.Topology`
and runs ``ncbsim simulate`` again inside the topology's ``ctl`` namespace; whatever happens
to that run, it then deletes every namespace. Inside, :class:`NetnsEngine` starts the
gateway and each bureau host with ``ip netns exec`` in their own namespace, bound to its
address, and keeps its clients and fault proxies in ``ctl``: traffic to a namespace
address only ever comes from another namespace.

Faults: loss, bandwidth, blackhole, partition, down and reset become kernel state of the
bureau's host namespace (:class:`~simulations.netns.KernelFaults`); latency, jitter and
slicing go through the asyncio fault proxy (this kernel has no netem); process faults
signal the host's python process itself (``ip netns exec`` execs, so the pid is it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
from rich.console import Console

from ncbsim.errors import NetworkError
from simulations import network as net
from simulations import scenario as scenarios
from simulations.engine import Engine
from simulations.netns import (
    CTL_ADDRESS,
    GATEWAY_ADDRESS,
    KernelFaults,
    Topology,
    cleanup_stale,
    host_address,
    python_in,
    unavailable,
)
from simulations.proxy import FaultProxy, Link
from simulations.scenario import PROCESS_FAULTS, Event, Scenario

log = structlog.get_logger()

KERNEL_FAULTS = KernelFaults.KINDS
"""Fault kinds that become kernel state of a host namespace in this mode."""
PROXY_FAULTS = frozenset({"latency", "slice"})
"""Fault kinds that still need the asyncio fault proxy (no netem on this kernel)."""
_STOP_INNER_S = 30.0
_SOCKET_PATH_MAX = 100


def solo(scenario: Scenario) -> set[str]:
    """Bureaus that get a host (and so a namespace) of their own: every faulted bureau.

    A kernel fault hits a whole namespace, and a signal a whole process, so a bureau
    named by either is alone in both.
    """
    kinds = PROCESS_FAULTS | KERNEL_FAULTS
    return {b for e in scenario.events if e.fault in kinds for b in e.bureaus}


def layout(scenario: Scenario) -> list[list[str]]:
    """How the bureaus share host processes (one namespace each) in this mode."""
    return net.plan_hosts(scenario.bureaus, hosts=scenario.engine.hosts, solo=solo(scenario))


# ---------------------------------------------------------------- processes in namespaces


def _spawn(namespace: str, args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        return subprocess.Popen(
            python_in(namespace, args),
            stdin=subprocess.DEVNULL,
            env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
            stdout=out,
            stderr=out,
        )


def _wait_ready(
    proc: subprocess.Popen[bytes], ready: Path, log_path: Path, timeout_s: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready.exists():
            data: dict[str, Any] = json.loads(ready.read_text())
            return data
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise NetworkError(f"process exited with {proc.returncode}: " + " | ".join(tail))
        time.sleep(0.05)
    raise NetworkError(f"process {proc.pid} not ready after {timeout_s:.0f}s")


def _control_path(run: Path, index: int) -> str:
    path = run / f"host-{index}.sock"
    if len(os.fsencode(str(path))) <= _SOCKET_PATH_MAX:
        return str(path)
    tag = hashlib.sha256(os.fsencode(str(run))).hexdigest()[:12]
    return str(Path(tempfile.gettempdir()) / f"ncbsim-{tag}-{index}.sock")


class NetnsNetwork(net.Network):
    """A :class:`~simulations.network.Network` whose processes each run in a namespace."""

    topology: Topology

    @classmethod
    def start_in(
        cls,
        topology: Topology,
        workdir: Path,
        scenario: Scenario,
        *,
        hosts: list[list[str]],
        log_level: str = "info",
        gateway_for: Mapping[str, str] | None = None,
        advertise_for: Mapping[str, str] | None = None,
        ready_timeout_s: float = net.READY_TIMEOUT_S,
        on_gateway: Callable[[str], None] | None = None,
    ) -> NetnsNetwork:
        """Start the gateway in ``topology.gateway`` and host ``i`` in ``topology.host(i)``.

        Each binds to its namespace's address; otherwise as :meth:`Network.start`.
        """
        if len(hosts) > topology.hosts:
            raise NetworkError(f"{len(hosts)} hosts but {topology.hosts} host namespaces")
        workdir = workdir.resolve()
        net.prepare(workdir, scenario)
        run = workdir / "run"
        run.mkdir(exist_ok=True)
        env_args = ["--log-level", log_level]
        started: list[subprocess.Popen[bytes]] = []
        network_hosts: list[net.Host] = []
        try:
            glog = net.gateway_files(workdir) / "gateway.log"
            ready = run / "gateway.json"
            ready.unlink(missing_ok=True)
            gw = _spawn(
                topology.gateway,
                [
                    *(*env_args, "gateway", "--dir", str(workdir)),
                    *("--listen", f"{GATEWAY_ADDRESS}:0", "--ready-file", str(ready)),
                ],
                glog,
            )
            started.append(gw)
            gateway = str(_wait_ready(gw, ready, glog, ready_timeout_s)["address"])
            procs = [net.Proc("gateway", None, gw.pid, gateway, str(glog))]
            if on_gateway is not None:
                on_gateway(gateway)
            pending = []
            for index, bureaus in enumerate(hosts):
                host = net.Host(
                    index=index,
                    bureaus=list(bureaus),
                    spec=str(run / f"host-{index}.spec.json"),
                    control=_control_path(run, index),
                    log=str(
                        workdir / "bureaus" / bureaus[0] / "node.log"
                        if len(bureaus) == 1
                        else workdir / "hosts" / f"host-{index}.log"
                    ),
                )
                spec = {
                    "gateway": gateway,
                    "bureaus": [
                        {
                            "bureau": code,
                            "db": str(net.db_path(workdir, code)),
                            "listen": f"{host_address(index)}:0",
                            "advertise": (advertise_for or {}).get(code),
                            "gateway": (gateway_for or {}).get(code),
                        }
                        for code in bureaus
                    ],
                }
                Path(host.spec).write_text(json.dumps(spec, indent=2) + "\n")
                child = _start_host(topology, host, env_args)
                started.append(child)
                network_hosts.append(host)
                pending.append((host, child))
            for host, child in pending:
                _await_host(host, child, ready_timeout_s)
                procs.extend(
                    net.Proc("node", code, host.pid, host.addresses[code], host.log, host.index)
                    for code in host.bureaus
                )
        except BaseException:
            net._terminate([p.pid for p in started])
            for proc in started:
                proc.wait()
            raise
        order = {code: i for i, code in enumerate(scenario.bureaus)}
        procs.sort(key=lambda p: -1 if p.bureau is None else order.get(p.bureau, 0))
        network = cls(
            workdir, scenario.name, procs, started, hosts=network_hosts, log_level=log_level
        )
        network.topology = topology
        network.write_manifest()
        log.info("network_up", workdir=str(workdir), processes=len(network_hosts) + 1, netns=True)
        return network

    def restart_host(self, host: net.Host, *, timeout_s: float = net.READY_TIMEOUT_S) -> None:
        """Start ``host`` again in its namespace, on the ports it had; wait until it serves."""
        spec = json.loads(Path(host.spec).read_text())
        for item in spec["bureaus"]:
            item["listen"] = host.addresses.get(item["bureau"], item["listen"])
        Path(host.spec).write_text(json.dumps(spec, indent=2) + "\n")
        child = _start_host(self.topology, host, ["--log-level", self.log_level])
        self._children.append(child)
        _await_host(host, child, timeout_s)
        self.procs = [
            net.Proc(p.role, p.bureau, host.pid, p.address, p.log, p.host)
            if p.host == host.index and p.role == "node"
            else p
            for p in self.procs
        ]
        self.write_manifest()


def _start_host(topology: Topology, host: net.Host, env_args: list[str]) -> subprocess.Popen[bytes]:
    spec = Path(host.spec)
    ready = spec.with_name(f"host-{host.index}.ready.json")
    ready.unlink(missing_ok=True)
    Path(host.control).unlink(missing_ok=True)
    child = _spawn(
        topology.host(host.index),
        [
            *(*env_args, "host", "--dir", str(spec.parent.parent), "--spec", str(spec)),
            *("--ready-file", str(ready), "--control", host.control),
        ],
        Path(host.log),
    )
    host.pid = child.pid
    return child


def _await_host(host: net.Host, child: subprocess.Popen[bytes], timeout_s: float) -> None:
    ready = Path(host.spec).with_name(f"host-{host.index}.ready.json")
    info = _wait_ready(child, ready, Path(host.log), timeout_s)
    host.addresses = {code: str(address) for code, address in info["bureaus"].items()}


# ---------------------------------------------------------------- the engine


class NetnsEngine(Engine):
    """The engine inside the ``ctl`` namespace of a topology :func:`run_netns` built.

    Raises NetworkError if this process does not run in such a namespace: the engine's
    clients must never reach namespace addresses from the root namespace.
    """

    def __init__(
        self,
        scenario: Scenario,
        workdir: Path,
        *,
        console: Console | None = None,
        log_level: str = "info",
    ) -> None:
        super().__init__(scenario, workdir, console=console, log_level=log_level)
        topology = Topology.current()
        if topology is None:
            raise NetworkError(
                'engine.mode = "netns": the engine runs inside the ctl namespace that '
                "`ncbsim simulate` builds (simulations.netns_engine.run_netns)"
            )
        self.topology = topology
        self.kernel = KernelFaults(topology)
        self.result.extra["netns"] = {
            "prefix": topology.prefix,
            "engine_namespace": topology.ctl,
            "namespaces": topology.hosts + 3,
        }

    def _proxied(self) -> list[str]:
        mode = self.scenario.engine.proxy
        if mode == "none":
            return []
        if mode == "all":
            return list(self.scenario.bureaus)
        named = {b for e in self.scenario.events if e.fault in PROXY_FAULTS for b in e.bureaus}
        return [b for b in self.scenario.bureaus if b in named]

    def _solo(self) -> set[str]:
        return solo(self.scenario)

    async def _start_links(self) -> None:
        for code in self._proxied():
            seed = zlib.crc32(f"{self.scenario.seed}:{code}".encode())
            listen = f"{CTL_ADDRESS}:0"
            to_gateway = FaultProxy(
                f"{code}>gateway", partial(self.addresses.get, "gateway"), listen=listen, seed=seed
            )
            to_bureau = FaultProxy(
                f"gateway>{code}", partial(self.addresses.get, code), listen=listen, seed=seed + 1
            )
            await to_gateway.start()
            await to_bureau.start()
            self.links[code] = Link(code, to_gateway=to_gateway, to_bureau=to_bureau)

    def _start_network(self) -> net.Network:
        scenario = self.scenario
        hosts = layout(scenario)

        def on_gateway(address: str) -> None:
            self.addresses["gateway"] = address

        network = NetnsNetwork.start_in(
            self.topology,
            self.workdir,
            scenario,
            hosts=hosts,
            log_level=self.log_level,
            gateway_for={b: link.to_gateway.address for b, link in self._linked()},
            advertise_for={b: link.to_bureau.address for b, link in self._linked()},
            ready_timeout_s=scenario.engine.startup_timeout_s,
            on_gateway=on_gateway,
        )
        for host in network.hosts:
            self.addresses.update(host.addresses)
        return network

    def namespace_of(self, code: str) -> str:
        """The namespace of the host serving bureau ``code``."""
        assert self.network is not None
        return self.topology.host(self.network.host_of(code).index)

    async def _apply_one(self, fault: str, code: str, event: Event) -> None:
        if fault not in KERNEL_FAULTS:
            await super()._apply_one(fault, code, event)
            return
        await asyncio.to_thread(
            self.kernel.apply,
            self.namespace_of(code),
            fault,
            key=event.id,
            direction=event.direction,
            params=dict(event.params),
        )

    async def _heal(self, fault_id: str) -> None:
        active = self._active.get(fault_id)
        if active is None or active.record.kind not in KERNEL_FAULTS:
            await super()._heal(fault_id)
            return
        del self._active[fault_id]
        for code in active.record.bureaus:
            await asyncio.to_thread(self.kernel.heal, self.namespace_of(code), fault_id)
        record = active.record
        self.result.faults.append(dataclasses.replace(record, end_s=self.now_s()))
        self.event("heal", id=fault_id, kind=record.kind, bureaus=list(record.bureaus))

    async def _stop(self) -> None:
        # Lift the kernel faults first: a process behind a drop rule shuts down slowly.
        with contextlib.suppress(NetworkError):
            await asyncio.to_thread(self.kernel.heal_all)
        await super()._stop()


# ---------------------------------------------------------------- the outer driver


def inside() -> bool:
    """Whether this process runs in the ctl namespace of a real-network topology."""
    return Topology.current() is not None


def inner_argv(
    name: str,
    *,
    run_dir: Path,
    workdir: Path | None = None,
    report_path: Path | None = None,
    log_level: str = "info",
) -> list[str]:
    """The ``ncbsim`` arguments that run the same simulation again, inside the ctl namespace."""
    args = [] if log_level == "info" else ["--log-level", log_level]
    args += ["simulate", name, "--run-dir", str(run_dir.resolve())]
    if workdir is not None:
        args += ["--workdir", str(workdir.resolve())]
    if report_path is not None:
        args += ["--report", str(report_path.resolve())]
    return args


def run_netns(
    name: str,
    *,
    run_dir: Path,
    workdir: Path | None = None,
    report_path: Path | None = None,
    log_level: str = "info",
) -> dict[str, Any]:
    """Run scenario ``name`` in real-network mode; return the report the inner run wrote.

    Raises NetworkError, before creating anything, naming what is missing if the mode
    cannot run here; and if the inner run ends without a report. Every namespace is
    deleted at the end, whatever happened (SIGINT and SIGTERM included).
    """
    reason = unavailable()
    if reason is not None:
        raise NetworkError(f'engine.mode = "netns" cannot run here: {reason}')
    scenario = scenarios.load(name)
    cleanup_stale()
    report = run_dir.resolve() / "report.json"
    report.unlink(missing_ok=True)
    topology = Topology.create(Topology.new_prefix(), hosts=len(layout(scenario)))
    args = inner_argv(
        name, run_dir=run_dir, workdir=workdir, report_path=report_path, log_level=log_level
    )
    previous = signal.getsignal(signal.SIGTERM)
    try:
        inner = subprocess.Popen(python_in(topology.ctl, args))

        def terminate(signum: int, frame: FrameType | None) -> None:
            inner.terminate()
            raise KeyboardInterrupt

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, terminate)
        try:
            code = inner.wait()
        except KeyboardInterrupt:
            try:
                inner.wait(timeout=_STOP_INNER_S)
            except subprocess.TimeoutExpired:
                inner.kill()
                inner.wait()
            raise
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
        topology.destroy()
    if not report.exists():
        raise NetworkError(f"the engine in {topology.ctl} exited with {code} and wrote no report")
    data: dict[str, Any] = json.loads(report.read_text())
    return data
