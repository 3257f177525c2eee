"""A podman of the smoke test's own: private storage, network config and secrets.

Every call runs ``podman`` with ``--root``, ``--runroot`` and ``--network-config-dir``
inside one temporary folder, under the ``containers.conf`` that
:mod:`ncbsim.simulations.deploy.podman` writes (runc, cgroupfs, ulimits this process may
grant). So the test's images, volumes, secrets, pods and network are its own: it loads the
image archive of ``make image`` into that storage and removes everything at the end, and
nothing of the machine's own podman is touched.

The network is ``--internal`` (no route out, no port published) on a /24 no route of this
machine uses, and only containers started here talk on it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ncbsim.simulations.deploy.podman import containers_conf, podman_env, require_podman

CALL_TIMEOUT_S = 300.0


class PodmanError(AssertionError):
    """A podman command failed; the message holds its output."""


def _taken_subnets() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(
        ["ip", "-4", "-json", "route", "show", "table", "all"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    nets = []
    for route in json.loads(out or "[]"):
        try:
            nets.append(ipaddress.ip_network(route.get("dst", ""), strict=False))
        except ValueError:  # "default", or none
            continue
    return [n for n in nets if isinstance(n, ipaddress.IPv4Network)]


def free_subnet() -> str:
    """A 10.213.X.0/24 that overlaps no route of this machine."""
    taken = _taken_subnets()
    candidates = list(range(1, 255))
    random.shuffle(candidates)
    for x in candidates:
        net = ipaddress.ip_network(f"10.213.{x}.0/24")
        if not any(net.overlaps(t) for t in taken):
            return str(net)
    raise PodmanError("no free 10.213.X.0/24 for the test network")


class Podman:
    """podman confined to ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.binary = require_podman()
        self.folder = folder
        for sub in ("storage", "run", "networks", "tmp"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        self.env = podman_env(containers_conf(folder))
        self.base = [
            self.binary,
            "--root",
            str(folder / "storage"),
            "--runroot",
            str(folder / "run"),
            "--network-config-dir",
            str(folder / "networks"),
            "--tmpdir",
            str(folder / "tmp"),
        ]

    def run(
        self, *args: str, check: bool = True, timeout: float = CALL_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        """Run one podman command; PodmanError with its output when ``check`` and it fails."""
        proc = subprocess.run(
            [*self.base, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise PodmanError(
                f"podman {' '.join(args)} exited {proc.returncode}\n"
                f"stdout: {proc.stdout[-4000:]}\nstderr: {proc.stderr[-4000:]}"
            )
        return proc

    def json(self, *args: str) -> Any:
        """The JSON a podman command prints."""
        return json.loads(self.run(*args).stdout or "null")

    def logs(self, container: str) -> str:
        proc = self.run("logs", container, check=False)
        return proc.stdout + proc.stderr

    def cleanup(self, network: str | None) -> list[str]:
        """Remove everything this podman made; the problems met (none on a clean run)."""
        problems = []
        steps: list[tuple[str, ...]] = [
            ("pod", "rm", "--all", "--force", "--time", "5"),
            ("rm", "--all", "--force", "--time", "5"),
            ("volume", "rm", "--all", "--force"),
            ("secret", "rm", "--all"),
        ]
        if network:
            steps.append(("network", "rm", "--force", network))
        steps.append(("rmi", "--all", "--force"))
        for step in steps:
            try:
                proc = self.run(*step, check=False, timeout=120)
            except subprocess.TimeoutExpired:
                problems.append(f"podman {' '.join(step)}: timed out")
                continue
            if proc.returncode != 0 and "no such" not in proc.stderr.lower():
                problems.append(f"podman {' '.join(step)}: {proc.stderr.strip()[-300:]}")
        # Storage may still hold overlay mounts of removed layers: unmount before removing.
        storage = str(self.folder)
        with open("/proc/self/mounts") as mounts:
            stale = [line.split()[1] for line in mounts if line.split()[1].startswith(storage)]
        for mount in sorted(stale, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)
        if os.path.exists(self.folder):
            problems.append(f"{self.folder} could not be removed")
        return problems
