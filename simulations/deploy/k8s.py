"""The Kubernetes objects of a deployment, as plain dicts (render.py writes them as YAML).

Kinds both a cluster and ``podman kube play`` accept carry what the pods need (Deployment,
Pod, PersistentVolumeClaim, ConfigMap, Secret); Namespace, Service and NetworkPolicy are
for the cluster (podman ignores them). Podman 4.3 facts that shape them (the contract of
issue 21): a Secret volume says ``optional: false`` (4.3.1 panics otherwise), a Secret's
value is in ``data`` (``stringData`` is ignored), and no ``status.podIP`` (a node finds
its own address: ``advertise: "auto"``).
"""

from __future__ import annotations

import base64
from typing import Any

from ncbsim.simulations.deploy import resources
from ncbsim.simulations.deploy.model import Deployment, Group

Obj = dict[str, Any]
APP = "ncbsim"
UID = 10001
CONFIG = "/etc/ncbsim/deployment/deployment.json"
PUBLIC = "/etc/ncbsim/public/public.json"
KEYS = "/etc/ncbsim/keys/keys.json"
PKI = "/run/ncbsim/pki"
DATA = "/var/lib/ncbsim"
TMP = "/tmp"  # noqa: S108 (a private emptyDir in the pod, not the host's /tmp)


def labels(component: str, group: str | None = None) -> dict[str, str]:
    """The labels of a component's objects (and of its pods)."""
    out = {"app.kubernetes.io/name": APP, "app.kubernetes.io/component": component}
    if group is not None:
        out["ncbsim.dev/group"] = group
    return out


def _meta(name: str, dep: Deployment, component: str | None, group: str | None = None) -> Obj:
    meta: Obj = {"name": name, "namespace": dep.namespace}
    meta["labels"] = labels(component, group) if component else {"app.kubernetes.io/name": APP}
    return meta


def run_args(role: str, group: str | None = None) -> list[str]:
    """The container's arguments (after the image's entrypoint ``ncbsim``)."""
    args = ["deploy", "run", role]
    if group is not None:
        args += ["--group", group]
    return [
        *args,
        "--config",
        CONFIG,
        "--bundle",
        PUBLIC,
        "--bundle",
        KEYS,
        "--pki",
        PKI,
        "--data",
        DATA,
    ]


def _scratch(instance: str) -> dict[str, str]:
    """The names of a pod's own ``emptyDir`` volumes, by their role. They carry the pod's
    name: podman 4.3's ``kube play`` makes an emptyDir a podman volume *named after it*,
    so two pods with an emptyDir ``run`` would share one (and each other's keys)."""
    return {role: f"{role}-{instance}" for role in ("data", "run", "tmp")}


