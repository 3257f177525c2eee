"""A TCP fault proxy on the simulator's asyncio loop: latency, bandwidth, blackhole, resets.

Every bureau's link to the gateway can pass through a :class:`FaultProxy`. It copies raw
TCP bytes, so the gRPC mTLS stream inside stays opaque to it; certificates still verify
because clients name the server they expect with ``ssl_target_name_override``. Faults are
set per direction on two :class:`Shaping` objects and take effect on the next chunk read,
on connections already open too. A :class:`Link` groups the two proxies of one bureau and
speaks in directions a scenario understands ("from-bureau", "to-bureau", "both").

What each fault does, honestly:

- latency and jitter delay each chunk read from the socket; a later chunk is never
  delivered before an earlier one, so jitter never reorders bytes (like TCP, a delayed
  chunk holds back the ones behind it).
- a bandwidth cap paces writes: a chunk is written once the link would have finished
  sending it, so N bytes take at least N * 8 / rate seconds.
- TCP cannot lose bytes, and this proxy sits above TCP. ``loss`` is therefore emulated as
  the cost a lost segment has for the application: with probability ``loss`` a chunk is
  held an extra :data:`~ncbsim.simulations.shaping.RETRANSMIT_MS`, a typical retransmission
  timeout. Nothing is dropped and no segment is really retransmitted.
- slicing writes each chunk in pieces of at most ``piece_bytes``, with ``pause_ms``
  between them, to exercise the peer's reassembly of partial frames.
- blackhole reads and discards bytes; the connection stays open and silent. Healing a
  blackhole resets every connection rather than resuming it, because an HTTP/2 stream
  with frames half dropped is corrupt.
- reset sends RST (SO_LINGER 0) on both sides of every open connection; down stops
  listening, so a new ``connect()`` gets ECONNREFUSED, while the port stays reserved by a
  bound, non-listening socket for :meth:`FaultProxy.up`.

With no fault set a connection costs two tasks and a plain copy loop of 64 KiB reads: no
timers, no queues. Hundreds of idle proxies in one process cost a listening socket each.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from ncbsim.simulations.shaping import Shaping, _Pipe

log = structlog.get_logger()

CONNECT_TIMEOUT_S = 5.0
"""How long the proxy waits for the upstream to accept a connection."""
UPSTREAM_WAIT_S = 5.0
"""How long a new connection waits for ``upstream()`` to name a target."""

_LINGER_RST = struct.pack("ii", 1, 0)
_DIRECTIONS = ("from-bureau", "to-bureau", "both")
_FAULT_PARAMS: dict[str, tuple[str, ...]] = {
    "latency": ("latency_ms", "jitter_ms"),
    "bandwidth": ("kbit_per_s",),
    "loss": ("loss",),
    "slice": ("piece_bytes", "pause_ms"),
    "blackhole": (),
}


def _split(address: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) as (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"not a host:port address: {address!r}")
    return host.strip("[]"), int(port)


def _bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) with SO_REUSEADDR, not yet listening."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _rst(writer: asyncio.StreamWriter) -> None:
    """Abort ``writer``'s connection with a TCP RST rather than a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    writer.transport.abort()


@dataclass(slots=True)
class _Counters:
    connections_total: int = 0
    bytes_forward: int = 0
    bytes_backward: int = 0
    writes_forward: int = 0
    writes_backward: int = 0
    dropped_bytes: int = 0
    resets: int = 0


class _Conn:
    """One client connection and, once connected, its upstream connection."""

    __slots__ = ("client", "task", "upstream")

    def __init__(self, client: asyncio.StreamWriter, task: asyncio.Task[Any] | None) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.task = task

    def rst(self) -> None:
        """Reset both sides at once."""
        _rst(self.client)
        if self.upstream is not None:
            _rst(self.upstream)


