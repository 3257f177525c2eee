"""The mailbox's queued counts, kept in memory for its two queue bounds.

:class:`QueueCounts` holds the queued copies per (sender, recipient) and per recipient:
loaded when the store opens and changed only by its writer thread once a transaction
committed, so the event loop reads them (under a lock) without touching SQLite. Each
transaction counts its own changes in a :class:`PendingCounts`, which the writer marks
before every operation and undoes to the mark if that operation fails.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable
from typing import TypeVar, cast

_T = TypeVar("_T")
_Pair = tuple[str, str]
"""(sender, recipient)"""
_Mark = tuple[collections.Counter[_Pair], collections.Counter[str]]


class PendingCounts:
    """Changes to the queued counts made by the operations of the open transaction."""

    def __init__(self, committed: dict[_Pair, int], totals: dict[str, int]) -> None:
        self._committed = committed  # only the writer thread changes these: no copy needed
        self._totals = totals
        self.delta: collections.Counter[_Pair] = collections.Counter()
        self.by_recipient: collections.Counter[str] = collections.Counter()

    def mark(self) -> object:
        """The changes so far, to go back to if the next operation fails."""
        return self.delta.copy(), self.by_recipient.copy()

    def undo(self, mark: object) -> None:
        """Go back to the changes :meth:`mark` returned."""
        self.delta, self.by_recipient = cast(_Mark, mark)

    def change(self, sender: str, recipient: str, n: int) -> None:
        self.delta[(sender, recipient)] += n
        self.by_recipient[recipient] += n

    def queued(self, recipient: str) -> int:
        return self._totals.get(recipient, 0) + self.by_recipient[recipient]

    def pair(self, sender: str, recipient: str) -> int:
        return self._committed.get((sender, recipient), 0) + self.delta[(sender, recipient)]


def _apply(counts: dict[_T, int], delta: collections.Counter[_T]) -> None:
    """Add ``delta`` to ``counts``, keeping only keys with a positive count."""
    for key, change in delta.items():
        left = counts.get(key, 0) + change
        if left > 0:
            counts[key] = left
        else:
            counts.pop(key, None)


class QueueCounts:
    """Queued copies per (sender, recipient) and per recipient, as of the last commit."""

    def __init__(self) -> None:
        self._counts: dict[_Pair, int] = {}
        """Queued rows per (sender, recipient); only pairs with some."""
        self._totals: dict[str, int] = {}
        """Queued rows per recipient; only recipients with some."""
        self._lock = threading.Lock()  # guards _counts between the thread and the loop

    def load(self, counts: Iterable[tuple[str, str, int]]) -> None:
        """Start from the stored (sender, recipient, queued) counts."""
        with self._lock:
            self._counts = {(sender, recipient): n for sender, recipient, n in counts}
            self._totals = {}
            for (_, recipient), n in self._counts.items():
                self._totals[recipient] = self._totals.get(recipient, 0) + n

    def begin(self) -> PendingCounts:
        """On the writer thread: the counts of a new transaction."""
        return PendingCounts(self._counts, self._totals)

    def apply(self, pending: PendingCounts) -> None:
        """On the writer thread, once ``pending``'s transaction committed."""
        with self._lock:
            _apply(self._counts, pending.delta)
            _apply(self._totals, pending.by_recipient)

    def queued(self, recipient: str | None = None, *, sender: str | None = None) -> int:
        """Queued copies for ``recipient`` (None: for every recipient), from ``sender``
        (None: from anyone)."""
        with self._lock:
            if sender is not None:
                return sum(
                    n
                    for (s, r), n in self._counts.items()
                    if s == sender and (recipient is None or r == recipient)
                )
            if recipient is None:
                return sum(self._totals.values())
            return self._totals.get(recipient, 0)

    def recipients(self) -> list[str]:
        """Recipients with queued copies, sorted."""
        with self._lock:
            return sorted(self._totals)
