"""The deployment model: what ``ncbsim deploy render`` decided, as ``deployment.json``.

One :class:`Deployment` (frozen, validated on construction) says which scenario runs, in
which namespace and image, with which records, how the bureaus are cut into pods
(:class:`Group`: ``bureaus-N``, K bureaus each, sorted), on which ports, and what the load
pods do. The manifests, the Compose file and the pods' own start (``ncbsim deploy run``)
all read this one file, so they cannot disagree. Version 1::

    {"version": 1, "scenario": "quickstart", "namespace": "ncbsim",
     "image": "localhost/ncbsim:0.1.0", "seed": 2024, "suite": "classic",
     "records": {"documents": 2000, "persons": 500, "vehicles": 500, "biometrics": 50},
     "gateway": {"service": "gateway", "port": 7600, "health_port": 7601, "metrics_port": 9600},
     "pod": {"health_port": 7690, "metrics_port": 9600, "first_port": 7700},
     "bureaus_per_pod": 3,
     "groups": [{"name": "bureaus-0", "bureaus": ["DE", "ES", "FR"]}, ...],
     "load": {"requesters": ["AD", "AE"], "targets": ["DE", ...], "service": "load-master",
              "master_port": 5557, "workers": 2, "users": 10, "user_rate": 10.0,
              "duration": "60s", "seed": 1}}

Bureau ``i`` of a group listens on ``pod.first_port + i``. The ``load`` section is the
attribute ``load_test`` (``load`` is the classmethod that reads the file). A bad file is one
:class:`~ncbsim.errors.ConfigError` line naming the file and the key.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ncbsim import pki
from ncbsim.errors import ConfigError, PkiError

VERSION = 1
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
"""An RFC 1123 label, as Kubernetes wants namespace and object names (63 at most)."""


def check_dns_label(value: str, what: str) -> str:
    """``value`` if it is a DNS-1123 label (lower-case alphanumerics and ``-``, 1-63 long,
    alphanumeric at both ends); ConfigError naming ``what`` otherwise."""
    if len(value) > 63 or not DNS_LABEL.match(value):
        raise ConfigError(
            f"{what} {value!r} is not a DNS-1123 label (lower-case letters, digits and '-', "
            "at most 63, starting and ending with a letter or digit)"
        )
    return value


def _port(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(f"{what}: expected a port 1-65535, got {value!r}")
    return value


def _codes(codes: tuple[str, ...], what: str) -> None:
    for code in codes:
        try:
            pki.check_bureau_code(code)
        except PkiError:
            raise ConfigError(f"{what}: not a bureau code: {code!r}") from None
    if len(set(codes)) != len(codes):
        raise ConfigError(f"{what}: a bureau is named twice")


@dataclass(frozen=True, kw_only=True, slots=True)
class Records:
    """Each bureau's record counts; the pods generate them from the deployment's seed."""

    documents: int
    persons: int
    vehicles: int
    biometrics: int = 0

    def __post_init__(self) -> None:
        for name in ("documents", "persons", "vehicles", "biometrics"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"records.{name}: expected a count >= 0, got {value!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class GatewayPorts:
    """The gateway's Service name and its ports (mTLS gRPC, plaintext health, metrics)."""

    service: str = "gateway"
    port: int = 7600
    health_port: int = 7601
    metrics_port: int = 9600

    def __post_init__(self) -> None:
        check_dns_label(self.service, "gateway.service")
        ports = (self.port, self.health_port, self.metrics_port)
        for name, value in zip(("port", "health_port", "metrics_port"), ports, strict=True):
            _port(value, f"gateway.{name}")
        if len(set(ports)) != 3:
            raise ConfigError("gateway: its three ports must differ")


@dataclass(frozen=True, kw_only=True, slots=True)
class PodPorts:
    """A bureaus pod's ports: health and metrics (one each for the pod), and the first
    bureau's gRPC port (bureau ``i`` of the group on ``first_port + i``)."""

    health_port: int = 7690
    metrics_port: int = 9600
    first_port: int = 7700


@dataclass(frozen=True, kw_only=True, slots=True)
class Group:
    """One pod of bureaus: its name (``bureaus-N``) and its bureaus, sorted."""

    name: str
    bureaus: tuple[str, ...]

    def __post_init__(self) -> None:
        check_dns_label(self.name, "group name")
        if not self.bureaus:
            raise ConfigError(f"group {self.name}: no bureaus")
        _codes(self.bureaus, f"group {self.name}")
        if list(self.bureaus) != sorted(self.bureaus):
            raise ConfigError(f"group {self.name}: bureaus must be sorted")


@dataclass(frozen=True, kw_only=True, slots=True)
class Load:
    """The load pods: requester bureaus (requester-only keys issued at render time), the
    bureaus they query, the locust master's Service and port, workers and users."""

    requesters: tuple[str, ...]
    targets: tuple[str, ...]
    service: str = "load-master"
    master_port: int = 5557
    workers: int = 2
    users: int = 10
    user_rate: float = 10.0
    duration: str = "60s"
    seed: int = 1

    def __post_init__(self) -> None:
        if not self.requesters or not self.targets:
            raise ConfigError("load: needs requesters and targets")
        _codes(self.requesters, "load.requesters")
        _codes(self.targets, "load.targets")
        if set(self.requesters) & set(self.targets):
            raise ConfigError("load: a requester is also a target")
        check_dns_label(self.service, "load.service")
        _port(self.master_port, "load.master_port")
        if self.workers < 1 or self.users < 1 or self.user_rate <= 0:
            raise ConfigError("load: workers and users must be at least 1, user_rate above 0")


