"""The TCP fault proxy: real sockets on loopback, an asyncio upstream, and one mTLS gRPC call."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from scenario_support import UpstreamServer, close, connect, proxied, read_outcome, roundtrip, run

from ncbsim import pki, serving, transport
from ncbsim.simulations import proxy as proxy_module
from ncbsim.simulations.proxy import FaultProxy, Link
from ncbsim.simulations.shaping import Shaping


def test_pass_through_keeps_a_large_payload_intact_both_ways() -> None:
    """2 MiB go through and come back byte for byte; EOF is passed on as a half-close."""
    payload = os.urandom(2 * 1024 * 1024)

    async def main() -> None:
        async with proxied() as (proxy, upstream):
            reader, writer = await connect(proxy.address)

            async def send() -> None:
                writer.write(payload)
                await writer.drain()
                writer.write_eof()

            sender = asyncio.create_task(send())
            echoed = await reader.read()  # until the echo server's EOF came back through
            await sender
            await close(writer)
            assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
            assert upstream.eofs == 1
            stats = proxy.stats
            assert stats["bytes_forward"] == stats["bytes_backward"] == len(payload)
            assert stats["connections_total"] == 1

    run(main())


def test_reset_sends_rst_to_both_sides_of_every_connection() -> None:
    """reset() returns the number of open connections; clients and upstream see ECONNRESET."""

    async def main() -> None:
        async with proxied() as (proxy, upstream):
            conns = [await connect(proxy.address) for _ in range(3)]
            for reader, writer in conns:
                await roundtrip(reader, writer, b"hello")
            assert await proxy.reset() == 3
            for reader, writer in conns:
                with pytest.raises(ConnectionResetError):
                    await reader.read(10)
                await close(writer)
            while len(upstream.lost) < 3:
                upstream.changed.clear()
                await upstream.changed.wait()
            assert all(isinstance(exc, ConnectionResetError) for exc in upstream.lost)
            assert proxy.stats["open"] == 0
            assert proxy.stats["resets"] == 3

    run(main())


def test_down_refuses_connections_and_up_listens_on_the_same_port() -> None:
    """While down, connect() is refused and open connections are reset; up() restores it."""

    async def main() -> None:
        async with proxied() as (proxy, _):
            address = proxy.address
            reader, writer = await connect(address)
            await roundtrip(reader, writer, b"hi")
            await proxy.down()
            assert proxy.is_down
            assert await read_outcome(reader) == "reset"
            await close(writer)
            with pytest.raises(ConnectionRefusedError):
                await connect(address)
            await proxy.up()
            assert proxy.address == address
            reader, writer = await connect(address)
            await roundtrip(reader, writer, b"again")
            await close(writer)
            await proxy.down()
            await proxy.heal()  # heal brings a downed proxy back up too
            reader, writer = await connect(address)
            await roundtrip(reader, writer, b"healed")
            await close(writer)

    run(main())


def test_no_upstream_or_a_refusing_upstream_closes_the_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """upstream() naming nobody for longer than the wait, or refusing, ends the connection."""
    monkeypatch.setattr(proxy_module, "UPSTREAM_WAIT_S", 0.2)

    async def main() -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            refusing = f"127.0.0.1:{probe.getsockname()[1]}"  # bound, not listening: refuses
            target: list[str | None] = [None]
            proxy = FaultProxy("test", lambda: target[0])
            await proxy.start()
            try:
                reader, writer = await connect(proxy.address)
                assert await read_outcome(reader) in ("reset", "eof")
                await close(writer)
                target[0] = refusing
                reader, writer = await connect(proxy.address)
                assert await read_outcome(reader) in ("reset", "eof")
                await close(writer)
                assert proxy.stats["connections_total"] == 2
                assert proxy.stats["open"] == 0
            finally:
                await proxy.close()

    run(main())


def test_a_connection_waits_for_an_upstream_named_late() -> None:
    """A target named while a new connection waits is used: the connection is not reset."""

    async def main() -> None:
        upstream = UpstreamServer()
        await upstream.start()
        target: list[str | None] = [None]
        proxy = FaultProxy("test", lambda: target[0])
        await proxy.start()
        try:
            reader, writer = await connect(proxy.address)
            await asyncio.sleep(0.3)
            target[0] = upstream.address
            await roundtrip(reader, writer, b"late but fine")
            await close(writer)
        finally:
            await proxy.close()
            await upstream.close()

    run(main())


def test_upstream_is_asked_again_for_every_connection() -> None:
    """A new connection goes to wherever upstream() points now (a restarted node's port)."""

    async def main() -> None:
        first, second = UpstreamServer(greeting=b"1"), UpstreamServer(greeting=b"2")
        await first.start()
        await second.start()
        current = [first.address]
        proxy = FaultProxy("test", lambda: current[0])
        await proxy.start()
        try:
            reader, writer = await connect(proxy.address)
            assert await reader.readexactly(1) == b"1"
            current[0] = second.address
            reader2, writer2 = await connect(proxy.address)
            assert await reader2.readexactly(1) == b"2"
            await close(writer)
            await close(writer2)
        finally:
            await proxy.close()
            await first.close()
            await second.close()

    run(main())


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_close_leaks_no_task_and_no_file_descriptor() -> None:
    """After close(), with idle, shaped and blackholed connections open, nothing is left."""

    async def main() -> None:
        upstream = UpstreamServer()
        await upstream.start()
        fds_before = _fds()
        tasks_before = asyncio.all_tasks()
        proxies = [FaultProxy(f"p{i}", lambda: upstream.address) for i in range(3)]
        for proxy in proxies:
            await proxy.start()
        proxies[1].forward.latency_ms = 500  # bytes still queued when closing
        proxies[2].backward.blackhole = True
        clients = []
        for proxy in proxies:
            for _ in range(2):
                reader, writer = await connect(proxy.address)
                writer.write(b"queued or dropped")
                await writer.drain()
                clients.append((reader, writer))
        reader, _ = clients[0]  # an idle proxy: its echo came back at once
        assert await reader.readexactly(len(b"queued or dropped")) == b"queued or dropped"
        await asyncio.sleep(0.05)
        assert _fds() > fds_before
        await proxies[0].reset()
        await proxies[0].down()  # a downed proxy holds its port with a socket: closed too
        for proxy in proxies:
            await proxy.close()
        for _, writer in clients:
            await close(writer)
        await asyncio.sleep(0.05)
        print(f"fds before {fds_before}, after {_fds()}")
        assert asyncio.all_tasks() == tasks_before
        assert _fds() == fds_before
        await upstream.close()

    run(main())


def test_link_maps_directions_and_faults_onto_the_two_proxies() -> None:
    """from-bureau is to_gateway.forward + to_bureau.backward; apply sets only the named fields."""
    to_gw = FaultProxy("FR-gw", lambda: None)
    to_fr = FaultProxy("FR-node", lambda: None)
    link = Link("FR", to_gateway=to_gw, to_bureau=to_fr)
    assert link.shaping("from-bureau") == [to_gw.forward, to_fr.backward]
    assert [id(s) for s in link.shaping("to-bureau")] == [id(to_gw.backward), id(to_fr.forward)]
    assert len(link.shaping("both")) == 4

    link.apply("latency", "from-bureau", {"latency_ms": 80, "jitter_ms": 5})
    link.apply("slice", "from-bureau", {"piece_bytes": 64.0, "pause_ms": 2})
    assert to_gw.forward == Shaping(latency_ms=80, jitter_ms=5, piece_bytes=64, pause_ms=2)
    assert to_fr.backward == to_gw.forward
    assert to_gw.backward.is_clear()
    assert to_fr.forward.is_clear()
    link.apply("blackhole", "to-bureau", {})
    assert to_gw.backward.blackhole
    assert to_fr.forward.blackhole
    link.apply("loss", "both", {"loss": 0.1})
    assert all(s.loss == 0.1 for s in link.shaping("both"))

    with pytest.raises(ValueError, match="direction"):
        link.apply("latency", "sideways", {"latency_ms": 1})
    with pytest.raises(ValueError, match="fault"):
        link.apply("flood", "both", {})
    with pytest.raises(ValueError, match="kbit_per_s"):
        link.apply("bandwidth", "both", {"latency_ms": 1})
    with pytest.raises(ValueError, match="loss"):
        link.apply("loss", "both", {"loss": 1.5})
    assert all(s.loss == 0.1 for s in link.shaping("both"))  # a bad apply changes nothing

    half = Link("DE", to_gateway=None, to_bureau=to_fr)
    assert half.shaping("both") == [to_fr.backward, to_fr.forward]


def test_link_heal_resets_a_blackholed_bureau_and_clears_every_fault() -> None:
    """Link.heal on a blackholed link clears all four directions and resets live connections."""

    async def main() -> None:
        upstream = UpstreamServer()
        await upstream.start()
        to_gw = FaultProxy("FR-gw", lambda: upstream.address)
        to_fr = FaultProxy("FR-node", lambda: upstream.address)
        link = Link("FR", to_gateway=to_gw, to_bureau=to_fr)
        await to_gw.start()
        await to_fr.start()
        try:
            reader, writer = await connect(to_gw.address)
            await roundtrip(reader, writer, b"a")
            link.apply("blackhole", "both", {})
            link.apply("latency", "both", {"latency_ms": 50})
            await link.heal()
            assert all(s.is_clear() for s in link.shaping("both"))
            assert await read_outcome(reader) in ("reset", "eof")
            await close(writer)
            await link.down()
            with pytest.raises(ConnectionRefusedError):
                await connect(to_fr.address)
            await link.up()
            reader, writer = await connect(to_fr.address)
            await roundtrip(reader, writer, b"b")
            await close(writer)
        finally:
            await link.close()
            await upstream.close()

    run(main())


def test_grpc_mtls_call_passes_through_the_proxy(pki_dir: pki.PkiDir) -> None:
    """A real grpc.aio mTLS health check works through the proxy, shaped, and after a reset."""

    async def main() -> None:
        served = await serving.start_server(
            pki_dir.tls("gateway"), "127.0.0.1:0", [], register=lambda server: None
        )
        await served.set_serving(True)
        proxy = FaultProxy("FR-gw", lambda: served.address)
        await proxy.start()
        channel = transport.gateway_channel(proxy.address, pki_dir.tls("FR"))
        try:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest()
            reply = await stub.Check(request, timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            proxy.forward.piece_bytes = 7  # TLS records and HTTP/2 frames split mid-way
            proxy.backward.latency_ms = 20
            proxy.backward.jitter_ms = 10
            reply = await stub.Check(request, timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            proxy.forward.clear()
            proxy.backward.clear()
            assert await proxy.reset() >= 1
            state = channel.get_state()
            while state == grpc.ChannelConnectivity.READY:  # until the channel sees the RST
                await channel.wait_for_state_change(state)
                state = channel.get_state()
            reply = await stub.Check(request, timeout=10, wait_for_ready=True)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            assert proxy.stats["connections_total"] >= 2
        finally:
            await channel.close()
            await proxy.close()
            await served.server.stop(None)

    run(main(), timeout=30)
