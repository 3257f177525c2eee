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
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

from ncbsim import pki, private
from ncbsim.errors import ConfigError, NetworkError
from ncbsim.node import datagen
from ncbsim.simulations.scenario import Scenario
from ncbsim.workdir import MANIFEST, STAMP, Workdir

log = structlog.get_logger()

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
SOLO_HOSTS_UP_TO = 8
"""Networks of up to this many bureaus get one host process per bureau."""
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes
SOCKET_DIR_PREFIX = "ncbsim-sock-"


@dataclass(frozen=True, slots=True)
class Proc:
    """One bureau node (or the gateway) of a running network.

    ``pid`` is the process serving it: for a bureau, its host, which may serve others too.
    """

    role: str
    bureau: str | None
    pid: int
    address: str
    log: str
    host: int = -1


@dataclass(slots=True)
class Host:
    """One bureau host process: which bureaus it serves, and how to reach and restart it."""

    index: int
    bureaus: list[str]
    spec: str
    control: str
    log: str
    pid: int = 0
    addresses: dict[str, str] = field(default_factory=dict)


class Placement:
    """Where a network's processes run and listen. By default: here, on loopback.

    The real-network mode (simulations.netns_engine) puts each process in a network
    namespace of its own, with its own address, by overriding these.
    """

    def gateway_listen(self) -> str:
        """The gateway's listening address."""
        return "127.0.0.1:0"

    def host_listen(self, index: int) -> str:
        """The listening address of host ``index``'s nodes."""
        return "127.0.0.1:0"

    def command(self, index: int | None) -> list[str]:
        """What to put before ``python -m ncbsim`` for host ``index`` (None: the gateway)."""
        return []


LOOPBACK = Placement()


def _generate(args: tuple[Path, str, int, int, int, int]) -> str:
    path, bureau, seed, documents, persons, vehicles = args
    datagen.generate(
        path,
        bureau,
        seed=seed,
        documents=documents,
        persons=persons,
        vehicles=vehicles,
        workers=1,  # already one bureau per pool worker
    )
    return bureau


def _stamp(scenario: Scenario) -> dict[str, int]:
    records = scenario.records
    return {
        "seed": scenario.seed,
        "documents": records.documents,
        "persons": records.persons,
        "vehicles": records.vehicles,
    }


def _check_stamp(workdir: Path, scenario: Scenario) -> None:
    """Refuse records made by another seed or counts: the run would not be the scenario's."""
    path = Workdir(workdir).stamp
    want = _stamp(scenario)
    if not path.exists():
        if any(Workdir(workdir).bureau(b).records.exists() for b in scenario.bureaus):
            raise ConfigError(
                f"{workdir} holds records of unknown origin (no {STAMP}); use a new --workdir"
            )
        path.write_text(json.dumps(want) + "\n")
        return
    have = json.loads(path.read_text())
    if have != want:
        differ = ", ".join(
            f"{k} {have.get(k)} (not {v})" for k, v in want.items() if have.get(k) != v
        )
        raise ConfigError(
            f"{workdir} holds records made with {differ}; use a new --workdir for this scenario"
        )


