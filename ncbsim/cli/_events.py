"""``--events PATH``: a client command's own events, as JSON lines, while it runs.

The sending commands (``query``, ``message send``, ``diffuse``, ``notice request``,
``notice withdraw``) act as a bureau's client (party ``client:XX``). With ``--events``
they subscribe to that client's :class:`~ncbsim.eventbus.EventBus` and write each event
as one line of docs/events.md's JSON form to PATH (``-``: standard error), as it
happens; a line is flushed at once, so ``tail -f`` follows it. Without the option no
bus is made and the client emits nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TextIO

from ncbsim.errors import cannot_write
from ncbsim.eventbus import MAX_BUFFER, EventBus, Subscription
from ncbsim.events import Event

__all__ = ["add_events_option", "client_events"]


def add_events_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--events PATH``."""
    parser.add_argument(
        "--events",
        metavar="PATH",
        help="write this client's events (docs/events.md) as JSON lines to PATH; - is stderr",
    )


def _open(target: str) -> TextIO:
    if target == "-":
        return sys.stderr
    path = Path(target)
    try:
        return path.open("a", encoding="utf-8")
    except OSError as exc:
        raise cannot_write(path, exc) from None


async def _pump(sub: Subscription, out: TextIO) -> None:
    while not sub.closed:
        _write(await sub.next_batch(), out)


def _write(events: list[Event], out: TextIO) -> None:
    for event in events:
        out.write(event.to_json() + "\n")
    if events:
        out.flush()


@contextlib.asynccontextmanager
async def client_events(args: argparse.Namespace) -> AsyncIterator[EventBus | None]:
    """The bus of ``args.as_bureau``'s client, written to ``args.events`` while the block
    runs (None without ``--events``). Every event emitted in the block is written."""
    target = getattr(args, "events", None)
    if not target:
        yield None
        return
    out = _open(target)
    bus = EventBus(f"client:{args.as_bureau}")
    sub = bus.subscribe(buffer=MAX_BUFFER, loop=asyncio.get_running_loop())
    pump = asyncio.create_task(_pump(sub, out))
    try:
        yield bus
    finally:
        sub.close()
        await pump
        _write(sub.drain(), out)
        if out is not sys.stderr:
            out.close()
