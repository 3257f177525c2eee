"""The fault daemon of ``ncbsim up --faults``: every bureau's link through fault proxies.

The simulation engine runs its fault proxies (ncbsim.simulations.proxy) in its own loop. A
network brought up with ``ncbsim up --detach`` has no engine process, so ``up --faults``
starts this small long-lived process (``ncbsim faultd``) first: it puts two proxies on
each bureau's link to the gateway (the bureau's connections to the gateway, and the
gateway's to the bureau's node), and ``ncbsim fault`` / ``ncbsim heal`` drive them
through its control socket. It is recorded in ``network.json`` (``faultd``, ``links``)
and stopped by ``ncbsim down``. Link faults do here exactly what they do in a scenario
(ncbsim.simulations.faults.link is shared with the engine).

The ready file is ``{"pid": N, "links": {"DE": {"to_gateway": "127.0.0.1:p",
"to_bureau": "127.0.0.1:q"}, ...}}``. The control socket (a Unix socket, 0600) takes
JSON lines, one request and one reply a line:

- ``{"op": "upstreams", "addresses": {"gateway": "host:port", "DE": "host:port"}}``: where
  the proxies forward to (set by ``up`` once the processes serve);
- ``{"op": "fault", "event": {...}}``: apply a link fault or partition, given as a
  scenario file's event table (validated by ncbsim.simulations.scenario.fault_event); the reply
  has ``fault`` (:func:`describe`) and, for a ``reset``, ``connections_reset``;
- ``{"op": "heal", "id": "cut"}`` and ``{"op": "heal_all"}``: end link faults (a fault
  with ``duration_s`` ends by itself on time);
- ``{"op": "status"}``: ``{"ok": true, "pid": N, "faults": [...], "links": {code: stats}}``;
- ``{"op": "note", "kind": "fault.applied", "view": {...}, "id": "cut"}``: publish a
  fault event of ``ncbsim fault`` / ``heal`` (process faults, which the daemon does not
  run itself) on the daemon's event stream; only ``fault.*`` kinds, checked by the schema;
- ``{"op": "observe", "kinds": ["fault."], "buffer": N}``: the reply
  ``{"ok": true, "observing": true}``, then the daemon's events as JSON lines of the schema
  (ncbsim.events, party "faultd"), each with ``dropped``: the events this subscriber has
  missed so far (its buffer of ``buffer`` events, default 4096, drops the oldest when it
  does not read). The stream ends when the client closes the connection;
- anything else, or a fault that cannot be applied: ``{"ok": false, "error": "..."}``.

The daemon's events are ``fault.applied`` (one per bureau; ``until_s``: Unix time of a
timed heal; ``connections`` a reset cut) and ``fault.healed`` (one per bureau, also for a
timed heal and ``heal_all``), correlated by the fault's id
(ncbsim.simulations.faults.observed). The socket is 0600: only its owner, the operator,
can drive or observe the daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from ncbsim.errors import ConfigError, NcbsimError
from ncbsim.eventbus import DEFAULT_BUFFER, MAX_BUFFER, EventBus
from ncbsim.events import Event
from ncbsim.serving import wait_for_shutdown, write_ready_file
from ncbsim.simulations.faults import link as link_faults
from ncbsim.simulations.faults import observed
from ncbsim.simulations.proxy import Link
from ncbsim.simulations.scenario import (
    GATEWAY,
    INSTANT_FAULTS,
    PROXY_FAULTS,
    FaultEvent,
    fault_event,
)

log = structlog.get_logger()

LINE_LIMIT = 64 * 1024
REPLY_TIMEOUT_S = 15.0
"""How long a client waits for a reply (a heal may reset many connections)."""
PARTY = "faultd"
NOTE_KINDS = frozenset({observed.APPLIED, observed.HEALED, observed.FAILED})
"""The kinds ``note`` publishes: faults that ``ncbsim fault`` did itself."""


def describe(
    event: FaultEvent,
    started_ms: int,
    *,
    until_ms: int | None = None,
    held: list[str] | None = None,
) -> dict[str, Any]:
    """A fault in force, as ``ncbsim status --json`` lists it. ``held``: what it holds
    down or changes (default: its targets)."""
    return {
        "id": event.id,
        "kind": event.fault,
        "target": GATEWAY if event.target == GATEWAY else "bureaus",
        "bureaus": list(event.bureaus),
        "held": list(event.targets) if held is None else held,
        "direction": event.direction,
        "params": dict(event.params),
        "started_ms": started_ms,
        "until_ms": until_ms,
    }


@dataclass(slots=True)
class _Active:
    event: FaultEvent
    started_ms: int
    until_ms: int | None
    timer: asyncio.Task[None] | None = None


class FaultDaemon:
    """The links of every bureau, the addresses they lead to, and the faults in force."""

    def __init__(self, bureaus: list[str], *, seed: int = 0) -> None:
        self.addresses: dict[str, str] = {}
        self.links: dict[str, Link] = {}
        self.active: dict[str, _Active] = {}
        self._bureaus = bureaus
        self._seed = seed
        self._lock = asyncio.Lock()  # one fault or heal at a time: relinks never interleave
        self.bus = EventBus(PARTY)
        """The daemon's events: its faults applied and healed (and those it is told of)."""

    async def start(self) -> dict[str, dict[str, str]]:
        """Start both proxies of every bureau; returns their addresses."""
        for code in self._bureaus:
            self.links[code] = await link_faults.start_link(code, self.addresses, seed=self._seed)
        return {
            code: {"to_gateway": link.to_gateway.address, "to_bureau": link.to_bureau.address}
            for code, link in self.links.items()
            if link.to_gateway is not None and link.to_bureau is not None
        }

    async def close(self) -> None:
        """Cancel the timed heals and close every proxy."""
        for active in self.active.values():
            if active.timer is not None:
                active.timer.cancel()
        for link in self.links.values():
            await link.close()

    async def handle(self, line: bytes) -> dict[str, Any]:
        """Answer one control request (a JSON line); never raises."""
        try:
            request = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            request = None
        if not isinstance(request, dict):
            return {"ok": False, "error": "a request is one JSON object on one line"}
        try:
            return await self._dispatch(request)
        except (NcbsimError, ValueError) as exc:
            return {"ok": False, "error": str(exc)}

    async def _dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op in ("status", "upstreams", "note"):
            return self._answer_now(op, request)
        if op not in ("fault", "heal", "heal_all"):
            ops = "fault, heal, heal_all, note, observe, status, upstreams"
            return {"ok": False, "error": f"unknown op {op!r} (expected {ops})"}
        async with self._lock:
            if op == "fault":
                return await self._fault(request.get("event"))
            if op == "heal":
                return await self._heal(request.get("id"))
            return {"ok": True, "healed": [await self._end(i) for i in list(self.active)]}

    def status(self) -> dict[str, Any]:
        """The reply to a ``status`` request."""
        return {
            "ok": True,
            "pid": os.getpid(),
            "faults": [
                describe(a.event, a.started_ms, until_ms=a.until_ms) for a in self.active.values()
            ],
            "links": {
                code: {
                    "to_gateway": link.to_gateway.stats if link.to_gateway else {},
                    "to_bureau": link.to_bureau.stats if link.to_bureau else {},
                }
                for code, link in self.links.items()
            },
        }

    def _upstreams(self, addresses: object) -> dict[str, Any]:
        if not isinstance(addresses, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in addresses.items()
        ):
            return {"ok": False, "error": "addresses must map names to host:port strings"}
        self.addresses.update(addresses)
        return {"ok": True}

    def _answer_now(self, op: str, request: dict[str, Any]) -> dict[str, Any]:
        """The requests answered at once, without the fault lock."""
        if op == "status":
            return self.status()
        if op == "upstreams":
            return self._upstreams(request.get("addresses"))
        return self._note(request)

    def _note(self, request: dict[str, Any]) -> dict[str, Any]:
        """Publish a fault event of a process fault, checked by the schema."""
        kind, view, fault_id = request.get("kind"), request.get("view"), request.get("id", "")
        if kind not in NOTE_KINDS:
            return {"ok": False, "error": f"note: kind must be one of {sorted(NOTE_KINDS)}"}
        if not isinstance(view, dict) or not isinstance(fault_id, str):
            return {"ok": False, "error": "note: view must be an object and id a string"}
        self.bus.emit(kind, view, correlation_id=fault_id[:64], trace_id="")
        return {"ok": True}

    def _emit(self, kind: str, event: FaultEvent, **extra: int | float) -> None:
        """One ``kind`` event per bureau of ``event``, correlated by its id."""
        for target in observed.targets(event):
            view = {**observed.view(event, target), **extra}
            self.bus.emit(kind, view, correlation_id=event.id, trace_id="")

    async def _fault(self, table: object) -> dict[str, Any]:
        if not isinstance(table, dict):
            return {"ok": False, "error": "event must be a scenario fault table"}
        event = fault_event(table)
        fault = event.fault
        if fault not in PROXY_FAULTS:
            raise ValueError(f"{fault} is not a link fault; the fault daemon only runs links")
        unknown = [code for code in event.bureaus if code not in self.links]
        if unknown:
            raise ValueError(f"no link of {', '.join(unknown)} runs through this fault daemon")
        if event.id in self.active:
            raise ValueError(f"a fault with id {event.id!r} is already in force")
        now_ms = int(time.time() * 1000)
        if fault in INSTANT_FAULTS:  # a reset: done at once, nothing stays in force
            resets = sum(
                [await link_faults.apply(self.links[c], event) or 0 for c in event.bureaus]
            )
            self._emit(observed.APPLIED, event, connections=resets)
            log.info("live_fault", id=event.id, kind=fault, connections_reset=resets)
            return {"ok": True, "fault": describe(event, now_ms), "connections_reset": resets}
        until = None if event.duration_s is None else now_ms + int(event.duration_s * 1000)
        active = _Active(event, now_ms, until)
        self.active[event.id] = active  # in force before acting, so a failure is healable
        for code in event.bureaus:
            await link_faults.apply(self.links[code], event)
        if event.duration_s is not None:
            active.timer = asyncio.create_task(self._heal_later(event.id, event.duration_s))
        self._emit(observed.APPLIED, event, **({} if until is None else {"until_s": until / 1000}))
        log.info("live_fault", id=event.id, kind=fault, bureaus=list(event.bureaus))
        return {"ok": True, "fault": describe(event, now_ms, until_ms=until)}

    async def _heal_later(self, fault_id: str, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        async with self._lock:
            active = self.active.get(fault_id)
            if active is not None:
                active.timer = None  # this task: not cancelled by its own heal
                await self._end(fault_id)

    async def _heal(self, fault_id: object) -> dict[str, Any]:
        if not isinstance(fault_id, str) or fault_id not in self.active:
            return {"ok": False, "error": f"no link fault {fault_id!r} is in force"}
        active = self.active[fault_id]
        await self._end(fault_id)
        return {"ok": True, "fault": describe(active.event, active.started_ms)}

    async def _end(self, fault_id: str) -> str:
        """Take ``fault_id`` out of force, and set its links to the faults that remain."""
        active = self.active.pop(fault_id)
        if active.timer is not None:
            active.timer.cancel()
        for code in active.event.bureaus:
            remaining = [a.event for a in self.active.values() if code in a.event.bureaus]
            await link_faults.heal(self.links[code], remaining)
        self._emit(observed.HEALED, active.event)
        log.info("live_heal", id=fault_id, kind=active.event.fault)
        return fault_id

    async def serve_control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One control connection: a reply line for each request line, until EOF."""
        try:
            while line := await reader.readline():
                if _is_observe(line):
                    await self._observe(line, reader, writer)
                    break
                if line.strip():
                    writer.write(json.dumps(await self.handle(line)).encode() + b"\n")
                    await writer.drain()
        except ValueError:  # longer than the limit
            writer.write(b'{"ok": false, "error": "request line too long"}\n')
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:  # a control client must never take the daemon down
            log.exception("control_failed")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _observe(
        self, line: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Stream the daemon's events to this connection until its client closes it."""
        request = json.loads(line)
        kinds, buffer = request.get("kinds", []), request.get("buffer", DEFAULT_BUFFER)
        if (
            not isinstance(kinds, list)
            or not all(isinstance(k, str) for k in kinds)
            or isinstance(buffer, bool)
            or not isinstance(buffer, int)
            or not 1 <= buffer <= MAX_BUFFER
        ):
            error = f"observe: kinds must be a list of strings and buffer 1..{MAX_BUFFER}"
            writer.write(json.dumps({"ok": False, "error": error}).encode() + b"\n")
            return
        sub = self.bus.subscribe(buffer=buffer, kinds=kinds, loop=asyncio.get_running_loop())
        gone = asyncio.create_task(_until_eof(reader))
        try:
            writer.write(b'{"ok": true, "observing": true}\n')
            await writer.drain()
            while not gone.done():
                for event in await sub.next_batch(timeout=0.5):
                    writer.write(_line(event, sub.dropped))
                await writer.drain()
        finally:
            sub.close()
            gone.cancel()


def _is_observe(line: bytes) -> bool:
    """Whether a control line asks to observe (the connection becomes a stream)."""
    try:
        request = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(request, dict) and request.get("op") == "observe"


def _line(event: Event, dropped: int) -> bytes:
    """One event of the stream, with the subscriber's dropped count."""
    return (
        json.dumps({**event.to_dict(), "dropped": dropped}, separators=(",", ":")).encode() + b"\n"
    )


async def _until_eof(reader: asyncio.StreamReader) -> None:
    """Return when the client closes its side (anything it sends meanwhile is ignored)."""
    with contextlib.suppress(ConnectionError, ValueError):
        while await reader.read(4096):
            pass


async def run(
    bureaus: list[str],
    *,
    control: Path,
    ready_file: Path | None = None,
    seed: int = 0,
    stop: asyncio.Event | None = None,
) -> int:
    """Serve the links of ``bureaus`` until ``stop`` is set (default: SIGINT or SIGTERM)."""
    # Waited for from the start, so a signal during start-up still closes and unlinks all.
    stopped = asyncio.create_task(stop.wait() if stop is not None else wait_for_shutdown())
    await asyncio.sleep(0)  # the task installs its signal handlers
    daemon = FaultDaemon(bureaus, seed=seed)
    umask = os.umask(0o077)  # the socket is 0600 from the start
    try:
        server = await asyncio.start_unix_server(
            daemon.serve_control, path=str(control), limit=LINE_LIMIT
        )
    finally:
        os.umask(umask)
    try:
        addresses = await daemon.start()
        write_ready_file(ready_file, role="faultd", links=addresses)
        log.info("faultd_ready", bureaus=len(bureaus))
        await stopped
    finally:
        stopped.cancel()
        server.close()
        await daemon.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()
        control.unlink(missing_ok=True)
    log.info("faultd_stopped")
    return 0


def request(
    sock: str | Path, message: Mapping[str, Any], *, timeout: float = REPLY_TIMEOUT_S
) -> dict[str, Any]:
    """Send one request to a fault daemon's control socket; its reply (blocking).

    Raises ConnectionError (OSError) if the daemon does not answer.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(sock))
        conn.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError(f"{sock}: the fault daemon closed the connection")
            data += chunk
    reply: dict[str, Any] = json.loads(data)
    return reply


def cmd_faultd(args: argparse.Namespace) -> int:
    """``ncbsim faultd``: run the fault proxies of every bureau's link."""
    bureaus = [c.strip().upper() for c in args.bureaus.split(",") if c.strip()]
    if not bureaus:
        raise ConfigError("--bureaus: expected at least one bureau code")
    return asyncio.run(
        run(bureaus, control=args.control, ready_file=args.ready_file, seed=args.seed)
    )


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``faultd`` on the ``ncbsim`` subparsers."""
    faultd = sub.add_parser(
        "faultd",
        help="run the fault proxies of a network's links (started by `up --faults`)",
        description="Put every bureau's link to the gateway through fault proxies, driven "
        "by `ncbsim fault` and `ncbsim heal` over a control socket. See simulations/faultd.py.",
    )
    faultd.add_argument(
        "--workdir", type=Path, required=True, help="the network's workdir (names it as ours)"
    )
    faultd.add_argument("--bureaus", required=True, help="comma-separated codes, e.g. FR,DE")
    faultd.add_argument("--control", type=Path, required=True, help="Unix socket to listen on")
    faultd.add_argument("--ready-file", type=Path, help="written once every proxy listens")
    faultd.add_argument("--seed", type=int, default=0, help="seed of jitter and loss draws")
    faultd.set_defaults(func=cmd_faultd, server=True)
