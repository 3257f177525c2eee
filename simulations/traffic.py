"""Plan and send a scenario's query mix, with hits planted from the bureaus' real records.

The plan is drawn from the scenario's seed. A planted query targets a record the
recipient really holds (read from its database, as ground truth); every other
query is checked against that database to be a true no-hit before it is sent.
"""

from __future__ import annotations

import asyncio
import random
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ncbsim.client import ALL, Answer, BureauClient, Outcome
from ncbsim.pki import PkiDir
from ncbsim.v1 import query_pb2
from node import vin as vins
from node.answer import answer as oracle_answer
from node.store import Document, Person, RecordStore, Vehicle
from simulations.scenario import Scenario

_KIND_WEIGHTS = (("document", 5), ("person", 3), ("vehicle", 2))
_ALNUM = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"


@dataclass(slots=True)
class Planned:
    """One query of the plan and what the network must answer."""

    label: str
    requester: str
    to: list[str]  # one bureau, or every other bureau for a multi-bureau query
    query: query_pb2.QueryRequest
    expect_hit: dict[str, str | None]  # bureau -> planted ref (hit) or None (no-hit)
    fetch: bool = False
    probes: list[str] = field(default_factory=list)  # plaintext strings the gateway must not see


@dataclass(slots=True)
class Result:
    """What came back for one planned query."""

    planned: Planned
    answers: list[Answer]
    fetched: Answer | None = None
    latency_ms: float = 0.0


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _document_query(number: str, issuer: str) -> query_pb2.QueryRequest:
    return query_pb2.QueryRequest(document=query_pb2.DocumentQuery(number=number, issuer=issuer))


class Drawer:
    """Draws realistic queries from the bureaus' databases: planted hits and true no-hits.

    The simulator's planner and ``ncbsim load``'s query corpus both draw from it.
    """

    def __init__(self, stores: dict[str, RecordStore], rng: random.Random) -> None:
        self.stores = stores
        self.rng = rng

    def _no_hit(self, target: str, query: query_pb2.QueryRequest) -> bool:
        # Asked as the owner, who sees every record: a true no-hit for any requester.
        response = oracle_answer(self.stores[target], query, requester=target)
        return response.HasField("hits") and not response.hits.matches

    def _until_no_hit(
        self, target: str, make: Callable[[], query_pb2.QueryRequest]
    ) -> query_pb2.QueryRequest:
        for _ in range(50):
            query = make()
            if self._no_hit(target, query):
                return query
        raise RuntimeError(f"could not draw a no-hit query for {target}")

    def planted(self, kind: str, target: str) -> tuple[query_pb2.QueryRequest, str, list[str]]:
        """A query for a record ``target`` really holds: (query, ref, plaintext probes).

        The record is one every bureau may see: a restricted record is, rightly, a
        no-hit for the bureaus it is withheld from, so it is never planted.
        """
        store = self.stores[target]
        record = store.sample(kind, 1, self.rng)[0]
        while store.control(record.ref).restricted:
            record = store.sample(kind, 1, self.rng)[0]
        if isinstance(record, Document):
            return _document_query(record.number, record.issuer), record.ref, [record.number]
        if isinstance(record, Person):
            # Transliteration varies between bureaus: send the name without accents,
            # in upper case, as a border post would type it.
            query = query_pb2.QueryRequest(
                person=query_pb2.PersonQuery(
                    surname=_strip_accents(record.surname).upper(),
                    given_names=_strip_accents(record.given_names).upper(),
                    date_of_birth=record.date_of_birth,
                )
            )
            return query, record.ref, []
        assert isinstance(record, Vehicle)
        if self.rng.random() < 0.5:
            query = query_pb2.QueryRequest(vehicle=query_pb2.VehicleQuery(vin=record.vin))
            return query, record.ref, [record.vin]
        query = query_pb2.QueryRequest(vehicle=query_pb2.VehicleQuery(plate=record.plate))
        return query, record.ref, []

    def absent(self, kind: str, target: str) -> tuple[query_pb2.QueryRequest, list[str]]:
        """A realistic query for a record ``target`` does not hold."""
        rng = self.rng
        if kind == "document":

            def make() -> query_pb2.QueryRequest:
                number = "".join(rng.choice(_ALNUM) for _ in range(9))
                return _document_query(number, target)

            query = self._until_no_hit(target, make)
            return query, [query.document.number]
        if kind == "person":
            # A real person of that bureau, with another date of birth: a near miss.
            person = self.stores[target].sample("person", 1, rng)[0]
            assert isinstance(person, Person)

            def make_person() -> query_pb2.QueryRequest:
                year = int(person.date_of_birth[:4]) + rng.choice((-3, -2, -1, 1, 2, 3))
                return query_pb2.QueryRequest(
                    person=query_pb2.PersonQuery(
                        surname=person.surname,
                        given_names=person.given_names,
                        date_of_birth=f"{year:04d}{person.date_of_birth[4:]}",
                    )
                )

            return self._until_no_hit(target, make_person), []

        def make_vehicle() -> query_pb2.QueryRequest:
            return query_pb2.QueryRequest(
                vehicle=query_pb2.VehicleQuery(vin=vins.make_vin(rng, "WVW"))
            )

        query = self._until_no_hit(target, make_vehicle)
        return query, [query.vehicle.vin]


