"""Where a network's processes run and listen (:class:`Placement`; by default here, on
loopback), and how its bureaus are shared among host processes (:func:`plan_hosts`)."""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Sequence

SOLO_HOSTS_UP_TO = 8
"""Networks of up to this many bureaus get one host process per bureau."""


class Placement:
    """Where a network's processes run and listen. By default: here, on loopback.

    The real-network mode (ncbsim.simulations.netns_engine) puts each process in a network
    namespace of its own, with its own address, by overriding these.
    """

    def gateway_listen(self) -> str:
        """The gateway's listening address."""
        return "127.0.0.1:0"

    def host_listen(self, index: int) -> str:
        """The listening address of host ``index``'s nodes."""
        return "127.0.0.1:0"

    def command(self, index: int | None) -> list[str]:
        """What to put before ``python -m ncbsim`` for host ``index`` (None: the gateway)."""
        return []


LOOPBACK = Placement()


def plan_hosts(
    bureaus: Sequence[str], *, hosts: int = 0, solo: Collection[str] = ()
) -> list[list[str]]:
    """Share ``bureaus`` among host processes.

    Bureaus in ``solo`` (the targets of process faults) get a host of their own, so a
    SIGKILL or SIGSTOP hits exactly the bureau it names. ``hosts`` is how many hosts the
    others share; 0 chooses: one per bureau up to :data:`SOLO_HOSTS_UP_TO` bureaus,
    else one per CPU (at least two), so the cores are used and no host is too big.
    """
    alone = [[b] for b in bureaus if b in solo]
    rest = [b for b in bureaus if b not in solo]
    if not rest:
        return alone
    if hosts <= 0:
        small = len(bureaus) <= SOLO_HOSTS_UP_TO
        hosts = len(rest) if small else max(2, os.cpu_count() or 1)
    hosts = min(hosts, len(rest))
    size = math.ceil(len(rest) / hosts)
    shared = [rest[i : i + size] for i in range(0, len(rest), size)]
    return alone + shared
