"""Observe a whole running network: one merged event stream from every party.

:class:`NetworkObserver` reads ``network.json`` of a work directory, opens the operator's
``Observe`` stream (:mod:`ncbsim.observe`) to the gateway and to every node, and merges
what they send into one bounded queue. When network.json names a fault daemon
(``up --faults``), its events (party "faultd": faults applied and healed) come too,
through its owner-only control socket (``{"op": "observe"}``, ncbsim.simulations.faultd).
``parties`` narrows what is followed (the simulator of a large network follows only the
gateway). A party whose stream ends (stopped, killed,
restarted on a new port) is marked disconnected and retried, re-reading ``network.json``
for its address, so a restarted node is followed. Each party's :class:`Source` says
whether it is connected, how many events came from it and how many it reported missed;
the merged queue drops its oldest events too when the reader falls behind, and counts them.

``ncbsim watch``, ``simulate --watch`` and the demo read a network through this.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from ncbsim import observe, transport
from ncbsim.eventbus import DEFAULT_BUFFER, EventBus, Subscription
from ncbsim.events import Event, from_dict
from ncbsim.pki import GATEWAY_NAME, PkiDir, TlsFiles, bureau_dns_name
from ncbsim.simulations import manifest

RETRY_S = 0.5
"""How soon a lost stream is tried again (and network.json re-read)."""
MAX_RETRY_S = 5.0
"""The longest wait between tries: each failure in a row doubles it from ``retry_s``, so a
party that is down, or serves no event stream, costs a connection every 5 s, not 2 a second."""
FAULTD = "faultd"
_LINE_LIMIT = 1 << 20


@dataclass(slots=True)
class Source:
    """One party's stream as the observer sees it."""

    party: str
    address: str = ""
    connected: bool = False
    events: int = 0
    """Events received from this party."""
    dropped: int = 0
    """Events this party said this subscriber missed (on the current stream)."""
    error: str = ""
    """Why the stream is not connected (a gRPC status name), or ""."""
    changed_at: float = 0.0
    """When ``connected`` last changed (time.monotonic)."""
    failures: int = 0
    """Tries in a row that failed (reset once connected)."""


def _addresses(workdir: Path) -> dict[str, str]:
    """Party -> address of the gateway, every node and the fault daemon (its control
    socket), from network.json ({} if none)."""
    try:
        read = manifest.read(workdir)
    except Exception:
        return {}
    out = {(p.bureau or p.role): p.address for p in read.procs if p.role in ("gateway", "node")}
    if read.faultd and isinstance(read.faultd.get("address"), str):
        out[FAULTD] = read.faultd["address"]
    return out


class NetworkObserver:
    """The merged event stream of a running network's gateway and nodes."""

    def __init__(
        self,
        workdir: Path,
        *,
        kinds: Sequence[str] = (),
        buffer: int = DEFAULT_BUFFER,
        queue: int = 4 * DEFAULT_BUFFER,
        tls: TlsFiles | None = None,
        retry_s: float = RETRY_S,
        on_change: Callable[[Source], None] | None = None,
        parties: Collection[str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.kinds = tuple(kinds)
        self.parties = None if parties is None else frozenset(parties)
        """The parties followed ("gateway", bureau codes, "faultd"); None: every one."""
        self.buffer = buffer
        self.sources: dict[str, Source] = {}
        self._queue_size = queue
        self._tls = tls
        self._retry_s = retry_s
        self._on_change = on_change
        self._merged: Subscription | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def dropped(self) -> int:
        """Events lost in total: missed by the parties' buffers and by the merged queue."""
        merged = self._merged.dropped if self._merged is not None else 0
        return merged + sum(s.dropped for s in self.sources.values())

    async def run(self) -> None:
        """Follow the network until cancelled: a stream per party, retried when lost."""
        loop = asyncio.get_running_loop()
        self._merged = EventBus("network").subscribe(buffer=self._queue_size, loop=loop)
        tls = self._tls or PkiDir(self.workdir).tls("operator")
        try:
            while True:
                for party in self._addresses():
                    task = self._tasks.get(party)
                    if task is None or task.done():
                        self.sources.setdefault(party, Source(party))
                        self._tasks[party] = asyncio.create_task(self._follow(party, tls))
                await asyncio.sleep(self._retry_s)
        finally:
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            self._merged.close()

    async def next_batch(self, timeout: float | None = None) -> list[Event]:
        """The merged events received since the last call (waits up to ``timeout``)."""
        if self._merged is None or self._merged.closed:
            # Not following (yet, or any more): wait all the same, so that a reader's
            # loop never spins, and its cancellation can land.
            await asyncio.sleep(timeout or 0)
            return []
        return await self._merged.next_batch(timeout)

    async def _failed(self, source: Source, error: str) -> None:
        """Mark ``source`` lost and wait before it is tried again (longer each time)."""
        self._set(source, connected=False, error=error)
        source.failures += 1
        await asyncio.sleep(min(self._retry_s * 2 ** (source.failures - 1), MAX_RETRY_S))

    def _set(self, source: Source, *, connected: bool, error: str = "") -> None:
        if connected:
            source.failures = 0
        if source.connected != connected or source.error != error:
            source.connected, source.error = connected, error
            source.changed_at = time.monotonic()
            if self._on_change is not None:
                self._on_change(source)

    def _addresses(self) -> dict[str, str]:
        found = _addresses(self.workdir)
        return {k: v for k, v in found.items() if self.parties is None or k in self.parties}

    async def _follow(self, party: str, tls: TlsFiles) -> None:
        """One stream to ``party``, until it ends; the run loop starts another."""
        source = self.sources[party]
        address = self._addresses().get(party)
        if address is None:
            return
        source.address = address
        if party == FAULTD:
            await self._follow_faultd(source)
            return
        peer = GATEWAY_NAME if party == "gateway" else bureau_dns_name(party)
        channel = transport.secure_channel(address, tls, peer_name=peer)
        try:
            source.dropped = 0
            stream = observe.observe(
                channel,
                kinds=self.kinds,
                buffer=self.buffer,
                on_open=lambda: self._set(source, connected=True),
            )
            try:
                async for event, dropped in stream:
                    source.events += 1
                    source.dropped = dropped
                    assert self._merged is not None
                    self._merged.offer(event)
            finally:
                await stream.aclose()  # type: ignore[attr-defined] # an async generator
            self._set(source, connected=False, error="ENDED")
        except grpc.aio.AioRpcError as exc:
            await self._failed(source, exc.code().name)
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def _follow_faultd(self, source: Source) -> None:
        """The fault daemon's stream over its control socket, until it ends."""
        try:
            reader, writer = await asyncio.open_unix_connection(source.address, limit=_LINE_LIMIT)
        except OSError as exc:
            await self._failed(source, type(exc).__name__)
            return
        try:
            request = {"op": "observe", "kinds": list(self.kinds), "buffer": self.buffer}
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            reply = json.loads(await reader.readline() or b"{}")
            if not reply.get("ok"):
                await self._failed(source, "REFUSED")
                return
            source.dropped = 0
            self._set(source, connected=True)
            while line := await reader.readline():
                data = json.loads(line)
                source.events += 1
                source.dropped = int(data.get("dropped", 0))
                assert self._merged is not None
                self._merged.offer(from_dict(data))
            self._set(source, connected=False, error="ENDED")
        except (OSError, ValueError) as exc:
            await self._failed(source, type(exc).__name__)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
