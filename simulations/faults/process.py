"""The process family: kill, pause, restart and resume a bureau's host process or the gateway.

A ``kill`` or ``pause`` holds its targets down until the ``restart`` or ``resume`` that
releases them (or its heal, which is that release). A host may serve several bureaus: a
signal reaches every bureau it serves. Used by the simulation engine and by the live
faults of ``ncbsim fault`` (ncbsim.simulations.live_faults).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ncbsim.simulations.faults.kinds import Kind

if TYPE_CHECKING:
    from ncbsim.simulations.manifest import Host
    from ncbsim.simulations.network import Network

FAMILY = "process"
KINDS = {
    "kill": Kind(family=FAMILY),
    "restart": Kind(family=FAMILY, instant=True),
    "pause": Kind(family=FAMILY),
    "resume": Kind(family=FAMILY, instant=True),
}
HEALS = {"kill": "restart", "pause": "resume"}
"""A fault that holds its targets down -> the fault that releases them (its heal)."""
RELEASES = {release: hold for hold, release in HEALS.items()}
"""A release -> the fault whose hold it ends."""


def apply(
    network: Network,
    fault: str,
    host: Host | None,
    *,
    clock_offsets: Mapping[str, int] | None = None,
) -> None:
    """Do ``fault`` to ``host``'s process, or the gateway's if ``host`` is None (blocking).

    A restart starts the process again on its ports (same mailbox for the gateway), the
    bureaus keeping ``clock_offsets``. Raises ValueError for a kind not of this family.
    """
    if host is None:
        if fault == "kill":
            network.kill_gateway()
        elif fault == "restart":
            network.restart_gateway()
        elif fault == "pause":
            os.kill(network.gateway.pid, signal.SIGSTOP)
        elif fault == "resume":
            os.kill(network.gateway.pid, signal.SIGCONT)
        else:
            raise ValueError(f"the gateway takes no {fault} fault")
        return
    if fault == "kill":
        network.kill_host(host)
    elif fault == "restart":
        network.restart_host(host, clock_offsets=clock_offsets)
    elif fault == "pause":
        os.kill(host.pid, signal.SIGSTOP)
    elif fault == "resume":
        os.kill(host.pid, signal.SIGCONT)
    else:
        raise ValueError(f"{fault} is not a process fault")


def heal(
    network: Network,
    fault: str,
    host: Host | None,
    *,
    clock_offsets: Mapping[str, int] | None = None,
) -> None:
    """End a ``kill`` (restart) or a ``pause`` (resume) of ``host`` or the gateway."""
    apply(network, HEALS[fault], host, clock_offsets=clock_offsets)
