"""What a pod of a deployed network runs (``ncbsim deploy run gateway|bureaus``).

A pod starts from three read-only mounts (the deployment, the public PKI bundle and its own
Secret's bundle, docs/deploy.md) and two writable ones: its volume for state
(``/var/lib/ncbsim``) and a memory-backed folder (``/run/ncbsim``) for its unpacked keys
and run files. This module turns them into the argv of an ordinary ncbsim server, which
the command then ``exec``s, so the server is the pod's process 1 and gets the kubelet's
SIGTERM itself:

- **gateway**: ``ncbsim gateway`` on all interfaces, its audit and mailbox on the volume,
  a plaintext health port for the kubelet's gRPC probe, metrics for Prometheus;
- **bureaus**: the group's records made on the volume at the first start and reused at
  every later one (:mod:`ncbsim.simulations.deploy.records`), then ``ncbsim host`` with one
  node per bureau on ``first_port + i``, each registering the pod's own address with the
  gateway's Service (``advertise: auto``).

Nothing here opens a socket: the servers do. The pure parts (argv, spec) are tested
without a container; the smoke test (tests/deploy_smoke) plays them in podman.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from ncbsim import private
from ncbsim.errors import ConfigError
from ncbsim.simulations.deploy.bundle import unpack
from ncbsim.simulations.deploy.model import Deployment
from ncbsim.simulations.deploy.records import RecordCounts, ensure_records
from ncbsim.workdir import BureauDir

__all__ = ["bureaus_argv", "exec_ncbsim", "gateway_argv", "record_counts", "unpack_pki"]

log = structlog.get_logger()

ANY = "0.0.0.0"  # noqa: S104  (inside a pod: the NetworkPolicy decides who connects)


def unpack_pki(bundles: Sequence[Path], pki: Path) -> int:
    """Lay the pod's PKI out in ``pki`` from its bundles; the number of files written."""
    missing = [str(b) for b in bundles if not b.is_file()]
    if missing:
        raise ConfigError(f"no such bundle: {', '.join(missing)} (is the volume mounted?)")
    written = unpack(list(bundles), pki)
    log.info("pki_unpacked", files=written, folder=str(pki))
    return written


def record_counts(deployment: Deployment) -> RecordCounts:
    """The seed and counts every bureau of ``deployment`` makes its records with."""
    records = deployment.records
    return RecordCounts(
        seed=deployment.seed,
        documents=records.documents,
        persons=records.persons,
        vehicles=records.vehicles,
        biometrics=records.biometrics,
    )


def gateway_address(deployment: Deployment) -> str:
    """How a pod reaches the gateway: its Service's name and port."""
    return f"{deployment.gateway.service}:{deployment.gateway.port}"


def gateway_argv(deployment: Deployment, pki: Path, data: Path, run: Path) -> list[str]:
    """``ncbsim gateway`` for the gateway pod: state on the volume, every port on all
    interfaces (the NetworkPolicy and the Service decide who reaches which)."""
    gateway = deployment.gateway
    folder = private.private_folder(data / "gateway")
    return [
        "gateway",
        "--dir",
        str(pki),
        "--listen",
        f"{ANY}:{gateway.port}",
        "--health-listen",
        f"{ANY}:{gateway.health_port}",
        "--metrics-listen",
        f"{ANY}:{gateway.metrics_port}",
        "--metrics-any-address",
        "--audit",
        str(folder / "audit.sqlite"),
        "--ready-file",
        str(run / "gateway.ready.json"),
    ]


def host_spec(deployment: Deployment, group: str, data: Path) -> dict[str, object]:
    """The ``ncbsim host`` spec of ``group``: bureau ``i`` (sorted) on ``first_port + i``,
    its files in ``data/XX``, registering the pod's own address."""
    first = deployment.pod.first_port
    return {
        "gateway": gateway_address(deployment),
        "bureaus": [
            {
                "bureau": code,
                "db": str(BureauDir(data / code).records),
                "listen": f"{ANY}:{first + index}",
                "advertise": "auto",
                "metrics_listen": "off",  # the pod's one endpoint serves them all
            }
            for index, code in enumerate(sorted(deployment.group(group).bureaus))
        ],
    }


def bureaus_argv(deployment: Deployment, group: str, pki: Path, data: Path, run: Path) -> list[str]:
    """Make (or reuse) the group's records, write its host spec, and return the argv of
    ``ncbsim host`` serving them. ConfigError for a group the deployment does not have."""
    bureaus = sorted(deployment.group(group).bureaus)
    # One bureau at a time: a generator peaks near 100 MiB, and the pod's memory limit
    # (resources.py) is sized for the servers, not for K generators at once.
    folders = {code: data / code for code in bureaus}
    outcome = ensure_records(folders, record_counts(deployment), processes=1)
    for state in ("generated", "reused"):
        which = [code for code, got in outcome.items() if got == state]
        if which:
            log.info(f"records_{state}", bureaus=",".join(which), group=group)
    spec = run / f"{group}.spec.json"
    private.write_text(spec, json.dumps(host_spec(deployment, group, data), indent=1) + "\n")
    pod = deployment.pod
    return [
        "host",
        "--dir",
        str(pki),
        "--spec",
        str(spec),
        "--ready-file",
        str(run / f"{group}.ready.json"),
        "--health-listen",
        f"{ANY}:{pod.health_port}",
        "--pod-metrics-listen",
        f"{ANY}:{pod.metrics_port}",
        "--metrics-any-address",
    ]


def exec_ncbsim(argv: list[str]) -> None:
    """Replace this process with ``python -m ncbsim ARGV`` (never returns)."""
    sys.stdout.flush()
    sys.stderr.flush()
    # -P: the working directory (the volume) is not put on sys.path.
    os.execv(sys.executable, [sys.executable, "-P", "-m", "ncbsim", *argv])  # noqa: S606
