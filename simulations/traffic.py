"""Plan a scenario's schedule of queries, with hits planted from the bureaus' real records.

The plan is drawn from the scenario's seed. A planted query targets a record the
recipient really holds (read from its database, as ground truth); every other
query is checked against that database to be a true no-hit before it is sent.

A planted biometric search (``fingerprint``, ``face``) is a new capture, at the scenario's
quality, of a subject the recipient enrolled (:func:`ncbsim.node.biogen.capture`); its
"no-hit" is a capture of a subject enrolled nowhere. Biometrics are not exact: a planted
search may miss its subject and a stranger may draw a candidate, at the rates
docs/biometrics.md measures; the report counts both (``biometric``).
"""

from __future__ import annotations

import math
import random
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ncbsim import biosearch
from ncbsim.client import ALL, Answer
from ncbsim.node import biogen
from ncbsim.node import vin as vins
from ncbsim.node.answer import answer as oracle_answer
from ncbsim.node.records import Document, Person, Vehicle
from ncbsim.node.store import RecordStore
from ncbsim.simulations.scenario import ExplicitQuery, Scenario
from ncbsim.v2 import query_pb2

_KINDS = ("document", "person", "vehicle")
BIOMETRIC = ("fingerprint", "face")
_MIDDLE = {"fingerprint": "plain", "face": "border"}
_ALNUM = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"


@dataclass(slots=True)
class Planned:
    """One query of the plan and what the network must answer."""

    label: str
    requester: str
    to: list[str]  # one bureau, or every other bureau for a multi-bureau query
    query: query_pb2.Query
    expect_hit: dict[str, str | None]  # bureau -> planted ref (hit) or None (no-hit)
    fetch: bool = False
    probes: list[str] = field(default_factory=list)  # plaintext strings the gateway must not see
    at_s: float = 0.0  # when to send it, in seconds after the traffic starts
    kind: str = "document"  # document, person, vehicle or multi
    explicit: bool = False  # a query of the scenario's timeline
    expect_outcome: str | None = None  # what a timeline query must come back as


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _document_query(number: str, issuer: str) -> query_pb2.Query:
    return query_pb2.Query(document=query_pb2.DocumentQuery(number=number, issuer=issuer))


