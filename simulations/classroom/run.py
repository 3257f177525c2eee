"""``ncbsim classroom``: bring a network up (or attach to one) and serve the page.

Without ``--workdir`` of a running network it starts the scenario's network as ``ncbsim
up --faults`` does (every bureau's link through a fault proxy, so a partition or a slow
link is a click away), with the gateway in classroom mode (attacks possible), and stops
it when the classroom stops. With ``--workdir`` of a network already up it attaches: the
network stays up afterwards, and attacks are off unless ``ncbsim classroom`` started it.

The page binds loopback unless told otherwise: it shows plaintext from the bureaus' side,
so serving it on another address takes ``allow_remote`` and prints a warning.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import structlog
from aiohttp import web

from ncbsim.errors import ConfigError
from ncbsim.processes import sigterm_as_interrupt
from ncbsim.simulations import operate
from ncbsim.simulations.classroom import DEFAULT_PORT, DEFAULT_SCENARIO
from ncbsim.simulations.classroom.hub import Hub
from ncbsim.simulations.classroom.room import Classroom
from ncbsim.simulations.classroom.server import make_app
from ncbsim.workdir import Workdir

log = structlog.get_logger()


@dataclass(frozen=True, kw_only=True, slots=True)
class ClassroomConfig:
    """What ``ncbsim classroom`` serves, and where."""

    scenario: str = DEFAULT_SCENARIO
    workdir: Path | None = None
    listen: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    allow_remote: bool = False
    log_level: str = "info"
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port: {self.port} is not a TCP port (0 to 65535; 0: any free)")
        try:
            address = ipaddress.ip_address(self.listen)
        except ValueError:
            raise ConfigError(f"--listen: {self.listen!r} is not an IP address") from None
        if not address.is_loopback and not self.allow_remote:
            raise ConfigError(
                f"--listen {self.listen}: the page shows plaintext from the bureaus' side; "
                "serving it beyond this machine takes --allow-remote"
            )


def attachable(workdir: Path | None) -> bool:
    """Whether ``workdir`` holds a network that is up (then the classroom attaches)."""
    return workdir is not None and Workdir(workdir).manifest.exists()


async def serve(
    config: ClassroomConfig,
    workdir: Path,
    out: TextIO,
    *,
    until: Callable[[], asyncio.Future[None]] | None = None,
) -> None:
    """Follow the network of ``workdir`` and serve the page until cancelled."""
    hub = Hub()
    # The scenario's name as the network's manifest has it (not the file given, nor the
    # default of a classroom that attached to a network of another scenario).
    room = Classroom(workdir, hub, timeout_s=config.timeout_s)
    await room.start()
    runner = web.AppRunner(make_app(room, hub), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.listen, config.port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(
                f"--port {config.port}: cannot listen on {config.listen} ({exc.strerror}); "
                "pick another port (0: any free one)"
            ) from None
        host, port = runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"Classroom: http://{shown}:{port}/  (Ctrl-C stops)", file=out, flush=True)
        log.info("classroom_serving", address=f"{shown}:{port}", workdir=str(workdir))
        await (until() if until is not None else _stopped())
    finally:
        hub.close()
        await runner.cleanup()
        await room.close()


async def _stopped() -> None:
    """Return on SIGINT (Ctrl-C) or SIGTERM. Handled by the loop itself: a shell starts a
    background job with SIGINT ignored, so ``kill PID`` must not rely on Ctrl-C's path."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, handler)


def run(config: ClassroomConfig, out: TextIO = sys.stdout) -> int:
    """Bring up (or attach to) the network, serve the page until Ctrl-C, clean up."""
    from ncbsim.simulations import scenario as scenarios

    if not ipaddress.ip_address(config.listen).is_loopback:
        print(
            f"WARNING: serving the classroom on {config.listen}: anyone who can reach it "
            "sees the bureaus' plaintext queries and can act as any bureau.",
            file=sys.stderr,
        )
    owned = not attachable(config.workdir)
    workdir = config.workdir or Path(tempfile.mkdtemp(prefix="ncbsim-classroom-"))
    with sigterm_as_interrupt():
        try:
            if owned:
                loaded = scenarios.load(config.scenario)
                print(
                    f"Starting scenario {loaded.name}: a gateway and {len(loaded.bureaus)} "
                    f"bureaus ({', '.join(loaded.bureaus[:12])}"
                    f"{', ...' if len(loaded.bureaus) > 12 else ''}) on loopback, in classroom "
                    "mode.",
                    file=out,
                    flush=True,
                )
                operate.up(
                    workdir,
                    loaded,
                    detach=False,
                    log_level=config.log_level,
                    faults=True,
                    attacks=True,
                )
            else:
                print(f"Attaching to the network in {workdir}.", file=out, flush=True)
            print(f"  files in {workdir.resolve()}", file=out, flush=True)
            try:
                asyncio.run(serve(config, workdir, out))
            except KeyboardInterrupt:
                pass
            finally:
                if owned:
                    operate.down(workdir)
                    print("Network stopped.", file=out, flush=True)
        finally:
            if owned and config.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
    return 0