class FaultProxy:
    """A TCP proxy from a listening address to ``upstream()``, with faults per direction.

    ``upstream`` is called for every new connection and returns ``"host:port"``, so the
    target may move (a node restarted on a new port); while it returns None the new
    connection waits, up to :data:`UPSTREAM_WAIT_S`, then is reset.
    ``forward`` shapes bytes from the connecting client to the upstream, ``backward`` the
    bytes coming back. Use it from the loop it was started on.
    """

    def __init__(
        self,
        name: str,
        upstream: Callable[[], str | None],
        *,
        listen: str = "127.0.0.1:0",
        seed: int = 0,
    ) -> None:
        self.name = name
        self.forward = Shaping()
        self.backward = Shaping()
        self.address = ""
        self._upstream = upstream
        self._listen = _split(listen)
        self._rng = random.Random(seed)
        self._counters = _Counters()
        self._conns: set[_Conn] = set()
        self._server: asyncio.Server | None = None
        self._held: socket.socket | None = None  # bound, not listening, while down
        self._closed = False

    @property
    def is_down(self) -> bool:
        """Whether the proxy refuses new connections (down, or not started)."""
        return self._server is None

    @property
    def stats(self) -> dict[str, int]:
        """Counters: connections, bytes each way, socket writes each way, drops, resets."""
        counters = self._counters
        return {
            "connections_total": counters.connections_total,
            "open": len(self._conns),
            "bytes_forward": counters.bytes_forward,
            "bytes_backward": counters.bytes_backward,
            "writes_forward": counters.writes_forward,
            "writes_backward": counters.writes_backward,
            "dropped_bytes": counters.dropped_bytes,
            "resets": counters.resets,
        }

    async def start(self) -> str:
        """Bind and listen; returns the bound ``"host:port"`` (also ``self.address``)."""
        if self.address:
            raise RuntimeError(f"proxy {self.name} already started")
        host, port = self._listen
        self._held = _bind(host, port)
        bound = self._held.getsockname()[1]
        self.address = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
        await self.up()
        return self.address

    async def up(self) -> None:
        """Listen again, on the same port; does nothing if already listening."""
        if self._closed:
            raise RuntimeError(f"proxy {self.name} is closed")
        if not self.address:
            raise RuntimeError(f"proxy {self.name} not started")
        if self._server is not None:
            return
        sock, self._held = self._held, None
        if sock is None:  # down() could not keep the port: bind it again
            sock = _bind(*_split(self.address))
        try:
            sock.listen(128)
            self._server = await asyncio.start_server(self._accept, sock=sock)
        except BaseException:
            sock.close()
            raise
        log.debug("proxy_up", proxy=self.name, address=self.address)

    async def down(self) -> None:
        """Refuse new connections (ECONNREFUSED) and reset the open ones; keeps the port."""
        server = self._server
        if server is None:
            return
        self._server = None
        server.close()
        try:  # a bound socket that does not listen keeps the port ours and refuses connect()
            self._held = _bind(*_split(self.address))
        except OSError as exc:
            log.warning("proxy_port_not_held", proxy=self.name, error=str(exc))
        await self.reset()
        await server.wait_closed()
        log.info("proxy_down", proxy=self.name)

    async def reset(self) -> int:
        """Send RST on both sides of every open connection; returns how many there were."""
        conns = list(self._conns)
        for conn in conns:
            conn.rst()
            if conn.task is not None:
                conn.task.cancel()
        self._counters.resets += len(conns)
        await asyncio.gather(*(c.task for c in conns if c.task), return_exceptions=True)
        if conns:
            log.info("proxy_reset", proxy=self.name, connections=len(conns))
        return len(conns)

    async def heal(self) -> None:
        """Clear both directions; after a blackhole reset every connection; listen if down."""
        blackholed = self.forward.blackhole or self.backward.blackhole
        self.forward.clear()
        self.backward.clear()
        if blackholed:
            await self.reset()
        if self._server is None and not self._closed:
            await self.up()
        log.info("proxy_healed", proxy=self.name, reset=blackholed)

    async def close(self) -> None:
        """Stop listening and close everything; the proxy cannot be used again."""
        self._closed = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if self._held is not None:
            self._held.close()
            self._held = None
        conns = list(self._conns)
        for conn in conns:
            conn.rst()
            if conn.task is not None:
                conn.task.cancel()
        await asyncio.gather(*(c.task for c in conns if c.task), return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        # A plain callback that starts our own task: asyncio's wrapper around a coroutine
        # callback reports a cancelled handler (a reset) as an error.
        conn = _Conn(client_w, None)
        self._conns.add(conn)
        self._counters.connections_total += 1
        conn.task = asyncio.get_running_loop().create_task(self._serve(conn, client_r))

    async def _serve(self, conn: _Conn, client_r: asyncio.StreamReader) -> None:
        try:
            await self._relay(conn, client_r)
        except OSError as exc:
            log.debug("proxy_connection_error", proxy=self.name, error=type(exc).__name__)
            conn.rst()
        except asyncio.CancelledError:
            conn.rst()
            raise
        finally:
            self._conns.discard(conn)
            await self._closed_all(conn)

    async def _closed_all(self, conn: _Conn) -> None:
        """Close both sides and wait until their sockets are gone."""
        writers = [w for w in (conn.client, conn.upstream) if w is not None]
        for writer in writers:
            writer.close()
        for writer in writers:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _relay(self, conn: _Conn, client_r: asyncio.StreamReader) -> None:
        target = self._upstream()
        waited = 0.0
        while target is None and waited < UPSTREAM_WAIT_S:
            # Not known yet: a node registers (and the gateway connects) just before its
            # host reports the node's port. Resetting now would put the gateway's channel
            # into reconnect back-off and fail the first query for nothing.
            await asyncio.sleep(0.05)
            waited += 0.05
            target = self._upstream()
        if target is None:
            log.debug("proxy_no_upstream", proxy=self.name)
            conn.rst()
            return
        host, port = _split(target)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                up_r, up_w = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError):
            log.debug("proxy_upstream_refused", proxy=self.name, upstream=target)
            conn.rst()
            return
        conn.upstream = up_w
        pipes = [
            asyncio.create_task(_Pipe(self, conn, True, client_r, up_w).run()),
            asyncio.create_task(_Pipe(self, conn, False, up_r, conn.client).run()),
        ]
        try:
            done, _ = await asyncio.wait(pipes, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # a reset or broken pipe on one side: reset both
            await asyncio.gather(*pipes)
        finally:
            for task in pipes:
                task.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)