class Drawer:
    """Draws realistic queries from the bureaus' databases: planted hits and true no-hits.

    The simulator's planner and ``ncbsim load``'s query corpus both draw from it.
    """

    def __init__(self, stores: dict[str, RecordStore], rng: random.Random) -> None:
        self.stores = stores
        self.rng = rng
        self.qualities = dict(_MIDDLE)
        """The capture quality of each modality's probes."""

    def _no_hit(self, target: str, query: query_pb2.Query) -> bool:
        # Asked as the owner, who sees every record: a true no-hit for any requester.
        response = oracle_answer(self.stores[target], query, requester=target)
        return response.HasField("hits") and not response.hits.matches

    def _until_no_hit(self, target: str, make: Callable[[], query_pb2.Query]) -> query_pb2.Query:
        for _ in range(50):
            query = make()
            if self._no_hit(target, query):
                return query
        raise RuntimeError(f"could not draw a no-hit query for {target}")

    def quality(self, modality: str) -> str:
        """The capture quality of ``modality``'s probes (the middle one unless set)."""
        return self.qualities[modality]

    def _capture_rng(self) -> np.random.Generator:
        return np.random.default_rng(self.rng.getrandbits(64))

    def _planted_biometric(self, modality: str, target: str) -> tuple[query_pb2.Query, str]:
        """A capture of a subject ``target`` enrolled, whom every bureau may see."""
        store = self.stores[target]
        enrolled = [(ref, person) for ref, person, kind, _ in store.enrolled() if kind == modality]
        if not enrolled:
            raise RuntimeError(f"{target} enrolled no {modality}: set records.biometrics")
        ref, person = self.rng.choice(enrolled)
        while store.control(person).restricted:
            ref, person = self.rng.choice(enrolled)
        seed = int(store.meta()["seed"])
        probe = biogen.capture(
            target,
            seed,
            person,
            modality=modality,
            quality=self.quality(modality),
            rng=self._capture_rng(),
        )
        return biosearch.search(modality, probe), ref

    def planted(self, kind: str, target: str) -> tuple[query_pb2.Query, str, list[str]]:
        """A query for a record ``target`` really holds: (query, ref, plaintext probes).

        The record is one every bureau may see: a restricted record is, rightly, a
        no-hit for the bureaus it is withheld from, so it is never planted. For a
        biometric search the ref is the enrolled template's.
        """
        if kind in BIOMETRIC:
            query, ref = self._planted_biometric(kind, target)
            return query, ref, []
        store = self.stores[target]
        record = store.sample(kind, 1, self.rng)[0]
        while store.control(record.ref).restricted:
            record = store.sample(kind, 1, self.rng)[0]
        if isinstance(record, Document):
            return _document_query(record.number, record.issuer), record.ref, [record.number]
        if isinstance(record, Person):
            # Transliteration varies between bureaus: send the name without accents,
            # in upper case, as a border post would type it.
            query = query_pb2.Query(
                person=query_pb2.PersonQuery(
                    surname=_strip_accents(record.surname).upper(),
                    given_names=_strip_accents(record.given_names).upper(),
                    date_of_birth=record.date_of_birth,
                )
            )
            return query, record.ref, []
        assert isinstance(record, Vehicle)
        if self.rng.random() < 0.5:
            query = query_pb2.Query(vehicle=query_pb2.VehicleQuery(vin=record.vin))
            return query, record.ref, [record.vin]
        query = query_pb2.Query(vehicle=query_pb2.VehicleQuery(plate=record.plate))
        return query, record.ref, []

    def absent(self, kind: str, target: str) -> tuple[query_pb2.Query, list[str]]:
        """A realistic query for a record ``target`` does not hold."""
        rng = self.rng
        if kind in BIOMETRIC:
            seed = int(self.stores[target].meta()["seed"])
            name = f"{rng.getrandbits(48):012x}"
            probe = biogen.stranger(
                seed, name, modality=kind, quality=self.quality(kind), rng=self._capture_rng()
            )
            return biosearch.search(kind, probe), []
        if kind == "document":

            def make() -> query_pb2.Query:
                number = "".join(rng.choice(_ALNUM) for _ in range(9))
                return _document_query(number, target)

            query = self._until_no_hit(target, make)
            return query, [query.document.number]
        if kind == "person":
            # A real person of that bureau, with another date of birth: a near miss.
            person = self.stores[target].sample("person", 1, rng)[0]
            assert isinstance(person, Person)

            def make_person() -> query_pb2.Query:
                year = int(person.date_of_birth[:4]) + rng.choice((-3, -2, -1, 1, 2, 3))
                return query_pb2.Query(
                    person=query_pb2.PersonQuery(
                        surname=person.surname,
                        given_names=person.given_names,
                        date_of_birth=f"{year:04d}{person.date_of_birth[4:]}",
                    )
                )

            return self._until_no_hit(target, make_person), []

        def make_vehicle() -> query_pb2.Query:
            return query_pb2.Query(vehicle=query_pb2.VehicleQuery(vin=vins.make_vin(rng, "WVW")))

        query = self._until_no_hit(target, make_vehicle)
        return query, [query.vehicle.vin]


