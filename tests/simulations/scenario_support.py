"""Helpers the scenario and fault-proxy tests share: load a scenario from text, the
ScenarioError it raises, a running fault proxy. Import them as
``from scenario_support import ...``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest

from ncbsim.simulations import scenario
from ncbsim.simulations.proxy import FaultProxy
from ncbsim.simulations.scenario import ScenarioError

# ---------------------------------------------------------------- scenario files


def write_scenario(tmp_path: Path, text: str, name: str = "sim.toml") -> Path:
    """``text`` written to ``tmp_path / name``: a scenario file."""
    path = tmp_path / name
    path.write_text(text)
    return path


def scenario_error(tmp_path: Path, text: str) -> str:
    """The ScenarioError message loading ``text`` gives, with the file path as 'sim.toml'."""
    path = write_scenario(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        scenario.load(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return "sim.toml: " + message.removeprefix(f"{path}: ")


# ---------------------------------------------------------------- the TCP fault proxy
# An asyncio upstream on loopback and a proxy in front of it (tests/simulations/test_proxy.py,
# test_shaping.py).


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
