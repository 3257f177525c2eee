"""The fault kinds, each mapped to its family: the one table every fault user reads.

A new kind is declared in its family's ``KINDS`` (simulations/faults/link.py,
process.py or clock.py), with its ``apply`` and ``heal``; the sets below follow from the
families. docs/scenarios.md documents every kind.
"""

from __future__ import annotations

from collections.abc import Mapping

from ncbsim.simulations.faults import clock, link, process
from ncbsim.simulations.faults.kinds import Kind, Param

KINDS: Mapping[str, Kind] = {**link.KINDS, **process.KINDS, **clock.KINDS}
"""Every fault kind -> its :class:`Kind` (family, parameters, instant or not)."""

FAULTS = frozenset(KINDS)
"""Every fault kind."""
LINK_FAULTS = frozenset(k for k, v in KINDS.items() if v.directed)
"""Faults applied by the per-bureau TCP fault proxy, per direction."""
PROCESS_FAULTS = frozenset(k for k, v in KINDS.items() if v.family == process.FAMILY)
"""Faults applied to a bureau's process with signals."""
INSTANT_FAULTS = frozenset(k for k, v in KINDS.items() if v.instant)
"""Faults that happen at one instant: no ``duration_s``, nothing to heal."""
PROXY_FAULTS = frozenset(k for k, v in KINDS.items() if v.family == link.FAMILY)
"""Faults that need the fault proxy (refused with ``engine.proxy = "none"``)."""
FAULT_PARAMS: dict[str, dict[str, Param]] = {
    k: dict(v.params) for k, v in KINDS.items() if v.params
}
"""The parameters each fault kind takes; kinds not listed take none."""


def family(kind: str) -> str:
    """The family of fault ``kind``: "link", "process" or "clock" (KeyError if none)."""
    return KINDS[kind].family
