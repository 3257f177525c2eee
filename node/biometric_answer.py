"""Answer biometric queries: a 1:N search gives a candidate list, a confirmation a person.

The typed core of Bureau.Handle for ``Query.biometric`` and ``Query.confirm``
(docs/biometrics.md, "Searching another bureau's collection"), next to
:mod:`ncbsim.node.answer`, which answers the other kinds. :class:`Collection` holds the
owner's enrolled templates (the ``biometrics`` table, :mod:`ncbsim.node.biogen`) in one
:class:`~ncbsim.node.biometric_index.BiometricIndex` per modality, loaded at node start.

Prüm's rules, as the owner applies them:

- **Search (step 1).** The probe is decoded (:func:`ncbsim.biometrics.decode`): a
  malformed or oversized one raises :class:`~ncbsim.errors.QueryError`, which the node
  refuses INVALID_ARGUMENT and audits. The requesting bureau's search is then counted
  against its daily cap (:class:`ncbsim.node.caps.CapLedger`: beyond it
  :class:`~ncbsim.errors.QuotaExceeded`, RESOURCE_EXHAUSTED). The answer is at most
  ``min(max_candidates or DEFAULT_CANDIDATES, MAX_CANDIDATES)`` references scoring at or
  above the modality's search threshold, best first, ranked from 1.
- **Data-owner control.** A candidate belongs to a person record; if the requester may
  not see that record, the candidate is left out *before* the cap, so the list is the one
  the owner would give without it. A hit on a notify-flagged person, released or
  withheld, is passed to ``on_hit`` (query kind ``fingerprint``, ``face`` or ``confirm``).
- **Confirmation (step 2).** The probe is compared 1:1 with the candidate's enrolled
  template; ``confirmed`` when the score reaches the modality's confirmation threshold,
  and then the answer carries the person (with its handling code), as a fetch would. A
  reference never issued, one of another modality, or a person withheld from the requester
  all answer ``confirmed=false``, score 0 and no record: the same body. Confirmations are
  not counted against the daily cap.

Rights are keyed by bureau: a user ``FR/x`` sees what FR sees and spends FR's cap
(:func:`ncbsim.principal.bureau_of`); hit events name the user.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog

from ncbsim import biometrics
from ncbsim.errors import QueryError
from ncbsim.node.biometric_index import Backend, BiometricIndex
from ncbsim.node.caps import CapLedger
from ncbsim.node.hits import HitEvent
from ncbsim.node.records import Control, Person
from ncbsim.node.store import RecordStore
from ncbsim.principal import bureau_of
from ncbsim.v2 import query_pb2, records_pb2

__all__ = ["KINDS", "BiometricAnswerer", "Collection", "candidate_count", "modality_of"]

log = structlog.get_logger()

KINDS = frozenset({"biometric", "confirm"})
"""The ``Query`` oneof fields this module answers."""

OnHit = Callable[[HitEvent], None]


def modality_of(wire: int) -> str:
    """The modality a ``Modality`` enum value names; QueryError for none or an unknown one."""
    return biometrics.from_wire(wire)


def candidate_count(requested: int) -> int:
    """How many candidates the owner returns for ``max_candidates`` (0: the default)."""
    return min(requested or biometrics.DEFAULT_CANDIDATES, biometrics.MAX_CANDIDATES)


@dataclass(frozen=True, slots=True)
class Collection:
    """The owner's enrolled templates: an index per modality, and whose each one is."""

    indexes: dict[str, BiometricIndex]
    person_of: dict[str, str]
    """Template reference to the person record it was enrolled for."""
    modality: dict[str, str]
    """Template reference to its modality."""

    @classmethod
    def load(cls, store: RecordStore, backend: Backend = "faiss") -> Collection:
        """Every template of ``store`` in memory, searchable (``backend``: faiss or numpy)."""
        rows: dict[str, list[tuple[str, bytes]]] = {m: [] for m in biometrics.MODALITIES}
        person_of: dict[str, str] = {}
        modality: dict[str, str] = {}
        for ref, person_ref, kind, template in store.enrolled():
            rows[kind].append((ref, template))
            person_of[ref] = person_ref
            modality[ref] = kind
        indexes: dict[str, BiometricIndex] = {}
        for kind, enrolled in rows.items():
            index = BiometricIndex(kind, backend=backend)
            if enrolled:
                matrix = np.stack([biometrics.decode(t, kind) for _, t in enrolled])
                index.add([ref for ref, _ in enrolled], matrix)
            indexes[kind] = index
        return cls(indexes, person_of, modality)

    def counts(self) -> dict[str, int]:
        """Enrolled templates per modality."""
        return {kind: len(index) for kind, index in self.indexes.items()}


# The wire handling codes, as node/answer.py sends them; None: the owner attached none.
_HANDLING = {
    None: records_pb2.HANDLING_CODE_UNSPECIFIED,
    0: records_pb2.HANDLING_CODE_H0,
    1: records_pb2.HANDLING_CODE_H1,
    2: records_pb2.HANDLING_CODE_H2,
    3: records_pb2.HANDLING_CODE_H3,
}


