"""Configuration of each program: frozen, keyword-only dataclasses that validate themselves.

Environment variables are read here and nowhere else (:func:`log_level_from_env`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ncbsim.errors import ConfigError
from ncbsim.log import LEVELS
from ncbsim.pki import PkiDir, check_bureau_code

if TYPE_CHECKING:
    from ncbsim.gateway.limits import BureauLimit

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


DEFAULT_MAX_ENVELOPE_BYTES = 64 * 1024
"""The largest request the gateway accepts (a MultiQuery: each of its envelopes).

A query envelope is about 250 bytes and an answer with a full record a few KiB, so
64 KiB leaves room for small attachments that later message kinds may carry, while one
refused envelope still costs next to nothing to read. gRPC itself stops any message
above ``transport.MAX_MESSAGE_BYTES`` (4 MiB) before the gateway sees it."""
DEFAULT_RATE_PER_S = 10_000.0
DEFAULT_BURST = 20_000
DEFAULT_DAILY_QUOTA = 100_000_000
"""Per-bureau defaults: far above what ``ncbsim load`` (10 bureaus at about 10 queries a
second each) and ``ncbsim bench`` send. The bench drives one bureau as fast as it can
(about 600 calls a second today; its goal, 0.8 x the plain relay's 1,230, is about
1,000), so the rate is ten times that and the quota lasts a day of it. Only a
deliberately tight configuration refuses anything."""
DEFAULT_CONTROL_RATE_PER_S = 50.0
DEFAULT_CONTROL_BURST = 200
"""Per-bureau control-plane defaults (GetDirectory, Register, Routes). A node registers
every 5 s and fetches an entry for each sender it has not met; a client fetches entries
at start, for a bureau it does not know, every 30 s per peer, and the whole directory
for each query to ALL. Fifty a second with a burst of 200 is far above all of that."""
CONTROL_DAILY_QUOTA = 2**62
"""The control plane has no daily quota: its bucket is the bound."""
DEFAULT_MAX_QUEUE = 10_000
"""Queued copies per recipient before the gateway answers QUEUE_FULL (docs/delivery.md)."""
DEFAULT_MAX_QUEUE_PER_SENDER = 1_000
"""Queued copies one sender may have for one recipient (docs/delivery.md)."""
DEFAULT_MAILBOX_RETENTION_H = 168.0
"""Hours a settled copy's row (metadata and receipt) stays listable by its sender."""


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
    max_envelope_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES
    """Requests (each envelope of a MultiQuery) above this size get RESOURCE_EXHAUSTED."""
    rate_per_s: float = DEFAULT_RATE_PER_S
    """Envelopes a second each bureau may send, sustained (its token bucket's refill)."""
    burst: int = DEFAULT_BURST
    """Envelopes each bureau may send at once (its token bucket's size)."""
    daily_quota: int = DEFAULT_DAILY_QUOTA
    """Envelopes each bureau may send per UTC day."""
    bureau_limits: Mapping[str, BureauLimit] = field(default_factory=dict)
    """Per-bureau overrides of the three limits above (``ncbsim gateway --limits``)."""
    control_rate_per_s: float = DEFAULT_CONTROL_RATE_PER_S
    """GetDirectory, Register and Routes calls a second each bureau may make, sustained.
    A bucket apart from the query budget, so queries never cost a bureau its route."""
    control_burst: int = DEFAULT_CONTROL_BURST
    """GetDirectory, Register and Routes calls each bureau may make at once."""
    mailbox_path: Path | None = None
    """The store of one-way envelopes; None means ``mailbox.sqlite`` next to ``audit_path``."""
    max_queue: int = DEFAULT_MAX_QUEUE
    """Queued (undelivered) copies a recipient may have; a Post over it gets QUEUE_FULL.
    Copies from the General Secretariat (notices) are held to ``max_queue_per_sender`` only."""
    max_queue_per_sender: int = DEFAULT_MAX_QUEUE_PER_SENDER
    """Queued copies one sender may have for one recipient; a Post over it gets QUEUE_FULL
    (so no one bureau can fill another's queue)."""
    delivery_batch: int = 64
    """Copies sent to a bureau in one Bureau.Deliver call."""
    mailbox_retention_h: float = DEFAULT_MAILBOX_RETENTION_H
    """Hours a settled copy's row is kept after settlement (and after its expiry), for
    Gateway.Receipts; then the gateway deletes it. Queued copies are never deleted."""

    @property
    def mailbox_retention_ms(self) -> int:
        """:attr:`mailbox_retention_h` in milliseconds."""
        return round(self.mailbox_retention_h * 3_600_000)

    def __post_init__(self) -> None:
        from ncbsim.transport import MAX_MESSAGE_BYTES

        check_address(self.listen)
        if self.default_deadline_ms <= 0 or self.fanout_margin_ms < 0:
            raise ConfigError("deadlines must be positive")
        if not 0 <= self.query_margin_ms < self.default_deadline_ms:
            raise ConfigError("query_margin_ms must be at least 0 and below default_deadline_ms")
        if self.directory_refresh_ms < 0:
            raise ConfigError("directory_refresh_ms must not be negative")
        if not 1 <= self.max_envelope_bytes <= MAX_MESSAGE_BYTES:
            raise ConfigError(
                f"max_envelope_bytes must be between 1 and {MAX_MESSAGE_BYTES} "
                "(the gRPC message limit)"
            )
        if not (math.isfinite(self.rate_per_s) and self.rate_per_s > 0):
            raise ConfigError("rate must be a positive number of envelopes per second")
        if self.burst < 1 or self.daily_quota < 1:
            raise ConfigError("burst and daily quota must be at least 1")
        if not (math.isfinite(self.control_rate_per_s) and self.control_rate_per_s > 0):
            raise ConfigError("control rate must be a positive number of calls per second")
        if self.control_burst < 1:
            raise ConfigError("control burst must be at least 1")
        if self.max_queue < 1 or self.max_queue_per_sender < 1:
            raise ConfigError("max_queue and max_queue_per_sender must be at least 1")
        if not (math.isfinite(self.mailbox_retention_h) and self.mailbox_retention_h >= 0):
            raise ConfigError("mailbox retention must be a number of hours, 0 or more")
        if not 1 <= self.delivery_batch <= 1024:
            raise ConfigError("delivery_batch must be between 1 and 1024")
        for code in self.bureau_limits:
            check_bureau_code(code)


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
    key_check_interval_s: float = 1.0
    """How often the node looks for a rotation of its own keys and a new revocation list
    in the PKI folder (node.keys): the bound on how long a revocation takes to reach it."""
    advertise: str | None = None
    """The address the node registers with the gateway; None means the bound one. The
    simulator puts a fault proxy there."""
    clock_offset_ms: int = 0
    """The node's clock offset at start (a clock-skew fault; ncbsim.clock)."""
    inbox_path: Path | None = None
    """The node's inbox of one-way messages (node.inbox); None means ``inbox.sqlite``
    next to ``db_path``."""

    def __post_init__(self) -> None:
        check_bureau_code(self.bureau)
        check_address(self.listen)
        check_address(self.gateway)
        if self.advertise is not None:
            check_address(self.advertise)
        if self.register_interval_s <= 0:
            raise ConfigError("register_interval_s must be positive")
        if self.key_check_interval_s <= 0:
            raise ConfigError("key_check_interval_s must be positive")
        if not 0 <= self.clock_skew_ms <= MAX_CLOCK_SKEW_MS:
            raise ConfigError(f"clock_skew_ms must be between 0 and {MAX_CLOCK_SKEW_MS}")
