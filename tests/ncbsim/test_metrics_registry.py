"""One party's metrics: the gRPC interceptors' families, ncbsim's own, the loopback-only
endpoint, and the mailbox read at scrape time."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from ncbsim import config, envelope, metrics
from ncbsim.errors import ConfigError

CHECK = ("unary", "grpc.health.v1.Health", "Check")
WATCH = ("server_stream", "grpc.health.v1.Health", "Watch")


def value(m: metrics.Metrics, name: str, **labels: str) -> float:
    """A sample's value in ``m``'s registry (0 when it was never counted)."""
    return m.registry.get_sample_value(name, labels) or 0.0


async def _calls(server_metrics: metrics.Metrics, client_metrics: metrics.Metrics) -> None:
    server = grpc.aio.server(interceptors=[server_metrics.server_interceptor()])
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", interceptors=client_metrics.client_interceptors()
        ) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for _ in range(3):
                await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
            watch: AsyncIterator[health_pb2.HealthCheckResponse] = stub.Watch(
                health_pb2.HealthCheckRequest(service=""), timeout=10
            )
            seen = []
            async for reply in watch:
                seen.append(reply.status)
                if len(seen) == 1:
                    await servicer.enter_graceful_shutdown()  # NOT_SERVING
                else:
                    break  # the client hangs up: the server sees the call cancelled
            assert seen == [
                health_pb2.HealthCheckResponse.SERVING,
                health_pb2.HealthCheckResponse.NOT_SERVING,
            ]
    finally:
        await server.stop(None)


def test_interceptors_count_unary_calls_aborts_and_streams() -> None:
    """Three OK calls, one abort (NOT_FOUND) and a server stream are counted on both ends,
    each with its type, service, method and Go-style code."""
    server, client = metrics.NodeMetrics("FR"), metrics.GatewayMetrics()
    asyncio.run(_calls(server, client))
    labels = dict(zip(("grpc_type", "grpc_service", "grpc_method"), CHECK, strict=True))
    assert value(server, "grpc_server_started_total", **labels) == 4
    assert value(server, "grpc_server_handled_total", **labels, grpc_code="OK") == 3
    assert value(server, "grpc_server_handled_total", **labels, grpc_code="NotFound") == 1
    assert value(server, "grpc_server_handling_seconds_count", **labels) == 4
    assert value(server, "grpc_server_msg_received_total", **labels) == 4
    assert value(server, "grpc_server_msg_sent_total", **labels) == 3
    assert value(client, "grpc_client_started_total", **labels) == 4
    assert value(client, "grpc_client_handled_total", **labels, grpc_code="OK") == 3
    assert value(client, "grpc_client_handled_total", **labels, grpc_code="NotFound") == 1
    assert value(client, "grpc_client_msg_received_total", **labels) == 3
    stream = dict(zip(("grpc_type", "grpc_service", "grpc_method"), WATCH, strict=True))
    assert value(server, "grpc_server_started_total", **stream) == 1
    assert value(server, "grpc_server_msg_sent_total", **stream) == 2  # SERVING, NOT_SERVING
    assert value(client, "grpc_client_msg_received_total", **stream) >= 1
    assert value(client, "grpc_client_started_total", **stream) == 1
    assert value(client, "grpc_client_handled_total", **stream, grpc_code="Canceled") == 1
    assert value(server, "grpc_server_handled_total", **stream, grpc_code="Canceled") == 1


@dataclass(frozen=True)
class _Header:
    kind: int


def test_ncbsim_families_count_at_their_sites() -> None:
    """Each site's call shows in its family; a kind a sender made up is one label."""
    gw = metrics.GatewayMetrics()
    gw.envelope("query_request", "delivered")
    gw.envelope("unknown(77)", "refused")
    gw.envelope("unknown(78)", "refused")
    gw.refused("Query", "identity_mismatch")
    gw.rate_limited(2)
    gw.relay(_Header(envelope.QUERY_REQUEST), "no_answer", 0.003)
    gw.delivered(1.5)
    gw.directory_refreshed("changed")
    assert value(gw, "ncbsim_envelopes_total", kind="query_request", outcome="delivered") == 1
    assert value(gw, "ncbsim_envelopes_total", kind="unknown", outcome="refused") == 2
    assert value(gw, "ncbsim_refusals_total", rpc="Query", reason="identity_mismatch") == 1
    assert value(gw, "ncbsim_rate_limited_total") == 2
    assert value(gw, "ncbsim_relay_seconds_count") == 1
    assert value(gw, "ncbsim_envelopes_total", kind="query_request", outcome="no_answer") == 1
    assert value(gw, "ncbsim_delivery_lag_seconds_sum") == 1.5
    assert value(gw, "ncbsim_directory_refreshes_total", outcome="changed") == 1
    node = metrics.NodeMetrics("DE")
    node.replay()
    assert value(node, "ncbsim_replays_total") == 1
    assert node.registry.get_sample_value("ncbsim_relay_seconds_count") is None


