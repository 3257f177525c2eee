"""The rendered Kubernetes manifests, played for real in containers (``make k8s-smoke``).

No cluster runs here, so podman plays the very files ``ncbsim deploy render`` writes for a
cluster (``podman kube play``): the gateway and two pods of bureaus come up from the image
of ``make image``, on an ``--internal`` network of the test's own; a client container
queries a planted document and gets its hit; a bureau pod is killed and restarted and
still holds the same records; the load harness runs against the containers' gateway,
from the rendered load pods and as ``ncbsim load --target`` from a client container.
Podman stands in for the cluster where it must, and only there: a network alias for the
gateway's Service (podman has no Services), and `--configmap` for the ConfigMap file.

Not part of ``make test`` (it needs podman and the image): ``.ci/run`` runs it after.
Where podman cannot run, the module fails saying why; it never skips.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from pods import Podman, free_subnet

import ncbsim
from ncbsim.auditlog import TABLE
from ncbsim.node.store import RecordStore
from ncbsim.simulations.deploy.model import Deployment
from ncbsim.simulations.deploy.pod import record_counts
from ncbsim.simulations.deploy.records import ensure_records

pytestmark = pytest.mark.timeout(1500)

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = "quickstart"  # five bureaus: two pods of three and two
PER_POD = 3
REQUESTER_WAIT_S = 240


@dataclass
class Deployed:
    podman: Podman
    image: str
    network: str
    out: Path
    deployment: Deployment
    client: Path  # the public and the load bundles, as a client machine holds them
    work: Path

    def k8s(self, name: str) -> Path:
        return self.out / "k8s" / name

    def play(self, manifest: str, *, alias: str | None = None) -> None:
        network = self.network + (f":alias={alias}" if alias else "")
        self.podman.run(
            "kube",
            "play",
            "--network",
            network,
            "--configmap",
            f"{self.k8s('10-deployment.yaml')},{self.k8s('11-public.yaml')}",
            str(self.k8s(manifest)),
        )

    def container(self, *args: str, mounts: tuple[str, ...] = (), timeout: float = 300) -> str:
        """Run ``ncbsim ARGS`` in a throwaway client container on the test network; its
        output (AssertionError with it when it fails)."""
        return self._client(list(args), mounts, timeout, f"ncbsim {' '.join(args)}")

    def client_sh(self, script: str, timeout: float = 300, mounts: tuple[str, ...] = ()) -> str:
        """Run a shell script in a client container holding the client's bundles at
        /client; ``unpack`` lays its PKI out in /tmp/pki first."""
        unpack = (
            "ncbsim deploy unpack --bundle /client/public.json --bundle /client/keys.json "
            "--to /tmp/pki >/dev/null && "
        )
        argv = ["--entrypoint", "sh", "-c", unpack + script]
        return self._client(argv, (f"{self.client}:/client:ro", *mounts), timeout, script)

    def _client(self, argv: list[str], mounts: tuple[str, ...], timeout: float, what: str) -> str:
        """A read-only client container of the image, its /tmp in memory; ``argv`` after
        the image (an ``--entrypoint X`` pair first goes before it)."""
        options = argv[:2] if argv[:1] == ["--entrypoint"] else []
        proc = self.podman.run(
            "run", "--rm", "--network", self.network, "--read-only",
            "--tmpfs", "/tmp:rw,size=256m", "--env", "HOME=/tmp",
            "--env", "MPLCONFIGDIR=/tmp/matplotlib",
            *[f"--volume={m}" for m in mounts], *options, self.image, *argv[len(options):],
            check=False, timeout=timeout,
        )  # fmt: skip
        if proc.returncode != 0:
            output = f"{proc.stdout}\n{proc.stderr}"
            raise AssertionError(f"{what} exited {proc.returncode}:\n{output}")
        return proc.stdout

    def probe(self, address: str, wait_s: float) -> None:
        """Wait until the health port at ``address`` (``POD:PORT``) serves; on failure the
        pods' states and that pod's log say why."""
        try:
            self.container("deploy", "probe", address, "--wait", str(wait_s), timeout=wait_s + 60)
        except AssertionError as exc:
            pod = address.rsplit(":", 1)[0]
            states = self.podman.run("ps", "--all", "--format", "{{.Names}} {{.Status}}")
            log = self.podman.logs(f"{pod}-ncbsim")[-6000:]
            raise AssertionError(f"{exc}\n{states.stdout}\n{pod}'s log:\n{log}") from None

    def volume(self, name: str) -> Path:
        return Path(self.podman.json("volume", "inspect", name)[0]["Mountpoint"])


def _ncbsim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ncbsim", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _bundle(manifest: Path, kind: str, key: str) -> bytes:
    """The bundle a manifest's Secret (base64 ``data``) or ConfigMap holds under ``key``."""
    for doc in yaml.safe_load_all(manifest.read_text()):
        if doc and doc.get("kind") == kind and key in doc.get("data", {}):
            if kind == "Secret":
                return base64.b64decode(doc["data"][key])
            return str(doc["data"][key]).encode()
    raise AssertionError(f"no {kind} with {key} in {manifest}")


