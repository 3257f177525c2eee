"""What a load run needs before locust starts: requester bureaus and a query corpus.

Every locust user is a bureau of its own, with its own certificate and E2E keys.
The network's own bureaus are busy answering, so ``ncbsim load`` issues keys for
*requester* bureaus: INTERPOL members that have no node in the scenario, taken in
alphabetical order (AD, AE, AF, ...), one per user up to the members left. A
requester has a directory entry and a TLS certificate but no node, exactly like a
bureau's border-post terminals sending checks. Keys issued once are reused by
later runs on the same work directory.

The corpus holds realistic queries drawn from the nodes' own databases: planted
hits on records the target really holds, and checks of documents, people and
vehicles it does not hold (verified to be no-hits). Each query carries the answer
the network must give, so a load user counts a wrong answer as a failure.

Everything is written to one JSON file, ``plan.json``, that the locust processes
read (``--plan``); no locust process touches a database.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ncbsim import pki
from ncbsim.client import Answer, Outcome
from ncbsim.countries import INTERPOL_MEMBERS
from ncbsim.errors import ConfigError
from ncbsim.node.store import RecordStore
from ncbsim.simulations.traffic import Drawer
from ncbsim.v2 import query_pb2

PLAN_VERSION = 1
# Per target bureau: (hits, no-hits) for each kind of check, and step-2 references.
_MIX = {"document": (20, 40), "person": (10, 20), "vehicle": (10, 20)}
_FETCHES = 20
_MULTI = 20


@dataclass(frozen=True, slots=True)
class Item:
    """One query of the corpus and the answer the network must give."""

    to: str
    query: str  # base64 of a serialized Query
    expect: str | None  # the reference that must be among the hits, or None for a no-hit

    def request(self) -> query_pb2.Query:
        """The query as a protobuf message."""
        return query_pb2.Query.FromString(base64.b64decode(self.query))

    def mismatch(self, answer: Answer) -> str | None:
        """Why ``answer`` is wrong for this item, or None if it is the answer owed.

        A check owes a hit naming the planted reference, or a no-hit; a fetch owes
        the record. No answer, a refusal, an unverifiable response or an error body
        is always wrong.
        """
        if answer.outcome in (Outcome.NO_ANSWER, Outcome.FAILED, Outcome.ERROR):
            return f"{answer.bureau}: {answer.outcome.value} {answer.detail}".rstrip()
        if answer.outcome == Outcome.RECORD:
            return None if self.expect is not None else f"{answer.bureau}: unexpected record"
        if answer.outcome == Outcome.NOT_FOUND:
            return f"{answer.bureau}: reference not found"
        refs = {m.ref for m in answer.matches}
        if self.expect is None:
            return None if not refs else f"{answer.bureau}: false hit"
        return None if self.expect in refs else f"{answer.bureau}: planted record missed"


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """Everything the load users need: where, who, and what to ask."""

    gateway: str
    pki_dir: str
    targets: list[str]  # bureaus with a node: the ones queried
    requesters: list[str]  # one per user (reused round-robin beyond the pool)
    corpus: dict[str, list[Item]] = field(default_factory=dict)  # kind -> items
    workers: int = 1  # locust worker processes (1: a single local process)
    deadline_s: float = 5.0
    scenario: str = ""  # the scenario the network runs, when known
    version: int = PLAN_VERSION

    def save(self, path: Path) -> None:
        """Write the plan as JSON."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self)) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> LoadPlan:
        """Read a plan written by :meth:`save`; ConfigError if it is missing or not a plan."""
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no load plan; `ncbsim load` writes one") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not a load plan: {exc}") from None
        if data.get("version") != PLAN_VERSION:
            raise ConfigError(f"{path}: load plan version {data.get('version')!r} unsupported")
        try:
            return cls(
                gateway=data["gateway"],
                pki_dir=data["pki_dir"],
                targets=list(data["targets"]),
                requesters=list(data["requesters"]),
                corpus={k: [Item(**i) for i in items] for k, items in data["corpus"].items()},
                workers=int(data["workers"]),
                deadline_s=float(data["deadline_s"]),
                scenario=str(data.get("scenario", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{path}: not a complete load plan ({exc!r})") from None

    def target(self) -> dict[str, str]:
        """What the load is aimed at: the gateway, the network's folder and its scenario."""
        return {
            "gateway": self.gateway,
            "network": self.pki_dir,
            "scenario": self.scenario or "unknown",
        }

    def describe(self) -> str:
        """The target in one line, as locust's reports show it (their "Target Host")."""
        t = self.target()
        return f"{t['gateway']} (ncbsim gateway; network {t['network']}, scenario {t['scenario']})"

    def requester(self, local_index: int, worker_index: int) -> str:
        """The requester bureau of a process's ``local_index``-th user.

        Users are numbered across all worker processes, so each has its own bureau
        until the pool runs out, then they share round-robin.
        """
        index = local_index * self.workers + worker_index
        return self.requesters[index % len(self.requesters)]


def requester_codes(targets: list[str], users: int) -> list[str]:
    """Requester bureaus for ``users`` users: members without a node, alphabetically."""
    if users < 1:
        raise ConfigError("--users must be at least 1")
    free = [c for c in sorted(INTERPOL_MEMBERS) if c not in set(targets)]
    if not free:
        raise ConfigError("every INTERPOL member already runs a node; no requester is left")
    return free[: min(users, len(free))]


def provision(directory: pki.PkiDir, codes: list[str]) -> list[str]:
    """Issue keys for each requester the PKI does not hold yet; returns the new codes."""
    known = set(directory.bureaus())
    new = [c for c in codes if c not in known]
    for code in new:
        pki.add_bureau(directory, code, requester_only=True)
    return new


def _encode(query: query_pb2.Query) -> str:
    return base64.b64encode(query.SerializeToString()).decode("ascii")


def build_corpus(stores: dict[str, RecordStore], seed: int) -> dict[str, list[Item]]:
    """Queries for every target: hits on real records, verified no-hits, fetches, multi."""
    drawer = Drawer(stores, random.Random(seed))
    corpus: dict[str, list[Item]] = {kind: [] for kind in (*_MIX, "fetch", "multi")}
    for target in sorted(stores):
        for kind, (hits, misses) in _MIX.items():
            for _ in range(hits):
                query, ref, _probes = drawer.planted(kind, target)
                corpus[kind].append(Item(target, _encode(query), ref))
            for _ in range(misses):
                query, _probes = drawer.absent(kind, target)
                corpus[kind].append(Item(target, _encode(query), None))
        for _ in range(_FETCHES):
            kind = drawer.rng.choice(list(_MIX))
            _query, ref, _probes = drawer.planted(kind, target)
            fetch = query_pb2.Query(fetch=query_pb2.FetchQuery(ref=ref))
            corpus["fetch"].append(Item(target, _encode(fetch), ref))
        for _ in range(_MULTI // len(stores) + 1):
            # A document of ``target`` checked at every bureau: ``to`` names the owner.
            query, ref, _probes = drawer.planted("document", target)
            corpus["multi"].append(Item(target, _encode(query), ref))
    return corpus
