"""Configuration of each program: frozen, keyword-only dataclasses that validate themselves.

Environment variables are read here and nowhere else (:func:`log_level_from_env`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ncbsim.errors import ConfigError
from ncbsim.log import LEVELS
from ncbsim.pki import PkiDir, check_bureau_code

MAX_CLOCK_SKEW_MS = 3_600_000
"""The largest clock-skew tolerance a node accepts (one hour)."""


def check_address(address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"not a host:port address: {address!r}")


def log_level_from_env(default: str = "info") -> str:
    """The log level from NCBSIM_LOG_LEVEL, if set."""
    level = os.environ.get("NCBSIM_LOG_LEVEL", default).lower()
    if level not in LEVELS:
        raise ConfigError(f"NCBSIM_LOG_LEVEL must be one of {', '.join(LEVELS)}")
    return level


@dataclass(frozen=True, kw_only=True, slots=True)
class GatewayConfig:
    """How a gateway runs."""

    pki: PkiDir
    listen: str = "127.0.0.1:0"
    audit_path: Path
    ready_file: Path | None = None
    default_deadline_ms: int = 5_000
    fanout_margin_ms: int = 150
    query_margin_ms: int = 20
    """Time a single-bureau Query keeps back from the caller's deadline to send its reply."""
    directory_refresh_ms: int = 250
    """How often, at most, admission re-reads the directory folder. A changed or removed
    entry takes effect within this time; a bureau not yet known is looked up at once."""

    def __post_init__(self) -> None:
        check_address(self.listen)
        if self.default_deadline_ms <= 0 or self.fanout_margin_ms < 0:
            raise ConfigError("deadlines must be positive")
        if not 0 <= self.query_margin_ms < self.default_deadline_ms:
            raise ConfigError("query_margin_ms must be at least 0 and below default_deadline_ms")
        if self.directory_refresh_ms < 0:
            raise ConfigError("directory_refresh_ms must not be negative")


@dataclass(frozen=True, kw_only=True, slots=True)
class NodeConfig:
    """How a bureau node runs."""

    pki: PkiDir
    bureau: str
    db_path: Path
    gateway: str
    audit_path: Path | None = None
    """The node's audit log; None means ``audit.sqlite`` next to ``db_path``."""
    listen: str = "127.0.0.1:0"
    ready_file: Path | None = None
    register_interval_s: float = 5.0
    replay_path: Path | None = None
    """The node's replay cache; None means ``replay.sqlite`` next to ``db_path``."""
    clock_skew_ms: int = 30_000
    """How far ahead of this node's clock a sender's ``issued_at_ms`` may be."""

    def __post_init__(self) -> None:
        check_bureau_code(self.bureau)
        check_address(self.listen)
        check_address(self.gateway)
        if self.register_interval_s <= 0:
            raise ConfigError("register_interval_s must be positive")
        if not 0 <= self.clock_skew_ms <= MAX_CLOCK_SKEW_MS:
            raise ConfigError(f"clock_skew_ms must be between 0 and {MAX_CLOCK_SKEW_MS}")
