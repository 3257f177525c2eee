"""The classroom's push to browsers: one bounded queue per open page.

Everything the page is told (network events in batches, exchanges, status lines, lesson
steps) is a JSON-ready message published to the :class:`Hub`; every connected browser has
its own :class:`Viewer`, a bounded deque that drops its OLDEST message when full. Publishing
never waits for a browser, so a slow projector (or a laptop lid closed mid-lesson) costs
the network and the other pages nothing; the viewer counts what it lost, in events, and
the next batch it reads says so (``dropped``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from typing import Any

Message = Mapping[str, Any]

DEFAULT_QUEUE = 256
"""Messages held for one browser. An ``events`` message carries up to a batch of events,
so this is thousands of events: about a minute of a busy classroom network."""


def _weight(message: Message) -> int:
    """How many events a message stands for (an ``events`` batch: its length)."""
    events = message.get("events")
    return len(events) if isinstance(events, list) else 1


class Viewer:
    """One browser's queue: bounded, dropping the oldest message when full."""

    def __init__(self, limit: int = DEFAULT_QUEUE) -> None:
        if limit < 1:
            raise ValueError(f"a viewer's queue holds at least one message, not {limit}")
        self._queue: deque[Message] = deque(maxlen=limit)
        self._ready = asyncio.Event()
        self.dropped = 0
        """Events (and other messages) this viewer lost to a full queue, in total."""
        self.closed = False

    def offer(self, message: Message) -> None:
        """Queue ``message``; drop the oldest if full. Never blocks."""
        if self.closed:
            return
        if len(self._queue) == self._queue.maxlen:
            self.dropped += _weight(self._queue[0])
        self._queue.append(message)
        self._ready.set()

    async def next(self, timeout: float) -> list[Message]:
        """The messages queued since the last call; waits up to ``timeout`` for one."""
        if not self._queue and not self.closed:
            self._ready.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
            except TimeoutError:
                return []
        items = list(self._queue)
        self._queue.clear()
        return items

    def close(self) -> None:
        """Stop taking messages and wake the reader."""
        self.closed = True
        self._ready.set()


class Hub:
    """Every open page's :class:`Viewer`; publish once, each gets a copy."""

    def __init__(self, limit: int = DEFAULT_QUEUE) -> None:
        self.limit = limit
        self.viewers: set[Viewer] = set()
        self.published = 0
        """Messages published since the start."""

    def join(self) -> Viewer:
        """A new browser's queue."""
        viewer = Viewer(self.limit)
        self.viewers.add(viewer)
        return viewer

    def leave(self, viewer: Viewer) -> None:
        """A browser went away: forget its queue."""
        viewer.close()
        self.viewers.discard(viewer)

    def publish(self, message: Message) -> None:
        """Offer ``message`` to every browser; returns at once."""
        self.published += 1
        for viewer in self.viewers:
            viewer.offer(message)

    def close(self) -> None:
        """Close every viewer (the server is stopping)."""
        for viewer in list(self.viewers):
            self.leave(viewer)
