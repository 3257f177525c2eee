"""`ncbsim load` against a deployed network: the plan made from a rendered deployment.

A rendered quickstart deployment (its PKI and ``deployment.json``) is run on loopback the
way its pods run it: a gateway, and a host of the deployment's bureaus whose records were
made from the deployment's seed and counts. ``ncbsim load --target DIR --gateway ADDR``
then makes the same records again in ``DIR/load-cache`` and judges the run; a master on a
ready plan (``--plan``) and a worker that ``--join``\\ s it, as the cluster's load pods do,
judge another. Only behaviour is asserted: every answer owed, no failed request.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from spawned import spawn, stop, wait_ready
from support import run_ncbsim

from ncbsim.load.deployed import plan_for_deployment
from ncbsim.load.plan import LoadPlan
from ncbsim.node import datagen
from ncbsim.node.store import RecordStore
from ncbsim.simulations.deploy.model import Deployment

pytestmark = [pytest.mark.integration, pytest.mark.load]

NO_FAILED_REQUEST = "[overall]\nmax_failure_ratio = 0\n"


@dataclass(frozen=True)
class Deployed:
    """A rendered deployment (``root``) served on loopback, as its pods serve it."""

    root: Path
    deployment: Deployment
    gateway: str
    pods: Path  # the stand-in pods' volumes: pods/XX/records.sqlite


def _render(root: Path) -> Deployment:
    """``ncbsim deploy render quickstart --out ROOT``: its PKI and deployment.json."""
    result = run_ncbsim("deploy", "render", "quickstart", "--out", root, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return Deployment.load(root / "deployment.json")


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    """Quickstart rendered, its gateway and bureaus served on loopback; always stopped."""
    root = tmp_path_factory.mktemp("deployed")
    deployment = _render(root)
    pods, run = root / "pods", root / "run"
    run.mkdir()
    bureaus = [b for group in deployment.groups for b in group.bureaus]
    for code in bureaus:  # what `ncbsim deploy run bureaus` makes in each pod's volume
        (pods / code).mkdir(parents=True)
        records = deployment.records
        datagen.generate(
            pods / code / "records.sqlite",
            code,
            seed=deployment.seed,
            documents=records.documents,
            persons=records.persons,
            vehicles=records.vehicles,
            biometrics=records.biometrics,
            workers=1,
        )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        gateway = spawn(
            [
                "gateway",
                "--dir",
                str(root / "pki"),
                "--listen",
                "127.0.0.1:0",
                "--audit",
                str(run / "gateway-audit.sqlite"),
                "--metrics-listen",
                "off",
                "--ready-file",
                str(run / "gateway.json"),
            ],
            run / "gateway.log",
        )
        procs.append(gateway)
        address = str(wait_ready(gateway, run / "gateway.json", run / "gateway.log")["address"])
        spec = run / "host.json"
        entries = [{"bureau": b, "db": str(pods / b / "records.sqlite")} for b in bureaus]
        spec.write_text(json.dumps({"gateway": address, "bureaus": entries}))
        host = spawn(
            [
                "host",
                "--dir",
                str(root / "pki"),
                "--spec",
                str(spec),
                "--metrics-listen",
                "off",
                "--ready-file",
                str(run / "host.json.ready"),
            ],
            run / "host.log",
        )
        procs.append(host)
        wait_ready(host, run / "host.json.ready", run / "host.log")
        yield Deployed(root, deployment, address, pods)
    finally:
        for proc in reversed(procs):
            stop(proc)


def _plan(deployed: Deployed, cache: Path | None = None, *, workers: int = 1) -> LoadPlan:
    """The plan of 2 users; made with the command's own cache unless ``cache`` is given."""
    return plan_for_deployment(
        deployed.deployment,
        deployed.root / "pki",
        deployed.gateway,
        cache or deployed.root / "load-cache",
        users=2,
        seed=7,
        workers=workers,
        deadline_s=60,
    )


def _answered(deployed: Deployed, requesters: list[str]) -> dict[str, int]:
    """Per load target, the envelopes from ``requesters`` its node answered (its audit)."""
    counts = {}
    marks = ",".join("?" * len(requesters))
    for code in deployed.deployment.load_test.targets:
        with sqlite3.connect(deployed.pods / code / "audit.sqlite") as db:
            (counts[code],) = db.execute(
                f"SELECT COUNT(*) FROM audit WHERE outcome = 'answered' AND sender IN ({marks})",
                requesters,
            ).fetchone()
    return counts