def volumes(pod: str, *, persistent: bool, instance: str) -> list[Obj]:
    """The volumes of pod ``instance`` (of Secret ``pod``): config, public PKI, its keys,
    its data, a memory tmpfs for its unpacked keys, a scratch /tmp."""
    own = _scratch(instance)
    data: Obj = (
        {"name": "data", "persistentVolumeClaim": {"claimName": f"data-{pod}"}}
        if persistent
        else {"name": own["data"], "emptyDir": {}}
    )
    return [
        {"name": "deployment", "configMap": {"name": "ncbsim-deployment"}},
        {"name": "public", "configMap": {"name": "ncbsim-public"}},
        # optional: false explicitly: podman 4.3.1 dereferences a nil pointer without it.
        {"name": "keys", "secret": {"secretName": f"ncbsim-keys-{pod}", "optional": False}},
        data,
        {"name": own["run"], "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        {"name": own["tmp"], "emptyDir": {"sizeLimit": "64Mi"}},
    ]


def mounts(*, persistent: bool, instance: str) -> list[Obj]:
    """Where the container of pod ``instance`` mounts its volumes (:func:`volumes`)."""
    own = _scratch(instance)
    return [
        {"name": "deployment", "mountPath": "/etc/ncbsim/deployment", "readOnly": True},
        {"name": "public", "mountPath": "/etc/ncbsim/public", "readOnly": True},
        {"name": "keys", "mountPath": "/etc/ncbsim/keys", "readOnly": True},
        {"name": "data" if persistent else own["data"], "mountPath": DATA},
        {"name": own["run"], "mountPath": "/run/ncbsim"},
        {"name": own["tmp"], "mountPath": TMP},
    ]


ENV: list[Obj] = [
    {"name": "PYTHONUNBUFFERED", "value": "1"},
    {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
    {"name": "MPLCONFIGDIR", "value": f"{TMP}/matplotlib"},  # the root filesystem is read-only
]


def _grpc_probe(port: int, *, period: int, failures: int) -> Obj:
    return {"grpc": {"port": port}, "periodSeconds": period, "failureThreshold": failures}


def _pod_spec(
    dep: Deployment,
    pod: str,
    container: Obj,
    *,
    persistent: bool,
    restart: str,
    instance: str | None = None,
) -> Obj:
    """Pod ``instance`` (default ``pod``) of Secret and volume ``pod``, running ``container``."""
    instance = instance or pod
    container = {**container, "volumeMounts": mounts(persistent=persistent, instance=instance)}
    return {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": 30,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes(pod, persistent=persistent, instance=instance),
    }


def _container(dep: Deployment, args: list[str], sizing: Obj) -> Obj:
    """One container. It declares no ``ports``: Kubernetes does not need them (a pod's
    ports are reachable whether declared or not; the Services and NetworkPolicies name
    ports by number), and podman 4.3's ``kube play`` publishes every declared
    ``containerPort`` on the host's every interface (it defaults a missing ``hostPort``
    to the ``containerPort``), which a test network must not do."""
    return {
        "name": "ncbsim",
        "image": dep.image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": ENV,
        "resources": sizing,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def _probed(container: Obj, health_port: int) -> Obj:
    """The standard gRPC health service on the plaintext health port: a start-up probe
    allowing 10 minutes (a first start generates the records), then readiness and liveness."""
    return {
        **container,
        "startupProbe": _grpc_probe(health_port, period=5, failures=120),
        "readinessProbe": _grpc_probe(health_port, period=5, failures=3),
        "livenessProbe": _grpc_probe(health_port, period=10, failures=6),
    }


def _annotations(port: int) -> dict[str, str]:
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(port)} | {
        "prometheus.io/path": "/metrics"
    }


def _deployment(dep: Deployment, name: str, component: str, group: str | None, spec: Obj) -> Obj:
    pod_labels = labels(component, group)
    port = dep.gateway.metrics_port if component == "gateway" else dep.pod.metrics_port
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, dep, component, group),
        "spec": {
            "replicas": 1,
            # One pod at a time: its volume is ReadWriteOnce and its bureaus must not run twice.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": pod_labels},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": _annotations(port)},
                "spec": spec,
            },
        },
    }


def secret(dep: Deployment, pod: str, bundle: bytes, component: str) -> Obj:
    """Secret ``ncbsim-keys-<pod>``: one key, ``keys.json`` (``data``: podman ignores
    ``stringData``)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(f"ncbsim-keys-{pod}", dep, component),
        "type": "Opaque",
        "data": {"keys.json": base64.b64encode(bundle).decode("ascii")},
    }


def pvc(dep: Deployment, pod: str, component: str, size: str, group: str | None = None) -> Obj:
    """The data volume ``data-<pod>`` (records, audit, inbox; kept across restarts)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(f"data-{pod}", dep, component, group),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
    }


