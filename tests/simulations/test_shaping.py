"""What each link fault does to the bytes (simulations/shaping.py), through a loopback proxy."""

from __future__ import annotations

import asyncio
import os
import time

from scenario_support import UpstreamServer, close, connect, proxied, read_outcome, roundtrip, run

from ncbsim.simulations.proxy import FaultProxy
from ncbsim.simulations.shaping import RETRANSMIT_MS


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
