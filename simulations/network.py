"""Bring a network of real processes up and down: one gateway, one node per bureau.

Everything lives in one work directory, which is also the PKI directory::

    WORKDIR/network.json                 every process: role, bureau, pid, address, log
    WORKDIR/ca.crt, ca.key, directory/   the PKI (see ncbsim.pki)
    WORKDIR/gateway/audit.sqlite         the gateway's metadata-only, hash-chained audit trail
    WORKDIR/gateway/gateway.log          the gateway's JSON log
    WORKDIR/bureaus/FR/records.sqlite    FR's records
    WORKDIR/bureaus/FR/node.log          FR's node's JSON log
    WORKDIR/bureaus/FR/audit.sqlite      FR's node's hash-chained audit trail
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

from ncbsim import pki
from ncbsim.errors import ConfigError, NetworkError
from node import datagen
from simulations.scenario import Scenario

log = structlog.get_logger()

MANIFEST = "network.json"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Proc:
    """One process of a running network."""

    role: str
    bureau: str | None
    pid: int
    address: str
    log: str


def gateway_files(workdir: Path) -> Path:
    """Folder holding the gateway's own files: TLS key, audit and log."""
    return workdir / "gateway"


def audit_path(workdir: Path) -> Path:
    """The gateway's audit database."""
    return gateway_files(workdir) / "audit.sqlite"


def db_path(workdir: Path, bureau: str) -> Path:
    """A bureau's record database."""
    return workdir / "bureaus" / bureau / "records.sqlite"


def _generate(args: tuple[Path, str, int, int, int, int]) -> str:
    path, bureau, seed, documents, persons, vehicles = args
    datagen.generate(
        path, bureau, seed=seed, documents=documents, persons=persons, vehicles=vehicles
    )
    return bureau


def prepare(workdir: Path, scenario: Scenario) -> pki.PkiDir:
    """Create the PKI and every bureau's records under ``workdir`` (reused if present)."""
    workdir.mkdir(parents=True, exist_ok=True)
    directory = pki.PkiDir(workdir)
    if not directory.ca_key.exists():
        pki.init(workdir, list(scenario.bureaus))
    missing = [b for b in scenario.bureaus if b not in directory.bureaus()]
    for code in missing:
        pki.add_bureau(directory, code)
    todo = [
        (
            db_path(workdir, b),
            b,
            scenario.seed,
            scenario.records.documents,
            scenario.records.persons,
            scenario.records.vehicles,
        )
        for b in scenario.bureaus
        if not db_path(workdir, b).exists()
    ]
    if todo:
        # Spawn, never fork: the caller may have gRPC threads running (a test process, a
        # client), and a child forked while one is inside gRPC can hang or crash.
        with ProcessPoolExecutor(
            max_workers=min(len(todo), os.cpu_count() or 1),
            mp_context=multiprocessing.get_context("spawn"),
        ) as pool:
            list(pool.map(_generate, todo))
    return directory


def _spawn(args: list[str], log_path: Path, *, detach: bool) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ncbsim", *args],
            stdin=subprocess.DEVNULL,
            # Keep gRPC core's own (non-JSON) chatter out of the JSON logs.
            env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
            stdout=out,
            stderr=out,
            start_new_session=detach,
        )


def _wait_ready(proc: subprocess.Popen[bytes], ready: Path, log_path: Path) -> dict[str, str]:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready.exists():
            data: dict[str, str] = json.loads(ready.read_text())
            return data
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise NetworkError(f"process exited with {proc.returncode}: " + " | ".join(tail))
        time.sleep(0.05)
    raise NetworkError(f"process {proc.pid} not ready after {READY_TIMEOUT_S:.0f}s")


