"""The node types of the report's schema (simulations/schema.py): a value, a table with
fixed keys, a table keyed by what a scenario names, and a part only some scenarios have.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ncbsim.simulations.scenario import Scenario

__all__ = ["Ctx", "Each", "Leaf", "Node", "Table", "When"]

Ctx = tuple[str, ...]  # the concrete path walked so far, in report.json terms


@dataclass(frozen=True, slots=True)
class Leaf:
    """A value of the report: its meaning, its unit and its type."""

    doc: str
    unit: str
    type: str = "number"  # number, bool, text or list: checks read numbers and bools
    nullable: bool = False
    optional: bool = False  # present only when something happened at run time
    after_checks: bool = False  # written once the checks have run

    @property
    def checkable(self) -> bool:
        """Whether a check expression can read it."""
        return self.type in ("number", "bool") and not self.after_checks


@dataclass(frozen=True, slots=True)
class Table:
    """A table with fixed keys. ``group`` names keys the docs show as one row."""

    fields: Mapping[str, Node]
    group: tuple[str, str, str] | None = None  # (placeholder, doc, unit) for the grouped keys
    grouped: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Each:
    """A table keyed by what the scenario names: its bureaus, its fault ids, its kinds."""

    placeholder: str
    what: str
    ids: Callable[[Scenario, Ctx], Sequence[str]]
    item: Node


@dataclass(frozen=True, slots=True)
class When:
    """A part of the report that only some scenarios have."""

    condition: str  # for the docs: "a scenario that posts messages"
    why_not: str  # for a refused check: why this scenario's report has none
    exists: Callable[[Scenario, Ctx], bool]
    node: Node


Node = Leaf | Table | Each | When
