"""The TCP fault proxy: real sockets on loopback, an asyncio upstream, and one mTLS gRPC call."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ncbsim import pki, serving, transport
from ncbsim.simulations import proxy as proxy_module
from ncbsim.simulations.proxy import FaultProxy, Link
from ncbsim.simulations.shaping import RETRANSMIT_MS, Shaping


def run(coro: Coroutine[Any, Any, Any], timeout: float = 20.0) -> Any:
    """Run ``coro`` on a fresh loop, with a generous safety timeout."""

    async def guarded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(guarded())


class Upstream(asyncio.Protocol):
    """One accepted connection of the test upstream: records every recv(), echoes or not."""

    def __init__(self, server: UpstreamServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.conns.append(self)
        if self.server.greeting:
            transport.write(self.server.greeting)

    def data_received(self, data: bytes) -> None:
        self.server.recvs.append(len(data))
        self.server.received += len(data)
        self.server.arrivals.append((time.monotonic(), data))
        self.server.changed.set()
        if self.server.echo and self.transport is not None:
            self.transport.write(data)

    def eof_received(self) -> bool:
        self.server.eofs += 1
        return False  # close our side too: the client sees EOF

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.lost.append(exc)
        self.server.changed.set()


class UpstreamServer:
    """An echo (or sink) server on 127.0.0.1:0 that counts what it receives."""

    def __init__(self, *, echo: bool = True, greeting: bytes = b"") -> None:
        self.echo = echo
        self.greeting = greeting
        self.conns: list[Upstream] = []
        self.recvs: list[int] = []
        self.arrivals: list[tuple[float, bytes]] = []
        self.received = 0
        self.eofs = 0
        self.lost: list[Exception | None] = []
        self.changed = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.address = ""

    async def start(self) -> str:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: Upstream(self), "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        return self.address

    async def wait_received(self, n: int) -> None:
        while self.received < n:
            self.changed.clear()
            await self.changed.wait()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for conn in self.conns:
            if conn.transport is not None:
                conn.transport.abort()
        await self.server.wait_closed()
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def proxied(
    *, echo: bool = True, greeting: bytes = b"", seed: int = 0
) -> AsyncIterator[tuple[FaultProxy, UpstreamServer]]:
    """A started proxy in front of a started upstream; both closed at the end."""
    upstream = UpstreamServer(echo=echo, greeting=greeting)
    await upstream.start()
    proxy = FaultProxy("test", lambda: upstream.address, seed=seed)
    await proxy.start()
    try:
        yield proxy, upstream
    finally:
        await proxy.close()
        await upstream.close()


async def connect(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, _, port = address.rpartition(":")
    return await asyncio.open_connection(host, int(port))


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, msg: bytes) -> None:
    writer.write(msg)
    await writer.drain()
    assert await reader.readexactly(len(msg)) == msg


async def read_outcome(reader: asyncio.StreamReader) -> str:
    """'reset' if the connection was reset, 'eof' if it ended cleanly, else the bytes read."""
    try:
        data = await reader.read(1024)
    except ConnectionResetError:
        return "reset"
    return "eof" if not data else f"data {data!r}"


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


def test_latency_delays_only_its_own_direction() -> None:
    """Forward latency delays client->upstream bytes; backward latency delays the replies."""

    async def one_trip(proxy: FaultProxy, upstream: UpstreamServer) -> tuple[float, float]:
        reader, writer = await connect(proxy.address)
        try:
            upstream.arrivals.clear()
            sent = time.monotonic()
            await roundtrip(reader, writer, b"ping")
            back = time.monotonic()
            arrived = upstream.arrivals[0][0]
            return arrived - sent, back - arrived
        finally:
            await close(writer)

    async def main() -> None:
        async with proxied() as (proxy, upstream):
            proxy.forward.latency_ms = 200
            there, back = await one_trip(proxy, upstream)
            print(f"forward 200 ms: there {there * 1000:.1f} ms, back {back * 1000:.1f} ms")
            assert there >= 0.2
            proxy.forward.clear()
            proxy.backward.latency_ms = 300
            there, back = await one_trip(proxy, upstream)
            print(f"backward 300 ms: there {there * 1000:.1f} ms, back {back * 1000:.1f} ms")
            assert back >= 0.3

    run(main())


def test_jitter_never_reorders_bytes() -> None:
    """Chunks with independently jittered delays still arrive in the order they were sent."""

    async def main() -> None:
        async with proxied(seed=7) as (proxy, upstream):
            proxy.forward.latency_ms = 15
            proxy.forward.jitter_ms = 15
            reader, writer = await connect(proxy.address)
            expected = b"".join(b"%05d," % i for i in range(150))
            for i in range(150):
                writer.write(b"%05d," % i)
                await writer.drain()
                await asyncio.sleep(0.001)  # separate chunks, so each gets its own delay
            assert await reader.readexactly(len(expected)) == expected
            await close(writer)
            assert len(upstream.recvs) > 10  # many chunks really were delayed separately

    run(main())


def test_bandwidth_cap_paces_the_bytes() -> None:
    """150 kB at 800 kbit/s take at least the 1.5 s the link needs to send them."""
    size, kbit = 150_000, 800.0

    async def main() -> None:
        async with proxied(echo=False) as (proxy, upstream):
            proxy.forward.kbit_per_s = kbit
            _, writer = await connect(proxy.address)
            start = time.monotonic()
            writer.write(b"x" * size)
            await writer.drain()
            await upstream.wait_received(size)
            elapsed = time.monotonic() - start
            await close(writer)
            expected = size * 8 / (kbit * 1000)
            print(f"{size} B at {kbit} kbit/s: {elapsed:.2f} s (link time {expected:.2f} s)")
            assert elapsed >= expected * 0.99

    run(main())


def test_slice_writes_pieces_of_at_most_piece_bytes() -> None:
    """The upstream receives a 5000-byte write as recv()s of at most 100 bytes."""

    async def main() -> None:
        async with proxied(echo=False) as (proxy, upstream):
            proxy.forward.piece_bytes = 100
            proxy.forward.pause_ms = 1
            _, writer = await connect(proxy.address)
            writer.write(os.urandom(5000))
            await writer.drain()
            await upstream.wait_received(5000)
            await close(writer)
            print(f"upstream recv() sizes: {upstream.recvs[:8]}... ({len(upstream.recvs)} recvs)")
            assert max(upstream.recvs) <= 100
            assert len(upstream.recvs) >= 50
            assert proxy.stats["writes_forward"] == 50

    run(main())


def test_blackhole_drops_bytes_and_heal_resets_the_connection() -> None:
    """Nothing arrives through a blackhole; healing resets the connection; new ones work."""

    async def main() -> None:
        async with proxied() as (proxy, upstream):
            reader, writer = await connect(proxy.address)
            await roundtrip(reader, writer, b"before")
            proxy.forward.blackhole = True
            writer.write(b"into the void")
            await writer.drain()
            await asyncio.sleep(0.3)
            assert upstream.received == len(b"before")
            assert proxy.stats["dropped_bytes"] == len(b"into the void")
            assert proxy.stats["open"] == 1  # the connection stays open, silent
            await proxy.heal()
            assert await read_outcome(reader) in ("reset", "eof")
            await close(writer)
            assert proxy.forward.is_clear()
            reader, writer = await connect(proxy.address)
            await roundtrip(reader, writer, b"after")
            await close(writer)

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


def test_loss_holds_chunks_for_a_retransmission_timeout() -> None:
    """With loss 1.0 every chunk arrives at least RETRANSMIT_MS late, intact."""

    async def main() -> None:
        async with proxied() as (proxy, _):
            proxy.forward.loss = 1.0
            reader, writer = await connect(proxy.address)
            start = time.monotonic()
            await roundtrip(reader, writer, b"lossy")
            elapsed = time.monotonic() - start
            await close(writer)
            print(f"round trip under loss 1.0: {elapsed * 1000:.0f} ms")
            assert elapsed >= RETRANSMIT_MS / 1000

    run(main())


def test_grpc_mtls_call_passes_through_the_proxy(tmp_path: Path) -> None:
    """A real grpc.aio mTLS health check works through the proxy, shaped, and after a reset."""
    pkidir = pki.init(tmp_path / "pki", ["FR"])

    async def main() -> None:
        served = await serving.start_server(
            pkidir.tls("gateway"), "127.0.0.1:0", [], register=lambda server: None
        )
        await served.set_serving(True)
        proxy = FaultProxy("FR-gw", lambda: served.address)
        await proxy.start()
        channel = transport.gateway_channel(proxy.address, pkidir.tls("FR"))
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