def prepare(
    workdir: Path, scenario: Scenario, *, abort: threading.Event | None = None
) -> pki.PkiDir:
    """Create the PKI and every bureau's records under ``workdir`` (reused if present).

    Records are reused only if they were made with the scenario's seed and counts
    (``WORKDIR/records.json``), so a scenario always runs on its own data. Setting
    ``abort`` stops the generation after the bureaus under way (NetworkError).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    directory = pki.PkiDir(workdir)
    if not directory.ca_key.exists():
        pki.init(workdir, list(scenario.bureaus))  # wants an empty folder: first
    _check_stamp(workdir, scenario)
    missing = [b for b in scenario.bureaus if b not in directory.bureaus()]
    for code in missing:
        pki.add_bureau(directory, code)
    # Folders an older version made readable by anyone are tightened, and the
    # certificates it wrote 0644 in them (the other files are, as their owners open them).
    for folder in (
        Workdir(workdir).bureaus,
        Workdir(workdir).gateway.root,
        directory.party("operator"),
        *(directory.party(b) for b in scenario.bureaus),
    ):
        private.private_folder(folder)
        for cert in folder.glob("*.crt"):
            private.tighten(cert)
    todo = [
        (
            Workdir(workdir).bureau(b).records,
            b,
            scenario.seed,
            scenario.records.documents,
            scenario.records.persons,
            scenario.records.vehicles,
        )
        for b in scenario.bureaus
        if not Workdir(workdir).bureau(b).records.exists()
    ]
    if len(todo) == 1:
        _generate(todo[0])
    elif todo:
        # Spawn, never fork: the caller may have gRPC threads running (a test process, a
        # client), and a child forked while one is inside gRPC can hang or crash.
        with ProcessPoolExecutor(
            max_workers=min(len(todo), os.cpu_count() or 1),
            mp_context=multiprocessing.get_context("spawn"),
        ) as pool:
            pending = {pool.submit(_generate, item) for item in todo}
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()  # a generator's error surfaces here
                if abort is not None and abort.is_set():
                    # Those not started never will; those under way finish (datagen
                    # removes a database it could not complete).
                    for future in pending:
                        future.cancel()
                    raise NetworkError("record generation interrupted")
    return directory


def plan_hosts(
    bureaus: Sequence[str], *, hosts: int = 0, solo: Collection[str] = ()
) -> list[list[str]]:
    """Share ``bureaus`` among host processes.

    Bureaus in ``solo`` (the targets of process faults) get a host of their own, so a
    SIGKILL or SIGSTOP hits exactly the bureau it names. ``hosts`` is how many hosts the
    others share; 0 chooses: one per bureau up to :data:`SOLO_HOSTS_UP_TO` bureaus,
    else one per CPU (at least two), so the cores are used and no host is too big.
    """
    alone = [[b] for b in bureaus if b in solo]
    rest = [b for b in bureaus if b not in solo]
    if not rest:
        return alone
    if hosts <= 0:
        small = len(bureaus) <= SOLO_HOSTS_UP_TO
        hosts = len(rest) if small else max(2, os.cpu_count() or 1)
    hosts = min(hosts, len(rest))
    size = math.ceil(len(rest) / hosts)
    shared = [rest[i : i + size] for i in range(0, len(rest), size)]
    return alone + shared


def _spawn(
    args: list[str], log_path: Path, *, detach: bool, prefix: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    private.private_folder(log_path.parent)  # hosts/, or a party's folder
    with os.fdopen(private.open_log(log_path), "ab") as out:
        return subprocess.Popen(
            [*prefix, sys.executable, "-m", "ncbsim", *args],
            stdin=subprocess.DEVNULL,
            # Keep gRPC core's own (non-JSON) chatter out of the JSON logs.
            env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
            stdout=out,
            stderr=out,
            start_new_session=detach,
        )


def _wait_ready(
    proc: subprocess.Popen[bytes],
    ready: Path,
    log_path: Path,
    *,
    deadline: float,
    what: str,
    abort: threading.Event | None = None,
) -> dict[str, Any]:
    """Wait for ``proc``'s ready file until ``deadline`` (monotonic), or until ``abort``."""
    while time.monotonic() < deadline:
        if ready.exists():
            data: dict[str, Any] = json.loads(ready.read_text())
            return data
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise NetworkError(
                f"{what} (pid {proc.pid}) exited with {proc.returncode}; log {log_path}: "
                + " | ".join(tail)
            )
        if abort is not None and abort.is_set():
            raise NetworkError("start-up interrupted")
        time.sleep(0.05)
    raise NetworkError(f"{what} (pid {proc.pid}) not ready in time; log {log_path}")


def socket_path(run: Path, name: str) -> str:
    """Where to put the Unix socket ``name`` of a process of the network in ``run``."""
    path = run / name
    if len(os.fsencode(str(path))) <= _SOCKET_PATH_MAX:
        return str(path)
    # A deep work directory: keep the socket short, in a private folder of its own (a
    # predictable name in a shared /tmp could be taken first by someone else).
    folder = tempfile.mkdtemp(prefix=SOCKET_DIR_PREFIX)
    return str(Path(folder) / name)


