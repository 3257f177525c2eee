"""Prometheus metrics of one party (the gateway, or one bureau's node), served over HTTP.

Each party owns a :class:`Metrics` (``GatewayMetrics`` or ``NodeMetrics``): a
``prometheus_client.CollectorRegistry`` of its own, never the process-wide default, so
a host process serving many nodes gives each node its own registry and its own
``/metrics`` endpoint (:func:`serve`), and a Prometheus target is one party.

A registry holds the standard gRPC families, named as go-grpc-prometheus and
py-grpc-prometheus name them (``grpc_server_started_total``, ``grpc_server_handled_total``,
``grpc_server_handling_seconds``, ``grpc_server_msg_received_total``,
``grpc_server_msg_sent_total``, and the same ``grpc_client_*``), filled by the
interceptors of :mod:`ncbsim._grpc_metrics`; and ncbsim's own families, prefixed
``ncbsim_``, filled by one short call at each site (``metrics.refused(rpc, reason)``) or
read at scrape time (the mailbox queues, the audit writer's lag). docs/metrics.md lists
every family.

Labels hold only short codes: a method name, a status code, an envelope kind, an outcome,
a refusal reason (:func:`ncbsim.errors.reason_for`), a bureau code. Never a payload, a
query term, a name or a key. The endpoint listens on loopback only
(:func:`ncbsim.config.metrics_listen_address`), unless ``--metrics-any-address`` (a pod).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ncbsim._grpc_metrics import (
    GO_CODES,
    Children,
    MeteredChannel,
    ServerMetricsInterceptor,
    client_interceptors,
)
from ncbsim.config import metrics_listen_address
from ncbsim.envelope import kind_name
from ncbsim.errors import ConfigError

__all__ = ["GO_CODES", "GatewayMetrics", "Metrics", "NodeMetrics", "serve"]

DEFAULT_LISTEN = "127.0.0.1:0"

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Seconds. Finer than prometheus_client's defaults at the low end: a query takes a few
milliseconds, and its p50 must not fall in the first bucket."""
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 86400.0)
"""Seconds a one-way copy waited at the gateway: from milliseconds to a day."""

_GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")


def kind_label(kind: str) -> str:
    """An envelope kind as a label: ``unknown(N)`` (a number a sender made up) becomes
    ``unknown``, so no sender can grow the label set."""
    return "unknown" if kind.startswith("unknown") else kind


class _Kinded(Protocol):
    @property
    def kind(self) -> int: ...


def envelope_kind(header: _Kinded | None) -> str:
    """The ``kind`` label of an envelope's header (``unknown`` when there is none)."""
    if header is None:
        return "unknown"
    return kind_label(kind_name(header.kind))


class _LagSource(Protocol):
    def lag_s(self) -> float: ...


class _EventSource(Protocol):
    dropped: int

    @property
    def subscribers(self) -> int: ...


class _MailboxView(Protocol):
    def recipients(self) -> list[str]: ...
    def queued(self, recipient: str | None = None, *, sender: str | None = None) -> int: ...
    def oldest_queued_ms(self) -> dict[str, int]: ...