class Planner(Drawer):
    """Draws a scenario's whole schedule from its seed and the bureaus' databases.

    The same scenario (seed included) and the same records always give the same
    schedule: arrival times, requesters, targets, queries and planted records.
    """

    def __init__(self, scenario: Scenario, stores: dict[str, RecordStore]) -> None:
        super().__init__(stores, random.Random(scenario.seed))
        self.scenario = scenario
        traffic = scenario.traffic
        self.qualities = {"fingerprint": traffic.fingerprint_quality, "face": traffic.face_quality}
        self._pools: dict[tuple[str, str], list[tuple[query_pb2.Query, str, list[str]]]] = {}

    def pool(self, bureau: str, kind: str) -> list[tuple[query_pb2.Query, str, list[str]]]:
        """The planted records of ``bureau`` of ``kind`` that hit queries aim at.

        Each bureau has ``records.planted`` of them, shared among the kinds by the
        traffic mix's weights (at least one of each kind the mix or a timeline query uses).
        """
        key = (bureau, kind)
        if key not in self._pools:
            mix = self.scenario.traffic.mix.weights()
            kinds = {k: mix.get(k, 0.0) for k in (*_KINDS, *BIOMETRIC)}
            kinds["document"] += mix.get("multi", 0.0)
            total = sum(kinds.values()) or 1.0
            size = max(1, math.ceil(self.scenario.records.planted * kinds[kind] / total))
            # Its own generator: the pool does not depend on when it is first needed.
            rng = random.Random(f"{self.scenario.seed}:{bureau}:{kind}")
            drawer = Drawer(self.stores, rng)
            drawer.qualities = self.qualities
            self._pools[key] = [drawer.planted(kind, bureau) for _ in range(size)]
        return self._pools[key]

    def _hit(self, kind: str, target: str) -> tuple[query_pb2.Query, str, list[str]]:
        return self.rng.choice(self.pool(target, kind))

    def plan(self) -> list[Planned]:
        """The whole schedule, in sending order: traffic and the timeline's queries."""
        rng = self.rng
        traffic = self.scenario.traffic
        bureaus = list(self.scenario.bureaus)
        requesters = list(traffic.requesters) or bureaus
        weights = traffic.mix.weights()
        kinds = [k for k, w in weights.items() if w > 0]
        kind_weights = [weights[k] for k in kinds]
        plan: list[Planned] = []
        at_s = 0.0
        i = 0
        while True:
            at_s += rng.expovariate(traffic.rate_per_s)  # Poisson arrivals
            if at_s >= traffic.duration_s:
                break
            requester = rng.choice(requesters)
            kind = rng.choices(kinds, kind_weights)[0]
            label = f"{kind}-{i}"
            i += 1
            if kind == "multi":
                owner = rng.choice([b for b in bureaus if b != requester])
                query, ref, probes = self._hit("document", owner)
                others = [b for b in bureaus if b != requester]
                expect: dict[str, str | None] = {b: (ref if b == owner else None) for b in others}
                plan.append(
                    Planned(label, requester, [ALL], query, expect, False, probes, at_s, kind)
                )
                continue
            target = rng.choice([b for b in bureaus if b != requester])
            if rng.random() < traffic.hit_ratio:
                query, ref, probes = self._hit(kind, target)
                fetch = rng.random() < traffic.fetch_ratio
                plan.append(
                    Planned(
                        label, requester, [target], query, {target: ref}, fetch, probes, at_s, kind
                    )
                )
            else:
                query, probes = self.absent(kind, target)
                plan.append(
                    Planned(
                        label, requester, [target], query, {target: None}, False, probes, at_s, kind
                    )
                )
        for event in self.scenario.queries():
            plan.append(self._explicit(event.id, event.at_s, event.query, event.expect))
        # The canary: a unique string no record holds; it must never reach the gateway's files.
        requester, target = rng.sample(bureaus, 2)
        canary = f"Canary{rng.getrandbits(48):012x}"
        query = query_pb2.Query(
            person=query_pb2.PersonQuery(
                surname=canary, given_names="Trace", date_of_birth="1980-01-01"
            )
        )
        plan.append(
            Planned(
                "canary", requester, [target], query, {target: None}, False, [canary], 0.0, "person"
            )
        )
        plan.sort(key=lambda p: p.at_s)
        return plan

    def _explicit(
        self, label: str, at_s: float, spec: ExplicitQuery, expect_outcome: str | None
    ) -> Planned:
        """A query of the timeline: planted (a hit) or absent (a no-hit) at its one target."""
        to = list(spec.to)
        own = spec.requester.partition("/")[0]  # a user's ALL leaves out its own bureau
        targets = [b for b in self.scenario.bureaus if b != own] if to == [ALL] else to
        # With ALL the planted record belongs to a bureau drawn from the seed.
        owner = self.rng.choice(targets) if to == [ALL] else targets[0]
        if spec.planted:
            query, ref, probes = self._hit(spec.kind, owner)
            expect: dict[str, str | None] = {b: (ref if b == owner else None) for b in targets}
        else:
            query, probes = self.absent(spec.kind, owner)
            expect = dict.fromkeys(targets)
        kind = "multi" if len(targets) > 1 or to == [ALL] else spec.kind
        return Planned(
            label,
            spec.requester,
            to,
            query,
            expect,
            spec.fetch,
            probes,
            at_s,
            kind,
            True,
            expect_outcome,
        )


def open_stores(workdir: Path, scenario: Scenario) -> dict[str, RecordStore]:
    """Read-only handles on every bureau's records (the simulator's ground truth)."""
    from ncbsim.workdir import Workdir

    return {b: RecordStore(Workdir(workdir).bureau(b).records) for b in scenario.bureaus}


def second_step(
    query: query_pb2.Query, answer: Answer, planted: str | None
) -> tuple[query_pb2.Query, str]:
    """Step 2 after a hit, and its kind: the fetch of the planted reference if it came back
    (else the first), or for a biometric search the confirmation of that candidate with
    the search's own probe (``confirm``)."""
    if query.WhichOneof("query") == "biometric":
        refs = [c.ref for c in biosearch.candidates(answer)]
        ref = planted if planted in refs else refs[0]
        search = query.biometric
        confirm = query_pb2.ConfirmQuery(
            ref=ref, modality=search.modality, template=search.template
        )
        return query_pb2.Query(confirm=confirm), "confirm"
    refs = [m.ref for m in answer.matches]
    ref = planted if planted in refs else refs[0]
    return query_pb2.Query(fetch=query_pb2.FetchQuery(ref=ref)), "fetch"
