"""The live view of ``ncbsim watch`` and ``simulate --watch``: a snapshot drawn with rich.

:func:`render` draws one :class:`~ncbsim.simulations.watch.Snapshot` to fit a terminal of
the given size (80x24 and up): a header (network, uptime, queries per second, p50/p95/p99,
events received and dropped), a bureau table (state coloured, queries and p95 in the
window, mailbox depth, why), refusals by reason, the faults in force and the latest
events. Tables that do not fit are cut, most interesting rows first (bureaus not
serving), with a "+N more" line. :func:`show` keeps it on screen, about twice a second.

Events carry metadata only (ncbsim.events), so nothing drawn here can hold a payload or
a query term.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ncbsim.events import Event
from ncbsim.simulations.watch import Row, Snapshot, State
from ncbsim.simulations.watch_sources import Watcher, engine_faults

if TYPE_CHECKING:
    from ncbsim.simulations.engine import Engine

__all__ = ["REFRESH_S", "STYLES", "render", "show", "watching"]

REFRESH_S = 0.5
"""How often the view is redrawn."""
STYLES = {
    State.SERVING: "green",
    State.SLOW: "yellow",
    State.PARTITIONED: "bold magenta",
    State.DOWN: "bold red",
    State.PAUSED: "cyan",
}
_ORDER = {state: n for n, state in enumerate(State)}  # most severe first
_MAX_FAULTS = 3
_MAX_EVENTS = 8
_MIN_EVENTS = 3
_FIRST = ("outcome", "reason", "elapsed_ms", "fault", "target", "role")
"""View keys shown first in an event's line (the rest may be cut at the edge)."""


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _uptime(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _header(snap: Snapshot) -> list[Text]:
    first = Text.assemble(
        ("ncbsim watch", "bold"),
        f" {snap.network or '?'}  up {_uptime(snap.uptime_s)}  ",
        (f"{snap.qps:.1f} q/s", "bold"),
        f"  p50 {_ms(snap.p50_ms)}  p95 {_ms(snap.p95_ms)}  p99 {_ms(snap.p99_ms)} ms",
    )
    gateway = snap.gateway
    second = Text.assemble(
        "gateway ",
        (str(gateway.state), STYLES[gateway.state]),
        f" {gateway.why}" if gateway.why else "",
        f"  queries {snap.queries_total} ({snap.queries_window} in {snap.window_s:g} s)",
        f"  events {snap.events_received}",
        (f"  dropped {snap.events_dropped}", "red" if snap.events_dropped else ""),
    )
    for line in (first, second):
        line.no_wrap, line.overflow = True, "ellipsis"
    return [first, second]


def _bureaus(rows: list[Row], room: int, width: int) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, width=width, show_edge=False)
    table.add_column("bureau", no_wrap=True, min_width=6)
    table.add_column("state", no_wrap=True, min_width=11)
    table.add_column("q/win", justify="right", no_wrap=True)
    table.add_column("p95 ms", justify="right", no_wrap=True)
    table.add_column("mailbox", justify="right", no_wrap=True)
    table.add_column("why", no_wrap=True, overflow="ellipsis", ratio=1)
    ordered = sorted(rows, key=lambda r: (_ORDER[r.state], r.name))
    shown = ordered if len(ordered) <= room else ordered[: max(room - 1, 0)]
    for row in shown:
        table.add_row(
            row.name,
            Text(str(row.state), STYLES[row.state]),
            str(row.queries),
            _ms(row.p95_ms),
            "-" if row.mailbox is None else str(row.mailbox),
            row.why,
        )
    hidden = ordered[len(shown) :]
    if hidden:
        serving = sum(r.state == State.SERVING for r in hidden)
        table.add_row(f"+{len(hidden)} more", f"{serving} serving", "", "", "", "")
    return table


def _line(text: str, style: str = "") -> Text:
    out = Text(text, style=style)
    out.no_wrap, out.overflow = True, "ellipsis"
    return out


def _refusals(snap: Snapshot) -> Text:
    if not snap.refusals_total:
        return _line("refusals: none")
    parts = [
        f"{reason} {count}"
        + (f" (+{snap.refusals_window[reason]})" if reason in snap.refusals_window else "")
        for reason, count in snap.refusals_total.items()
    ]
    return _line("refusals: " + ", ".join(parts))