class _Lag:
    def lag_s(self) -> float:
        return 0.25


class _Mailbox:
    def recipients(self) -> list[str]:
        return ["DE", "IT"]

    def queued(self, recipient: str | None = None, *, sender: str | None = None) -> int:
        return {"DE": 3, "IT": 1}[recipient or "DE"]

    def oldest_queued_ms(self) -> dict[str, int]:
        return {"DE": 10_000, "IT": 19_500}


def test_mailbox_and_audit_lag_are_read_at_scrape_time() -> None:
    """Depth and age of the oldest copy per recipient, and the audit writer's lag, come
    from their sources when the registry is collected."""
    gw = metrics.GatewayMetrics()
    gw.watch_mailbox(_Mailbox(), clock=lambda: 20.0)
    gw.watch_audit(_Lag())
    assert value(gw, "ncbsim_mailbox_depth", recipient="DE") == 3
    assert value(gw, "ncbsim_mailbox_depth", recipient="IT") == 1
    assert value(gw, "ncbsim_mailbox_oldest_seconds", recipient="DE") == 10.0
    assert value(gw, "ncbsim_mailbox_oldest_seconds", recipient="IT") == 0.5
    assert value(gw, "ncbsim_audit_writer_lag_seconds") == 0.25


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("off", None),
        ("OFF", None),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("127.0.0.5:9100", ("127.0.0.5", 9100)),
        ("[::1]:9100", ("::1", 9100)),
        ("localhost:9100", ("localhost", 9100)),
    ],
)
def test_loopback_addresses_and_off_are_accepted(
    listen: str, expected: tuple[str, int] | None
) -> None:
    """Loopback HOST:PORT (IPv4, IPv6, localhost) and ``off`` are what may be served on."""
    assert config.metrics_listen_address(listen) == expected


@pytest.mark.parametrize("listen", ["0.0.0.0:9100", "192.0.2.1:9100", "example.org:1", "9100", ""])
def test_other_addresses_are_refused_in_one_line(listen: str) -> None:
    """Anything but loopback (or not an address) is a one-line configuration error."""
    with pytest.raises(ConfigError) as caught:
        config.metrics_listen_address(listen)
    assert "\n" not in str(caught.value)
    assert "--metrics-listen" in str(caught.value)


def test_the_endpoint_serves_the_party_registry_over_http() -> None:
    """The endpoint binds a free loopback port, answers the text format that
    prometheus_client's parser reads, and frees the port when closed."""
    node = metrics.NodeMetrics("FR")
    node.refused("Handle", "replay")
    endpoint = metrics.serve(node, "127.0.0.1:0")
    assert endpoint is not None
    try:
        host, port = endpoint.address.rsplit(":", 1)
        assert host == "127.0.0.1"
        assert int(port) > 0
        with urllib.request.urlopen(f"http://{endpoint.address}/metrics", timeout=10) as reply:
            text = reply.read().decode()
    finally:
        endpoint.close()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    refusals = families["ncbsim_refusals"].samples
    assert any(s.labels == {"rpc": "Handle", "reason": "replay"} and s.value == 1 for s in refusals)
    assert "grpc_server_handled" in families
    assert metrics.serve(node, "off") is None


@pytest.mark.parametrize("listen", ["0.0.0.0:9100", "192.0.2.1:9100", "[::]:9100"])
def test_any_address_is_allowed_only_when_opted_in(listen: str) -> None:
    """``--metrics-any-address`` (a pod) lets a non-loopback address through; without it
    the same address stays a one-line error naming the opt-in."""
    host = listen.rsplit(":", 1)[0]
    assert config.metrics_listen_address(listen, any_address=True) == (host.strip("[]"), 9100)
    with pytest.raises(ConfigError, match="--metrics-any-address"):
        config.metrics_listen_address(listen)
    with pytest.raises(ConfigError):
        config.metrics_listen_address("9100", any_address=True)
