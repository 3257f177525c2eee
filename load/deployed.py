"""The load plan of a deployed network (``ncbsim load --target DIR`` of a rendered one).

A deployed network's records are made in its pods, from the deployment's seed and counts
(``ncbsim deploy run bureaus``): :mod:`ncbsim.node.datagen` gives the same records for the
same bureau, seed and counts wherever it runs. So the query corpus is drawn from those
same records, made again here, in a local cache (``CACHE/XX/records.sqlite``, the load
targets only), by the code the pods make them with (:mod:`ncbsim.simulations.deploy.records`).
A bureau's cache is reused while its stamp (``CACHE/XX/records.json``: seed and counts)
matches the deployment, and made again when it does not.

The requesters are the deployment's (``load.requesters``): their keys were issued when it
was rendered, and the deployed gateway serves only those. Nothing here issues a key.

The same deployment, PKI folder, gateway, seed and counts always give the same plan, byte
for byte, so each locust pod of the cluster can make the plan itself.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ncbsim.errors import ConfigError
from ncbsim.load.plan import LoadPlan, build_corpus
from ncbsim.node.store import RecordStore
from ncbsim.pki import PkiDir
from ncbsim.simulations.deploy.model import Deployment
from ncbsim.simulations.deploy.pod import record_counts
from ncbsim.simulations.deploy.records import ensure_records, holds
from ncbsim.workdir import BureauDir


def cached_records(
    deployment: Deployment, cache: Path, bureaus: list[str], *, processes: int | None = None
) -> dict[str, Path]:
    """Each of ``bureaus``' records as its pod made them, made again into ``cache/XX`` if
    needed, by the pods' own code (:func:`ensure_records`: a stamp per bureau, written
    once its database is complete). A bureau's cache made with other figures is removed
    first: unlike a pod's volume, it holds nothing but records.
    """
    counts = record_counts(deployment)
    folders = {code: cache / code for code in bureaus}
    missing = 0
    for code, folder in folders.items():
        held = holds(folder, code, counts)
        if held is None:
            shutil.rmtree(folder)
        missing += not held
    if missing:
        print(f"making the records of {missing} bureaus into {cache}", flush=True)
    ensure_records(folders, counts, processes=processes)
    return {code: BureauDir(folder).records for code, folder in folders.items()}


def plan_for_deployment(
    deployment: Deployment,
    pki_dir: Path,
    gateway: str,
    cache: Path,
    *,
    users: int,
    seed: int,
    workers: int,
    deadline_s: float,
    processes: int | None = None,
) -> LoadPlan:
    """The load plan against ``deployment``'s gateway at ``gateway``.

    ``users`` users take the deployment's requesters in order (sharing them round-robin
    beyond); ``pki_dir`` must hold their keys (the operator's PKI, or a load pod's slice);
    ``workers`` is the number of locust worker processes that will run the users;
    ``processes`` how many make the records at once (default one per CPU; a pod with a
    memory limit passes 1).
    """
    if users < 1:
        raise ConfigError("--users must be at least 1")
    requesters = list(deployment.load_test.requesters)[:users]
    if not requesters:
        raise ConfigError(f"deployment {deployment.scenario}: load.requesters is empty")
    directory = PkiDir(pki_dir)
    for code in requesters:
        if not (directory.party(code) / "tls.key").is_file():
            raise ConfigError(
                f"{pki_dir}: no keys of requester {code}; render the deployment again"
            )
    targets = sorted(deployment.load_test.targets)
    paths = cached_records(deployment, cache, targets, processes=processes)
    stores = {b: RecordStore(p) for b, p in paths.items()}
    try:
        corpus = build_corpus(stores, seed)
    finally:
        for store in stores.values():
            store.close()
    return LoadPlan(
        gateway=gateway,
        pki_dir=str(pki_dir),
        targets=targets,
        requesters=requesters,
        corpus=corpus,
        workers=max(workers, 1),
        deadline_s=deadline_s,
        scenario=deployment.scenario,
    )


def write_plan(args: argparse.Namespace, out: Path) -> LoadPlan:
    """``--target DIR`` of a rendered deployment: its plan, written to ``out/plan.json``."""
    target: Path = args.target.resolve()
    plan = plan_for_deployment(
        Deployment.load(target / "deployment.json"),
        target / "pki",
        args.gateway,
        target / "load-cache",
        users=args.users,
        seed=args.seed,
        workers=args.workers + args.remote_workers,
        deadline_s=args.deadline,
    )
    plan.save(out / "plan.json")
    return plan
