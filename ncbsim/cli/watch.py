"""``ncbsim watch``: a running network live, as a dashboard, JSON figures or raw events.

The figures are ncbsim.simulations.watch's, fed by ncbsim.simulations.watch_sources and
drawn by ncbsim.simulations.watch_view; docs/watch.md documents the command and the
``--json`` object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from ncbsim.cli._common import add_workdir_option
from ncbsim.errors import ConfigError

__all__ = ["add_parsers", "cmd_watch", "kind_prefixes"]

JSON_EVERY_S = 1.0


def kind_prefixes(text: str) -> list[str]:
    """``--kinds``: comma-separated event kinds or prefixes of them (``query.,fault.``)."""
    from ncbsim.events import KINDS

    prefixes = [k.strip() for k in text.split(",") if k.strip()]
    for prefix in prefixes:
        if not any(kind.startswith(prefix) for kind in KINDS):
            families = sorted({kind.split(".")[0] + "." for kind in KINDS})
            raise ConfigError(
                f"--kinds: {prefix!r} is no event kind nor the start of one"
                f" (kinds start with {', '.join(families)}; docs/events.md)"
            )
    return prefixes


def _gone(workdir: Path) -> Callable[[], bool]:
    manifest = (workdir / "network.json").resolve()
    return lambda: not manifest.exists()


async def _figures(args: argparse.Namespace, deadline: float | None) -> int:
    """``--json``: one line of figures a second (or the live view without it)."""
    from rich.console import Console

    from ncbsim.simulations.watch_sources import Watcher
    from ncbsim.simulations.watch_view import show

    loop = asyncio.get_running_loop()
    watcher = Watcher(args.workdir, window_s=args.window)
    running = asyncio.create_task(watcher.run())
    gone = _gone(args.workdir)
    lines = 0

    def over() -> bool:
        return (
            gone()
            or (deadline is not None and loop.time() >= deadline)
            or (args.count is not None and lines >= args.count)
        )

    try:
        if not args.json:
            console = Console()

            def frame() -> bool:
                nonlocal lines
                lines += 1
                return over()

            await show(
                watcher.model.snapshot,
                console,
                screen=console.is_terminal,
                until=frame,
                wake=watcher.changed,
            )
        else:
            start = loop.time()
            while not over():
                await asyncio.sleep(max(0.0, start + (lines + 1) * JSON_EVERY_S - loop.time()))
                print(json.dumps(watcher.model.snapshot().to_json()), flush=True)
                lines += 1
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    if gone():
        print(f"ncbsim: the network of {args.workdir} was brought down", file=sys.stderr)
    return 0


async def _events(args: argparse.Namespace, deadline: float | None) -> int:
    """``--events``: the merged raw event stream, one JSON line (ncbsim.events) each."""
    from ncbsim.simulations.observe_net import NetworkObserver

    loop = asyncio.get_running_loop()
    observer = NetworkObserver(args.workdir, kinds=args.kinds)
    running = asyncio.create_task(observer.run())
    gone = _gone(args.workdir)
    printed = 0
    try:
        while not gone() and (deadline is None or loop.time() < deadline):
            wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - loop.time()))
            for event in await observer.next_batch(timeout=wait):
                print(event.to_json())
                printed += 1
                if args.count is not None and printed >= args.count:
                    return 0
            sys.stdout.flush()
    finally:
        sys.stdout.flush()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    if gone():
        print(f"ncbsim: the network of {args.workdir} was brought down", file=sys.stderr)
    return 0


async def _watch(args: argparse.Namespace) -> int:
    from ncbsim.processes import cancel_on_sigterm

    loop = asyncio.get_running_loop()
    deadline = None if args.duration is None else loop.time() + args.duration
    with cancel_on_sigterm():  # SIGTERM ends it as Ctrl-C does: the terminal given back
        try:
            if args.events:
                return await _events(args, deadline)
            return await _figures(args, deadline)
        except asyncio.CancelledError:
            return 0


def cmd_watch(args: argparse.Namespace) -> int:
    """``ncbsim watch``: follow the network of ``--workdir`` until Ctrl-C or a bound."""
    from ncbsim.simulations import operate

    if args.duration is not None and not args.duration > 0:
        raise ConfigError("--duration must be a number of seconds > 0")
    if args.count is not None and args.count < 1:
        raise ConfigError("--count must be at least 1")
    if not args.window > 0:
        raise ConfigError("--window must be a number of seconds > 0")
    if args.kinds and not args.events:
        raise ConfigError("--kinds filters --events; the dashboard and --json need every event")
    args.kinds = kind_prefixes(args.kinds or "")
    operate.load(args.workdir)  # no network there: a one-line error, exit 2
    try:
        return asyncio.run(_watch(args))
    except KeyboardInterrupt:  # Ctrl-C: a normal way to stop watching
        return 0
    except BrokenPipeError:  # `ncbsim watch --events | head`: the reader had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``watch`` on the ``ncbsim`` subparsers."""
    watch = sub.add_parser(
        "watch",
        help="watch a running network live: qps, latency, bureau states, faults, events",
        description="A live dashboard of the network of `ncbsim up`: queries per second and "
        "p50/p95/p99 over a sliding window, each bureau's state (serving, slow, "
        "partitioned, down, paused), refusals by reason, mailbox depth, the faults in force "
        "and the latest events, redrawn twice a second. Ctrl-C stops it. docs/watch.md.",
    )
    add_workdir_option(watch)
    mode = watch.add_mutually_exclusive_group()
    mode.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object of figures a second instead (docs/watch.md), for scripts",
    )
    mode.add_argument(
        "--events",
        action="store_true",
        help="print the raw merged event stream instead, one JSON line per event "
        "(the schema of docs/events.md)",
    )
    watch.add_argument(
        "--kinds",
        metavar="PREFIXES",
        help="with --events: only kinds starting with one of these, e.g. query.,fault.",
    )
    watch.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (exit 0)")
    watch.add_argument(
        "--count",
        type=int,
        metavar="N",
        help="stop after N lines of --json, N events of --events, or N redraws",
    )
    watch.add_argument(
        "--window",
        type=float,
        default=10.0,
        metavar="S",
        help="the sliding window of rates and percentiles, in seconds (default 10)",
    )
    watch.set_defaults(func=cmd_watch, server=False)
