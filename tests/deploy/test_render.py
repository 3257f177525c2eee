"""``ncbsim deploy render``: every manifest validates against the Kubernetes schemas
offline, each Secret holds exactly its pod's keys, the Compose file matches the manifests,
and bad input is one line with exit 2."""

from __future__ import annotations

import base64
import json
import re
import stat
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from support import run_ncbsim

from ncbsim import pki
from ncbsim.errors import ConfigError
from ncbsim.simulations.deploy import bundle, k8s, render
from ncbsim.simulations.deploy.model import Deployment
from ncbsim.simulations.scenario import loader

K8S_VERSION = "1.35.0"
"""The Kubernetes version whose schemas (shipped by kubernetes-validate) we validate
against: a recent release of the kind clusters run."""
SCENARIOS = ["quickstart", "epervier", "all-members"]

Render = Callable[[str], render.Rendered]
Obj = dict[str, Any]


def _objects(out: Path) -> dict[str, list[Obj]]:
    return {
        path.name: list(yaml.safe_load_all(path.read_text()))
        for path in sorted((out / "k8s").glob("*.yaml"))
    }


def _all(out: Path) -> list[Obj]:
    return [obj for objects in _objects(out).values() for obj in objects]


def _by(objects: list[Obj], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _bundle_of(obj: Obj) -> dict[str, bytes]:
    if obj["kind"] == "Secret":
        return bundle.read_bundle(base64.b64decode(obj["data"]["keys.json"]))
    return bundle.read_bundle(obj["data"]["public.json"].encode())


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_object_validates_and_is_counted(rendered: Render, name: str) -> None:
    """Every object of every file validates strictly against the Kubernetes 1.35 schemas,
    and there are as many of each kind as the deployment has pods."""
    done = rendered(name)
    objects = _all(done.out)
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    groups = len(done.deployment.groups)
    workers = done.deployment.load_test.workers
    expected = {
        "Namespace": 1,
        "NetworkPolicy": 6,
        "ConfigMap": 2,
        "Secret": groups + 2,
        "PersistentVolumeClaim": groups + 1,
        "Deployment": groups + 1,
        "Service": 2,
        "Pod": workers + 1,
    }
    assert Counter(o["kind"] for o in objects) == expected
    assert done.kinds == dict(sorted(expected.items()))
    assert {o["metadata"].get("namespace", "ncbsim") for o in objects} == {"ncbsim"}
    if name == "all-members":
        assert len(done.deployment.bureaus) == 196
        assert groups == 66  # 196 bureaus, 3 a pod
        # Every member runs a node: the requesters are other ISO 3166 codes.
        assert not set(done.deployment.load_test.requesters) & set(done.deployment.bureaus)
    dep = done.deployment
    assert dep.load_test.targets == tuple(sorted(dep.bureaus)[:8])
    assert len(dep.load_test.requesters) == 10


def test_schema_validation_can_fail(rendered: Render) -> None:
    """The validator refuses an unknown field in a rendered Deployment (strict mode)."""
    objects = _all(rendered("quickstart").out)
    gateway = dict(_by(objects, "Deployment")["gateway"])
    gateway["spec"] = {**gateway["spec"], "replica": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(gateway, K8S_VERSION, strict=True)


@pytest.mark.parametrize("name", SCENARIOS)
def test_each_secret_holds_exactly_its_pods_keys(rendered: Render, name: str) -> None:
    """The gateway's Secret holds its TLS pair only; a bureaus pod's holds its bureaus'
    four key files; the load's the requesters'; the public ConfigMap only public files;
    the root key and the bureaus' users' CA keys are in none; each file is the PKI's."""
    done = rendered(name)
    dep = done.deployment
    root = done.out / "pki"
    objects = _all(done.out)
    secrets = _by(objects, "Secret")
    assert set(secrets) == {f"ncbsim-keys-{p}" for p in ["gateway", "load", *dep_groups(dep)]}

    def keys(codes: tuple[str, ...]) -> set[str]:
        return {f"bureaus/{c}/{f}" for c in codes for f in bundle.PARTY_FILES}

    expected = {"ncbsim-keys-gateway": {"gateway/tls.crt", "gateway/tls.key"}}
    expected["ncbsim-keys-load"] = keys(dep.load_test.requesters)
    expected |= {f"ncbsim-keys-{g.name}": keys(g.bureaus) for g in dep.groups}
    for secret_name, secret in secrets.items():
        files = _bundle_of(secret)
        assert set(files) == expected[secret_name], secret_name
        for path, content in files.items():
            assert content == (root / path).read_bytes()
    public = _bundle_of(_by(objects, "ConfigMap")["ncbsim-public"])
    assert all(bundle.is_public(p) for p in public)
    entries = {p for p in public if p.startswith("directory/")}
    assert entries == {f"directory/{c}.entry" for c in (*dep.bureaus, *dep.load_test.requesters)}
    users = {p for p in public if p.startswith("users/")}
    assert users == {f"users/{u.principal}.entry" for u in loader.load(name).users}
    everything = [p for s in secrets.values() for p in _bundle_of(s)] + list(public)
    assert not [p for p in everything if p == "ca.key" or p.endswith("/ca.key")]
    assert not [p for p in everything if "/users/" in p or p.startswith("operator/")]
    assert (root / "ca.key").is_file()  # the root key stays on the operator's machine


def dep_groups(dep: Deployment) -> list[str]:
    return [g.name for g in dep.groups]


def _pod_specs(objects: list[Obj]) -> dict[str, Obj]:
    specs = {n: d["spec"]["template"]["spec"] for n, d in _by(objects, "Deployment").items()}
    return specs | {n: p["spec"] for n, p in _by(objects, "Pod").items()}


def test_pods_are_hardened_probed_and_scraped(rendered: Render) -> None:
    """Every pod: user 10001, read-only root, no capability, RuntimeDefault seccomp, its
    own Secret with optional: false, the contract's mounts and command; Deployments have
    gRPC probes on the health port and Prometheus annotations; one replica, Recreate."""
    done = rendered("quickstart")
    dep = done.deployment
    objects = _all(done.out)
    seen_scratch: set[str] = set()
    for name, spec in _pod_specs(objects).items():
        assert spec["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        (container,) = spec["containers"]
        assert container["image"] == dep.image
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert container["resources"]["limits"]["memory"].endswith("Mi")
        volumes = {v["name"]: v for v in spec["volumes"]}
        pod = "load" if name.startswith("load-") else name
        assert volumes["keys"]["secret"] == {
            "secretName": f"ncbsim-keys-{pod}",
            "optional": False,
        }
        assert volumes[f"run-{name}"]["emptyDir"]["medium"] == "Memory"
        # Each pod's emptyDirs carry its name: podman 4.3 makes an emptyDir a podman volume
        # named after it, shared by every pod that names one alike (k8s._scratch).
        scratch = [v["name"] for v in spec["volumes"] if "emptyDir" in v]
        assert all(v.endswith(f"-{name}") for v in scratch), scratch
        assert not set(scratch) & seen_scratch
        seen_scratch.update(scratch)
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {
            "/etc/ncbsim/keys",
            "/etc/ncbsim/public",
            "/var/lib/ncbsim",
            "/run/ncbsim",
        } <= mounts
        role = {"gateway": "gateway", "load-master": "load-master"}.get(name)
        role = role or ("load-worker" if name.startswith("load-worker") else "bureaus")
        group = name if role == "bureaus" else None
        assert container["args"] == k8s.run_args(role, group)
    for name, deployment in _by(objects, "Deployment").items():
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        health = dep.gateway.health_port if name == "gateway" else dep.pod.health_port
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"] == {"port": health}
        notes = deployment["spec"]["template"]["metadata"]["annotations"]
        assert notes["prometheus.io/scrape"] == "true"
        assert notes["prometheus.io/port"] == "9600"
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] == f"data-{name}"
    # No container declares ports: podman 4.3 would publish each on the host (k8s._container).
    pods = [o["spec"] for o in objects if o["kind"] == "Pod"]
    pods += [o["spec"]["template"]["spec"] for o in objects if o["kind"] == "Deployment"]
    assert all("ports" not in c for spec in pods for c in spec["containers"])
    gateway_service = _by(objects, "Service")["gateway"]["spec"]["ports"]
    assert gateway_service == [
        {"name": "grpc", "port": 7600, "targetPort": 7600, "protocol": "TCP"}
    ]
    for pod in _by(objects, "Pod").values():
        assert pod["spec"]["restartPolicy"] == "Never"


def test_network_policies_let_only_the_gateway_reach_the_bureaus(rendered: Render) -> None:
    """Default deny; bureaus' ports from gateway pods only; gateway's port from anywhere;
    metrics from Prometheus pods in any namespace; the master's port from workers."""
    policies = _by(_all(rendered("quickstart").out), "NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []}
    (rule,) = policies["bureaus-from-gateway"]["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": k8s.labels("gateway")}}]
    assert [p["port"] for p in rule["ports"]] == [7700, 7701, 7702]
    (rule,) = policies["gateway-from-anywhere"]["spec"]["ingress"]
    assert "from" not in rule
    assert rule["ports"] == [{"protocol": "TCP", "port": 7600}]
    (rule,) = policies["metrics-from-prometheus"]["spec"]["ingress"]
    assert rule["from"][0]["namespaceSelector"] == {}
    assert rule["from"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    (rule,) = policies["load-master-from-workers"]["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": k8s.labels("load-worker")}}]


