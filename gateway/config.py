"""How a gateway runs: its configuration, a frozen, keyword-only dataclass that validates
itself, and the defaults of its limits."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ncbsim.config import check_address, metrics_listen_address
from ncbsim.errors import ConfigError
from ncbsim.gateway.limits import BureauLimit
from ncbsim.pki import PkiDir, check_bureau_code
from ncbsim.workdir import GatewayFiles

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
(its rate and goal are in docs/bench.md, which its output regenerates): the rate is
about ten times that, and the quota lasts a day of it. Only a deliberately tight
configuration refuses anything."""
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
    files: GatewayFiles
    """The audit trail and the mailbox (``Workdir(DIR).gateway.files``, or
    ``GatewayFiles.beside(audit)``)."""
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
    metrics_listen: str = "127.0.0.1:0"
    """Where Prometheus metrics are served (a loopback HOST:PORT), or ``off`` (ncbsim.metrics)."""
    metrics_any_address: bool = False
    """Allow ``metrics_listen`` on any address, not only loopback (a pod: its
    NetworkPolicy decides who scrapes; docs/metrics.md)."""
    health_listen: str | None = None
    """A plaintext HOST:PORT answering only ``grpc.health.v1.Health`` (the kubelet's gRPC
    probe has no TLS; ncbsim.serving.start_health_port); None: no such port."""
    classroom_attacks: Path | None = None
    """The attack mode file of a classroom-mode gateway (``ncbsim classroom`` only,
    ncbsim.gateway.attacks); None, always outside the classroom: an honest gateway."""

    @property
    def mailbox_retention_ms(self) -> int:
        """:attr:`mailbox_retention_h` in milliseconds."""
        return round(self.mailbox_retention_h * 3_600_000)

    def _check_addresses(self) -> None:
        check_address(self.listen)
        metrics_listen_address(self.metrics_listen, any_address=self.metrics_any_address)
        if self.health_listen is not None:
            check_address(self.health_listen)

    def __post_init__(self) -> None:
        from ncbsim.transport import MAX_MESSAGE_BYTES

        self._check_addresses()
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
