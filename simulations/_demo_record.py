"""The record of one lesson step as ``ncbsim demo`` ran it: :class:`Step` and :class:`Shown`.

A :class:`Step` holds the step's filled caption, its checks, and for each exchange it
made a :class:`Shown`: the data its views were drawn from, so the classroom can draw the
same step (as JSON) without running anything again. :data:`AttackRunner` is the hook the
attack steps call (``simulations/classroom/attacks.py`` provides one).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ncbsim.node.records import Document, Person, Vehicle
from ncbsim.posts import PostOutcome
from ncbsim.simulations._demo_observer import Exchange, Row
from ncbsim.v2 import query_pb2

Pairs = list[tuple[str, str]]

EXTRA_VIEWS = ("requester", "gateway", "recipient", "reply")
"""The views :attr:`Shown.extra` may add lines to (``reply``: lines that replace the
answer's)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Shown:
    """One exchange (or one copy of a post) a step made, and what its views show of it."""

    asker: str
    """The sending party: a bureau, or GS publishing a notice."""
    to: str
    """The recipient (``ALL`` for a post to every bureau)."""
    query: query_pb2.Query | None = None
    """The plaintext query the asker sealed (None for a post)."""
    exchange: Exchange | None = None
    """What each party saw of a query (None for a post)."""
    record: Document | Person | Vehicle | None = None
    """The recipient's record the query matched (or the notice made), if any."""
    extra: dict[str, Pairs] = field(default_factory=dict)
    """Lines added to a view, by :data:`EXTRA_VIEWS` name (``requester`` holds a post's
    plaintext fields; ``reply`` replaces the answer's lines)."""
    post: PostOutcome | None = None
    """What the gateway answered a post (a diffusion or a notice request), if one."""
    gateway_row: Row | None = None
    """The gateway's audit row of a post's copy (an exchange has its own)."""

    def __post_init__(self) -> None:
        unknown = self.extra.keys() - set(EXTRA_VIEWS)
        if unknown:
            raise ValueError(f"no view named {sorted(unknown)}; views: {EXTRA_VIEWS}")


@dataclass(slots=True)
class Step:
    """One lesson step as it ran: caption, checks, and what it showed."""

    key: str
    """The lesson step's key (``simulations.lesson``)."""
    title: str
    number: int
    """1-based position in the lesson."""
    caption: str = ""
    """The caption, filled with what happened (empty if the step stopped before it)."""
    checks: list[tuple[str, bool]] = field(default_factory=list)
    shown: list[Shown] = field(default_factory=list)
    skipped: str = ""
    """Why the step did not run (the network lacks what it needs); empty if it ran."""

    def check(self, text: str, passed: object) -> bool:
        """Record one expectation and whether it held."""
        self.checks.append((text, bool(passed)))
        return bool(passed)

    @property
    def ran(self) -> bool:
        """Whether the step ran (was not skipped)."""
        return not self.skipped

    @property
    def passed(self) -> bool:
        """Whether it ran and every expectation held (and there was at least one)."""
        return self.ran and bool(self.checks) and all(ok for _, ok in self.checks)

    @property
    def numbered(self) -> str:
        """``3. Step-2 fetch denied ...``: the title as the terminal prints it."""
        return f"{self.number}. {self.title}"


class AttackOutcome(Protocol):
    """What an attack runner reports: the exchange attacked, and the checks it made."""

    @property
    def query(self) -> query_pb2.Query | None:
        """The query the asker sealed (None if the attack sent none)."""

    @property
    def exchange(self) -> Exchange | None:
        """What each party saw of the attacked exchange (None if nothing was sent)."""

    @property
    def checks(self) -> Sequence[tuple[str, bool]]:
        """Expectations about where the attack was caught, and whether each held."""


AttackRunner = Callable[[str, str, str], Awaitable[AttackOutcome]]
"""``await runner(name, asker, to)``: run attack ``name`` (``replay``, ``swap-key`` ...)
on a query from ``asker`` to ``to`` through a classroom-mode gateway."""
