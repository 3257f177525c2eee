"""How a bureau node runs: its configuration, a frozen, keyword-only dataclass that
validates itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ncbsim.config import check_address, metrics_listen_address
from ncbsim.errors import ConfigError
from ncbsim.node.caps import DEFAULT_DAILY_CAP
from ncbsim.pki import PkiDir, check_bureau_code
from ncbsim.workdir import BureauFiles

MAX_CLOCK_SKEW_MS = 3_600_000
"""The largest clock-skew tolerance a node accepts (one hour)."""
ADVERTISE_AUTO = "auto"
"""``advertise: "auto"``: register the local address that routes to the gateway."""


@dataclass(frozen=True, kw_only=True, slots=True)
class NodeConfig:
    """How a bureau node runs."""

    pki: PkiDir
    bureau: str
    files: BureauFiles
    """The bureau's records and its node's databases (``Workdir(DIR).bureau(XX).files``, or
    ``BureauFiles.beside(records)``)."""
    gateway: str
    listen: str = "127.0.0.1:0"
    ready_file: Path | None = None
    register_interval_s: float = 5.0
    clock_skew_ms: int = 30_000
    """How far ahead of this node's clock a sender's ``issued_at_ms`` may be."""
    key_check_interval_s: float = 1.0
    """How often the node looks for a rotation of its own keys and a new revocation list
    in the PKI folder (ncbsim.node.keys): the bound on how long a revocation takes to reach it."""
    advertise: str | None = None
    """The address the node registers with the gateway; None means the bound one (as is:
    a node bound to ``0.0.0.0:PORT`` registers that, which reaches it only from its own
    machine). The simulator puts a fault proxy there. ``auto`` (:data:`ADVERTISE_AUTO`,
    what pods use): the address of this machine's interface that routes to the gateway,
    with the bound port (ncbsim.node.advertise)."""
    clock_offset_ms: int = 0
    """The node's clock offset at start (a clock-skew fault; ncbsim.clock)."""
    metrics_listen: str = "127.0.0.1:0"
    """Where this node's Prometheus metrics are served (a loopback HOST:PORT), or ``off``."""
    metrics_any_address: bool = False
    """Allow ``metrics_listen`` on any address, not only loopback (a pod; docs/metrics.md)."""
    biometric_daily_cap: int = DEFAULT_DAILY_CAP
    """Biometric searches each requesting bureau may make here a UTC day (Prüm;
    ncbsim.node.caps)."""

    def __post_init__(self) -> None:
        check_bureau_code(self.bureau)
        check_address(self.listen)
        metrics_listen_address(self.metrics_listen, any_address=self.metrics_any_address)
        check_address(self.gateway)
        if self.advertise is not None and self.advertise != ADVERTISE_AUTO:
            check_address(self.advertise)
        if self.register_interval_s <= 0:
            raise ConfigError("register_interval_s must be positive")
        if self.key_check_interval_s <= 0:
            raise ConfigError("key_check_interval_s must be positive")
        if self.biometric_daily_cap < 0:
            raise ConfigError("biometric_daily_cap cannot be negative")
        if not 0 <= self.clock_skew_ms <= MAX_CLOCK_SKEW_MS:
            raise ConfigError(f"clock_skew_ms must be between 0 and {MAX_CLOCK_SKEW_MS}")