class Metrics:
    """The registry of one party and the families every party exports.

    ``party`` is "gateway" or a bureau code. The methods are what the instrumented
    sites call: each is one short call and never raises on a label it has not seen.
    """

    def __init__(self, party: str) -> None:
        self.party = party
        self.registry = CollectorRegistry()
        reg = self.registry
        self.server_started = Counter(
            "grpc_server_started_total", "RPCs started on the server.", _GRPC_LABELS, registry=reg
        )
        self.server_handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, whatever their status.",
            (*_GRPC_LABELS, "grpc_code"),
            registry=reg,
        )
        self.server_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Seconds from the start of an RPC on the server to its status.",
            _GRPC_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.server_received = Counter(
            "grpc_server_msg_received_total",
            "Messages received on the server (stream messages each count).",
            _GRPC_LABELS,
            registry=reg,
        )
        self.server_sent = Counter(
            "grpc_server_msg_sent_total",
            "Messages sent by the server (stream messages each count).",
            _GRPC_LABELS,
            registry=reg,
        )
        self.client_started = Counter(
            "grpc_client_started_total", "RPCs started by this party.", _GRPC_LABELS, registry=reg
        )
        self.client_handled = Counter(
            "grpc_client_handled_total",
            "RPCs this party started that completed, whatever their status.",
            (*_GRPC_LABELS, "grpc_code"),
            registry=reg,
        )
        self.client_seconds = Histogram(
            "grpc_client_handling_seconds",
            "Seconds from the start of an RPC by this party to its status.",
            _GRPC_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.client_received = Counter(
            "grpc_client_msg_received_total",
            "Messages this party received on its calls.",
            _GRPC_LABELS,
            registry=reg,
        )
        self.client_sent = Counter(
            "grpc_client_msg_sent_total",
            "Messages this party sent on its calls.",
            _GRPC_LABELS,
            registry=reg,
        )
        self._envelopes = Counter(
            "ncbsim_envelopes_total",
            "Envelopes handled, by kind and outcome.",
            ("kind", "outcome"),
            registry=reg,
        )
        self._refusals = Counter(
            "ncbsim_refusals_total",
            "Requests refused, by RPC and reason (a short stable code).",
            ("rpc", "reason"),
            registry=reg,
        )
        self._directory = Counter(
            "ncbsim_directory_refreshes_total",
            "Directory refreshes (gateway: its folder; node: entries fetched from the "
            "gateway), by outcome.",
            ("outcome",),
            registry=reg,
        )
        self._revocations = Counter(
            "ncbsim_revocation_refreshes_total",
            "Revocation lists looked at, by outcome (adopted, unchanged, refused).",
            ("outcome",),
            registry=reg,
        )
        self._audit_lag = Gauge(
            "ncbsim_audit_writer_lag_seconds",
            "Age of the oldest audit row handed to the writer and not yet committed (0: none).",
            registry=reg,
        )
        self._audit_lag.set_function(lambda: 0.0)
        self.server_families = (
            self.server_started,
            self.server_handled,
            self.server_seconds,
            self.server_received,
            self.server_sent,
        )
        self.client_families = (
            self.client_started,
            self.client_handled,
            self.client_seconds,
            self.client_received,
            self.client_sent,
        )
        self._children: dict[tuple[str, tuple[str, str, str]], Children] = {}
        self._envelope_children: dict[tuple[str, str], Any] = {}

    # ------------------------------------------------------------- interceptors

    def children(self, side: str, labels: tuple[str, str, str]) -> Children:
        """The labelled children of one method on ``side`` ("server" or "client"),
        made once: ``labels`` is (grpc_type, grpc_service, grpc_method)."""
        key = (side, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = Children(self, side, labels)
        return found

    def server_interceptor(self) -> grpc.aio.ServerInterceptor:
        """The interceptor that fills the ``grpc_server_*`` families."""
        return ServerMetricsInterceptor(self)

    def client_interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        """Interceptors of this party's channels (unary-unary and unary-stream calls)
        that fill the ``grpc_client_*`` families."""
        return client_interceptors(self)

    def metered(self, channel: grpc.aio.Channel) -> grpc.aio.Channel:
        """``channel`` counted in the ``grpc_client_*`` families without a grpc.aio
        interceptor (:class:`~ncbsim._grpc_metrics.MeteredChannel`): for the stubs of a
        hot path whose callers only await their calls."""
        return MeteredChannel(channel, self)

    # ------------------------------------------------------------- sites

    def envelope(self, kind: str, outcome: str) -> None:
        """One envelope of ``kind`` (``query_request``, ``notice``...) ended as ``outcome``."""
        child = self._envelope_children.get((kind, outcome))
        if child is None:  # each (kind, outcome) looked up once: a bounded set of codes
            child = self._envelopes.labels(kind_label(kind), outcome)
            if not kind.startswith("unknown"):
                self._envelope_children[(kind, outcome)] = child
        child.inc()

    def refused(self, rpc: str, reason: str) -> None:
        """``rpc`` refused a request for ``reason`` (:func:`~ncbsim.errors.reason_for`)."""
        self._refusals.labels(rpc, reason).inc()

    def directory_refreshed(self, outcome: str) -> None:
        """A directory refresh ended as ``outcome`` (``changed``, ``unchanged``, ``fetched``,
        ``failed``)."""
        self._directory.labels(outcome).inc()

    def revocations_refreshed(self, outcome: str) -> None:
        """A revocation list was looked at: ``adopted``, ``unchanged`` or ``refused``."""
        self._revocations.labels(outcome).inc()

    def watch_audit(self, log: _LagSource) -> None:
        """Read ``ncbsim_audit_writer_lag_seconds`` from ``log`` at each scrape."""
        self._audit_lag.set_function(log.lag_s)

    def watch_events(self, bus: _EventSource) -> None:
        """Read the party's event stream at each scrape: its subscribers now
        (``ncbsim_observe_subscribers``) and the events they lost
        (``ncbsim_observe_dropped_total``)."""
        self.registry.register(EventsCollector(bus))


class NodeMetrics(Metrics):
    """A bureau node's metrics: every party's, and replays caught."""

    def __init__(self, party: str) -> None:
        super().__init__(party)
        self._replays = Counter(
            "ncbsim_replays_total",
            "Envelopes refused because this node had answered them already.",
            registry=self.registry,
        )

    def handled(self, header: _Kinded | None, reason: str) -> None:
        """Handle answered an envelope (``reason`` empty) or refused it for ``reason``."""
        self.envelope(envelope_kind(header), "refused" if reason else "answered")
        if reason:
            self.refused("Handle", reason)

    def replay(self) -> None:
        """An envelope came again (ALREADY_EXISTS)."""
        self._replays.inc()


class GatewayMetrics(Metrics):
    """The gateway's metrics: every party's, the relay, the rate limits and the mailbox."""

    def __init__(self, party: str = "gateway") -> None:
        super().__init__(party)
        reg = self.registry
        self._relay = Histogram(
            "ncbsim_relay_seconds",
            "Seconds from an admitted query envelope to its recipient node's status.",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self._delivery_lag = Histogram(
            "ncbsim_delivery_lag_seconds",
            "Seconds from a one-way copy's acceptance to its delivery (receipt verified).",
            buckets=LAG_BUCKETS,
            registry=reg,
        )
        self._rate_limited = Counter(
            "ncbsim_rate_limited_total",
            "Envelopes refused over a bureau's rate limit or daily quota.",
            registry=reg,
        )

    def refusal(
        self, rpc: str, reason: str, headers: Sequence[_Kinded | None], *, limited: bool
    ) -> None:
        """``rpc`` refused a request for ``reason``: count it, each envelope it held
        (``refused``, by kind), and them too as rate-limited if ``limited``."""
        self.refused(rpc, reason)
        for header in headers:
            self.envelope(envelope_kind(header), "refused")
        if limited:
            self.rate_limited(max(len(headers), 1))

    def relay(self, header: _Kinded, outcome: str, seconds: float) -> None:
        """One query envelope relayed to its node: ``delivered``, ``no_answer`` or
        ``refused`` (by the node) after ``seconds``."""
        self.envelope(envelope_kind(header), outcome)
        self._relay.observe(seconds)

    def delivered(self, lag_s: float) -> None:
        """A one-way copy was delivered ``lag_s`` seconds after it was accepted."""
        self._delivery_lag.observe(max(lag_s, 0.0))

    def rate_limited(self, envelopes: int = 1) -> None:
        """``envelopes`` were refused over a rate limit or quota."""
        self._rate_limited.inc(envelopes)

    def watch_mailbox(self, mailbox: _MailboxView, clock: Callable[[], float] = time.time) -> None:
        """Export the mailbox's queues, read at each scrape (:class:`MailboxCollector`)."""
        self.registry.register(MailboxCollector(mailbox, clock))


class MailboxCollector(Collector):
    """``ncbsim_mailbox_depth`` and ``ncbsim_mailbox_oldest_seconds`` per recipient, read
    from the mailbox when Prometheus scrapes: its in-memory counts, and one indexed
    read of each queue's first copy, on a connection of the scrape's own."""

    def __init__(self, mailbox: _MailboxView, clock: Callable[[], float]) -> None:
        self._mailbox = mailbox
        self._clock = clock

    def describe(self) -> list[GaugeMetricFamily]:
        return [self._depth(), self._oldest()]

    @staticmethod
    def _depth() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "ncbsim_mailbox_depth", "One-way copies queued for a recipient.", labels=["recipient"]
        )

    @staticmethod
    def _oldest() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "ncbsim_mailbox_oldest_seconds",
            "Age of the oldest copy queued for a recipient.",
            labels=["recipient"],
        )

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth, oldest = self._depth(), self._oldest()
        for recipient in self._mailbox.recipients():
            depth.add_metric([recipient], self._mailbox.queued(recipient))
        now_ms = self._clock() * 1000
        for recipient, accepted_ms in sorted(self._mailbox.oldest_queued_ms().items()):
            oldest.add_metric([recipient], max(now_ms - accepted_ms, 0.0) / 1000)
        yield depth
        yield oldest


class EventsCollector(Collector):
    """The event stream's figures, read from the bus at scrape time."""

    def __init__(self, bus: _EventSource) -> None:
        self._bus = bus

    def describe(self) -> list[Metric]:
        return list(self._families(0, 0))

    @staticmethod
    def _families(subscribers: int, dropped: int) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "ncbsim_observe_subscribers", "Observe subscriptions attached to this party now."
        )
        gauge.add_metric([], subscribers)
        yield gauge
        counter = CounterMetricFamily(
            "ncbsim_observe_dropped",
            "Events Observe subscribers of this party lost because they read too slowly "
            "(their buffer was full; the oldest went).",
        )
        counter.add_metric([], dropped)
        yield counter

    def collect(self) -> Iterator[Metric]:
        yield from self._families(self._bus.subscribers, self._bus.dropped)


@dataclass(slots=True)
class Endpoint:
    """A running ``/metrics`` HTTP server: its address, and how to stop it."""

    address: str
    server: WSGIServer
    thread: threading.Thread

    def close(self) -> None:
        """Stop serving and free the port."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve(
    metrics: Metrics | CollectorRegistry, listen: str, *, any_address: bool = False
) -> Endpoint | None:
    """Serve ``metrics`` (a party's, or any registry) on ``listen`` (loopback HOST:PORT,
    any address with ``any_address``; port 0: any free one; ``off``: None).

    prometheus_client's own HTTP server, in a daemon thread: ``/metrics`` (and ``/``)
    answer the text format, gzipped when asked.
    """
    where = metrics_listen_address(listen, any_address=any_address)
    if where is None:
        return None
    host, port = where
    registry = metrics.registry if isinstance(metrics, Metrics) else metrics
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {listen}: {exc.strerror or exc}") from None
    bound = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    return Endpoint(f"{shown}:{bound}", server, thread)
