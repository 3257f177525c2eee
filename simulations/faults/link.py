"""The link family: faults of a bureau's link to the gateway, done by its two fault proxies.

latency, bandwidth, loss, slice and blackhole shape the bytes one way or both; reset
resets every open connection at once; down refuses new connections; partition blackholes
both ways. :func:`apply` sets one fault on a link, :func:`heal` sets a link to exactly the
faults still in force. Shared by the simulation engine, which runs the proxies in its own
loop, and by the fault daemon of ``ncbsim up --faults`` (ncbsim.simulations.faultd), so that a
fault applied live does exactly what the same fault in a scenario file does.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from functools import partial
from typing import TYPE_CHECKING

from ncbsim.simulations.faults.kinds import Kind, Param
from ncbsim.simulations.proxy import FaultProxy, Link

if TYPE_CHECKING:
    from ncbsim.simulations.scenario import FaultEvent

FAMILY = "link"
KINDS = {
    "latency": Kind(
        family=FAMILY,
        directed=True,
        params={
            "latency_ms": Param("number", True, gt=0),
            "jitter_ms": Param("number", False, default=0, ge=0),
        },
    ),
    "bandwidth": Kind(
        family=FAMILY, directed=True, params={"kbit_per_s": Param("number", True, gt=0)}
    ),
    "loss": Kind(family=FAMILY, directed=True, params={"loss": Param("number", True, gt=0, le=1)}),
    "slice": Kind(
        family=FAMILY,
        directed=True,
        params={
            "piece_bytes": Param("int", False, default=1, ge=1),
            "pause_ms": Param("number", False, default=0, ge=0),
        },
    ),
    "blackhole": Kind(family=FAMILY, directed=True),
    "reset": Kind(family=FAMILY, directed=True, instant=True),
    "down": Kind(family=FAMILY, directed=True),
    "partition": Kind(family=FAMILY),
}
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


async def apply(link: Link, event: FaultEvent) -> int | None:
    """Apply ``event`` (a link fault or a partition) to ``link``.

    Returns how many connections a ``reset`` reset (None for the kinds that reset none).
    Raises ValueError for a fault that is not a link fault.
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
    return None


async def heal(link: Link, in_force: Iterable[FaultEvent]) -> None:
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
        elif event.fault in SHAPING_FAULTS:
            link.apply(event.fault, event.direction, event.params)
    if was_blackholed and not any(s.blackhole for s in shapings):
        await link.reset()
    proxies = [p for p in (link.to_gateway, link.to_bureau) if p is not None]
    if not down and any(p.is_down for p in proxies):
        await link.up()
