"""The classroom's side of a running network: follow it, and act in it for the page.

:class:`Classroom` follows every party's event stream as the operator
(:class:`~ncbsim.simulations.observe_net.NetworkObserver`, the same stream as ``ncbsim
watch``) and passes it to the page in batches, with the events of its own clients. It acts
for the trainer through the network's real RPCs, as a bureau would:

- a query (to one bureau or to ALL) is sealed and sent as the asking bureau by the
  demo's :class:`~ncbsim.simulations._demo_observer.Observer`, which also opens it as the
  recipient's node and reads the gateway's audit row, so the page can show each party's
  view of it (:mod:`ncbsim.simulations.classroom.views`);
- diffusions and notices go through :class:`ncbsim.mail.Mailer`, as ``ncbsim diffuse``
  and ``ncbsim notice`` send them; GS, a node of the network, publishes notices;
- faults go through :mod:`ncbsim.simulations.live_faults`, as ``ncbsim fault`` and
  ``ncbsim heal`` apply them;
- attacks (:mod:`ncbsim.simulations.classroom.attacks`) only on a network that
  ``ncbsim classroom`` started with its gateway in classroom mode.

Every action is checked first (:mod:`ncbsim.simulations.classroom.inputs`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from ncbsim.client import BureauClient
from ncbsim.errors import NcbsimError
from ncbsim.eventbus import EventBus, Subscription
from ncbsim.events import Event
from ncbsim.mail import Mailer
from ncbsim.pki import PkiDir
from ncbsim.simulations import lesson, live_faults, manifest
from ncbsim.simulations._demo_observer import Exchange, Observer
from ncbsim.simulations.classroom import attacks, inputs, views
from ncbsim.simulations.classroom.attacks import AttackOutcome
from ncbsim.simulations.classroom.hub import Hub
from ncbsim.simulations.classroom.planted import planted
from ncbsim.simulations.classroom.posting import notices
from ncbsim.simulations.network import Network
from ncbsim.simulations.observe_net import NetworkObserver
from ncbsim.v2 import query_pb2

log = structlog.get_logger()

LANES_MAX = 12
"""Above this many bureaus the page draws a ring, with lanes for the bureaus picked."""
FOLLOW_ALL_MAX = 32
"""Above this many bureaus only the gateway and the fault daemon are followed: the
gateway's events name both ends of every envelope, and 197 streams would cost the nodes."""
BATCH_S = 0.1
"""How often the page gets the events that came in (one message per batch)."""
FAULT_TABLES: dict[str, dict[str, Any]] = {
    "kill": {"fault": "kill"},
    "pause": {"fault": "pause"},
    "partition": {"fault": "partition"},
    "slow": {"fault": "latency", "latency_ms": 600, "jitter_ms": 100},
}
DOWN_FAULTS = {"kill", "pause", "partition"}


def event_json(event: Event) -> dict[str, Any]:
    """An event as the page gets it: ``Event.to_dict`` with its ids also at the top."""
    data = event.to_dict()
    data.update(data["ids"])
    return data


