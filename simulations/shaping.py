"""What a fault does to the bytes going one way: :class:`Shaping`, and the pipe that obeys it.

A fault proxy (ncbsim.simulations.proxy) copies each direction of each connection through a
:class:`_Pipe`: with no fault set, a plain copy loop of 64 KiB reads; with one, chunks are
queued and written at their due times (latency, jitter, "loss" as a retransmission's
delay), paced under a bandwidth cap, sliced, or discarded (blackhole). See
simulations/proxy.py for what each fault does, honestly.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ncbsim.simulations.proxy import FaultProxy, _Conn

CHUNK_BYTES = 64 * 1024
"""Largest read from a socket, and so the largest chunk a fault is applied to."""
RETRANSMIT_MS = 200.0
"""Extra hold of a chunk "lost" under ``loss``: a typical TCP retransmission timeout."""
MAX_QUEUED_BYTES = 1024 * 1024
"""Bytes a shaped direction may hold before the proxy stops reading from its source."""
PACING_SLICE_S = 0.02
"""Under a bandwidth cap, chunks are written in pieces of about this much sending time."""


@dataclass(slots=True)
class Shaping:
    """What happens to the bytes going one way through a proxy; the defaults do nothing.

    ``latency_ms`` delays each chunk, ``jitter_ms`` adds a uniform +- delay drawn from the
    proxy's seeded generator (byte order is always kept), ``kbit_per_s`` caps the rate,
    ``loss`` is the probability that a chunk is held an extra :data:`RETRANSMIT_MS` (TCP
    cannot lose bytes: this is the delay a loss would cost), ``piece_bytes`` and
    ``pause_ms`` slice writes, and ``blackhole`` discards everything.
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    kbit_per_s: float | None = None
    loss: float = 0.0
    piece_bytes: int | None = None
    pause_ms: float = 0.0
    blackhole: bool = False

    def clear(self) -> None:
        """Remove every fault: bytes pass untouched again."""
        self.latency_ms = 0.0
        self.jitter_ms = 0.0
        self.kbit_per_s = None
        self.loss = 0.0
        self.piece_bytes = None
        self.pause_ms = 0.0
        self.blackhole = False

    def is_clear(self) -> bool:
        """Whether no fault is set (the proxy then takes its plain copy path)."""
        return (
            not self.blackhole
            and self.latency_ms <= 0.0
            and self.jitter_ms <= 0.0
            and self.kbit_per_s is None
            and self.loss <= 0.0
            and self.piece_bytes is None
            and self.pause_ms <= 0.0
        )

    def check(self) -> None:
        """Raise ValueError if a field is out of range."""
        if self.latency_ms < 0 or self.jitter_ms < 0 or self.pause_ms < 0:
            raise ValueError("latency_ms, jitter_ms and pause_ms must be >= 0")
        if self.kbit_per_s is not None and not self.kbit_per_s > 0:
            raise ValueError("kbit_per_s must be > 0")
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError("loss must be between 0 and 1")
        if self.piece_bytes is not None and self.piece_bytes < 1:
            raise ValueError("piece_bytes must be >= 1")


class _Pipe:
    """One direction of one connection: reads from ``src``, writes to ``dst``, shaped."""

    def __init__(
        self,
        proxy: FaultProxy,
        conn: _Conn,
        forward: bool,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
    ) -> None:
        self._proxy = proxy
        self._conn = conn
        self._error: OSError | None = None
        self._forward = forward
        self._src = src
        self._dst = dst
        self._queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self._queued = 0
        self._room = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._last_due = 0.0
        self._link_free = 0.0  # when the capped link finishes sending what it was given

    def _shaping(self) -> Shaping:
        return self._proxy.forward if self._forward else self._proxy.backward

    def _count(self, sent: int) -> None:
        counters = self._proxy._counters
        if self._forward:
            counters.bytes_forward += sent
            counters.writes_forward += 1
        else:
            counters.bytes_backward += sent
            counters.writes_backward += 1

    async def run(self) -> None:
        """Copy until the source ends, then half-close the destination."""
        try:
            while data := await self._src.read(CHUNK_BYTES):
                shaping = self._shaping()
                if self._sender is None and shaping.is_clear():
                    self._dst.write(data)
                    self._count(len(data))
                    await self._dst.drain()
                elif shaping.blackhole:
                    self._proxy._counters.dropped_bytes += len(data)
                else:
                    await self._enqueue(data, shaping)
            if self._sender is not None:
                await asyncio.shield(self._sender)
            if self._error is not None:
                raise self._error
            if self._dst.can_write_eof() and not self._dst.is_closing():
                self._dst.write_eof()
        finally:
            if self._sender is not None and not self._sender.done():
                self._sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._sender

    async def _enqueue(self, data: bytes, shaping: Shaping) -> None:
        loop = asyncio.get_running_loop()
        delay_ms = shaping.latency_ms
        rng = self._proxy._rng
        if shaping.jitter_ms > 0:
            delay_ms += rng.uniform(-shaping.jitter_ms, shaping.jitter_ms)
        if shaping.loss > 0 and rng.random() < shaping.loss:
            delay_ms += RETRANSMIT_MS
        due = max(loop.time() + max(delay_ms, 0.0) / 1000.0, self._last_due)
        self._last_due = due
        self._queue.append((due, data))
        self._queued += len(data)
        if self._sender is None:
            self._sender = asyncio.create_task(self._send(), name=f"{self._proxy.name}-shaped")
        while self._queued > MAX_QUEUED_BYTES and self._sender is not None:
            self._room.clear()
            await self._room.wait()

    async def _send(self) -> None:
        """Deliver queued chunks in order, each at its due time; ends when the queue is empty."""
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                due, data = self._queue[0]
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._queue.popleft()
                self._queued -= len(data)
                self._room.set()
                shaping = self._shaping()
                if shaping.blackhole:
                    self._proxy._counters.dropped_bytes += len(data)
                else:
                    await self._write_shaped(data, shaping)
        except OSError as exc:  # the destination reset or went away: reset both sides
            self._error = exc
            self._queue.clear()
            self._conn.rst()
        finally:
            self._sender = None
            self._room.set()

    async def _write_shaped(self, data: bytes, shaping: Shaping) -> None:
        loop = asyncio.get_running_loop()
        rate = shaping.kbit_per_s * 1000.0 / 8.0 if shaping.kbit_per_s else None  # bytes/s
        size = shaping.piece_bytes or len(data)
        if rate is not None:
            size = min(size, max(512, int(rate * PACING_SLICE_S)))
        pieces = math.ceil(len(data) / size)
        for i in range(pieces):
            piece = data[i * size : (i + 1) * size]
            if rate is not None:
                self._link_free = max(self._link_free, loop.time()) + len(piece) / rate
                wait = self._link_free - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            self._dst.write(piece)
            self._count(len(piece))
            await self._dst.drain()
            if shaping.pause_ms > 0 and i < pieces - 1:
                await asyncio.sleep(shaping.pause_ms / 1000.0)