_COMPOSE_TOP = {"version", "name", "include", "services", "networks", "volumes", "secrets"}
_COMPOSE_TOP |= {"configs", "models"}
_COMPOSE_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")


@pytest.mark.parametrize("name", ["quickstart", "all-members"])
def test_compose_file_matches_the_manifests(rendered: Render, name: str) -> None:
    """The Compose file has the spec's shape (services with an image, declared volumes,
    configs and secrets whose files exist) and names the same image, commands, mounts and
    bundle bytes as the manifests."""
    done = rendered(name)
    doc = yaml.safe_load((done.out / "compose.yaml").read_text())
    assert set(doc) <= _COMPOSE_TOP
    assert _COMPOSE_NAME.match(doc["name"])
    specs = _pod_specs(_all(done.out))
    secrets = _by(_all(done.out), "Secret")
    services = doc["services"]
    assert set(services) == set(specs)
    for service_name, service in services.items():
        assert _COMPOSE_NAME.match(service_name)
        (container,) = specs[service_name]["containers"]
        assert service["image"] == container["image"]
        assert service["command"] == container["args"]
        assert all(isinstance(a, str) for a in service["command"])
        assert service["user"] == "10001:10001"
        assert service["read_only"] is True
        assert set(service.get("depends_on", [])) <= set(services)
        targets = {v["target"] for v in service["volumes"]}
        targets |= {c["target"] for c in service["configs"] + service["secrets"]}
        targets |= {t.split(":")[0] for t in service["tmpfs"]}
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {
            "/etc/ncbsim/deployment/deployment.json",
            "/etc/ncbsim/public/public.json",
            "/etc/ncbsim/keys/keys.json",
        } <= targets
        assert (
            mounts - {"/etc/ncbsim/deployment", "/etc/ncbsim/public", "/etc/ncbsim/keys"} <= targets
        )
        for volume in service["volumes"]:
            if volume["type"] == "volume":
                assert volume["source"] in doc["volumes"]
        for ref in service["configs"]:
            assert ref["source"] in doc["configs"]
        (secret_ref,) = service["secrets"]
        file = done.out / doc["secrets"][secret_ref["source"]]["file"]
        assert file.read_bytes() == base64.b64decode(
            secrets[secret_ref["source"]]["data"]["keys.json"]
        )
    for config in doc["configs"].values():
        assert (done.out / config["file"]).is_file()
    load = [s for n, s in services.items() if n.startswith("load-")]
    assert load
    assert all(s["profiles"] == ["load"] for s in load)


