"""Bring a network of real processes up and down: one gateway, and bureau host processes.

A host process (``ncbsim host``, node/host.py) runs one or many bureau nodes, each with its
own port, keys and databases: that is what lets all 196 members run on two cores. Small
networks get one host per bureau, so a fault or a signal hits exactly one bureau.

Everything lives in one work directory, which is also the PKI directory; its layout is
drawn once, in ncbsim.workdir (:class:`~ncbsim.workdir.Workdir` names every file).

A bureau's data is as private as its keys: ``bureaus/``, ``gateway/``, ``operator/``,
``hosts/`` and ``run/`` and every folder in them are 0700, every file in them 0600, logs
and SQLite's ``-wal`` and ``-shm`` files included (ncbsim.private; folders a previous
version left looser are tightened on start). The PKI's public material (``ca.crt``,
``directory/``, the revocation list) and ``network.json`` stay readable.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import structlog

from ncbsim import private, processes
from ncbsim.errors import ConfigError, NetworkError
from ncbsim.simulations import manifest, supervise
from ncbsim.simulations.manifest import Host, Proc
from ncbsim.simulations.placement import LOOPBACK, Placement, plan_hosts
from ncbsim.simulations.prepare import prepare
from ncbsim.simulations.scenario import Scenario
from ncbsim.simulations.supervise import Stopped
from ncbsim.workdir import Workdir

__all__ = ["LOOPBACK", "Network", "Placement", "plan_hosts"]
# Placement and plan_hosts live in simulations/placement.py; the engines reach them here.

log = structlog.get_logger()


class Network:
    """A running network whose processes this object started."""

    def __init__(
        self,
        workdir: Path,
        scenario: str,
        procs: list[Proc],
        children: list[subprocess.Popen[bytes]] | None = None,
        *,
        hosts: list[Host] | None = None,
        log_level: str = "info",
        placement: Placement = LOOPBACK,
        detach: bool = False,
        faultd: Proc | None = None,
        links: Mapping[str, Mapping[str, str]] | None = None,
        trace_dir: Path | None = None,
        attacks: bool = False,
    ) -> None:
        self.workdir = workdir
        self.attacks = attacks
        """Its gateway is the classroom-mode one (``ncbsim classroom``; gateway/attacks)."""
        self.trace_dir = trace_dir
        """Where each process appends its spans (gateway.jsonl, host-N.jsonl); None: untraced."""
        self.placement = placement
        self.scenario = scenario
        self.procs = procs
        self.hosts = hosts or []
        self.log_level = log_level
        self.detach = detach
        """Processes (re)started by this object get a session of their own and outlive it."""
        self.faultd = faultd
        """The fault daemon of ``ncbsim up --faults`` (None without it)."""
        self.links = {code: dict(link) for code, link in (links or {}).items()}
        """Each bureau's fault proxies: ``{"DE": {"to_gateway": addr, "to_bureau": addr}}``."""
        self._children = children or []  # kept so we reap what we started
        self._lock = threading.Lock()  # restarts (in threads) against stop
        self._stopping = False
        self._abort = threading.Event()

    @property
    def gateway(self) -> Proc:
        """The gateway process."""
        return next(p for p in self.procs if p.role == "gateway")

    def node(self, bureau: str) -> Proc:
        """The node of ``bureau``."""
        return next(p for p in self.procs if p.bureau == bureau)

    def host_of(self, bureau: str) -> Host:
        """The host process serving ``bureau``."""
        return next(h for h in self.hosts if bureau in h.bureaus)

    @classmethod
    def start(
        cls,
        workdir: Path,
        scenario: Scenario,
        *,
        detach: bool = False,
        log_level: str = "info",
        hosts: list[list[str]] | None = None,
        gateway_for: Mapping[str, str] | None = None,
        advertise_for: Mapping[str, str] | None = None,
        ready_timeout_s: float = supervise.READY_TIMEOUT_S,
        on_gateway: Callable[[str], None] | None = None,
        abort: threading.Event | None = None,
        started: list[subprocess.Popen[bytes]] | None = None,
        placement: Placement = LOOPBACK,
        faultd: Proc | None = None,
        links: Mapping[str, Mapping[str, str]] | None = None,
        trace_dir: Path | None = None,
        attacks: bool = False,
        suite: str | None = None,
    ) -> Network:
        """Prepare ``workdir``, start the gateway, then every host; wait until all serve.

        ``hosts`` shares the bureaus among host processes (default :func:`plan_hosts`).
        ``gateway_for`` gives a bureau another address to reach the gateway by, and
        ``advertise_for`` another address for the gateway to reach it by: the simulator
        puts its fault proxies there. ``on_gateway`` learns the gateway's address as
        soon as it serves, before any host starts (the proxies need it).
        ``ready_timeout_s`` bounds the whole start-up. Setting ``abort`` (from another
        thread) stops a start-up under way: everything started is stopped, and the call
        raises. ``started`` receives every child as it is spawned. ``placement`` says
        where the processes run and listen (default: here, on loopback). ``faultd`` and
        ``links`` name the fault daemon and its proxies, for the manifest. With
        ``trace_dir`` every process appends its spans there (docs/traces.md), restarted
        ones too. ``attacks`` (``ncbsim classroom`` only) starts the classroom-mode gateway.
        ``suite`` names the query session suite of a new PKI (``pki init --suite``).
        """
        workdir = workdir.resolve()
        # Each process creates its file 0600, and missing folders 0700 (ncbsim.private).
        trace_dir = trace_dir.resolve() if trace_dir is not None else None
        files = Workdir(workdir)
        if files.manifest.exists():
            raise NetworkError(f"{workdir} already runs a network; run `ncbsim down` first")
        prepare(workdir, scenario, suite=suite)
        run = private.private_folder(files.run)
        files.live_faults.unlink(missing_ok=True)  # left by a network that crashed
        env_args = ["--log-level", log_level]
        started = started if started is not None else []
        procs: list[Proc] = []
        deadline = time.monotonic() + ready_timeout_s
        layout = hosts if hosts is not None else plan_hosts(scenario.bureaus)
        network_hosts: list[Host] = []
        try:
            glog = files.gateway.log
            ready = files.gateway_ready
            ready.unlink(missing_ok=True)
            gw = supervise.spawn_gateway(
                workdir,
                ready,
                glog,
                log_level=log_level,
                listen=placement.gateway_listen(),
                detach=detach,
                placement=placement,
                trace_file=supervise.trace_files(trace_dir, "gateway"),
                attacks=attacks,
            )
            started.append(gw)
            info = supervise.wait_ready(
                gw, ready, glog, deadline=deadline, what="gateway", abort=abort
            )
            procs.append(
                Proc("gateway", None, gw.pid, info["address"], str(glog), metrics=info["metrics"])
            )
            if on_gateway is not None:
                on_gateway(info["address"])
            pending = []
            for index, bureaus in enumerate(layout):
                host = Host(
                    index=index,
                    bureaus=list(bureaus),
                    spec=str(run / f"host-{index}.spec.json"),
                    control=supervise.control_path(run, index),
                    log=str(
                        files.bureau(bureaus[0]).log if len(bureaus) == 1 else files.host_log(index)
                    ),
                )
                supervise.write_spec(
                    host,
                    workdir,
                    gateway=info["address"],
                    listen=placement.host_listen(index),
                    gateway_for=gateway_for or {},
                    advertise_for=advertise_for or {},
                )
                child = supervise.start_host(
                    host,
                    env_args,
                    detach=detach,
                    placement=placement,
                    trace_file=supervise.trace_files(trace_dir, f"host-{index}"),
                )
                started.append(child)
                network_hosts.append(host)
                pending.append((host, child))
            for host, child in pending:
                supervise.await_host(host, child, deadline=deadline, abort=abort)
                procs.extend(
                    Proc(
                        "node",
                        code,
                        host.pid,
                        host.addresses[code],
                        host.log,
                        host.index,
                        host.metrics.get(code, ""),
                    )
                    for code in host.bureaus
                )
        except BaseException:
            processes.terminate([p.pid for p in started])
            for child in started:
                child.wait()
            raise
        order = {code: i for i, code in enumerate(scenario.bureaus)}
        procs.sort(key=lambda p: -1 if p.bureau is None else order.get(p.bureau, 0))
        network = cls(
            workdir,
            scenario.name,
            procs,
            [] if detach else started,
            hosts=network_hosts,
            log_level=log_level,
            placement=placement,
            detach=detach,
            faultd=faultd,
            links=links,
            trace_dir=trace_dir,
            attacks=attacks,
        )
        network.write_manifest()
        log.info("network_up", workdir=str(workdir), processes=len(network_hosts) + 1)
        return network

    def kill_host(self, host: Host) -> None:
        """SIGKILL ``host`` (a crash: no goodbye) and reap it."""
        processes.kill(host.pid)

    def restart_host(
        self,
        host: Host,
        *,
        timeout_s: float = supervise.READY_TIMEOUT_S,
        clock_offsets: Mapping[str, int] | None = None,
    ) -> None:
        """Start ``host`` again on the ports it had, and wait until it serves (blocking).

        ``clock_offsets`` carries the bureaus' clock skews over the restart. Refused once
        :meth:`stop` has begun, so a restart can never outlive the network.
        """
        spec = json.loads(Path(host.spec).read_text())
        for item in spec["bureaus"]:
            item["listen"] = host.addresses.get(item["bureau"], item["listen"])
            if host.metrics.get(item["bureau"]):  # the same port: Prometheus keeps its target
                item["metrics_listen"] = host.metrics[item["bureau"]]
            item["clock_offset_ms"] = (clock_offsets or {}).get(item["bureau"], 0)
        private.write_text(Path(host.spec), json.dumps(spec, indent=2) + "\n")
        with self._lock:
            if self._stopping:
                raise NetworkError("the network is stopping")
            child = supervise.start_host(
                host,
                ["--log-level", self.log_level],
                detach=self.detach,
                placement=self.placement,
                trace_file=supervise.trace_files(self.trace_dir, f"host-{host.index}"),
            )
            self._children.append(child)
        supervise.await_host(host, child, deadline=time.monotonic() + timeout_s, abort=self._abort)
        with self._lock:
            if self._stopping:
                return
            self.procs = [
                Proc(
                    p.role,
                    p.bureau,
                    host.pid,
                    p.address,
                    p.log,
                    p.host,
                    host.metrics.get(p.bureau or "", ""),
                )
                if p.host == host.index and p.role == "node"
                else p
                for p in self.procs
            ]
            self.write_manifest()

    def runs(self, pid: int) -> bool:
        """Whether ``pid`` is alive and a process of this network (not a reused pid)."""
        return processes.alive(pid) and supervise.ours(pid, self.workdir)

    def stop_host(self, host: Host) -> None:
        """Stop ``host`` cleanly (SIGTERM; SIGKILL after processes.STOP_TIMEOUT_S), if it runs."""
        if supervise.ours(host.pid, self.workdir):
            processes.terminate([host.pid])
        Path(host.control).unlink(missing_ok=True)

    def stop_gateway(self) -> None:
        """Stop the gateway (SIGTERM; SIGKILL after processes.STOP_TIMEOUT_S), if it runs."""
        if supervise.ours(self.gateway.pid, self.workdir):
            processes.terminate([self.gateway.pid])

    def kill_gateway(self) -> None:
        """SIGKILL the gateway (a crash: its mailbox keeps what it accepted) and reap it."""
        processes.kill(self.gateway.pid)

    def restart_gateway(self, *, timeout_s: float = supervise.READY_TIMEOUT_S) -> None:
        """Start the gateway again on the address it had, with the same audit and mailbox.

        Blocks until it serves. The bureaus find it by themselves: their nodes keep
        registering, and clients' channels reconnect. Refused once :meth:`stop` began.
        """
        old = self.gateway
        glog = Path(old.log)
        ready = Workdir(self.workdir).gateway_ready
        ready.unlink(missing_ok=True)
        with self._lock:
            if self._stopping:
                raise NetworkError("the network is stopping")
            child = supervise.spawn_gateway(
                self.workdir,
                ready,
                glog,
                log_level=self.log_level,
                listen=old.address,
                detach=self.detach,
                placement=self.placement,
                metrics_listen=old.metrics or "127.0.0.1:0",
                trace_file=supervise.trace_files(self.trace_dir, "gateway"),
                attacks=self.attacks,
            )
            self._children.append(child)
        info = supervise.wait_ready(
            child,
            ready,
            glog,
            deadline=time.monotonic() + timeout_s,
            what="gateway",
            abort=self._abort,
        )
        with self._lock:
            self.procs = [
                Proc(p.role, p.bureau, child.pid, p.address, p.log, p.host, info["metrics"])
                if p.role == "gateway"
                else p
                for p in self.procs
            ]
            if not self._stopping:
                self.write_manifest()

    def write_manifest(self) -> None:
        """Write WORKDIR/network.json."""
        data: dict[str, Any] = {
            "scenario": self.scenario,
            "workdir": str(self.workdir),
            "gateway": self.gateway.address,
            "log_level": self.log_level,
            "processes": [asdict(p) for p in self.procs],
            "hosts": [asdict(h) for h in self.hosts],
        }
        if self.faultd is not None:
            data["faultd"] = asdict(self.faultd)
            data["links"] = self.links
        if self.trace_dir is not None:
            data["trace_dir"] = str(self.trace_dir)
        if self.attacks:
            data["classroom_attacks"] = True
        manifest.write(self.workdir, data)

    @classmethod
    def load(cls, workdir: Path) -> Network:
        """The network described by WORKDIR/network.json."""
        read = manifest.read(workdir)
        data, faultd = read.data, read.faultd
        # Whatever started it, what this object restarts must outlive the command.
        return cls(
            Path(data["workdir"]),
            data["scenario"],
            read.procs,
            hosts=read.hosts,
            log_level=data.get("log_level", "info"),
            detach=True,
            faultd=Proc(**faultd) if faultd else None,
            links=data.get("links"),
            trace_dir=Path(data["trace_dir"]) if data.get("trace_dir") else None,
            attacks=read.classroom_attacks,
        )

    def pids(self) -> list[int]:
        """Every process of the network: the gateway, then each host once."""
        return list(dict.fromkeys(p.pid for p in self.procs))

    def _slots(self) -> dict[str, list[int]]:
        """Each process of the network ("gateway", "host-N", "faultd") and its candidate pids.

        From this object and from the manifest on disk: a host restarted by another
        command (``ncbsim restart``) has a pid only the manifest knows.
        """
        views: list[Network] = [self]
        with contextlib.suppress(ConfigError, OSError, ValueError, KeyError, TypeError):
            if Workdir(self.workdir).manifest.exists():
                disk = Network.load(self.workdir)
                # The same network (its gateway keeps its address over restarts), not
                # another one brought up in this folder after ours was stopped.
                if disk.gateway.address == self.gateway.address:
                    views.append(disk)
        slots: dict[str, list[int]] = {}
        for view in views:
            slots.setdefault("gateway", []).append(view.gateway.pid)
            for host in view.hosts:
                slots.setdefault(f"host-{host.index}", []).append(host.pid)
            for proc in view.procs:
                if proc.role == "node":
                    slots.setdefault(f"host-{proc.host}", []).append(proc.pid)
            if view.faultd is not None:
                slots.setdefault("faultd", []).append(view.faultd.pid)
        return {slot: list(dict.fromkeys(pids)) for slot, pids in slots.items()}

    def stop(self) -> Stopped:
        """Stop every process (hosts first, the fault daemon last), then remove the manifest.

        Hosts are found three ways (the manifest, the hosts' current pids and the
        children still running), so one being restarted at this moment is not missed.
        Returns how many processes were stopped and how many were already gone.
        """
        with self._lock:
            self._stopping = True
            self._abort.set()
        slots = self._slots()
        running = {
            slot: [pid for pid in pids if supervise.ours(pid, self.workdir)]
            for slot, pids in slots.items()
        }
        found = Stopped.tally(running)
        special = {*running.get("gateway", []), *running.get("faultd", [])}
        hosts = [pid for slot, pids in running.items() if slot.startswith("host-") for pid in pids]
        hosts += [
            c.pid
            for c in self._children
            if c.poll() is None and c.pid not in special and supervise.ours(c.pid, self.workdir)
        ]
        processes.terminate(list(dict.fromkeys(hosts)))
        processes.terminate(running.get("gateway", []))
        processes.terminate(running.get("faultd", []))
        for child in self._children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=processes.STOP_TIMEOUT_S)
        for host in self.hosts:
            supervise.remove_socket(host.control)
            supervise.host_ready(host).unlink(missing_ok=True)
        if self.faultd is not None:
            supervise.remove_socket(self.faultd.address)
        # What said these processes run goes with them; their logs and the specs stay.
        files = Workdir(self.workdir)
        for left in (files.gateway_ready, files.faultd_ready, files.live_faults):
            left.unlink(missing_ok=True)
        files.manifest.unlink(missing_ok=True)
        log.info("network_down", workdir=str(self.workdir), stopped=found.stopped, gone=found.gone)
        return found