def start_process(
    args: list[str],
    log_path: Path,
    ready: Path,
    *,
    detach: bool,
    what: str,
    timeout_s: float = READY_TIMEOUT_S,
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start ``python -m ncbsim ARGS`` logging to ``log_path``; wait for its ``ready`` file.

    Returns the child and the ready file's content. Raises NetworkError (the child
    stopped) if it exits or is not ready within ``timeout_s``.
    """
    ready.unlink(missing_ok=True)
    child = _spawn(args, log_path, detach=detach)
    try:
        info = _wait_ready(child, ready, log_path, deadline=time.monotonic() + timeout_s, what=what)
    except BaseException:
        terminate([child.pid])
        child.wait()
        raise
    return child, info


def _control_path(run: Path, index: int) -> str:
    return socket_path(run, f"host-{index}.sock")


def remove_socket(path: str) -> None:
    """Remove a control socket, and the private folder :func:`socket_path` made for it."""
    control = Path(path)
    control.unlink(missing_ok=True)
    if control.parent.name.startswith(SOCKET_DIR_PREFIX):
        with contextlib.suppress(OSError):
            control.parent.rmdir()


@dataclass(frozen=True, slots=True)
class Stopped:
    """What :meth:`Network.stop` found: processes it stopped, and those already gone, by
    role ("gateway", "host", "faultd")."""

    stopped: dict[str, int]
    gone: dict[str, int]

    def describe(self) -> str:
        """E.g. ``stopped 3 processes (gateway, 2 hosts); 1 was already gone (host)``."""
        count = sum(self.stopped.values())
        text = f"stopped {count} process{'' if count == 1 else 'es'}"
        if count:
            text += f" ({_roles(self.stopped)})"
        gone = sum(self.gone.values())
        if gone:
            text += f"; {gone} {'was' if gone == 1 else 'were'} already gone ({_roles(self.gone)})"
        return text


_ROLE_NAMES = {"gateway": "gateway", "host": "host", "faultd": "fault proxy"}


def _roles(counts: Mapping[str, int]) -> str:
    parts = []
    for role in ("gateway", "host", "faultd"):
        n = counts.get(role, 0)
        name = _ROLE_NAMES[role]
        if n:
            parts.append(name if n == 1 else f"{n} {name}s")
    return ", ".join(parts)


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
    ) -> None:
        self.workdir = workdir
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
        ready_timeout_s: float = READY_TIMEOUT_S,
        on_gateway: Callable[[str], None] | None = None,
        abort: threading.Event | None = None,
        started: list[subprocess.Popen[bytes]] | None = None,
        placement: Placement = LOOPBACK,
        faultd: Proc | None = None,
        links: Mapping[str, Mapping[str, str]] | None = None,
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
        ``links`` name the fault daemon and its proxies, for the manifest.
        """
        workdir = workdir.resolve()
        files = Workdir(workdir)
        if files.manifest.exists():
            raise NetworkError(f"{workdir} already runs a network; run `ncbsim down` first")
        prepare(workdir, scenario)
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
            gw = _spawn(
                [
                    *env_args,
                    "gateway",
                    "--dir",
                    str(workdir),
                    "--listen",
                    placement.gateway_listen(),
                    "--ready-file",
                    str(ready),
                ],
                glog,
                detach=detach,
                prefix=placement.command(None),
            )
            started.append(gw)
            info = _wait_ready(gw, ready, glog, deadline=deadline, what="gateway", abort=abort)
            procs.append(Proc("gateway", None, gw.pid, info["address"], str(glog)))
            if on_gateway is not None:
                on_gateway(info["address"])
            pending = []
            for index, bureaus in enumerate(layout):
                host = Host(
                    index=index,
                    bureaus=list(bureaus),
                    spec=str(files.host_spec(index)),
                    control=_control_path(run, index),
                    log=str(
                        files.bureau(bureaus[0]).log if len(bureaus) == 1 else files.host_log(index)
                    ),
                )
                _write_spec(
                    host,
                    workdir,
                    gateway=info["address"],
                    listen=placement.host_listen(index),
                    gateway_for=gateway_for or {},
                    advertise_for=advertise_for or {},
                )
                child = _start_host(host, env_args, detach=detach, placement=placement)
                started.append(child)
                network_hosts.append(host)
                pending.append((host, child))
            for host, child in pending:
                _await_host(host, child, deadline=deadline, abort=abort)
                procs.extend(
                    Proc("node", code, host.pid, host.addresses[code], host.log, host.index)
                    for code in host.bureaus
                )
        except BaseException:
            terminate([p.pid for p in started])
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
        )
        network.write_manifest()
        log.info("network_up", workdir=str(workdir), processes=len(network_hosts) + 1)
        return network

    def kill_host(self, host: Host) -> None:
        """SIGKILL ``host`` (a crash: no goodbye) and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(host.pid, signal.SIGKILL)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while alive(host.pid) and time.monotonic() < deadline:
            _reap(host.pid)
            time.sleep(0.02)
        _reap(host.pid)

    def restart_host(
        self,
        host: Host,
        *,
        timeout_s: float = READY_TIMEOUT_S,
        clock_offsets: Mapping[str, int] | None = None,
    ) -> None:
        """Start ``host`` again on the ports it had, and wait until it serves (blocking).

        ``clock_offsets`` carries the bureaus' clock skews over the restart. Refused once
        :meth:`stop` has begun, so a restart can never outlive the network.
        """
        spec = json.loads(Path(host.spec).read_text())
        for item in spec["bureaus"]:
            item["listen"] = host.addresses.get(item["bureau"], item["listen"])
            item["clock_offset_ms"] = (clock_offsets or {}).get(item["bureau"], 0)
        private.write_text(Path(host.spec), json.dumps(spec, indent=2) + "\n")
        with self._lock:
            if self._stopping:
                raise NetworkError("the network is stopping")
            child = _start_host(
                host, ["--log-level", self.log_level], detach=self.detach, placement=self.placement
            )
            self._children.append(child)
        _await_host(host, child, deadline=time.monotonic() + timeout_s, abort=self._abort)
        with self._lock:
            if self._stopping:
                return
            self.procs = [
                Proc(p.role, p.bureau, host.pid, p.address, p.log, p.host)
                if p.host == host.index and p.role == "node"
                else p
                for p in self.procs
            ]
            self.write_manifest()

    def runs(self, pid: int) -> bool:
        """Whether ``pid`` is alive and a process of this network (not a reused pid)."""
        return alive(pid) and _ours(pid, self.workdir)

    def stop_host(self, host: Host) -> None:
        """Stop ``host`` cleanly (SIGTERM; SIGKILL after :data:`STOP_TIMEOUT_S`), if it runs."""
        if _ours(host.pid, self.workdir):
            terminate([host.pid])
        Path(host.control).unlink(missing_ok=True)

    def stop_gateway(self) -> None:
        """Stop the gateway cleanly (SIGTERM; SIGKILL after :data:`STOP_TIMEOUT_S`), if it runs."""
        if _ours(self.gateway.pid, self.workdir):
            terminate([self.gateway.pid])

    def kill_gateway(self) -> None:
        """SIGKILL the gateway (a crash: its mailbox keeps what it accepted) and reap it."""
        pid = self.gateway.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.02)
        _reap(pid)

    def restart_gateway(self, *, timeout_s: float = READY_TIMEOUT_S) -> None:
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
            child = _spawn(
                [
                    "--log-level",
                    self.log_level,
                    "gateway",
                    "--dir",
                    str(self.workdir),
                    "--listen",
                    old.address,
                    "--ready-file",
                    str(ready),
                ],
                glog,
                detach=self.detach,
                prefix=self.placement.command(None),
            )
            self._children.append(child)
        _wait_ready(
            child,
            ready,
            glog,
            deadline=time.monotonic() + timeout_s,
            what="gateway",
            abort=self._abort,
        )
        with self._lock:
            self.procs = [
                Proc(p.role, p.bureau, child.pid, p.address, p.log, p.host)
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
        # Replaced in one step: a reader (``ncbsim status``, a query) never sees half of it.
        tmp = self.workdir / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(Workdir(self.workdir).manifest)

    @classmethod
    def load(cls, workdir: Path) -> Network:
        """The network described by WORKDIR/network.json."""
        path = Workdir(workdir.resolve()).manifest
        try:
            data = json.loads(path.read_text())
            procs = [Proc(**p) for p in data["processes"]]
            hosts = [Host(**h) for h in data.get("hosts", [])]
            faultd = data.get("faultd")
        except FileNotFoundError:
            raise ConfigError(f"no running network in {workdir} (no {MANIFEST})") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{path}: not a network manifest ({exc!r}); stop its processes by pid, "
                f"then remove it"
            ) from None
        # Whatever started it, what this object restarts must outlive the command.
        return cls(
            Path(data["workdir"]),
            data["scenario"],
            procs,
            hosts=hosts,
            log_level=data.get("log_level", "info"),
            detach=True,
            faultd=Proc(**faultd) if faultd else None,
            links=data.get("links"),
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
            slot: [pid for pid in pids if _ours(pid, self.workdir)] for slot, pids in slots.items()
        }
        stopped: dict[str, int] = {}
        gone: dict[str, int] = {}
        for slot, pids in running.items():
            role = "host" if slot.startswith("host-") else slot
            counts = stopped if pids else gone
            counts[role] = counts.get(role, 0) + 1
        special = {*running.get("gateway", []), *running.get("faultd", [])}
        hosts = [pid for slot, pids in running.items() if slot.startswith("host-") for pid in pids]
        hosts += [
            c.pid
            for c in self._children
            if c.poll() is None and c.pid not in special and _ours(c.pid, self.workdir)
        ]
        terminate(list(dict.fromkeys(hosts)))
        terminate(running.get("gateway", []))
        terminate(running.get("faultd", []))
        for child in self._children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=STOP_TIMEOUT_S)
        for host in self.hosts:
            remove_socket(host.control)
            _host_ready(host).unlink(missing_ok=True)
        if self.faultd is not None:
            remove_socket(self.faultd.address)
        # What said these processes run goes with them; their logs and the specs stay.
        files = Workdir(self.workdir)
        for left in (files.gateway_ready, files.faultd_ready, files.live_faults):
            left.unlink(missing_ok=True)
        files.manifest.unlink(missing_ok=True)
        log.info("network_down", workdir=str(self.workdir), stopped=stopped, gone=gone)
        return Stopped(stopped, gone)


def _write_spec(
    host: Host,
    workdir: Path,
    *,
    gateway: str,
    listen: str,
    gateway_for: Mapping[str, str],
    advertise_for: Mapping[str, str],
) -> None:
    spec = {
        "gateway": gateway,
        "bureaus": [
            {
                "bureau": code,
                "db": str(Workdir(workdir).bureau(code).records),
                "listen": listen,
                "advertise": advertise_for.get(code),
                "gateway": gateway_for.get(code),
            }
            for code in host.bureaus
        ],
    }
    private.write_text(Path(host.spec), json.dumps(spec, indent=2) + "\n")


def _host_ready(host: Host) -> Path:
    """Where ``host`` writes its ready file: beside its spec."""
    return Path(host.spec).with_name(f"host-{host.index}.ready.json")


def _start_host(
    host: Host, env_args: list[str], *, detach: bool, placement: Placement
) -> subprocess.Popen[bytes]:
    spec = Path(host.spec)
    ready = _host_ready(host)
    ready.unlink(missing_ok=True)
    Path(host.control).unlink(missing_ok=True)
    child = _spawn(
        [
            *env_args,
            "host",
            "--dir",
            str(spec.parent.parent),
            "--spec",
            str(spec),
            "--ready-file",
            str(ready),
            "--control",
            host.control,
        ],
        Path(host.log),
        detach=detach,
        prefix=placement.command(host.index),
    )
    host.pid = child.pid
    return child


def _await_host(
    host: Host,
    child: subprocess.Popen[bytes],
    *,
    deadline: float,
    abort: threading.Event | None = None,
) -> None:
    ready = _host_ready(host)
    what = (
        f"host {host.index} ({', '.join(host.bureaus[:3])}{'...' if len(host.bureaus) > 3 else ''})"
    )
    info = _wait_ready(child, ready, Path(host.log), deadline=deadline, what=what, abort=abort)
    host.addresses = {code: str(address) for code, address in info["bureaus"].items()}


def _ours(pid: int, workdir: Path) -> bool:
    """Whether ``pid`` is still an ncbsim process of this work directory (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    folder = os.fsencode(str(workdir))
    # The folder itself or a path inside it: /tmp/w2 is not a process of /tmp/w.
    named = any(arg == folder or arg.startswith(folder + b"/") for arg in cmdline)
    return b"ncbsim" in cmdline and named


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def terminate(pids: list[int]) -> None:
    """SIGTERM each pid, wait, then SIGKILL what is left. Reaps children of ours.

    A stopped (SIGSTOP) process is continued first, or it could not act on SIGTERM.
    """
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for pid in pids:
        while alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.05)
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
