"""Shared fixtures: logging reset, a PKI, a generated records database, real networks of
processes over mTLS on loopback, and whole ``ncbsim simulate`` runs through the real CLI.

Query builders and other plain helpers are in ``support.py``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from support import generate_records, ncbsim_pids

from ncbsim import pki
from ncbsim.events import Event
from ncbsim.node.store import RecordStore
from ncbsim.simulations import run_events
from ncbsim.simulations import scenario as scenarios
from ncbsim.simulations.network import Network

SMALL = Path(__file__).parent / "scenarios" / "small.toml"


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """Each test starts from structlog's defaults, whatever the previous one configured."""
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.fixture(scope="module")
def pki_bureaus() -> list[str]:
    """The bureaus ``pki_dir`` and ``module_pki`` hold; a module overrides this fixture
    (module-scoped) to pick its own."""
    return ["FR", "DE", "IT"]


@pytest.fixture
def pki_dir(tmp_path: Path, pki_bureaus: list[str]) -> pki.PkiDir:
    """A PKI of the test's own (``pki init`` into ``tmp_path/pki``): free to revoke, rotate
    or corrupt."""
    return pki.init(tmp_path / "pki", pki_bureaus)


@pytest.fixture(scope="module")
def module_pki(tmp_path_factory: pytest.TempPathFactory, pki_bureaus: list[str]) -> pki.PkiDir:
    """One PKI shared by a module's tests, which leave it as they found it."""
    return pki.init(tmp_path_factory.mktemp("pki") / "pki", pki_bureaus)


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordStore]:
    """DE's small generated records (seed 5: 60 documents, 40 persons, 40 vehicles), shared
    read-only by a module."""
    path = generate_records(
        tmp_path_factory.mktemp("records"), "DE", seed=5, documents=60, persons=40, vehicles=40
    )
    store = RecordStore(path)
    yield store
    store.close()


@pytest.fixture
def open_store() -> Iterator[Callable[[Path], RecordStore]]:
    """Opens a RecordStore on a database path; every store it opened is closed afterwards."""
    opened: list[RecordStore] = []

    def open_(path: Path) -> RecordStore:
        opened.append(RecordStore(path))
        return opened[-1]

    yield open_
    for store in opened:
        store.close()


def start_network(workdir: Path) -> Network:
    """Start the small scenario under ``workdir`` with debug logging (the strictest case)."""
    return Network.start(workdir, scenarios.load(str(SMALL)), log_level="debug")


@pytest.fixture
def fresh_network(tmp_path: Path) -> Iterator[Network]:
    """A network of its own for a test that breaks it (kills a node); always stopped."""
    net = start_network(tmp_path / "net")
    try:
        yield net
    finally:
        net.stop()


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """A running gateway and four bureau nodes, shared by a test module; always stopped."""
    net = start_network(tmp_path_factory.mktemp("net"))
    try:
        yield net
    finally:
        net.stop()


@dataclass(frozen=True)
class SimulationRun:
    """One finished ``ncbsim simulate`` run: exit status, output, report and folders."""

    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any]
    workdir: Path
    run_dir: Path

    @property
    def output(self) -> str:
        """The tail of both streams, for an assertion message."""
        return self.stdout[-3000:] + self.stderr[-3000:]

    def left_running(self) -> list[int]:
        """PIDs of the run's processes still alive (none, after a clean run)."""
        return ncbsim_pids(self.workdir)

    def timeline(self) -> list[tuple[float, Event]]:
        """timeline.jsonl's events (ncbsim.events), each with its seconds after traffic start."""
        return run_events.since_start(run_events.read(self.run_dir / "timeline.jsonl"))


def _simulate(scenario: Path, base: Path, timeout: float) -> SimulationRun:
    workdir, run_dir = base / "work", base / "run"
    command = [
        sys.executable, "-m", "ncbsim", "simulate", str(scenario),
        "--workdir", str(workdir), "--run-dir", str(run_dir), "--report", str(base / "r.json"),
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:  # timed out: stop the simulator and all it started
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in ncbsim_pids(workdir):
            with contextlib.suppress(ProcessLookupError):  # it may exit on its own meanwhile
                os.kill(pid, signal.SIGKILL)
    report = json.loads((base / "r.json").read_text())
    return SimulationRun(proc.returncode, stdout, stderr, report, workdir, run_dir)


@pytest.fixture(scope="session")
def simulate() -> Callable[[Path, Path, float], SimulationRun]:
    """Run a scenario file with the real CLI under a folder of the test's own, bounded in
    time; whatever it started is killed by PID afterwards, even on a timeout."""
    return _simulate
