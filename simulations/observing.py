"""The simulator's observer of its own network: the gateway's and nodes' events of a run.

While a scenario's traffic runs, the engine follows the network it started with a
:class:`~ncbsim.simulations.observe_net.NetworkObserver` on its work directory and keeps
what the parties emitted of :data:`KINDS` (queries relayed, opened and answered; posts
accepted and delivered; processes; keys; revocations), to be written into
``timeline.jsonl`` beside the simulator's own events: a query's relay at the gateway and
its opening at the recipient next to what the client saw.

Which parties: the gateway and every node up to ``schema.NODES_OBSERVED_UP_TO`` (32)
bureaus; a larger network (``all-members``) only the gateway, which sees every query and
post already (each node's stream is one more TLS connection and reader for the
simulator's own process, next to the traffic it drives). What was missed (a party's
buffer or the merged queue full) is counted: ``report.json``'s ``observation``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ncbsim.events import Event
from ncbsim.simulations.observe_net import NetworkObserver
from ncbsim.simulations.schema import observed_parties

KINDS = ("query.", "post.", "process.", "key.", "bureau.")
"""The kinds of the network's events a run's timeline keeps."""
FLUSH_S = 0.3
"""At the end, how long events already emitted get to arrive before the streams close."""
BUFFER = 16384
"""Each party's buffer of events for the simulator (the Observe stream's)."""


class RunObserver:
    """Follows a run's network from :meth:`start` to :meth:`stop`; keeps what it saw."""

    def __init__(self, workdir: Path, parties: Sequence[str]) -> None:
        self.parties = list(parties)
        self.events: list[Event] = []
        self._observer = NetworkObserver(
            workdir, kinds=KINDS, buffer=BUFFER, queue=4 * BUFFER, parties=self.parties
        )
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def of(cls, workdir: Path, bureaus: Sequence[str]) -> RunObserver:
        """The observer of a network of ``bureaus`` (which parties: see the module)."""
        return cls(workdir, observed_parties(bureaus))

    async def start(self) -> None:
        """Start following (the network serves; its addresses are in network.json)."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._observer.run()),
                asyncio.create_task(self._collect()),
            ]

    async def _collect(self) -> None:
        while True:
            self.events += await self._observer.next_batch(timeout=0.5)

    async def stop(self) -> None:
        """Let events in flight arrive, keep them, and close every stream."""
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        try:
            await asyncio.sleep(FLUSH_S)
        finally:  # cancelled meanwhile too: no stream is left open
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.events += await self._observer.next_batch(timeout=0)

    def report(self) -> dict[str, Any]:
        """``report.json``'s ``observation``: events received per party, and missed."""
        sources = self._observer.sources
        return {
            "dropped": self._observer.dropped,
            "events": {p: sources[p].events if p in sources else 0 for p in self.parties},
        }
