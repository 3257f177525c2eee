"""``ncbsim deploy apply|status|down``: the kubectl commands in order (``--dry-run``), one
line and exit 2 when kubectl or the cluster is missing, and the status table."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support import run_ncbsim

from ncbsim.simulations.deploy import kubectl, render

Render = Callable[[str], render.Rendered]


@pytest.fixture
def closed_kubeconfig(tmp_path: Path) -> Path:
    """A kubeconfig whose cluster is a closed port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = tmp_path / "kubeconfig"
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: closed
  cluster: {{server: "https://127.0.0.1:{port}"}}
contexts:
- name: closed
  context: {{cluster: closed, user: nobody}}
current-context: closed
users:
- name: nobody
  user: {{token: not-a-token}}
"""
    )
    return path


@pytest.mark.parametrize("command", ["apply", "status", "down"])
def test_no_cluster_is_one_line_and_exit_2(
    rendered: Render, closed_kubeconfig: Path, command: str
) -> None:
    """Against a kubeconfig naming a closed port, each command says so in one line."""
    out = rendered("quickstart").out
    done = run_ncbsim("deploy", command, out, "--kubeconfig", closed_kubeconfig)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("ncbsim: no Kubernetes cluster reachable: ")
    assert done.stderr.count("\n") == 1
    assert "127.0.0.1" in done.stderr
    assert done.stdout == ""


def test_kubectl_missing_is_one_line_and_exit_2(rendered: Render) -> None:
    """With no kubectl on PATH, apply says what is missing, in one line."""
    out = rendered("quickstart").out
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run(
        [sys.executable, "-m", "ncbsim", "deploy", "apply", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("ncbsim: kubectl not found on PATH")
    assert done.stderr.count("\n") == 1


def test_dry_run_prints_the_commands_in_order(rendered: Render) -> None:
    """Apply goes namespace, config, gateway, each bureaus pod, then (--load) deletes the
    old load pods and applies the new; with the kubeconfig and context given."""
    out = rendered("quickstart").out
    done = run_ncbsim(
        "deploy", "apply", out, "--dry-run", "--load", "--kubeconfig", "/k", "--context", "c"
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(line.startswith("kubectl --kubeconfig /k --context c ") for line in lines)
    files = [line.rsplit("/", 1)[-1] for line in lines if " apply -f " in line]
    assert files == [
        "00-namespace.yaml",
        "10-deployment.yaml",
        "11-public.yaml",
        "20-gateway.yaml",
        "30-bureaus-0.yaml",
        "30-bureaus-1.yaml",
        "40-load-master.yaml",
        "41-load-workers.yaml",
    ]
    delete = lines.index(next(line for line in lines if " delete pod " in line))
    assert delete == len(lines) - 3
    assert "'app.kubernetes.io/component in (load-master,load-worker)'" in lines[delete]
    plain = run_ncbsim("deploy", "apply", out, "--dry-run").stdout
    assert "40-load" not in plain
    assert "41-load" not in plain
    assert " delete " not in plain


def test_down_deletes_the_namespace_or_keeps_the_volumes(rendered: Render) -> None:
    """Down deletes the namespace; with --keep-data every kind but the PVCs."""
    out = rendered("quickstart").out
    whole = run_ncbsim("deploy", "down", out, "--dry-run").stdout.splitlines()
    assert whole == [
        f"kubectl --request-timeout={kubectl.REQUEST_TIMEOUT} delete namespace "
        "ncbsim --ignore-not-found"
    ]
    (keep,) = run_ncbsim("deploy", "down", out, "--dry-run", "--keep-data").stdout.splitlines()
    assert " delete deployment,pod,service,secret,configmap,networkpolicy " in keep
    assert "persistentvolumeclaim" not in keep
    assert "namespace" not in keep.split(" -n ")[0]
    status = run_ncbsim("deploy", "status", out, "--dry-run").stdout
    assert "get pods -n ncbsim -l app.kubernetes.io/name=ncbsim -o json" in status


def test_a_folder_without_a_deployment_is_one_line(tmp_path: Path) -> None:
    """A folder that holds no deployment.json is refused in one line, exit 2."""
    done = run_ncbsim("deploy", "status", tmp_path, "--dry-run")
    assert done.returncode == 2
    assert "no deployment.json" in done.stderr
    assert done.stderr.count("\n") == 1


def test_status_table_from_kubectl_json(rendered: Render) -> None:
    """The table names each pod, its component, ready containers, restarts and bureaus."""
    dep = rendered("quickstart").deployment

    def pod(name: str, component: str, group: str | None, ready: bool, restarts: int) -> dict:
        labels = {"app.kubernetes.io/name": "ncbsim", "app.kubernetes.io/component": component}
        if group:
            labels["ncbsim.dev/group"] = group
        return {
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "ncbsim"}]},
            "status": {"containerStatuses": [{"ready": ready, "restartCount": restarts}]},
        }

    pods = {
        "items": [
            pod("bureaus-1-7d9f-abcde", "bureaus", "bureaus-1", False, 2),
            pod("gateway-5c6b-xyz12", "gateway", None, True, 0),
            pod("bureaus-0-6c8d-fghij", "bureaus", "bureaus-0", True, 0),
        ]
    }
    rows = kubectl.status_rows(pods, dep)
    assert rows == [
        ("bureaus-0-6c8d-fghij", "bureaus", "1/1", "0", "DE,ES,FR"),
        ("bureaus-1-7d9f-abcde", "bureaus", "0/1", "2", "IT,NL"),
        ("gateway-5c6b-xyz12", "gateway", "1/1", "0", "-"),
    ]
    lines = kubectl.table(rows).splitlines()
    assert lines[0].split() == ["POD", "COMPONENT", "READY", "RESTARTS", "BUREAUS"]
    assert lines[2].split() == ["bureaus-1-7d9f-abcde", "bureaus", "0/1", "2", "IT,NL"]