def test_the_plan_is_the_same_wherever_it_is_made(deployed: Deployed, tmp_path: Path) -> None:
    """Two plans made apart (each with a cache of its own) are byte-identical, take the
    deployment's requesters, and every planted hit names a record the pods really hold."""
    first, second = _plan(deployed, tmp_path / "a"), _plan(deployed, tmp_path / "b")
    first.save(tmp_path / "a.json")
    second.save(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert first.requesters == list(deployed.deployment.load_test.requesters)[:2]
    assert first.targets == sorted(deployed.deployment.load_test.targets)
    planted = [i for items in first.corpus.values() for i in items if i.expect is not None]
    assert planted
    stores = {b: RecordStore(deployed.pods / b / "records.sqlite") for b in first.targets}
    try:
        assert all(stores[i.to].fetch(i.expect) is not None for i in planted if i.expect)
    finally:
        for store in stores.values():
            store.close()
    # The cache is reused while its stamp matches: no record is made again.
    made = {p: p.stat().st_mtime_ns for p in (tmp_path / "a").glob("*/records.sqlite")}
    _plan(deployed, tmp_path / "a")
    assert {p: p.stat().st_mtime_ns for p in made} == made


def test_load_targets_the_deployed_gateway(deployed: Deployed, tmp_path: Path) -> None:
    """`ncbsim load --target DIR --gateway ADDR` judges a run with no failed request, and
    every load target's node answered the requesters' checks."""
    slo = tmp_path / "slo.toml"
    slo.write_text(NO_FAILED_REQUEST)
    out = tmp_path / "out"
    result = run_ncbsim(
        "load",
        "--target",
        deployed.root,
        "--gateway",
        deployed.gateway,
        "--duration",
        "5s",
        "--users",
        "2",
        "--deadline",
        "60",
        "--slo",
        slo,
        "--out",
        out,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["overall"]["requests"] > 0
    assert verdict["overall"]["failures"] == 0
    plan = LoadPlan.read(out / "plan.json")
    assert plan.gateway == deployed.gateway
    assert all((deployed.root / "load-cache" / b / "records.json").is_file() for b in plan.targets)
    answered = _answered(deployed, plan.requesters)
    assert all(answered.values()), answered


def test_a_master_on_a_ready_plan_and_a_joining_worker(deployed: Deployed, tmp_path: Path) -> None:
    """As the load pods run it: a master on a ready plan with one remote worker, and a
    worker that joins it with its own copy of the plan; the master's verdict counts the
    worker's requests, none failed."""
    plan_path = tmp_path / "plan.json"
    _plan(deployed).save(plan_path)
    slo = tmp_path / "slo.toml"
    slo.write_text(NO_FAILED_REQUEST)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "master"
    ncbsim = [sys.executable, "-m", "ncbsim", "load", "--plan", str(plan_path)]
    master = subprocess.Popen(
        [
            *ncbsim,
            *("--workers", "0", "--remote-workers", "1", "--master-bind", f"127.0.0.1:{port}"),
            *("--users", "2", "--duration", "5s", "--slo", str(slo), "--out", str(out)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    worker = subprocess.Popen(
        [*ncbsim, "--join", f"127.0.0.1:{port}", "--out", str(tmp_path / "worker")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        printed, _ = master.communicate(timeout=400)
        worker.communicate(timeout=60)
    finally:
        for proc in (master, worker):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert master.returncode == 0, printed
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["workers"] == 1
    assert verdict["overall"]["requests"] > 0
    assert verdict["overall"]["failures"] == 0


def test_a_deployment_without_gateway_is_refused(deployed: Deployed, tmp_path: Path) -> None:
    """`--target` of a rendered deployment without `--gateway` is one line and exit 2."""
    result = run_ncbsim("load", "--target", deployed.root, "--out", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "--gateway HOST:PORT" in result.stderr


def test_a_ready_plan_for_other_workers_is_refused(deployed: Deployed, tmp_path: Path) -> None:
    """A master whose workers are not those the plan was made for is refused (exit 2)."""
    plan_path = tmp_path / "plan.json"
    _plan(deployed, workers=1).save(plan_path)
    result = run_ncbsim(
        "load", "--plan", plan_path, "--remote-workers", "2", "--out", tmp_path / "out"
    )
    assert result.returncode == 2
    assert "a plan for 1 locust workers, not 2" in result.stderr
