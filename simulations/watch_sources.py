"""Where ``ncbsim watch`` learns the state of a running network, polled about twice a second.

:class:`Watcher` feeds a :class:`~ncbsim.simulations.watch.WatchModel` from the sources of
truth of a work directory:

- events: the operator's merged ``Observe`` stream of every party
  (:class:`~ncbsim.simulations.observe_net.NetworkObserver`), and whether each stream is
  connected;
- liveness: each process of ``network.json`` (its pid runs and is this network's, or is
  stopped by SIGSTOP), and its grpc.health.v1 status;
- faults in force: the fault daemon's link faults and ``WORKDIR/run/faults.json``'s
  process faults (:func:`ncbsim.simulations.live_faults.in_force`), or, in a simulation,
  the engine's own schedule (``faults_of``);
- mailbox depth: ``ncbsim_mailbox_depth{recipient}`` of the gateway's metrics page, when
  ``network.json`` gives its ``metrics`` address (parsed with prometheus_client's parser).

Each source is polled in its own task, so one slow answer (a paused fault daemon) never
holds up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import grpc
import structlog

from ncbsim import transport
from ncbsim.events import Event
from ncbsim.pki import GATEWAY_NAME, PkiDir, TlsFiles, bureau_dns_name
from ncbsim.simulations import manifest, supervise
from ncbsim.simulations.observe_net import NetworkObserver, Source
from ncbsim.simulations.watch import GATEWAY, WINDOW_S, Fault, Liveness, WatchModel

log = structlog.get_logger()

__all__ = ["Watcher", "parse_mailbox", "proc_state"]

POLL_S = 0.5
"""How often faults, pids and streams are read."""
HEALTH_S = 1.0
"""How often each server's health is checked (one cheap RPC on a kept channel)."""
HEALTH_TIMEOUT_S = 1.0
SCRAPE_S = 1.0
"""How often the gateway's metrics page is read, when it has one."""
MAILBOX_METRIC = "ncbsim_mailbox_depth"
_HEALTH_LIMIT = 16
_UNSERVED = frozenset({"UNIMPLEMENTED", "PERMISSION_DENIED"})
"""Stream errors that say the server does not stream to us, not that it is gone."""


def parse_mailbox(text: str) -> dict[str, float]:
    """Copies queued per recipient, from a Prometheus text page (``ncbsim_mailbox_depth``)."""
    from prometheus_client.parser import text_string_to_metric_families

    depth: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != MAILBOX_METRIC:
            continue
        for sample in family.samples:
            if sample.name == MAILBOX_METRIC and "recipient" in sample.labels:
                depth[sample.labels["recipient"]] = sample.value
    return depth


def scrape_mailbox(address: str, timeout: float = 1.0) -> dict[str, float] | None:
    """The mailbox depths of the metrics page at ``address`` (host:port), None if it does
    not answer (blocking)."""
    try:  # the loopback address network.json gives, never a user's URL
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as reply:
            return parse_mailbox(reply.read().decode())
    except (OSError, ValueError):
        return None


def proc_state(pid: int) -> str | None:
    """The state letter of ``pid`` in /proc (``R``, ``S``, ``T`` when stopped...), None if
    it does not exist."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _started_at(pids: Iterable[int]) -> float | None:
    """When the oldest of ``pids`` started (unix time), from /proc; None if unknown."""
    try:
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError):
        return None
    starts = []
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            starts.append(boot + int(fields[19]) / ticks)  # field 22: starttime
    return min(starts) if starts else None


def _stream(source: Source | None) -> str:
    if source is None:
        return ""
    if source.connected:
        return "connected"
    if source.error in _UNSERVED:
        return "unserved"
    return "lost" if source.error else ""


def _link_and_process_faults(workdir: Path) -> list[Fault] | None:
    """The faults in force in ``workdir``'s network (blocking), None if there is none."""
    from ncbsim.errors import NcbsimError
    from ncbsim.simulations import live_faults
    from ncbsim.simulations.network import Network

    try:
        network = Network.load(workdir)
        return [Fault.from_status(f) for f in live_faults.in_force(network, timeout=1.0)]
    except (NcbsimError, OSError, ValueError, KeyError):
        return None


