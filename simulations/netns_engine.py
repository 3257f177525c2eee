"""The engine in real-network mode (``[engine] mode = "netns"``): namespaces, kernel faults.

Two processes share the work. :func:`run_netns`, in the root namespace, checks the
requirements, removes what crashed runs left, builds the :class:`~ncbsim.simulations.netns.Topology`
and runs ``ncbsim simulate`` again inside the topology's ``ctl`` namespace; whatever happens
to that run, it then deletes every namespace. Inside, :class:`NetnsEngine` starts the
gateway and each bureau host with ``ip netns exec`` in their own namespace, bound to its
address, and keeps its clients and fault proxies in ``ctl``: traffic to a namespace
address only ever comes from another namespace.

Faults: loss, bandwidth, blackhole, partition, down and reset become kernel state of the
bureau's host namespace (ncbsim.simulations.faults.kernel); latency, jitter and slicing go
through the asyncio fault proxy (this kernel has no netem); process faults signal the
host's python process itself (``ip netns exec`` execs, so the pid is it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import zlib
from functools import partial
from pathlib import Path
from typing import Any

import structlog
from rich.console import Console

from ncbsim.errors import NetworkError
from ncbsim.processes import sigterm_as_interrupt
from ncbsim.simulations import network as net
from ncbsim.simulations import scenario as scenarios
from ncbsim.simulations.engine import Engine
from ncbsim.simulations.faults import kernel
from ncbsim.simulations.netns import (
    CTL_ADDRESS,
    GATEWAY_ADDRESS,
    KernelFaults,
    Topology,
    cleanup_stale,
    host_address,
    ns_exec,
    python_in,
    unavailable,
)
from ncbsim.simulations.proxy import FaultProxy, Link
from ncbsim.simulations.scenario import PROCESS_FAULTS, Scenario

log = structlog.get_logger()

_STOP_INNER_S = 30.0


def solo(scenario: Scenario) -> set[str]:
    """Bureaus that get a host (and so a namespace) of their own: every faulted bureau.

    A kernel fault hits a whole namespace, and a signal a whole process, so a bureau
    named by either is alone in both.
    """
    kinds = PROCESS_FAULTS | kernel.KINDS
    return {b for e in scenario.faults() if e.fault in kinds for b in e.bureaus}


def layout(scenario: Scenario) -> list[list[str]]:
    """How the bureaus share host processes (one namespace each) in this mode."""
    return net.plan_hosts(scenario.bureaus, hosts=scenario.engine.hosts, solo=solo(scenario))


# ---------------------------------------------------------------- processes in namespaces


class NetnsPlacement(net.Placement):
    """The gateway in ``topology.gateway``, host ``i`` in ``topology.host(i)``, each bound
    to its namespace's address. ``ip netns exec`` execs, so a process's pid is python's."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology

    def gateway_listen(self) -> str:
        """The gateway namespace's address."""
        return f"{GATEWAY_ADDRESS}:0"

    def host_listen(self, index: int) -> str:
        """Host ``index``'s namespace address."""
        return f"{host_address(index)}:0"

    def command(self, index: int | None) -> list[str]:
        """``ip netns exec NS`` for the gateway's or host ``index``'s namespace."""
        return ns_exec(self.topology.gateway if index is None else self.topology.host(index), [])


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
        observe: bool = True,
    ) -> None:
        super().__init__(scenario, workdir, console=console, log_level=log_level, observe=observe)
        topology = Topology.current()
        if topology is None:
            raise NetworkError(
                'engine.mode = "netns": the engine runs inside the ctl namespace that '
                "`ncbsim simulate` builds (simulations.netns_engine.run_netns)"
            )
        self.topology = topology
        self.kernel = KernelFaults(topology)
        self.faults.kernel = self.kernel
        self.faults.namespace_of = self.namespace_of
        self.result.extra["netns"] = {
            "prefix": topology.prefix,
            "engine_namespace": topology.ctl,
            "namespaces": topology.hosts + 3,
        }

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

    def _placement(self) -> net.Placement:
        hosts = len(layout(self.scenario))
        if hosts > self.topology.hosts:
            raise NetworkError(f"{hosts} hosts but {self.topology.hosts} host namespaces")
        return NetnsPlacement(self.topology)

    def namespace_of(self, code: str) -> str:
        """The namespace of the host serving bureau ``code``."""
        assert self.network is not None
        return self.topology.host(self.network.host_of(code).index)

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
    try:
        inner = subprocess.Popen(python_in(topology.ctl, args))
        with sigterm_as_interrupt(first=inner.terminate):
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
        topology.destroy()
    if not report.exists():
        raise NetworkError(f"the engine in {topology.ctl} exited with {code} and wrote no report")
    data: dict[str, Any] = json.loads(report.read_text())
    return data
