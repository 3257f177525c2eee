"""``ncbsim deploy apply|status|down``: a rendered deployment driven through ``kubectl``.

Nothing here speaks to a cluster itself: each step is a ``kubectl`` command line
(:class:`Kubectl` adds ``--kubeconfig`` and ``--context``), so ``--dry-run`` can print
exactly what would run. Apply goes in order: namespace and policies, config, gateway,
bureaus, and (``--load``) the load pods after deleting an earlier run's. Status reads
``kubectl get pods -o json`` into one table. Down deletes the namespace, or with
``--keep-data`` everything but the volumes (the records and audit trails).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ncbsim.errors import NcbsimError
from ncbsim.simulations.deploy.model import Deployment

REQUEST_TIMEOUT = "10s"
LOAD_PODS = "app.kubernetes.io/component in (load-master,load-worker)"
APP = "app.kubernetes.io/name=ncbsim"


@dataclass(frozen=True, kw_only=True, slots=True)
class Kubectl:
    """How to call kubectl: its path, and the kubeconfig and context to use (None: its
    own defaults, ``KUBECONFIG`` or ``~/.kube/config``)."""

    binary: str = "kubectl"
    kubeconfig: Path | None = None
    context: str | None = None

    def command(self, *args: str) -> list[str]:
        """A kubectl command line with this kubeconfig and context."""
        cmd = [self.binary]
        if self.kubeconfig is not None:
            cmd += ["--kubeconfig", str(self.kubeconfig)]
        if self.context is not None:
            cmd += ["--context", self.context]
        return [*cmd, f"--request-timeout={REQUEST_TIMEOUT}", *args]


LOAD_FILES = ("40-load-master.yaml", "41-load-workers.yaml")
"""The load run's manifests: the master (Secret, Service, Pod), then its workers."""


def find_kubectl() -> str:
    """kubectl's path; NcbsimError saying so if it is not on PATH."""
    path = shutil.which("kubectl")
    if path is None:
        raise NcbsimError(
            "kubectl not found on PATH; install it (https://kubernetes.io/docs/tasks/tools/)"
        )
    return path


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def run(cmd: list[str]) -> str:
    """Run one kubectl command; its stdout, or NcbsimError with kubectl's last error line."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    except OSError as exc:
        raise NcbsimError(f"cannot run {cmd[0]}: {exc.strerror}") from None
    except subprocess.TimeoutExpired:
        raise NcbsimError(f"{shlex.join(cmd[1:4])}...: no answer in 300 s") from None
    if done.returncode != 0:
        raise NcbsimError(f"kubectl {cmd[-1]}: {_last_line(done.stderr)}")
    return done.stdout


def check_cluster(kubectl: Kubectl) -> None:
    """NcbsimError naming the cluster problem unless the API server answers."""
    cmd = kubectl.command("get", "--raw", "/version")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise NcbsimError(f"no Kubernetes cluster reachable: {_last_line(done.stderr)}")


def apply_commands(kubectl: Kubectl, out: Path, dep: Deployment, *, load: bool) -> list[list[str]]:
    """The apply steps, in order (module docstring)."""
    folder = out / "k8s"
    steps = [
        kubectl.command("apply", "-f", str(folder / "00-namespace.yaml")),
        kubectl.command("apply", "-f", str(folder / "10-deployment.yaml")),
        kubectl.command("apply", "-f", str(folder / "11-public.yaml")),
        kubectl.command("apply", "-f", str(folder / "20-gateway.yaml")),
    ]
    for group in dep.groups:
        steps.append(kubectl.command("apply", "-f", str(folder / f"30-{group.name}.yaml")))
    if load:
        steps.append(
            kubectl.command(
                "delete", "pod", "-n", dep.namespace, "-l", LOAD_PODS, "--ignore-not-found"
            )
        )
        for name in LOAD_FILES:
            steps.append(kubectl.command("apply", "-f", str(folder / name)))
    return steps


def down_commands(kubectl: Kubectl, dep: Deployment, *, keep_data: bool) -> list[list[str]]:
    """Delete the namespace, or (``keep_data``) every object but the PersistentVolumeClaims."""
    if not keep_data:
        return [kubectl.command("delete", "namespace", dep.namespace, "--ignore-not-found")]
    kinds = "deployment,pod,service,secret,configmap,networkpolicy"
    return [kubectl.command("delete", kinds, "-n", dep.namespace, "-l", APP, "--ignore-not-found")]


def status_command(kubectl: Kubectl, dep: Deployment) -> list[str]:
    """The one read status makes."""
    return kubectl.command("get", "pods", "-n", dep.namespace, "-l", APP, "-o", "json")


def status_rows(pods: dict[str, Any], dep: Deployment) -> list[tuple[str, str, str, str, str]]:
    """(pod, component, ready, restarts, bureaus) of each pod in ``kubectl get -o json``."""
    rows = []
    for item in pods.get("items", []):
        meta = item.get("metadata", {})
        labels = meta.get("labels", {})
        statuses = item.get("status", {}).get("containerStatuses", []) or []
        ready = sum(1 for s in statuses if s.get("ready"))
        total = len(item.get("spec", {}).get("containers", [])) or len(statuses)
        restarts = sum(int(s.get("restartCount", 0)) for s in statuses)
        group = labels.get("ncbsim.dev/group")
        bureaus = "-"
        if group is not None:
            bureaus = ",".join(next((g.bureaus for g in dep.groups if g.name == group), ()))
        component = labels.get("app.kubernetes.io/component", "?")
        rows.append((meta.get("name", "?"), component, f"{ready}/{total}", str(restarts), bureaus))
    return sorted(rows, key=lambda row: (row[1], row[0]))


def table(rows: list[tuple[str, str, str, str, str]]) -> str:
    """The status table, columns aligned."""
    head = ("POD", "COMPONENT", "READY", "RESTARTS", "BUREAUS")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [head, *rows]
    )


def execute(
    steps: list[list[str]], *, dry_run: bool, kubectl: Kubectl, say: Callable[[str], None]
) -> None:
    """Print ``steps`` (``dry_run``) or check the cluster and run them, saying each."""
    if dry_run:
        for step in steps:
            say(shlex.join(step))
        return
    check_cluster(kubectl)
    for step in steps:
        say(f"$ {shlex.join(step)}")
        output = run(step)
        if output.strip():
            say(output.rstrip())


def status(kubectl: Kubectl, dep: Deployment) -> str:
    """The status table of the deployment's pods."""
    check_cluster(kubectl)
    text = run(status_command(kubectl, dep))
    try:
        pods = json.loads(text)
    except json.JSONDecodeError:
        raise NcbsimError("kubectl get pods: not JSON") from None
    return table(status_rows(pods, dep))