class Watcher:
    """Follows the network of ``workdir`` into :attr:`model` until cancelled."""

    def __init__(
        self,
        workdir: Path,
        *,
        clock: Callable[[], float] = time.time,
        faults_of: Callable[[], Sequence[Fault]] | None = None,
        on_events: Callable[[list[Event]], None] | None = None,
        tls: TlsFiles | None = None,
        window_s: float = WINDOW_S,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self._clock = clock
        self._faults_of = faults_of
        self._on_events = on_events
        self._tls = tls
        self.observer = NetworkObserver(self.workdir, tls=tls)
        self.model = WatchModel(bureaus=[], clock=clock, window_s=window_s)
        self.changed = asyncio.Event()
        """Set when a state changes (a fault, a process, a stream): the view redraws at once."""
        self.running = False
        """Whether network.json names a network now (it goes when ``ncbsim down`` runs)."""
        self._procs: list[manifest.Proc] = []
        self._metrics = ""
        self._health: dict[str, str] = {}
        self._channels: dict[str, tuple[str, grpc.aio.Channel]] = {}

    def _read_manifest(self) -> bool:
        """Re-read network.json (a restarted process has a new pid); False if none."""
        try:
            read = manifest.read(self.workdir)
        except Exception:  # ConfigError (none, or half of one): said by `running`
            self.running = False
            return False
        self._procs = [p for p in read.procs if p.role in ("gateway", "node")]
        raw: list[dict[str, Any]] = read.data["processes"]
        gateway = next((p for p in raw if p.get("role") == "gateway"), {})
        self._metrics = str(gateway.get("metrics") or "")
        codes = [p.bureau for p in self._procs if p.bureau]
        if not self.running or self.model.bureaus != codes:
            self.model.bureaus = codes
            self.model.network = str(read.data.get("scenario", ""))
            started = _started_at(p.pid for p in self._procs)
            if started is not None:
                self.model.started = started
        self.running = True
        return True

    async def run(self) -> None:
        """Watch until cancelled (a network not started yet is waited for: its PKI and
        network.json come with it)."""
        while not self._read_manifest():
            await asyncio.sleep(POLL_S)
        tasks = [
            asyncio.create_task(self.observer.run()),
            asyncio.create_task(self._every(0.0, self._pump)),
            asyncio.create_task(self._every(POLL_S, self._poll)),
            asyncio.create_task(self._every(POLL_S, self._poll_faults)),
            asyncio.create_task(self._every(HEALTH_S, self._poll_health)),
            asyncio.create_task(self._every(SCRAPE_S, self._poll_mailbox)),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for _, channel in self._channels.values():
                with contextlib.suppress(Exception):
                    await channel.close()

    async def _every(self, period_s: float, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step`` every ``period_s`` until cancelled; a step that fails is logged and
        tried again next time (one broken source never stops the others)."""
        while True:
            try:
                await step()
            except Exception:
                log.exception("watch_source_failed", step=getattr(step, "__name__", "?"))
                await asyncio.sleep(max(period_s, POLL_S))
                continue
            await asyncio.sleep(period_s)

    async def _pump(self) -> None:
        """Events received since the last call, into the model."""
        events = await self.observer.next_batch(timeout=0.25)
        if events:
            self.model.feed(events)
            if self._on_events is not None:
                self._on_events(events)
        self.model.set_dropped(self.observer.dropped)

    async def _poll(self) -> None:
        """Pids and streams of every process."""
        if not self._read_manifest():
            return
        for proc in self._procs:
            party = proc.bureau or GATEWAY
            state = proc_state(proc.pid)
            alive = state not in (None, "Z") and supervise.ours(proc.pid, self.workdir)
            live = Liveness(
                alive=alive,
                stopped=alive and state in ("T", "t"),
                health=self._health.get(party, "") if alive else "",
                stream=_stream(self.observer.sources.get(party)),
            )
            if self.model.liveness(party) != live:
                self.model.set_liveness(party, live)
                self.changed.set()

    async def _poll_faults(self) -> None:
        """The faults in force."""
        if self._faults_of is not None:
            faults: Sequence[Fault] | None = self._faults_of()
        else:
            faults = await asyncio.to_thread(_link_and_process_faults, self.workdir)
        if faults is not None and tuple(faults) != self.model.faults:
            self.model.set_faults(faults)
            self.changed.set()

    async def _poll_health(self) -> None:
        """The health of every process, at most a few checks at once."""
        limit = asyncio.Semaphore(_HEALTH_LIMIT)

        async def one(proc: manifest.Proc) -> None:
            async with limit:
                party = proc.bureau or GATEWAY
                self._health[party] = await self._check(party, proc.address)

        if self.running:
            await asyncio.gather(*(one(p) for p in list(self._procs)))

    async def _check(self, party: str, address: str) -> str:
        """One health check of ``party`` on a channel kept between checks."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        kept = self._channels.get(party)
        if kept is None or kept[0] != address:  # new, or restarted on another address
            if kept is not None:
                await kept[1].close()
            tls = self._tls or PkiDir(self.workdir).tls("operator")
            peer = GATEWAY_NAME if party == GATEWAY else bureau_dns_name(party)
            kept = (address, transport.secure_channel(address, tls, peer_name=peer))
            self._channels[party] = kept
        stub = health_pb2_grpc.HealthStub(kept[1])
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=HEALTH_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            gone = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            return "UNREACHABLE" if exc.code() in gone else exc.code().name
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    async def _poll_mailbox(self) -> None:
        """The mailbox depths of the gateway's metrics page, when it has one."""
        depth = None
        if self.running and self._metrics:
            depth = await asyncio.to_thread(scrape_mailbox, self._metrics)
        self.model.set_mailbox(depth)


def engine_faults(
    active: Callable[[], Iterable[Any]], now_s: Callable[[], float]
) -> Callable[[], list[Fault]]:
    """The faults a simulation engine holds in force, for :class:`Watcher`'s ``faults_of``:
    read from its fault schedule's ``active`` values (each a ``record``, a FaultRecord
    timed in seconds of the engine's ``now_s``, and ``held``)."""

    def faults() -> list[Fault]:
        ago = time.time() - now_s()  # unix time of the engine's second 0
        out = []
        for item in list(active()):
            record = item.record
            held = sorted(item.held) if item.held else list(record.bureaus)
            out.append(
                Fault(
                    id=record.id,
                    kind=record.kind,
                    held=tuple(held),
                    params={k: float(v) for k, v in record.params.items()},
                    started=ago + record.start_s,
                    direction=record.direction,
                )
            )
        return out

    return faults