class Classroom:
    """A running network, followed and acted in for the page."""

    def __init__(
        self,
        workdir: Path,
        hub: Hub,
        *,
        scenario: str = "",
        timeout_s: float = 5.0,
        deadline_s: float = 2.0,
    ) -> None:
        self.workdir = workdir.resolve()
        self.hub = hub
        self.network = Network.load(self.workdir)
        self.scenario = scenario or str(manifest.read(self.workdir).data.get("scenario", ""))
        self.bureaus = [p.bureau for p in self.network.procs if p.bureau]
        self.gateway = self.network.gateway.address
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.sizes = views.Sizes()
        many = len(self.bureaus) > FOLLOW_ALL_MAX
        self.stream = NetworkObserver(self.workdir, parties={"gateway", "faultd"} if many else None)
        self._observers: dict[str, Observer] = {}
        self._clients: dict[str, BureauClient] = {}
        self._local: list[Subscription] = []
        self._buses: dict[str, EventBus] = {}
        self._ids = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []
        self._planted: dict[str, list[dict[str, str]]] = {}
        self._faults: list[dict[str, Any]] = []
        self.lock = asyncio.Lock()
        """One action at a time: a room watches one thing happen."""
        self.published: set[str] = set()
        """Message ids of the exchanges already drawn for the page."""

    # ------------------------------------------------------------ life

    async def start(self) -> None:
        """Follow the network and start passing its events to the page."""
        self._tasks = [
            asyncio.create_task(self.stream.run()),
            asyncio.create_task(self._pump()),
        ]
        await self.refresh_faults()

    async def close(self) -> None:
        """Stop following; close every channel."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for obs in self._observers.values():
            await obs.close()
        for client in self._clients.values():
            await client.close()
        for sub in self._local:
            sub.close()

    def client_bus(self, code: str) -> EventBus:
        """The bus of the classroom's client acting as ``code`` (party ``client:<code>``),
        whose events go to the page with the network's."""
        if code not in self._buses:
            bus = EventBus(f"client:{code}")
            self._local.append(bus.subscribe(loop=asyncio.get_running_loop()))
            self._buses[code] = bus
        return self._buses[code]

    def register(self, obs: Observer) -> None:
        """Pass the network's events to ``obs`` too (an observer made elsewhere)."""
        obs.fed()
        self._observers.setdefault(f"#{len(self._observers)}", obs)

    def observer(self, asker: str) -> Observer:
        """The sender of ``asker``'s queries (made on first use)."""
        if asker not in self._observers:
            self._observers[asker] = Observer(
                self.workdir, asker, self.gateway, timeout_s=self.timeout_s, buses=self.client_bus
            )
            self._observers[asker].fed()
        return self._observers[asker]

    async def mailer(self, asker: str) -> Mailer:
        """``asker``'s mailer (its client opened on first use)."""
        if asker not in self._clients:
            client = BureauClient.open(
                PkiDir(self.workdir), asker, self.gateway, bus=self.client_bus(asker)
            )
            self._clients[asker] = client
        return Mailer(self._clients[asker], strict=True)

    async def _pump(self) -> None:
        """Pass the network's events and the classroom clients' to the page, in batches."""
        while True:
            events = await self.stream.next_batch(timeout=BATCH_S)
            for sub in self._local:
                events += sub.drain()
            if not events:
                continue
            events.sort(key=lambda e: e.time)
            faulty = False
            for event in events:
                if event.party == "gateway" and event.message_id:
                    for obs in self._observers.values():
                        obs.note(event)
                faulty = (
                    faulty
                    or event.kind.startswith("fault.")
                    or (event.kind.startswith("process.") and event.view.get("role") != "client")
                )
            self.hub.publish(
                {
                    "type": "events",
                    "events": [event_json(e) for e in events],
                    "dropped": self.stream.dropped,
                }
            )
            if faulty:
                await self.refresh_faults()

    # ------------------------------------------------------------ state

    def planted(self, code: str) -> list[dict[str, str]]:
        """Records of ``code`` a query is sure to hit (cached)."""
        if code not in self._planted:
            self._planted[code] = planted(self.workdir, code)
        return self._planted[code]

    def down(self) -> list[str]:
        """Bureaus a kill, pause or partition in force holds."""
        held = [b for f in self._faults if f["kind"] in DOWN_FAULTS for b in f["held"]]
        return sorted(set(held))

    async def refresh_faults(self) -> None:
        """Re-read the faults in force; tell the page if they changed."""
        try:
            faults = await asyncio.to_thread(live_faults.in_force, self.network)
        except NcbsimError as exc:
            log.warning("classroom_faults_unread", error=str(exc))
            return
        if faults != self._faults:
            self._faults = faults
            self.hub.publish({"type": "bureaus", "down": self.down(), "faults": self.faults()})

    def faults(self) -> list[dict[str, Any]]:
        """The faults in force, as the page lists them."""
        return [
            {"id": f["id"], "fault": f["kind"], "targets": list(f["held"])} for f in self._faults
        ]

    def attacks_enabled(self) -> bool:
        """Whether the gateway runs in classroom mode (attacks possible)."""
        return attacks.attacks_enabled(self.workdir)

    def state(self) -> dict[str, Any]:
        """Everything the page needs to draw itself (``GET /api/state``, ``hello``)."""
        ring = len(self.bureaus) > LANES_MAX
        return {
            "scenario": self.scenario,
            "bureaus": self.bureaus,
            "gateway": self.gateway,
            "layout": "ring" if ring else "lanes",
            "lanes": [] if ring else self.bureaus,
            "down": self.down(),
            "faults": self.faults(),
            "attacks_enabled": self.attacks_enabled(),
            "attacks": [
                {"name": a.name, "title": a.title, "caught_at": a.caught_at}
                for a in attacks.ATTACKS.values()
            ],
            "faults_available": list(FAULT_TABLES),
            "planted": {code: self.planted(code) for code in self.bureaus},
            "notices": notices(self.workdir, self.bureaus),
            "lesson": {
                "steps": [
                    {
                        "key": s.key,
                        "title": s.title,
                        "caption": lesson.caption(s, **dict.fromkeys(lesson.fields(s), "…")),
                    }
                    for s in lesson.LESSON
                ]
            },
            "dropped": self.stream.dropped,
        }

    # ------------------------------------------------------------ actions

    def publish_status(self, text: str, level: str = "info") -> None:
        """A status line for the page (what an action did)."""
        self.hub.publish({"type": "status", "level": level, "text": text})

    async def query(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Send the query the form describes; its exchange record."""
        asker = inputs.bureau(body, "from", self.bureaus)
        to = inputs.recipients(body, "to", self.bureaus, asker)
        query = inputs.query(body, today=dt.date.today())
        async with self.lock:
            if len(to) == 1 and body.get("to") != inputs.ALL:
                return await self._single(asker, to[0], query)
            return await self._multi(asker, to, query)

    def _record_of(self, ex: Exchange) -> Any:
        refs = [m.ref for m in ex.answer.matches]
        if not refs:
            return None
        return self.observer(ex.answer.bureau).record(ex.answer.bureau, refs[0])

    async def _single(self, asker: str, to: str, query: query_pb2.Query) -> dict[str, Any]:
        ex = await self.observer(asker).exchange(query, to)
        return self.publish_exchange(asker, to, query, ex)

    def next_id(self) -> str:
        """A new exchange record's id (``x7``)."""
        return f"x{next(self._ids)}"

    def publish_exchange(
        self,
        asker: str,
        to: str,
        query: query_pb2.Query,
        ex: Exchange,
        *,
        record: Any = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Draw one exchange for the page and push it; the record. ``record``: the
        recipient's record it matched (default: looked up by the answer's first match)."""
        drawn = views.exchange_record(
            self.next_id(),
            asker=asker,
            to=to,
            query=query,
            ex=ex,
            record=record if record is not None else self._record_of(ex),
            gateway=self.gateway,
            sizes=self.sizes,
            **extra,
        )
        self.published.add(ex.sealed.header.message_hex)
        self.hub.publish(drawn)
        return drawn

    async def _multi(self, asker: str, to: list[str], query: query_pb2.Query) -> dict[str, Any]:
        obs = self.observer(asker)
        sealed, answers = await obs.multi(query, to, deadline_s=self.deadline_s)
        # The views follow one bureau: the first that hit, else the first asked.
        shown = next((a for a in answers if a.matches), answers[0])
        env = sealed[shown.bureau]
        ex = Exchange(
            env,
            shown,
            obs.open_as(shown.bureau, env.envelope),
            await obs.gateway_row(env.header.message_hex),
            None,
            await obs.gateway_event(env.header.message_hex),
        )
        return self.publish_exchange(asker, inputs.ALL, query, ex, answers=answers)

    async def fault(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Kill, pause, cut off (partition) or slow down a bureau, until healed."""
        kind = inputs.choice(body, "fault", FAULT_TABLES)
        code = inputs.bureau(body, "bureau", self.bureaus)
        table: dict[str, Any] = {**FAULT_TABLES[kind], "bureaus": [code]}
        try:
            reply = await asyncio.to_thread(live_faults.apply, self.workdir, table)
        except NcbsimError as exc:
            raise inputs.InputError(str(exc), "fault") from None
        await self.refresh_faults()
        self.publish_status(str(reply["detail"]))
        return {"detail": reply["detail"], "faults": self.faults(), "down": self.down()}

    async def heal(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """End the faults holding one bureau, or every fault."""
        everything = body.get("all") is True
        ids: list[str] = []
        if not everything:
            code = inputs.bureau(body, "bureau", self.bureaus)
            ids = [f["id"] for f in self.faults() if code in f["targets"]]
            if not ids:
                raise inputs.InputError(f"no fault holds {code}", "bureau")
        try:
            lines = await asyncio.to_thread(
                live_faults.heal, self.workdir, ids, everything=everything
            )
        except NcbsimError as exc:
            raise inputs.InputError(str(exc), "bureau") from None
        await self.refresh_faults()
        self.publish_status("; ".join(lines) or "nothing to heal")
        return {"healed": lines, "faults": self.faults(), "down": self.down()}

    async def attack(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Run one attack (classroom mode only) and show where it was caught."""
        name = inputs.choice(body, "name", attacks.ATTACKS)
        asker = inputs.bureau(body, "from", self.bureaus)
        to = inputs.bureau(body, "to", self.bureaus)
        if asker == to:
            raise inputs.InputError(f"to: {asker} cannot attack its own query to itself", "to")
        async with self.lock:
            outcome = await attacks.run_attack(self.observer(asker), self.workdir, name, asker, to)
        return self.publish_attack(outcome)

    def publish_attack(self, outcome: AttackOutcome) -> dict[str, Any]:
        """Draw an attack's outcome for the page (an exchange record when a query went
        out, else the record of what was refused before one could) and push it."""
        caught = None
        if outcome.caught is not None:
            caught = {
                "where": outcome.caught.where,
                "party": outcome.caught.party,
                "reason": outcome.caught.reason,
                "text": outcome.caught.text,
            }
        checks = [[text, ok] for text, ok in outcome.checks]
        if outcome.exchange is not None:
            return self.publish_exchange(
                outcome.asker,
                outcome.to,
                outcome.query,
                outcome.exchange,
                action="attack",
                attack=outcome.name,
                caught=caught,
                checks=checks,
            )
        record = {
            "type": "exchange",
            "id": self.next_id(),
            "action": "attack",
            "attack": outcome.name,
            "from": outcome.asker,
            "to": outcome.to,
            "kind": "document",
            "message_id": "",
            "correlation_id": "",
            "outcome": "failed",
            "recipients": [],
            "caught": caught,
            "checks": checks,
            "sizes": None,
            "views": {},
        }
        self.hub.publish(record)
        return record