class Network:
    """A running network whose processes this object started."""

    def __init__(
        self,
        workdir: Path,
        scenario: str,
        procs: list[Proc],
        children: list[subprocess.Popen[bytes]] | None = None,
    ) -> None:
        self.workdir = workdir
        self.scenario = scenario
        self.procs = procs
        self._children = children or []  # kept so we reap what we started

    @property
    def gateway(self) -> Proc:
        """The gateway process."""
        return next(p for p in self.procs if p.role == "gateway")

    def node(self, bureau: str) -> Proc:
        """The node of ``bureau``."""
        return next(p for p in self.procs if p.bureau == bureau)

    @classmethod
    def start(
        cls, workdir: Path, scenario: Scenario, *, detach: bool = False, log_level: str = "info"
    ) -> Network:
        """Prepare ``workdir`` and start the gateway, then every node; wait until all serve."""
        workdir = workdir.resolve()
        if (workdir / MANIFEST).exists():
            raise NetworkError(f"{workdir} already runs a network; run `ncbsim down` first")
        prepare(workdir, scenario)
        run = workdir / "run"
        run.mkdir(exist_ok=True)
        env_args = ["--log-level", log_level]
        started: list[subprocess.Popen[bytes]] = []
        procs: list[Proc] = []
        try:
            glog = gateway_files(workdir) / "gateway.log"
            ready = run / "gateway.json"
            ready.unlink(missing_ok=True)
            gw = _spawn(
                [
                    *env_args,
                    "gateway",
                    "--dir",
                    str(workdir),
                    "--listen",
                    "127.0.0.1:0",
                    "--ready-file",
                    str(ready),
                ],
                glog,
                detach=detach,
            )
            started.append(gw)
            info = _wait_ready(gw, ready, glog)
            procs.append(Proc("gateway", None, gw.pid, info["address"], str(glog)))
            pending = []
            for code in scenario.bureaus:
                nlog = workdir / "bureaus" / code / "node.log"
                ready = run / f"node-{code}.json"
                ready.unlink(missing_ok=True)
                node = _spawn(
                    [
                        *env_args,
                        "node",
                        "--dir",
                        str(workdir),
                        "--bureau",
                        code,
                        "--gateway",
                        info["address"],
                        "--listen",
                        "127.0.0.1:0",
                        "--db",
                        str(db_path(workdir, code)),
                        "--ready-file",
                        str(ready),
                    ],
                    nlog,
                    detach=detach,
                )
                started.append(node)
                pending.append((code, node, ready, nlog))
            for code, node, ready, nlog in pending:
                ninfo = _wait_ready(node, ready, nlog)
                procs.append(Proc("node", code, node.pid, ninfo["address"], str(nlog)))
        except BaseException:
            _terminate([p.pid for p in started])
            for child in started:
                child.wait()
            raise
        network = cls(workdir, scenario.name, procs, [] if detach else started)
        network.write_manifest()
        log.info("network_up", workdir=str(workdir), processes=len(procs))
        return network

    def write_manifest(self) -> None:
        """Write WORKDIR/network.json."""
        data = {
            "scenario": self.scenario,
            "workdir": str(self.workdir),
            "gateway": self.gateway.address,
            "processes": [asdict(p) for p in self.procs],
        }
        (self.workdir / MANIFEST).write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, workdir: Path) -> Network:
        """The network described by WORKDIR/network.json."""
        path = workdir.resolve() / MANIFEST
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"no running network in {workdir} (no {MANIFEST})") from None
        procs = [Proc(**p) for p in data["processes"]]
        return cls(Path(data["workdir"]), data["scenario"], procs)

    def stop(self) -> None:
        """Stop every process (nodes first), then remove the manifest."""
        nodes = [p.pid for p in self.procs if p.role == "node" and _ours(p.pid, self.workdir)]
        _terminate(nodes)
        gateways = [p.pid for p in self.procs if p.role == "gateway" and _ours(p.pid, self.workdir)]
        _terminate(gateways)
        for child in self._children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=STOP_TIMEOUT_S)
        (self.workdir / MANIFEST).unlink(missing_ok=True)
        log.info("network_down", workdir=str(self.workdir))


def _ours(pid: int, workdir: Path) -> bool:
    """Whether ``pid`` is still an ncbsim process of this work directory (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"ncbsim" in cmdline and os.fsencode(str(workdir)) in cmdline


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _terminate(pids: list[int]) -> None:
    """SIGTERM each pid, wait, then SIGKILL what is left. Reaps children of ours."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
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
