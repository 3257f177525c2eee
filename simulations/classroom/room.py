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
import contextlib
import datetime as dt
import itertools
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from ncbsim.client import BureauClient
from ncbsim.countries import GENERAL_SECRETARIAT
from ncbsim.errors import NcbsimError
from ncbsim.eventbus import EventBus, Subscription
from ncbsim.events import Event
from ncbsim.mail import Mailer
from ncbsim.node.inbox import Inbox
from ncbsim.pki import PkiDir
from ncbsim.posts import notice_draft
from ncbsim.simulations import live_faults, manifest
from ncbsim.simulations._demo_observer import Exchange, Observer
from ncbsim.simulations.classroom import inputs, views
from ncbsim.simulations.classroom.hub import Hub
from ncbsim.simulations.classroom.planted import planted
from ncbsim.simulations.network import Network
from ncbsim.simulations.observe_net import NetworkObserver
from ncbsim.v2 import query_pb2
from ncbsim.workdir import Workdir

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
        self._ids = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []
        self._planted: dict[str, list[dict[str, str]]] = {}
        self._faults: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()  # one action at a time: a room watches one thing

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

    def _bus(self, asker: str) -> EventBus:
        bus = EventBus(f"client:{asker}")
        self._local.append(bus.subscribe(loop=asyncio.get_running_loop()))
        return bus

    def observer(self, asker: str) -> Observer:
        """The sender of ``asker``'s queries (made on first use)."""
        if asker not in self._observers:
            self._observers[asker] = Observer(
                self.workdir, asker, self.gateway, timeout_s=self.timeout_s, bus=self._bus(asker)
            )
        return self._observers[asker]

    async def mailer(self, asker: str) -> Mailer:
        """``asker``'s mailer (its client opened on first use)."""
        if asker not in self._clients:
            client = BureauClient.open(
                PkiDir(self.workdir), asker, self.gateway, bus=self._bus(asker)
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

    def notices(self) -> list[dict[str, str]]:
        """The notices GS knows (none without a GS node)."""
        path = Workdir(self.workdir).bureau(GENERAL_SECRETARIAT).inbox
        if GENERAL_SECRETARIAT not in self.bureaus or not path.is_file():
            return []
        inbox = Inbox.read(path)
        try:
            rows = inbox.notices()
        finally:
            inbox.close()
        return [
            {
                "notice_id": row.notice_id.hex(),
                "requester": row.requested_by,
                "state": row.status_name,
                "label": f"{row.color_name} notice: {row.subject.surname.upper()} "
                f"{row.subject.given_names}",
            }
            for row in rows
        ]

    def attacks_enabled(self) -> bool:
        """Whether the gateway runs in classroom mode (attacks possible)."""
        from ncbsim.simulations.classroom import attacks

        return attacks.attacks_enabled(self.workdir)

    def state(self) -> dict[str, Any]:
        """Everything the page needs to draw itself (``GET /api/state``, ``hello``)."""
        from ncbsim.simulations import lesson
        from ncbsim.simulations.classroom import attacks

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
            "notices": self.notices(),
            "lesson": {
                "steps": [
                    {"key": s.key, "title": s.title, "caption": s.caption} for s in lesson.LESSON
                ]
            },
            "dropped": self.stream.dropped,
        }

    # ------------------------------------------------------------ actions

    def _publish_status(self, text: str, level: str = "info") -> None:
        self.hub.publish({"type": "status", "level": level, "text": text})

    async def query(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Send the query the form describes; its exchange record."""
        asker = inputs.bureau(body, "from", self.bureaus)
        to = inputs.recipients(body, "to", self.bureaus, asker)
        query = inputs.query(body, today=dt.date.today())
        async with self._lock:
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

    def publish_exchange(
        self, asker: str, to: str, query: query_pb2.Query, ex: Exchange, **extra: Any
    ) -> dict[str, Any]:
        """Draw one exchange for the page and push it; the record."""
        record = views.exchange_record(
            f"x{next(self._ids)}",
            asker=asker,
            to=to,
            query=query,
            ex=ex,
            record=self._record_of(ex),
            gateway=self.gateway,
            sizes=self.sizes,
            **extra,
        )
        self.hub.publish(record)
        return record

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

    async def diffuse(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Post a diffusion (an alert) to the bureaus named, or ALL."""
        asker = inputs.bureau(body, "from", self.bureaus)
        to = inputs.recipients(body, "to", self.bureaus, asker)
        subject = inputs.text(body, "subject", limit=120)
        text = inputs.text(body, "text", required=False, limit=inputs.MAX_TEXT)
        everyone = body.get("to") == inputs.ALL
        mailer = await self.mailer(asker)
        async with self._lock:
            outcome = await mailer.diffuse(
                [inputs.ALL] if everyone else to, subject, text, timeout_s=self.timeout_s
            )
        reply = {
            "post_id": outcome.post_hex,
            "recipients": len(outcome.copies),
            "outcome": "stored" if outcome.stored else "not stored",
        }
        self._publish_status(
            f"{asker} diffused an alert to {len(outcome.copies)} bureaus: {reply['outcome']}."
        )
        return reply

    async def notice(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Ask GS for a red notice on a person; GS reviews and publishes it."""
        if GENERAL_SECRETARIAT not in self.bureaus:
            raise inputs.InputError("notices need a GS node; this network has none", "from")
        asker = inputs.bureau(body, "from", self.bureaus)
        subject = inputs.subject(body, today=dt.date.today())
        summary = inputs.text(body, "summary", required=False, limit=200) or (
            "Classroom exercise: arrest warrant"
        )
        mailer = await self.mailer(asker)
        async with self._lock:
            outcome = await mailer.post_notice_request(
                notice_draft("red", subject, summary), timeout_s=self.timeout_s
            )
        notice_id = outcome.notice_id.hex()
        state = await self._await_notice(notice_id, {"published", "refused"})
        self._publish_status(f"{asker} asked GS for a red notice: GS {state or 'has not decided'}.")
        self.hub.publish({"type": "notices", "notices": self.notices()})
        return {"notice_id": notice_id, "state": state or "requested", "stored": outcome.stored}

    async def withdraw(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Ask GS to withdraw a notice the bureau requested."""
        asker = inputs.bureau(body, "from", self.bureaus)
        notice_id = inputs.notice_id(body)
        known = {n["notice_id"]: n for n in self.notices()}
        if notice_id.hex() not in known:
            raise inputs.InputError("notice_id: GS knows no such notice", "notice_id")
        mailer = await self.mailer(asker)
        async with self._lock:
            outcome = await mailer.withdraw_notice(notice_id, timeout_s=self.timeout_s)
        state = await self._await_notice(notice_id.hex(), {"withdrawn"})
        self._publish_status(
            f"{asker} asked GS to withdraw the notice: {state or 'not withdrawn (yet)'}."
        )
        self.hub.publish({"type": "notices", "notices": self.notices()})
        return {"notice_id": notice_id.hex(), "state": state, "stored": outcome.stored}

    async def _await_notice(self, notice_id: str, states: set[str]) -> str:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # GS may be mid-write
                for notice in self.notices():
                    if notice["notice_id"] == notice_id and notice["state"] in states:
                        return notice["state"]
            await asyncio.sleep(0.05)
        return ""

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
        self._publish_status(str(reply["detail"]))
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
        self._publish_status("; ".join(lines) or "nothing to heal")
        return {"healed": lines, "faults": self.faults(), "down": self.down()}

    async def attack(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Run one attack (classroom mode only) and show where it was caught."""
        from ncbsim.simulations.classroom import attacks

        name = inputs.choice(body, "name", attacks.ATTACKS)
        asker = inputs.bureau(body, "from", self.bureaus)
        to = inputs.bureau(body, "to", self.bureaus)
        if asker == to:
            raise inputs.InputError(f"to: {asker} cannot attack its own query to itself", "to")
        async with self._lock:
            outcome = await attacks.run_attack(self.observer(asker), self.workdir, name, asker, to)
        return self.publish_attack(outcome)

    def publish_attack(self, outcome: Any) -> dict[str, Any]:
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
        if outcome.exchange is not None and outcome.query is not None:
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
            "id": f"x{next(self._ids)}",
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