@pytest.fixture(scope="module")
def deployed() -> Iterator[Deployed]:
    archive = ROOT / "build" / "image" / f"ncbsim-{ncbsim.__version__}.oci.tar"
    if not archive.is_file():
        pytest.fail(f"{archive} is missing: run `make image` first (make k8s-smoke does)")
    work = Path(tempfile.mkdtemp(prefix="ncbsim-smoke-", dir="/var/tmp"))
    podman = Podman(work / "podman")
    network = f"ncbsim-smoke-{os.getpid()}"
    made_network = False
    try:
        loaded = podman.run("load", "--input", str(archive)).stdout
        image = loaded.strip().splitlines()[-1].split("Loaded image:")[-1].strip()
        out = work / "deploy"
        render = _ncbsim(
            "deploy", "render", SCENARIO, "--out", str(out), "--image", image,
            "--bureaus-per-pod", str(PER_POD), "--load-users", "10", "--load-workers", "1",
            "--load-duration", "15s",
        )  # fmt: skip
        assert render.returncode == 0, render.stderr
        deployment = Deployment.load(out / "deployment.json")
        client = work / "client"
        client.mkdir()
        (client / "public.json").write_bytes(
            _bundle(out / "k8s" / "11-public.yaml", "ConfigMap", "public.json")
        )
        (client / "keys.json").write_bytes(
            _bundle(out / "k8s" / "40-load-master.yaml", "Secret", "keys.json")
        )
        for path in client.iterdir():  # the container's user (10001) reads them
            path.chmod(0o644)
        client.chmod(0o755)
        podman.run("network", "create", "--internal", "--subnet", free_subnet(), network)
        made_network = True
        net = Deployed(podman, image, network, out, deployment, client, work)
        net.play("20-gateway.yaml", alias="gateway")
        for group in deployment.groups:
            net.play(f"30-{group.name}.yaml")
        net.probe(f"gateway:{deployment.gateway.health_port}", 120)
        for group in deployment.groups:
            net.probe(f"{group.name}-pod-0:{deployment.pod.health_port}", 300)
        yield net
    finally:
        problems = podman.cleanup(network if made_network else None)
        shutil.rmtree(work, ignore_errors=True)
        assert not problems, problems


def _planted_document(deployed: Deployed, bureau: str) -> tuple[str, str, str]:
    """(number, issuer, ref) of a document ``bureau`` holds and shows to every bureau,
    from a copy of its records made here from the deployment's seed and counts."""
    folder = deployed.work / "records" / bureau
    ensure_records({bureau: folder}, record_counts(deployed.deployment))
    store = RecordStore(folder / "records.sqlite")
    try:
        rng = random.Random(7)
        while True:
            doc = store.sample("document", 1, rng)[0]
            if not store.control(doc.ref).restricted:
                return doc.number, doc.issuer, doc.ref
    finally:
        store.close()


def _query(deployed: Deployed, requester: str, number: str, issuer: str, to: str) -> str:
    return deployed.client_sh(
        f"ncbsim query --gateway gateway:{deployed.deployment.gateway.port} --pki /tmp/pki "
        f"--as {requester} --to {to} document --number {number} --issuer {issuer}"
    )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_pod_serves_and_holds_only_its_own_keys(deployed: Deployed) -> None:
    pods = {p["Name"]: p for p in deployed.podman.json("pod", "ps", "--format", "json")}
    want = {"gateway-pod-0", *(f"{g.name}-pod-0" for g in deployed.deployment.groups)}
    assert want <= set(pods), pods
    assert len(deployed.deployment.groups) == 2
    first = deployed.deployment.groups[0]
    listing = deployed.podman.run(
        "exec", f"{first.name}-pod-0-ncbsim", "find", "/run/ncbsim/pki", "-name", "*.key"
    ).stdout.split()
    owners = {Path(p).relative_to("/run/ncbsim/pki").parts[:2] for p in listing}
    assert owners == {("bureaus", code) for code in first.bureaus}, listing
    assert not any(p.endswith("/ca.key") for p in listing), listing


