"""``ncbsim deploy render``: a scenario to a deployment folder (docs/deploy.md).

Writes ``OUT/deployment.json`` (the model), ``OUT/pki/`` (the operator's full PKI, root
key included: it never leaves this machine; reused when it matches the scenario, so a
re-render keeps every key), ``OUT/k8s/*.yaml`` (the manifests, 0600 in a 0700 folder:
they hold the Secrets), ``OUT/compose.yaml`` and ``OUT/compose/`` (its configs and
secrets). The PKI is made as ``ncbsim up`` makes it (simulations/prepare.py): the
scenario's bureaus and users, plus requester-only bureaus for the load pods. Records are
not made here: each bureaus pod generates its own into its volume from the seed.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pycountry
import yaml

import ncbsim
from ncbsim import pki, private
from ncbsim.countries import GENERAL_SECRETARIAT, INTERPOL_MEMBERS
from ncbsim.durations import parse_duration
from ncbsim.errors import ConfigError
from ncbsim.simulations import prepare
from ncbsim.simulations.deploy import bundle, compose, k8s
from ncbsim.simulations.deploy.model import (
    Deployment,
    Load,
    Records,
    check_dns_label,
    cut_groups,
)
from ncbsim.simulations.scenario import loader
from ncbsim.simulations.scenario.model import Scenario
from ncbsim.v2 import directory_pb2

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")


def default_image() -> str:
    """``localhost/ncbsim:<version>``, the reference ``make image`` tags."""
    return f"localhost/ncbsim:{ncbsim.__version__}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Options:
    """What the command line asks of a render; validated on construction."""

    scenario: str
    out: Path
    namespace: str = "ncbsim"
    image: str = field(default_factory=default_image)
    bureaus_per_pod: int = 3
    load_users: int = 10
    load_workers: int = 2
    load_targets: int = 8
    load_duration: str = "60s"
    load_user_rate: float = 10.0
    suite: str | None = None
    gateway_service_type: str = "ClusterIP"

    def __post_init__(self) -> None:
        check_dns_label(self.namespace, "--namespace")
        if self.bureaus_per_pod < 1:
            raise ConfigError(f"--bureaus-per-pod must be at least 1, not {self.bureaus_per_pod}")
        for flag, value in (
            ("--load-users", self.load_users),
            ("--load-workers", self.load_workers),
            ("--load-targets", self.load_targets),
        ):
            if value < 1:
                raise ConfigError(f"{flag} must be at least 1, not {value}")
        parse_duration(self.load_duration, option="--load-duration")
        if not self.load_user_rate > 0:
            raise ConfigError(f"--load-user-rate must be above 0, not {self.load_user_rate}")
        if self.gateway_service_type not in SERVICE_TYPES:
            raise ConfigError(
                f"--gateway-service-type {self.gateway_service_type!r}: choose "
                + ", ".join(SERVICE_TYPES)
            )
        if self.suite is not None:
            pki.suite_id(self.suite)


@dataclass(frozen=True, slots=True)
class Rendered:
    """What a render wrote: where, its files, objects by kind, each bundle's size in bytes."""

    out: Path
    deployment: Deployment
    files: list[Path]
    kinds: dict[str, int]
    sizes: dict[str, int]


def _requester_only(directory: pki.PkiDir, code: str) -> bool:
    signed = directory_pb2.SignedDirectoryEntry.FromString(directory.entry_path(code).read_bytes())
    return directory_pb2.DirectoryEntry.FromString(signed.entry).requester_only


def requesters(bureaus: tuple[str, ...], count: int, taken: set[str]) -> list[str]:
    """``count`` requester codes: INTERPOL members running no node, then (all 196 run one)
    other ISO 3166 codes, alphabetically; never a code in ``taken``."""
    busy = set(bureaus) | taken | {GENERAL_SECRETARIAT}
    members = [c for c in INTERPOL_MEMBERS if c not in busy]
    others = sorted(
        c.alpha_2
        for c in pycountry.countries
        if c.alpha_2 not in busy and c.alpha_2 not in INTERPOL_MEMBERS
    )
    return [*members, *others][:count]


def make_pki(root: Path, scenario: Scenario, load_users: int, suite: str | None) -> pki.PkiDir:
    """The operator's PKI at ``root``: made, or reused if it is this scenario's (a PKI
    holding another network's bureaus is refused). The load's requesters are issued as
    requester-only bureaus; the scenario's users by their bureaus, as ``ncbsim up`` does."""
    directory = pki.PkiDir(root)
    if not directory.ca_key.exists():
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        pki.init(root, list(scenario.bureaus), suite=suite or pki.DEFAULT_SUITE)
    elif suite is not None and directory.suite_name != suite:
        raise ConfigError(f"{root} holds a PKI of the {directory.suite_name} suite, not {suite}")
    private.private_folder(root)
    have = directory.bureaus()
    foreign = [c for c in have if c not in scenario.bureaus and not _requester_only(directory, c)]
    if foreign:
        raise ConfigError(
            f"{root} holds bureaus of another network ({', '.join(foreign)}); "
            "render into a new --out"
        )
    for code in scenario.bureaus:
        if code not in have:
            pki.add_bureau(directory, code)
    prepare.issue_users(directory, scenario.users)
    return directory