def _faults(snap: Snapshot) -> list[Text]:
    if not snap.faults:
        return [_line("faults in force: none")]
    lines = [_line(f"faults in force: {len(snap.faults)}", "bold")]
    shown = snap.faults if len(snap.faults) <= _MAX_FAULTS else snap.faults[: _MAX_FAULTS - 1]
    for fault in shown:
        since = f"{snap.time - fault.started:.0f} s" if fault.started else "now"
        until = f", heals in {fault.until - snap.time:.0f} s" if fault.until is not None else ""
        words = [f"  {fault.id}: {fault.kind}", ", ".join(fault.held), fault.describe()]
        lines.append(_line(" ".join(w for w in words if w) + f" ({since}{until})"))
    if len(shown) < len(snap.faults):
        lines.append(_line(f"  +{len(snap.faults) - len(shown)} more"))
    return lines


def event_line(event: Event) -> str:
    """One event in a line: time, party, kind and its view (codes and numbers only)."""
    clock = time.strftime("%H:%M:%S", time.localtime(event.time))
    view = dict(event.view)
    sender, recipient = view.pop("sender", None), view.pop("recipient", None)
    route = f"{sender or '?'}>{recipient or '?'} " if sender or recipient else ""
    if sender and not recipient:
        route = f"from {sender} "
    elif recipient and not sender:
        route = f"to {recipient} "
    first = [k for k in _FIRST if k in view] + [k for k in view if k not in _FIRST]
    rest = " ".join(f"{k}={view[k]}" for k in first)
    return f"{clock} {event.party} {event.kind} {route}{rest}"


def render(snap: Snapshot, width: int = 80, height: int = 24) -> RenderableType:
    """The whole view of ``snap``, at most ``width`` columns and ``height`` lines."""
    faults = _faults(snap)
    events = list(snap.last_events)[-_MAX_EVENTS:]
    # Fixed: the header (2), the table's head (2), refusals (1), the events' title (1).
    room = max(height - 6 - len(faults) - max(len(events), 1), 1)
    if room < len(snap.bureaus):  # give the bureaus room, down to a few events
        spare = len(events) - _MIN_EVENTS
        if spare > 0:
            take = min(spare, len(snap.bureaus) - room)
            events = events[take:]
            room += take
    parts: list[RenderableType] = [
        *_header(snap),
        _bureaus(list(snap.bureaus), room, width),
        _refusals(snap),
        *faults,
        _line(f"last events ({snap.events_received} received)", "bold"),
    ]
    parts += [_line("  " + event_line(e), "dim") for e in events] or [_line("  none yet", "dim")]
    return Group(*parts)


async def show(
    snapshot: Callable[[], Snapshot],
    console: Console,
    *,
    screen: bool = False,
    until: Callable[[], bool] = lambda: False,
    wake: asyncio.Event | None = None,
) -> None:
    """Draw ``snapshot()`` on ``console`` about twice a second until cancelled or ``until()``.

    ``screen``: take the whole terminal (as ``top`` does) and give it back on exit.
    ``wake``: set when a state changed, to redraw at once rather than at the next tick.
    """
    with Live(console=console, screen=screen, auto_refresh=False, redirect_stdout=True) as live:
        while True:
            size = console.size
            live.update(render(snapshot(), size.width, size.height - 1), refresh=True)
            if until():
                return
            if wake is None:
                await asyncio.sleep(REFRESH_S)
                continue
            # asyncio.timeout, not wait_for, which on Python 3.11 may swallow a cancel.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REFRESH_S):
                    await wake.wait()
            wake.clear()


@contextlib.asynccontextmanager
async def watching(engine: Engine, console: Console) -> AsyncIterator[Watcher]:
    """``simulate --watch``: the live view of ``engine``'s network on ``console`` while
    the block runs; the faults in force are the engine's own schedule's."""
    watcher = Watcher(
        engine.workdir, faults_of=engine_faults(engine.faults.active.values, engine.now_s)
    )
    # The simulator's own events (its faults, its phases) join the network's, in-process.
    own = engine.result.recorder.bus("sim").subscribe(loop=asyncio.get_running_loop())

    async def feed_own() -> None:
        while not own.closed:
            events = await own.next_batch(timeout=REFRESH_S)
            if events:
                watcher.model.feed(events)
                watcher.changed.set()

    tasks = [
        asyncio.create_task(watcher.run()),
        asyncio.create_task(feed_own()),
        asyncio.create_task(show(watcher.model.snapshot, console, wake=watcher.changed)),
    ]
    try:
        yield watcher
    finally:
        own.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
