"""The kernel family: in real-network mode, link faults become kernel state of a namespace.

With ``[engine] mode = "netns"`` loss, bandwidth, blackhole, partition, down and reset are
nftables rules and qdiscs of the bureau's host namespace
(:class:`~ncbsim.simulations.netns.KernelFaults`), not proxy shaping; latency and slicing still
go through the fault proxy (this kernel has no netem).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ncbsim.simulations.faults.registry import PROXY_FAULTS as LINK_KINDS
from ncbsim.simulations.netns import KernelFaults

if TYPE_CHECKING:
    from ncbsim.simulations.scenario import FaultEvent

KINDS = KernelFaults.KINDS
"""Fault kinds that become kernel state of a host namespace in this mode."""
PROXY_FAULTS = LINK_KINDS - KINDS
"""Link fault kinds that still need the asyncio fault proxy in this mode."""


async def apply(kernel: KernelFaults, namespace: str, event: FaultEvent) -> None:
    """Make ``event`` kernel state of ``namespace`` (keyed by the event's id)."""
    await asyncio.to_thread(
        kernel.apply,
        namespace,
        event.fault,
        key=event.id,
        direction=event.direction,
        params=dict(event.params),
    )


async def heal(kernel: KernelFaults, namespace: str, fault_id: str) -> None:
    """Remove fault ``fault_id``'s kernel state from ``namespace``."""
    await asyncio.to_thread(kernel.heal, namespace, fault_id)
