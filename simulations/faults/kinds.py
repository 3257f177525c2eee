"""What a fault kind is: its family, its parameters, and how a scenario may use it.

Each family module (link, process, clock) declares its kinds as a ``KINDS`` table of
:class:`Kind`; ncbsim.simulations.faults.registry gathers them, and the scenario loader validates
fault events against them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Param:
    """A fault parameter: its type ("number"/"int"), whether required, bounds and default."""

    kind: str
    required: bool
    default: float | None = None
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    nonzero: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class Kind:
    """One fault kind of a family.

    ``instant``: it happens at one instant (no ``duration_s``, nothing to heal);
    ``directed``: it takes a ``direction``; ``params``: the parameters it takes.
    """

    family: str
    params: Mapping[str, Param] = field(default_factory=dict)
    instant: bool = False
    directed: bool = False