def test_a_client_container_query_is_answered_with_a_hit(deployed: Deployed) -> None:
    number, issuer, ref = _planted_document(deployed, "FR")
    requester = deployed.deployment.load_test.requesters[0]
    out = _query(deployed, requester, number, issuer, "FR")
    assert ref in out, out


def test_a_killed_bureau_pod_restarts_with_its_records(deployed: Deployed) -> None:
    group = next(g for g in deployed.deployment.groups if "FR" in g.bureaus)
    pod = f"{group.name}-pod-0"
    data = deployed.volume(f"data-{group.name}")
    records = data / "FR" / "records.sqlite"
    before = (_digest(records), records.stat().st_ino)
    number, issuer, ref = _planted_document(deployed, "FR")
    requester = deployed.deployment.load_test.requesters[0]
    assert ref in _query(deployed, requester, number, issuer, "FR")
    audit = data / "FR" / "audit.sqlite"
    with sqlite3.connect(f"file:{audit}?mode=ro", uri=True) as db:
        rows_before = db.execute("SELECT COUNT(*) FROM " + TABLE).fetchone()[0]

    members = deployed.podman.run(
        "ps", "--all", "--filter", f"pod={pod}", "--format", "{{.Names}}"
    ).stdout.split()
    deployed.podman.run("pod", "kill", pod)  # SIGKILL to every process of the pod
    # Kill returns once the signals are sent: restart only once all are down, or the
    # infra container (the pod's network) would die under the restarted pod.
    deployed.podman.run("wait", "--condition", "exited", *members, timeout=120)
    deployed.podman.run("pod", "start", pod)
    deployed.probe(f"{pod}:{deployed.deployment.pod.health_port}", 300)

    assert (_digest(records), records.stat().st_ino) == before
    logs = deployed.podman.logs(f"{pod}-ncbsim")
    assert logs.count("records_generated") == 1, logs[-3000:]
    assert "records_reused" in logs, logs[-3000:]
    assert ref in _query(deployed, requester, number, issuer, "FR")
    with sqlite3.connect(f"file:{audit}?mode=ro", uri=True) as db:
        rows_after = db.execute("SELECT COUNT(*) FROM " + TABLE).fetchone()[0]
    assert rows_after > rows_before  # the same trail, carried on
    verify = _ncbsim("audit", "verify", str(audit))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_the_rendered_load_pods_judge_the_containers_gateway(deployed: Deployed) -> None:
    deployed.play("40-load-master.yaml", alias=deployed.deployment.load_test.service)
    deployed.play("41-load-workers.yaml")
    master = "load-master-ncbsim"
    state = deployed.podman.run("wait", "--condition", "exited", master, timeout=600).stdout.strip()
    logs = deployed.podman.logs(master)
    # The exit code is the verdict on load/slo.toml. Its latency lines depend on how busy
    # this machine is; its failure lines do not: every check answered, and answered right.
    assert state in ("0", "1"), f"no verdict (exit {state}):\n{logs[-4000:]}"
    assert ("SLO met" in logs) == (state == "0"), logs[-4000:]
    failures = [line for line in logs.splitlines() if "failure_ratio" in line]
    assert failures, logs[-4000:]
    assert all("PASS" in line for line in failures), "\n".join(failures)


def test_ncbsim_load_target_from_a_client_container(deployed: Deployed) -> None:
    # What a client machine holds: the deployment, and a PKI with only the requesters' keys.
    target = deployed.work / "target"
    target.mkdir()
    shutil.copy(deployed.out / "deployment.json", target / "deployment.json")
    subprocess.run(["chown", "-R", "10001:10001", str(target)], check=True)
    port = deployed.deployment.gateway.port
    # The shipped SLO (load/slo.toml): its verdict is printed (make k8s-smoke shows it);
    # its latency lines depend on how busy this machine is, so the test asserts what does
    # not: a verdict was reached, it matches the exit code, and no check failed.
    out = deployed.client_sh(
        "mkdir -p /tmp/t && cp /target/* /tmp/t/ && mv /tmp/pki /tmp/t/pki && "
        f"ncbsim load --target /tmp/t --gateway gateway:{port} --users 10 --duration 20s "
        "--out /tmp/t/report; echo EXIT=$? && cat /tmp/t/report/verdict.json",
        timeout=600,
        mounts=(f"{target}:/target:ro",),
    )
    print(out[: out.index("EXIT=")])
    code = int(out[out.index("EXIT=") + 5 :].split()[0])
    verdict = json.loads(out[out.index("EXIT=") :].split("\n", 1)[1])
    assert code == (0 if verdict["passed"] else 1), out
    assert verdict["overall"]["requests"] > 0, verdict
    assert verdict["overall"]["failures"] == 0, verdict
    assert verdict["user_exceptions"] == 0, verdict
