"""The Compose file of a deployment (a single Docker or Podman host), from the same model
as the Kubernetes manifests: the same image, commands, mount paths and volumes.

The bundles become Compose ``configs`` and ``secrets`` read from files under
``OUT/compose/``. A bind-mounted file keeps its owner and mode, and the containers run as
user 10001, so those files are 0644 inside a 0700 folder: no other account of the
operator's machine can reach them, and the container can read the one it is given. The
load services carry the profile ``load`` (``docker compose --profile load up``).
"""

from __future__ import annotations

from typing import Any

from ncbsim.simulations.deploy import k8s
from ncbsim.simulations.deploy.model import Deployment

Obj = dict[str, Any]


def _service(dep: Deployment, pod: str, role: str, group: str | None, *, persistent: bool) -> Obj:
    volume = f"data-{pod}"
    service: Obj = {
        "image": dep.image,
        "command": k8s.run_args(role, group),
        "user": f"{k8s.UID}:{k8s.UID}",
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "environment": {e["name"]: e["value"] for e in k8s.ENV},
        "configs": [
            {"source": "ncbsim-deployment", "target": k8s.CONFIG},
            {"source": "ncbsim-public", "target": k8s.PUBLIC},
        ],
        "secrets": [{"source": f"ncbsim-keys-{pod}", "target": k8s.KEYS}],
        "tmpfs": [f"/run/ncbsim:mode=0700,uid={k8s.UID},gid={k8s.UID}", k8s.TMP],
        "volumes": [
            {"type": "volume", "source": volume, "target": k8s.DATA}
            if persistent
            else {"type": "tmpfs", "target": k8s.DATA}
        ],
        "labels": k8s.labels(role, group),
    }
    return service


def compose(dep: Deployment) -> Obj:
    """The Compose document. ``files`` in configs/secrets are relative to ``OUT/``."""
    services: Obj = {}
    gateway = _service(dep, "gateway", "gateway", None, persistent=True)
    gateway["restart"] = "unless-stopped"
    gateway["ports"] = [f"127.0.0.1:{dep.gateway.port}:{dep.gateway.port}"]
    services["gateway"] = gateway
    for group in dep.groups:
        service = _service(dep, group.name, "bureaus", group.name, persistent=True)
        service["restart"] = "unless-stopped"
        service["depends_on"] = ["gateway"]
        services[group.name] = service
    master = _service(dep, "load", "load-master", None, persistent=False)
    master["profiles"] = ["load"]
    master["depends_on"] = ["gateway"]
    master["hostname"] = dep.load_test.service
    services[dep.load_test.service] = master
    for i in range(dep.load_test.workers):
        worker = _service(dep, "load", "load-worker", None, persistent=False)
        worker["profiles"] = ["load"]
        worker["depends_on"] = [dep.load_test.service]
        services[f"load-worker-{i}"] = worker
    if dep.gateway.service != "gateway":  # the nodes and clients find it by its Service name
        services[dep.gateway.service] = services.pop("gateway")
    pods = ["gateway", *(g.name for g in dep.groups), "load"]
    return {
        "name": dep.namespace,
        "services": services,
        "volumes": {f"data-{pod}": {} for pod in pods if pod != "load"},
        "configs": {
            "ncbsim-deployment": {"file": "compose/deployment.json"},
            "ncbsim-public": {"file": "compose/public.json"},
        },
        "secrets": {f"ncbsim-keys-{pod}": {"file": f"compose/keys-{pod}.json"} for pod in pods},
    }
