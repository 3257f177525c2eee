"""One party's event stream: emit cheaply, subscribe with a bounded buffer.

A program holds one :class:`EventBus` per party it plays (a host process holds one per
node). Its code calls :meth:`EventBus.emit` where something happens; subscribers (the
``Observe`` RPC of :mod:`ncbsim.observe`, the simulator's timeline, ``ncbsim watch``
inside ``simulate``) each get a :class:`Subscription`.

The query path never waits for a subscriber. ``emit`` appends to each subscription's
bounded deque and returns; when a deque is full the oldest event is dropped and the
subscription's ``dropped`` count goes up, so a subscriber that stalls or vanishes costs
the emitter no more than one that keeps up. With no subscriber, ``emit`` only counts the
sequence number and returns: it builds nothing.

``emit`` may be called from any thread (the gateway's writer threads emit too); a
subscription wakes its reader on the reader's own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from opentelemetry import trace

from ncbsim.events import Event, ViewValue, make

DEFAULT_BUFFER = 4096
"""Events held for a subscriber that has not read them yet."""
MAX_BUFFER = 65536


def current_trace_id() -> str:
    """The W3C trace id (32 hex digits) of the span current in this context, or ""."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


class Subscription:
    """A subscriber's bounded queue of events: the oldest is dropped when it is full."""

    def __init__(
        self,
        bus: EventBus,
        *,
        buffer: int = DEFAULT_BUFFER,
        kinds: Sequence[str] = (),
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not 1 <= buffer <= MAX_BUFFER:
            raise ValueError(f"buffer must be 1..{MAX_BUFFER}, got {buffer}")
        self._bus = bus
        self._queue: deque[Event] = deque(maxlen=buffer)
        self._kinds = tuple(kinds)
        self._lock = threading.Lock()
        self._loop = loop
        self._thread = threading.get_ident() if loop is not None else None
        self._ready = asyncio.Event() if loop is not None else None
        self.dropped = 0
        """Events this subscriber lost because its buffer was full."""
        self.closed = False

    def wants(self, kind: str) -> bool:
        """Whether ``kind`` matches one of the subscription's prefixes (or there are none)."""
        return not self._kinds or kind.startswith(self._kinds)

    def offer(self, event: Event) -> None:
        """Hold ``event``; drop the oldest held event if the buffer is full. Never blocks."""
        with self._lock:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
                self._bus.dropped += 1
            self._queue.append(event)
        if self._ready is not None and not self._ready.is_set():
            if threading.get_ident() == self._thread:
                self._ready.set()
            else:
                assert self._loop is not None
                # RuntimeError: the reader's loop is closed, the reader has gone.
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(self._ready.set)

    def drain(self) -> list[Event]:
        """Every held event, oldest first; the buffer is empty afterwards."""
        with self._lock:
            events = list(self._queue)
            self._queue.clear()
        return events

    async def next_batch(self, timeout: float | None = None) -> list[Event]:
        """Wait until events are held (or ``timeout`` passes, or it is closed); take them.

        Once closed it returns what is left, [] at once: a reader loops on ``closed``.
        """
        if self._ready is None:
            raise RuntimeError("an async subscription needs the loop it was made on")
        while not self.closed:
            events = self.drain()
            if events:
                return events
            self._ready.clear()
            if self._queue:  # an event came between drain and clear
                continue
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that lands as the event is set, and the reader never stops.
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
            except TimeoutError:
                return []
        return self.drain()

    def close(self) -> None:
        """Stop receiving; a reader waiting in :meth:`next_batch` returns."""
        self.closed = True
        self._bus.unsubscribe(self)
        if self._ready is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._ready.set)


class EventBus:
    """The event stream of one party (``party``: "gateway", a bureau code, "sim", ...)."""

    def __init__(self, party: str, *, clock: Callable[[], float] = time.time) -> None:
        self.party = party
        self._clock = clock
        self._subscribers: tuple[Subscription, ...] = ()
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self.emitted = 0
        """Events emitted while someone was subscribed."""
        self.dropped = 0
        """Events any subscriber of this bus lost because its buffer was full, ever."""

    @property
    def subscribers(self) -> int:
        """How many subscriptions are attached now."""
        return len(self._subscribers)

    @property
    def observed(self) -> bool:
        """Whether anyone is subscribed: callers may skip work that only feeds events."""
        return bool(self._subscribers)

    def subscribe(
        self,
        *,
        buffer: int = DEFAULT_BUFFER,
        kinds: Sequence[str] = (),
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> Subscription:
        """A new subscription. Pass the reader's ``loop`` to await it with ``next_batch``;
        without one, read it with ``drain`` (a synchronous reader)."""
        sub = Subscription(self, buffer=buffer, kinds=kinds, loop=loop)
        with self._lock:
            self._subscribers = (*self._subscribers, sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Remove ``sub`` (no error if it was removed already)."""
        with self._lock:
            self._subscribers = tuple(s for s in self._subscribers if s is not sub)

    def emit(
        self,
        kind: str,
        view: Mapping[str, ViewValue] | None = None,
        *,
        message_id: str = "",
        correlation_id: str = "",
        trace_id: str | None = None,
    ) -> None:
        """Publish one event to every subscriber; cheap and never blocking.

        ``trace_id`` defaults to the current span's. With no subscriber nothing is built;
        ValueError if the view is not allowed by the schema (also then: tests emit with
        a subscriber attached, so a bad call site fails its tests).
        """
        seq = next(self._seq)  # atomic: itertools.count holds the GIL while it counts
        subscribers = self._subscribers
        if not subscribers:
            return
        event = make(
            kind,
            self.party,
            self._clock(),
            view,
            message_id=message_id,
            correlation_id=correlation_id,
            trace_id=current_trace_id() if trace_id is None else trace_id,
            seq=seq,
        )
        self.emitted += 1
        for sub in subscribers:
            if sub.wants(kind):
                sub.offer(event)