@dataclass(frozen=True, kw_only=True, slots=True)
class Deployment:
    """A rendered deployment (module docstring); construction validates it."""

    scenario: str
    namespace: str
    image: str
    seed: int
    suite: str
    records: Records
    groups: tuple[Group, ...]
    load_test: Load
    bureaus_per_pod: int
    gateway: GatewayPorts = field(default_factory=GatewayPorts)
    pod: PodPorts = field(default_factory=PodPorts)
    version: int = VERSION

    def __post_init__(self) -> None:
        if self.version != VERSION:
            raise ConfigError(f"version {self.version!r} is not {VERSION}")
        check_dns_label(self.namespace, "namespace")
        if not self.image or any(c.isspace() for c in self.image):
            raise ConfigError(f"image: not an image reference: {self.image!r}")
        if self.suite not in pki.SUITES:
            raise ConfigError(f"suite: unknown suite {self.suite!r}")
        if self.bureaus_per_pod < 1:
            raise ConfigError("bureaus_per_pod: expected at least 1")
        if not self.groups:
            raise ConfigError("groups: no group of bureaus")
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise ConfigError("groups: a group name is used twice")
        _codes(self.bureaus, "groups")
        for group in self.groups:
            if len(group.bureaus) > self.bureaus_per_pod:
                raise ConfigError(f"group {group.name}: more than {self.bureaus_per_pod} bureaus")
        unknown = set(self.load_test.targets) - set(self.bureaus)
        if unknown:
            raise ConfigError(f"load.targets: {', '.join(sorted(unknown))} run no node")
        if set(self.load_test.requesters) & set(self.bureaus):
            raise ConfigError("load.requesters: a requester runs a node")
        ports = [self.pod.health_port, self.pod.metrics_port]
        ports += [self.pod.first_port + i for i in range(self.bureaus_per_pod)]
        for port in ports:
            _port(port, "pod")
        if len(set(ports)) != len(ports):
            raise ConfigError("pod: health, metrics and bureau ports overlap")

    @property
    def bureaus(self) -> tuple[str, ...]:
        """Every bureau that runs a node, in group order (sorted)."""
        return tuple(code for group in self.groups for code in group.bureaus)

    def group(self, name: str) -> Group:
        """The group called ``name``; ConfigError listing the groups if there is none."""
        for group in self.groups:
            if group.name == name:
                return group
        known = ", ".join(g.name for g in self.groups)
        raise ConfigError(f"no group {name!r} in the deployment (groups: {known})")

    def port_of(self, bureau: str) -> int:
        """The port bureau ``bureau`` listens on inside its pod."""
        for group in self.groups:
            if bureau in group.bureaus:
                return self.pod.first_port + group.bureaus.index(bureau)
        raise ConfigError(f"{bureau} runs no node in this deployment")

    def to_json(self) -> dict[str, Any]:
        """The ``deployment.json`` document."""
        data = asdict(self)
        data["load"] = data.pop("load_test")
        order = ["version", "scenario", "namespace", "image", "seed", "suite", "records"]
        order += ["gateway", "pod", "bureaus_per_pod", "groups", "load"]
        return {key: data[key] for key in order}

    @classmethod
    def from_json(cls, data: object) -> Deployment:
        """Parse a ``deployment.json`` document; ConfigError naming what is wrong."""
        if not isinstance(data, dict):
            raise ConfigError("expected a JSON object")
        try:
            load = dict(data["load"])
            load["requesters"] = tuple(load["requesters"])
            load["targets"] = tuple(load["targets"])
            return cls(
                version=data["version"],
                scenario=data["scenario"],
                namespace=data["namespace"],
                image=data["image"],
                seed=data["seed"],
                suite=data["suite"],
                records=Records(**data["records"]),
                gateway=GatewayPorts(**data["gateway"]),
                pod=PodPorts(**data["pod"]),
                bureaus_per_pod=data["bureaus_per_pod"],
                groups=tuple(
                    Group(name=g["name"], bureaus=tuple(g["bureaus"])) for g in data["groups"]
                ),
                load_test=Load(**load),
            )
        except KeyError as exc:
            raise ConfigError(f"missing key {exc.args[0]!r}") from None
        except TypeError as exc:  # an unknown key, or a value of the wrong shape
            raise ConfigError(f"malformed: {exc}") from None

    @classmethod
    def load(cls, path: Path) -> Deployment:
        """Read ``path`` (a ``deployment.json``); ConfigError naming the file if it is bad."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not JSON: {exc}") from None
        try:
            return cls.from_json(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def save(self, path: Path) -> None:
        """Write ``deployment.json`` (public: it names no key)."""
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")


def cut_groups(bureaus: list[str], per_pod: int) -> tuple[Group, ...]:
    """The bureaus sorted, cut into runs of ``per_pod``: ``bureaus-0``, ``bureaus-1``..."""
    if per_pod < 1:
        raise ConfigError(f"--bureaus-per-pod must be at least 1, not {per_pod}")
    ordered = sorted(bureaus)
    return tuple(
        Group(name=f"bureaus-{n}", bureaus=tuple(ordered[i : i + per_pod]))
        for n, i in enumerate(range(0, len(ordered), per_pod))
    )