class BiometricAnswerer:
    """Searches and confirmations against one owner's :class:`Collection`."""

    def __init__(self, store: RecordStore, collection: Collection, caps: CapLedger) -> None:
        self._store = store
        self._collection = collection
        self._caps = caps

    @classmethod
    def open(
        cls, store: RecordStore, caps: Path, daily_cap: int, backend: Backend = "faiss"
    ) -> BiometricAnswerer:
        """The answerer of a node: ``store``'s templates indexed, its cap ledger at ``caps``."""
        collection = Collection.load(store, backend)
        log.info("biometrics_loaded", templates=collection.counts(), daily_cap=daily_cap)
        return cls(store, collection, CapLedger(caps, daily_cap))

    def close(self) -> None:
        """Close the cap ledger."""
        self._caps.close()

    @property
    def collection(self) -> Collection:
        """The enrolled templates."""
        return self._collection

    def answer(
        self,
        request: query_pb2.Query,
        *,
        requester: str,
        message_id: str = "",
        on_hit: OnHit | None = None,
        now_ms: int,
    ) -> query_pb2.Answer:
        """The answer to a biometric or confirm ``request`` from ``requester`` (a principal).

        Raises QueryError for an unusable query (modality, probe) and QuotaExceeded for a
        search beyond the requesting bureau's daily cap: the node refuses both, audited.
        """
        hits = _Hits(self._store, requester, message_id, on_hit, now_ms)
        which = request.WhichOneof("query")
        if which == "biometric":
            return self._search(request.biometric, hits)
        if which == "confirm":
            return self._confirm(request.confirm, hits)
        raise QueryError("not a biometric query")

    def _search(self, query: query_pb2.BiometricQuery, hits: _Hits) -> query_pb2.Answer:
        modality = modality_of(query.modality)
        probe = biometrics.decode(query.template, modality)
        limit = candidate_count(query.max_candidates)
        self._caps.spend(hits.requester, hits.now_ms)  # a decoded probe is a search
        index = self._collection.indexes[modality]
        threshold = biometrics.THRESHOLDS[modality]["search"]
        released: list[query_pb2.Candidate] = []
        # Withheld candidates must not take a place: widen the search until enough remain.
        wide = limit * 4
        while True:
            asked = min(wide, len(index))
            found = index.search(probe, asked, threshold) if asked else []
            released = []
            for ref, score in found:
                person_ref = self._collection.person_of[ref]
                control = self._store.control(person_ref)
                if not hits.visible(control):
                    hits.notify(control, person_ref, modality, "withheld")
                    continue
                if len(released) >= limit:
                    break
                hits.notify(control, person_ref, modality, "hit")
                released.append(query_pb2.Candidate(ref=ref, score=score, rank=len(released) + 1))
            if len(released) >= limit or len(found) < asked or asked == len(index):
                break
            wide *= 4
        return query_pb2.Answer(candidates=query_pb2.Candidates(candidates=released))

    def _confirm(self, query: query_pb2.ConfirmQuery, hits: _Hits) -> query_pb2.Answer:
        modality = modality_of(query.modality)
        probe = biometrics.decode(query.template, modality)
        ref = query.ref.strip()
        unconfirmed = query_pb2.Answer(confirmation=query_pb2.Confirmation(confirmed=False))
        if self._collection.modality.get(ref) != modality:
            return unconfirmed
        enrolled = self._collection.indexes[modality].template(ref)
        if enrolled is None:
            return unconfirmed
        person_ref = self._collection.person_of[ref]
        control = self._store.control(person_ref)
        person = self._store.fetch_full(person_ref)
        if not isinstance(person, Person):
            return unconfirmed
        if not hits.visible(control):
            hits.notify(control, person_ref, "confirm", "withheld")
            return unconfirmed  # indistinguishable from a reference never issued
        score = biometrics.similarity(probe, enrolled)
        if score < biometrics.THRESHOLDS[modality]["confirm"]:
            return query_pb2.Answer(
                confirmation=query_pb2.Confirmation(confirmed=False, score=score)
            )
        hits.notify(control, person_ref, "confirm", "released")
        record = query_pb2.Record(
            person=records_pb2.Person(**dataclasses.asdict(person)),
            handling=_HANDLING[control.handling],
        )
        return query_pb2.Answer(
            confirmation=query_pb2.Confirmation(confirmed=True, score=score, record=record)
        )


@dataclass(slots=True)
class _Hits:
    """Who asks, what it may see, and the hit events of flagged persons it met (each
    person and outcome told once, also when a search is widened)."""

    store: RecordStore
    requester: str
    message_id: str
    on_hit: OnHit | None
    now_ms: int
    _told: set[tuple[str, str]] = dataclasses.field(default_factory=set)

    def visible(self, control: Control) -> bool:
        return control.visible_to(bureau_of(self.requester), self.store.bureau)

    def notify(self, control: Control, person_ref: str, query_kind: str, outcome: str) -> None:
        if (
            self.on_hit is None
            or not control.notify
            or bureau_of(self.requester) == self.store.bureau
            or (person_ref, outcome) in self._told
        ):
            return
        self._told.add((person_ref, outcome))
        event = HitEvent(
            at_ms=self.now_ms,
            requester=self.requester,
            ref=person_ref,
            record_kind="person",
            query_kind=query_kind,
            outcome=outcome,
            message_id=self.message_id,
        )
        try:
            self.on_hit(event)
        except Exception:
            # The requester must not learn of the notification, even from a failure.
            log.exception("hit_notification_failed", ref=person_ref, message_id=self.message_id)
