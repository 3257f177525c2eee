"""WORKDIR/network.json: which processes run a network, where they listen and log.

Written whole and replaced in one step, so a reader (``ncbsim status``, a query, another
command stopping the network) never sees half of it. :class:`Proc` and :class:`Host` are
its records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ncbsim.errors import ConfigError
from ncbsim.workdir import MANIFEST, Workdir


@dataclass(frozen=True, slots=True)
class Proc:
    """One bureau node (or the gateway) of a running network.

    ``pid`` is the process serving it: for a bureau, its host, which may serve others too.
    ``metrics`` is its Prometheus endpoint (loopback HOST:PORT), "" if it serves none.
    """

    role: str
    bureau: str | None
    pid: int
    address: str
    log: str
    host: int = -1
    metrics: str = ""


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
    metrics: dict[str, str] = field(default_factory=dict)
    """Each bureau's Prometheus endpoint (one per node, though they share the process)."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a work directory's network.json says."""

    data: dict[str, Any]
    """The whole file, as read."""
    procs: list[Proc]
    hosts: list[Host]
    faultd: dict[str, Any] | None

    @property
    def classroom_attacks(self) -> bool:
        """Whether its gateway is the classroom-mode one (``"classroom_attacks": true``,
        written only by ``Network.start(..., attacks=True)``, i.e. ``ncbsim classroom``)."""
        return self.data.get("classroom_attacks") is True


def write(workdir: Path, data: dict[str, Any]) -> None:
    """Write WORKDIR/network.json."""
    # Replaced in one step: a reader (``ncbsim status``, a query) never sees half of it.
    tmp = workdir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(Workdir(workdir).manifest)


def read(workdir: Path) -> Manifest:
    """Read WORKDIR/network.json; ConfigError if there is none or it is not a manifest."""
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
            f"{path}: not a network manifest ({exc!r}); stop its processes by pid, then remove it"
        ) from None
    return Manifest(data, procs, hosts, faultd)