class Link:
    """A bureau's link to the gateway: both proxies of one bureau.

    ``to_gateway`` carries the bureau's connections to the gateway (its node's registration,
    its client's queries): its ``forward`` is bureau -> gateway. ``to_bureau`` carries the
    gateway's connections to the bureau's node: its ``forward`` is gateway -> bureau.
    """

    def __init__(
        self,
        bureau: str,
        *,
        to_gateway: FaultProxy | None,
        to_bureau: FaultProxy | None,
    ) -> None:
        self.bureau = bureau
        self.to_gateway = to_gateway
        self.to_bureau = to_bureau

    def _proxies(self) -> list[FaultProxy]:
        return [p for p in (self.to_gateway, self.to_bureau) if p is not None]

    def shaping(self, direction: str) -> list[Shaping]:
        """The Shapings that carry ``direction``: "from-bureau", "to-bureau" or "both"."""
        if direction not in _DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(_DIRECTIONS)}: {direction!r}")
        out: list[Shaping] = []
        if direction in ("from-bureau", "both"):
            out += [self.to_gateway.forward] if self.to_gateway else []
            out += [self.to_bureau.backward] if self.to_bureau else []
        if direction in ("to-bureau", "both"):
            out += [self.to_gateway.backward] if self.to_gateway else []
            out += [self.to_bureau.forward] if self.to_bureau else []
        return out

    def apply(self, fault: str, direction: str, params: dict[str, float]) -> None:
        """Set ``fault`` ("latency", "bandwidth", "loss", "slice", "blackhole") one way or both.

        ``params`` names fields of :class:`Shaping` that the fault owns (latency: latency_ms,
        jitter_ms; bandwidth: kbit_per_s; loss: loss; slice: piece_bytes, pause_ms); the
        other fields keep their values, so faults combine. Raises ValueError, changing
        nothing, on an unknown fault, direction or parameter, or a value out of range.
        """
        if fault not in _FAULT_PARAMS:
            raise ValueError(f"fault must be one of {', '.join(_FAULT_PARAMS)}: {fault!r}")
        allowed = _FAULT_PARAMS[fault]
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ValueError(f"{fault} takes {', '.join(allowed) or 'no parameters'}: {unknown}")
        targets = self.shaping(direction)
        values: dict[str, Any] = dict(params)
        if "piece_bytes" in values:
            values["piece_bytes"] = int(values["piece_bytes"])
        if fault == "blackhole":
            values["blackhole"] = True
        Shaping(**values).check()
        for shaping in targets:
            for key, value in values.items():
                setattr(shaping, key, value)
        log.info("link_fault", bureau=self.bureau, fault=fault, direction=direction, **params)

    async def reset(self) -> None:
        """Reset every open connection of both proxies."""
        for proxy in self._proxies():
            await proxy.reset()

    async def down(self) -> None:
        """Refuse new connections on both proxies and reset the open ones."""
        for proxy in self._proxies():
            await proxy.down()

    async def up(self) -> None:
        """Accept connections again on both proxies."""
        for proxy in self._proxies():
            await proxy.up()

    async def heal(self) -> None:
        """Heal both proxies (see :meth:`FaultProxy.heal`)."""
        for proxy in self._proxies():
            await proxy.heal()

    async def close(self) -> None:
        """Close both proxies."""
        for proxy in self._proxies():
            await proxy.close()