def namespace(dep: Deployment) -> Obj:
    """The namespace, labelled for Pod Security Admission's restricted profile."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": dep.namespace,
            "labels": {
                "app.kubernetes.io/name": APP,
                "pod-security.kubernetes.io/enforce": "restricted",
            },
        },
    }


def config_maps(dep: Deployment, deployment_json: str, public_json: str) -> list[Obj]:
    """ConfigMaps ``ncbsim-deployment`` and ``ncbsim-public`` (the public PKI bundle)."""
    out = []
    for name, key, text in (
        ("ncbsim-deployment", "deployment.json", deployment_json),
        ("ncbsim-public", "public.json", public_json),
    ):
        out.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(name, dep, None)}
            | {"data": {key: text}}
        )
    return out


def gateway_objects(dep: Deployment, bundle: bytes, service_type: str) -> list[Obj]:
    """Secret, PVC, Deployment and Service of the gateway."""
    gw = dep.gateway
    container = _probed(
        _container(dep, run_args("gateway"), resources.gateway().to_k8s()), gw.health_port
    )
    spec = _pod_spec(dep, "gateway", container, persistent=True, restart="Always")
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(gw.service, dep, "gateway"),
        "spec": {
            "type": service_type,
            "selector": labels("gateway"),
            "ports": [{"name": "grpc", "port": gw.port, "targetPort": gw.port, "protocol": "TCP"}],
        },
    }
    return [
        secret(dep, "gateway", bundle, "gateway"),
        pvc(dep, "gateway", "gateway", "256Mi"),
        _deployment(dep, "gateway", "gateway", None, spec),
        service,
    ]


def group_objects(dep: Deployment, group: Group, bundle: bytes) -> list[Obj]:
    """Secret, PVC and Deployment of one pod of bureaus."""
    pod = dep.pod
    sizing = resources.bureaus(len(group.bureaus), biometrics=dep.records.biometrics > 0)
    container = _probed(
        _container(dep, run_args("bureaus", group.name), sizing.to_k8s()), pod.health_port
    )
    spec = _pod_spec(dep, group.name, container, persistent=True, restart="Always")
    records = dep.records.documents + dep.records.persons + dep.records.vehicles
    size = resources.storage(len(group.bureaus), records)
    return [
        secret(dep, group.name, bundle, "bureaus"),
        pvc(dep, group.name, "bureaus", size, group.name),
        _deployment(dep, group.name, "bureaus", group.name, spec),
    ]


def load_objects(dep: Deployment, bundle: bytes) -> tuple[list[Obj], list[Obj]]:
    """The master's (Secret, Service, Pod) and the workers' (Pods); restartPolicy Never:
    a load run is run once, and ``deploy apply --load`` deletes the old pods first. Two
    lists, for two files: an engine without Services (podman) names the master's pod
    apart from the workers'."""
    load = dep.load_test
    objects: list[Obj] = [
        secret(dep, "load", bundle, "load-master"),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(load.service, dep, "load-master"),
            "spec": {
                "selector": labels("load-master"),
                "ports": [
                    {"name": "master", "port": load.master_port, "targetPort": load.master_port}
                ],
            },
        },
    ]
    workers: list[Obj] = []
    pods = [("load-master", "load-master")]
    pods += [(f"load-worker-{i}", "load-worker") for i in range(load.workers)]
    for name, component in pods:
        master = component == "load-master"
        container = _container(dep, run_args(component), resources.load(master=master).to_k8s())
        # Every load pod mounts the one Secret of the requesters' keys.
        spec = _pod_spec(dep, "load", container, persistent=False, restart="Never", instance=name)
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": _meta(name, dep, component)}
        (objects if master else workers).append({**pod, "spec": spec})
    return objects, workers


def _policy(dep: Deployment, name: str, selector: Obj, ingress: list[Obj]) -> Obj:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(name, dep, None),
        "spec": {"podSelector": selector, "policyTypes": ["Ingress"], "ingress": ingress},
    }


def _tcp(*ports: int) -> list[Obj]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def network_policies(dep: Deployment) -> list[Obj]:
    """Default deny ingress; the bureaus' gRPC ports from the gateway pods only; the
    gateway's port from anywhere; metrics from Prometheus pods of any namespace; health
    ports open (probes); the load master's port from the load workers."""
    app = {"app.kubernetes.io/name": APP}
    bureau_ports = [dep.pod.first_port + i for i in range(dep.bureaus_per_pod)]

    def component(name: str) -> Obj:
        return {"matchLabels": labels(name)}

    prometheus = {
        "namespaceSelector": {},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }
    return [
        _policy(dep, "default-deny-ingress", {}, []),
        _policy(
            dep,
            "bureaus-from-gateway",
            component("bureaus"),
            [{"from": [{"podSelector": component("gateway")}], "ports": _tcp(*bureau_ports)}],
        ),
        _policy(
            dep, "gateway-from-anywhere", component("gateway"), [{"ports": _tcp(dep.gateway.port)}]
        ),
        _policy(
            dep,
            "metrics-from-prometheus",
            {"matchLabels": app},
            [
                {
                    "from": [prometheus],
                    "ports": _tcp(*sorted({dep.gateway.metrics_port, dep.pod.metrics_port})),
                }
            ],
        ),
        _policy(
            dep,
            "health-from-anywhere",
            {"matchLabels": app},
            [{"ports": _tcp(*sorted({dep.gateway.health_port, dep.pod.health_port}))}],
        ),
        _policy(
            dep,
            "load-master-from-workers",
            component("load-master"),
            [
                {
                    "from": [{"podSelector": component("load-worker")}],
                    "ports": _tcp(dep.load_test.master_port),
                }
            ],
        ),
    ]
