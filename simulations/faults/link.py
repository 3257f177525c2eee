"""Link faults on a bureau's fault proxies: apply one, or set a link to the faults in force.

Shared by the simulation engine (simulations.engine), which runs the proxies in its own
loop, and by the fault daemon of ``ncbsim up --faults`` (simulations.faultd), so that a
fault applied live does exactly what the same fault in a scenario file does.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from functools import partial

from ncbsim.simulations.proxy import FaultProxy, Link
from ncbsim.simulations.scenario import LINK_FAULTS, Event

SHAPING_FAULTS = frozenset({"latency", "bandwidth", "loss", "slice", "blackhole"})
"""Link faults that shape the bytes (set on the proxies' Shapings)."""


async def start_link(code: str, addresses: Mapping[str, str], *, seed: int) -> Link:
    """Start both fault proxies of ``code``'s link to the gateway, serving at once.

    Each proxy looks its upstream up in ``addresses`` on every connection (``"gateway"``
    and ``code``), so a process restarted elsewhere is found. Seeded from the scenario's
    ``seed`` and the code, so the same run draws the same loss and jitter.
    """
    base = zlib.crc32(f"{seed}:{code}".encode())
    to_gateway = FaultProxy(f"{code}>gateway", partial(addresses.get, "gateway"), seed=base)
    to_bureau = FaultProxy(f"gateway>{code}", partial(addresses.get, code), seed=base + 1)
    await to_gateway.start()
    await to_bureau.start()
    return Link(code, to_gateway=to_gateway, to_bureau=to_bureau)


async def apply(link: Link, event: Event) -> int:
    """Apply ``event`` (a link fault or a partition) to ``link``.

    Returns how many connections a ``reset`` reset (0 for the other kinds). Raises
    ValueError for a fault that is not a link fault.
    """
    fault = event.fault
    if fault in SHAPING_FAULTS:
        link.apply(fault, event.direction, event.params)
    elif fault == "partition":
        link.apply("blackhole", "both", {})
    elif fault == "reset":
        proxies = [p for p in (link.to_gateway, link.to_bureau) if p is not None]
        return sum([await proxy.reset() for proxy in proxies])
    elif fault == "down":
        await link.down()
    else:
        raise ValueError(f"{fault} is not a link fault")
    return 0


async def relink(link: Link, in_force: Iterable[Event]) -> None:
    """Set ``link`` to exactly the link faults ``in_force`` (after one of them healed).

    Connections are reset only if a blackhole is lifted (never resume a half-dropped
    stream), and the link comes up only if no ``down`` remains.
    """
    shapings = link.shaping("both")
    was_blackholed = any(s.blackhole for s in shapings)
    for shaping in shapings:
        shaping.clear()
    down = False
    for event in in_force:
        if event.fault == "down":
            down = True
        elif event.fault == "partition":
            link.apply("blackhole", "both", {})
        elif event.fault in LINK_FAULTS and event.fault != "reset":
            assert event.fault is not None
            link.apply(event.fault, event.direction, event.params)
    if was_blackholed and not any(s.blackhole for s in shapings):
        await link.reset()
    proxies = [p for p in (link.to_gateway, link.to_bureau) if p is not None]
    if not down and any(p.is_down for p in proxies):
        await link.up()