def test_render_files_are_private_and_rerender_keeps_keys(tmp_path: Path) -> None:
    """The manifests (they hold Secrets) and the PKI are the operator's alone; a second
    render reuses the PKI, so every Secret is byte for byte the same."""
    out = tmp_path / "d"
    first = render.render(render.Options(scenario="quickstart", out=out, load_users=2))
    before = {p.name: p.read_bytes() for p in (out / "k8s").glob("*.yaml")}
    for folder in (out / "pki", out / "k8s", out / "compose"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in (out / "k8s").iterdir()} == {0o600}
    assert stat.S_IMODE((out / "compose.yaml").stat().st_mode) == 0o600
    second = render.render(render.Options(scenario="quickstart", out=out, load_users=2))
    assert second.deployment == first.deployment
    assert {p.name: p.read_bytes() for p in (out / "k8s").glob("*.yaml")} == before
    third = render.render(
        render.Options(scenario="quickstart", out=out, load_users=2, bureaus_per_pod=5)
    )
    assert [g.name for g in third.deployment.groups] == ["bureaus-0"]
    assert sorted(p.name for p in (out / "k8s").glob("30-*.yaml")) == ["30-bureaus-0.yaml"]
    assert Deployment.load(out / "deployment.json") == third.deployment


def test_gateway_service_type_is_chosen(tmp_path: Path) -> None:
    """--gateway-service-type makes the gateway's Service a NodePort; an unknown type is
    refused before anything is written."""
    done = render.render(
        render.Options(scenario="quickstart", out=tmp_path / "d", gateway_service_type="NodePort")
    )
    service = _by(_all(done.out), "Service")["gateway"]
    kubernetes_validate.validate(service, K8S_VERSION, strict=True)
    assert service["spec"]["type"] == "NodePort"
    with pytest.raises(ConfigError, match="choose ClusterIP, NodePort, LoadBalancer"):
        render.Options(scenario="quickstart", out=tmp_path / "e", gateway_service_type="Ingress")
    assert not (tmp_path / "e").exists()