class Planner(Drawer):
    """Draws a scenario's whole query mix from its seed and the bureaus' databases."""

    def __init__(self, scenario: Scenario, stores: dict[str, RecordStore]) -> None:
        super().__init__(stores, random.Random(scenario.seed))
        self.scenario = scenario

    def plan(self) -> list[Planned]:
        """The whole query mix, in sending order."""
        rng = self.rng
        traffic = self.scenario.traffic
        bureaus = list(self.scenario.bureaus)
        kinds = [k for k, _ in _KIND_WEIGHTS]
        weights = [w for _, w in _KIND_WEIGHTS]
        plan: list[Planned] = []
        for i in range(traffic.queries):
            requester = rng.choice(bureaus)
            target = rng.choice([b for b in bureaus if b != requester])
            kind = rng.choices(kinds, weights)[0]
            if rng.random() < traffic.hit_ratio:
                query, ref, probes = self.planted(kind, target)
                fetch = rng.random() < traffic.fetch_ratio
                plan.append(
                    Planned(f"{kind}-{i}", requester, [target], query, {target: ref}, fetch, probes)
                )
            else:
                query, probes = self.absent(kind, target)
                plan.append(
                    Planned(
                        f"{kind}-{i}", requester, [target], query, {target: None}, False, probes
                    )
                )
        for i in range(traffic.multi_queries):
            owner = rng.choice(bureaus)
            requester = rng.choice([b for b in bureaus if b != owner])
            query, ref, probes = self.planted("document", owner)
            others = [b for b in bureaus if b != requester]
            expect: dict[str, str | None] = {b: (ref if b == owner else None) for b in others}
            plan.append(Planned(f"multi-{i}", requester, [ALL], query, expect, False, probes))
        # The canary: a unique string no record holds; it must never reach the gateway's files.
        requester, target = rng.sample(bureaus, 2)
        canary = f"Canary{rng.getrandbits(48):012x}"
        query = query_pb2.QueryRequest(
            person=query_pb2.PersonQuery(
                surname=canary, given_names="Trace", date_of_birth="1980-01-01"
            )
        )
        plan.append(Planned("canary", requester, [target], query, {target: None}, False, [canary]))
        return plan


async def send(plan: list[Planned], pki: PkiDir, gateway: str, scenario: Scenario) -> list[Result]:
    """Send the plan through the gateway, ``concurrency`` queries at a time."""
    timeout = scenario.traffic.deadline_ms / 1000
    clients = {b: BureauClient.open(pki, b, gateway) for b in scenario.bureaus}
    limit = asyncio.Semaphore(scenario.traffic.concurrency)

    async def one(item: Planned) -> Result:
        client = clients[item.requester]
        async with limit:
            started = time.perf_counter()
            if item.to == [ALL]:
                answers = await client.multi_query(item.query, [ALL], timeout=timeout)
            else:
                answers = [await client.query(item.query, item.to[0], timeout=timeout)]
            latency = (time.perf_counter() - started) * 1000
            fetched = None
            if item.fetch and answers[0].outcome == Outcome.HIT:
                refs = [m.ref for m in answers[0].matches]
                planted = item.expect_hit[answers[0].bureau]
                ref = planted if planted in refs else refs[0]
                step2 = query_pb2.QueryRequest(fetch=query_pb2.FetchQuery(ref=ref))
                fetched = await client.query(step2, answers[0].bureau, timeout=timeout)
        return Result(item, answers, fetched, latency)

    try:
        # Warm up as a running bureau would be: directory verified, channel connected.
        await asyncio.gather(*(c.peers.load_all() for c in clients.values()))
        return list(await asyncio.gather(*(one(p) for p in plan)))
    finally:
        for client in clients.values():
            await client.close()


def open_stores(workdir: Path, scenario: Scenario) -> dict[str, RecordStore]:
    """Read-only handles on every bureau's records (the simulator's ground truth)."""
    from simulations.network import db_path

    return {b: RecordStore(db_path(workdir, b)) for b in scenario.bureaus}