def build(options: Options, scenario: Scenario, directory: pki.PkiDir) -> Deployment:
    """The deployment model of ``scenario`` under ``options``; issues missing requesters."""
    have = set(directory.bureaus())
    held = sorted(c for c in have if c not in scenario.bureaus)  # earlier renders' requesters
    codes = (held + requesters(scenario.bureaus, options.load_users, set(held)))[
        : options.load_users
    ]
    if not codes:
        raise ConfigError("no country code is left for a load requester")
    for code in codes:
        if code not in have:
            pki.add_bureau(directory, code, requester_only=True)
    groups = cut_groups(list(scenario.bureaus), options.bureaus_per_pod)
    records = scenario.records
    return Deployment(
        scenario=scenario.name,
        namespace=options.namespace,
        image=options.image,
        seed=scenario.seed,
        suite=directory.suite_name,
        records=Records(
            documents=records.documents,
            persons=records.persons,
            vehicles=records.vehicles,
            biometrics=records.biometrics,
        ),
        bureaus_per_pod=options.bureaus_per_pod,
        groups=groups,
        load_test=Load(
            requesters=tuple(sorted(codes)),
            targets=tuple(sorted(scenario.bureaus)[: options.load_targets]),
            workers=options.load_workers,
            users=options.load_users,
            user_rate=options.load_user_rate,
            duration=options.load_duration,
        ),
    )


class _Dumper(yaml.SafeDumper):
    """Safe YAML with every object written out in full: no ``&id001`` anchors where two
    objects share a dict (labels, mounts), which some readers of manifests refuse."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _dump(objects: list[dict[str, Any]]) -> str:
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, mode)


def render(options: Options) -> Rendered:
    """Render ``options.scenario`` into ``options.out`` (module docstring)."""
    scenario = loader.load(options.scenario)
    out = options.out
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".ncbsim-render"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write there: {exc.strerror}") from None
    directory = make_pki(out / "pki", scenario, options.load_users, options.suite)
    dep = build(options, scenario, directory)
    root = directory.root
    public = bundle.make_bundle(root, bundle.slice_paths(root, "public"))
    keys = {"gateway": bundle.make_bundle(root, bundle.slice_paths(root, "gateway"))}
    for group in dep.groups:
        paths = bundle.slice_paths(root, "group", group.bureaus)
        keys[group.name] = bundle.make_bundle(root, paths)
    keys["load"] = bundle.make_bundle(
        root, bundle.slice_paths(root, "load", dep.load_test.requesters)
    )
    deployment_json = json.dumps(dep.to_json(), indent=2) + "\n"
    deployment_map, public_map = k8s.config_maps(dep, deployment_json, public.decode())

    files: dict[str, list[dict[str, Any]]] = {
        "00-namespace.yaml": [k8s.namespace(dep), *k8s.network_policies(dep)],
        # One ConfigMap a file: podman's --configmap takes a file of one.
        "10-deployment.yaml": [deployment_map],
        "11-public.yaml": [public_map],
        "20-gateway.yaml": k8s.gateway_objects(dep, keys["gateway"], options.gateway_service_type),
    }
    for group in dep.groups:
        files[f"30-{group.name}.yaml"] = k8s.group_objects(dep, group, keys[group.name])
    files["40-load-master.yaml"], files["41-load-workers.yaml"] = k8s.load_objects(
        dep, keys["load"]
    )

    written = [out / "deployment.json"]
    dep.save(written[0])
    folder = out / "k8s"
    folder.mkdir(exist_ok=True, mode=0o700)
    private.private_folder(folder)
    for old in folder.glob("*.yaml"):
        if old.name not in files:  # a group of an earlier render with more pods
            old.unlink()
    for name, objects in files.items():
        _write(folder / name, _dump(objects).encode(), 0o600)
        written.append(folder / name)

    side = out / "compose"
    side.mkdir(exist_ok=True, mode=0o700)
    private.private_folder(side)  # 0700: the files in it are 0644 for the container user
    for old in side.glob("keys-*.json"):
        if old.stem.removeprefix("keys-") not in keys:
            old.unlink()
    _write(side / "deployment.json", deployment_json.encode(), 0o644)
    _write(side / "public.json", public, 0o644)
    for pod, data in keys.items():
        _write(side / f"keys-{pod}.json", data, 0o644)
    _write(out / "compose.yaml", _dump([compose.compose(dep)]).encode(), 0o600)
    written += [out / "compose.yaml", side]

    kinds = Counter(obj["kind"] for objects in files.values() for obj in objects)
    sizes = {"configmap/ncbsim-deployment": len(deployment_json.encode())}
    sizes["configmap/ncbsim-public"] = len(public)
    sizes |= {f"secret/ncbsim-keys-{pod}": len(data) for pod, data in keys.items()}
    return Rendered(out, dep, written, dict(sorted(kinds.items())), sizes)