def test_a_pki_of_another_network_is_refused(tmp_path: Path) -> None:
    """Rendering into a folder whose PKI holds other bureaus is refused, naming them."""
    pki.init(tmp_path / "d" / "pki", ["JP", "FR"])
    with pytest.raises(ConfigError, match=r"another network \(JP\)"):
        render.render(render.Options(scenario="quickstart", out=tmp_path / "d"))


def test_deployment_json_refuses_a_bad_file(tmp_path: Path, rendered: Render) -> None:
    """A deployment.json with a missing key, a bad namespace or another version is one
    ConfigError naming the file."""
    good = json.loads((rendered("quickstart").out / "deployment.json").read_text())
    path = tmp_path / "deployment.json"
    for change, message in (
        (lambda d: d.pop("groups"), "missing key 'groups'"),
        (lambda d: d.update(namespace="Bad_NS"), "not a DNS-1123 label"),
        (lambda d: d.update(version=2), "version 2"),
        (lambda d: d["load"].update(targets=["JP"]), "JP run no node"),
    ):
        data = json.loads(json.dumps(good))
        change(data)
        path.write_text(json.dumps(data))
        with pytest.raises(ConfigError, match=re.escape(message)) as caught:
            Deployment.load(path)
        assert str(path) in str(caught.value)


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """Unknown scenario, K < 1, a namespace that is no DNS label, an unwritable --out:
    one line ``ncbsim: ...``, exit 2, nothing rendered."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = tmp_path / "out"
    cases = [
        (["nowhere", "--out", out], "no built-in scenario 'nowhere'"),
        (["quickstart", "--out", out, "--bureaus-per-pod", "0"], "at least 1"),
        (["quickstart", "--out", out, "--namespace", "Bad_NS"], "DNS-1123"),
        (["quickstart", "--out", blocker / "d"], "cannot write there"),
    ]
    for args, message in cases:
        done = run_ncbsim("deploy", "render", *args)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("ncbsim: "), done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        assert message in done.stderr
    assert not out.exists()


def test_unpack_command_writes_a_pki_from_bundles(rendered: Render, tmp_path: Path) -> None:
    """``deploy unpack`` turns the rendered public and load bundles into a PKI folder with
    the requesters' keys and no root key."""
    done = rendered("quickstart")
    folder = tmp_path / "client"
    result = run_ncbsim(
        "deploy",
        "unpack",
        "--bundle",
        done.out / "compose" / "public.json",
        "--bundle",
        done.out / "compose" / "keys-load.json",
        "--to",
        folder,
    )
    assert result.returncode == 0, result.stderr
    requester = done.deployment.load_test.requesters[0]
    assert (folder / "bureaus" / requester / "signing.key").is_file()
    assert not (folder / "ca.key").exists()
    assert pki.PkiDir(folder).suite_name == "classic"
