"""A bureau's data is as private as its keys: every file a running network creates under
its bureaus', gateway's, operator's, hosts' and run folders is 0600, every folder 0700."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ncbsim.node.inbox import Inbox
from ncbsim.simulations import scenario as scenarios
from ncbsim.simulations.network import Network
from ncbsim.workdir import Workdir

pytestmark = pytest.mark.integration

SMALL = Path(__file__).resolve().parent.parent / "scenarios" / "small.toml"
PRIVATE_FOLDERS = ("bureaus", "gateway", "hosts", "run", "operator")
HOSTS = [["FR", "DE"], ["IT"], ["NL"]]
"""FR and DE share a host (its log goes to hosts/); IT and NL have one each."""
MUST_EXIST = [
    "bureaus/DE/records.sqlite",
    "bureaus/DE/inbox.sqlite",
    "bureaus/DE/inbox.sqlite-wal",
    "bureaus/DE/audit.sqlite",
    "bureaus/DE/audit.sqlite-wal",
    "bureaus/DE/audit.sqlite.head",
    "bureaus/DE/hits.sqlite",
    "bureaus/DE/replay.sqlite",
    "bureaus/DE/tls.crt",
    "bureaus/IT/node.log",
    "gateway/audit.sqlite",
    "gateway/audit.sqlite-shm",
    "gateway/mailbox.sqlite",
    "gateway/mailbox.sqlite-wal",
    "gateway/gateway.log",
    "hosts/host-0.log",
    "run/host-0.spec.json",
    "run/host-0.sock",
    "run/gateway.json",
    "operator/tls.crt",
]
"""Files the walk must meet: the test walks a tree that really holds each kind of file."""


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """Run with umask 0, as a careless service manager might: nothing may rely on it."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _ncbsim(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ncbsim", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def _offenders(workdir: Path) -> list[str]:
    """Every folder not 0700, file not 0600 or socket open to others, as 'MODE path'."""
    found = []
    for top in PRIVATE_FOLDERS:
        root = workdir / top
        for path in [root, *sorted(root.rglob("*"))]:
            try:
                info = path.lstat()
            except FileNotFoundError:  # a temporary file, gone meanwhile
                continue
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISDIR(info.st_mode):
                ok = mode == 0o700
            elif stat.S_ISREG(info.st_mode):
                ok = mode == 0o600
            elif stat.S_ISSOCK(info.st_mode):
                ok = mode & 0o077 == 0
            else:
                ok = False
            if not ok:
                found.append(f"{oct(mode)} {path.relative_to(workdir)}")
    return found


def _wait_for_messages(workdir: Path, counts: dict[str, int]) -> None:
    deadline = time.monotonic() + 60
    while True:
        have = {}
        for bureau in counts:
            inbox = Inbox.read(Workdir(workdir).bureau(bureau).inbox)
            try:
                have[bureau] = inbox.count()
            finally:
                inbox.close()
        if all(have[b] >= n for b, n in counts.items()) or time.monotonic() > deadline:
            assert all(have[b] >= n for b, n in counts.items()), have
            return
        time.sleep(0.2)


def test_every_file_of_a_running_network_is_its_owners_alone(
    tmp_path: Path, permissive_umask: None
) -> None:
    """After a query, a diffusion and a message, every file under bureaus/, gateway/,
    hosts/, run/ and operator/ is 0600 and every folder 0700 (logs, SQLite's -wal and -shm
    files, specs and sockets included), while the network runs and after it stopped."""
    workdir = tmp_path / "net"
    network = Network.start(workdir, scenarios.load(str(SMALL)), hosts=HOSTS)
    try:
        common = ("--workdir", str(workdir))
        _ncbsim(
            "query",
            *common,
            "--as",
            "FR",
            "--to",
            "DE,IT",
            "person",
            "--surname",
            "Doe",
            "--dob",
            "1975-04-03",
        )
        _ncbsim("diffuse", *common, "--as", "FR", "--to", "DE,NL", "--subject", "s", "--text", "t")
        _ncbsim("message", "send", *common, "--as", "DE", "--to", "IT", "--text", "seen?")
        _wait_for_messages(workdir, {"DE": 1, "NL": 1, "IT": 1})
        missing = [name for name in MUST_EXIST if not (workdir / name).exists()]
        assert not missing, f"the walk would not meet {missing}"
        running = _offenders(workdir)
    finally:
        network.stop()
    assert not running, "readable by others while running:\n" + "\n".join(running)
    stopped = _offenders(workdir)
    assert not stopped, "readable by others after the stop:\n" + "\n".join(stopped)
