"""Answer a decoded query from the bureau's records: the plain typed core of Bureau.Handle.

Step 1 (document, person, vehicle) returns hit or no-hit and opaque references, as
Prüm does; step 2 (fetch) returns the full record for a reference.

Data-owner control (see docs/protocol.md, "Data-owner control"): each record may carry
an allow-list or a deny-list of bureaus, a handling code (H0 to H3) and a notify flag
(:class:`ncbsim.node.records.Control`, read from the store at every query). A record the
requester may not see does not exist for it: step 1 leaves it out of the matches
before the candidate limit is applied (the answer is exactly the one the store would
give without the record), and step 2 answers NotFound, the same bytes as for a
reference never issued, after the same lookups. Released matches and records carry
their handling code. Every hit by another bureau on a notify-flagged record, withheld
or not, is passed to ``on_hit`` as a :class:`ncbsim.node.hits.HitEvent`.

The requester is a principal (``FR`` or ``FR/cdg-border-12``, docs/users.md): the lists
name bureaus, so a user sees what its bureau may see, and a hit names the requester as
it is, bureau and user. What a user may ask at all is node/rights.py's, checked first.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable

import structlog

from ncbsim.errors import QueryError
from ncbsim.node.hits import HitEvent
from ncbsim.node.records import Control, Document, Match, Person, Vehicle
from ncbsim.node.store import MAX_CANDIDATES, RecordStore
from ncbsim.principal import bureau_of
from ncbsim.v2 import query_pb2, records_pb2

log = structlog.get_logger()

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MAX_FIELD = 64

_KINDS = {
    "document": records_pb2.RECORD_KIND_DOCUMENT,
    "person": records_pb2.RECORD_KIND_PERSON,
    "vehicle": records_pb2.RECORD_KIND_VEHICLE,
}


def _field(value: str, name: str, *, required: bool = True) -> str:
    value = value.strip()
    if required and not value:
        raise QueryError(f"{name} is required")
    if len(value) > _MAX_FIELD:
        raise QueryError(f"{name} is longer than {_MAX_FIELD} characters")
    return value


# Wire values of the handling codes: H0..H3 are 1..4; 0 (UNSPECIFIED) means none attached.
_HANDLING = {
    None: records_pb2.HANDLING_CODE_UNSPECIFIED,
    0: records_pb2.HANDLING_CODE_H0,
    1: records_pb2.HANDLING_CODE_H1,
    2: records_pb2.HANDLING_CODE_H2,
    3: records_pb2.HANDLING_CODE_H3,
}

OnHit = Callable[[HitEvent], None]


def _record(record: Document | Person | Vehicle, control: Control) -> query_pb2.Record:
    fields = dataclasses.asdict(record)
    handling = _HANDLING[control.handling]
    if isinstance(record, Document):
        return query_pb2.Record(document=records_pb2.TravelDocument(**fields), handling=handling)
    if isinstance(record, Person):
        return query_pb2.Record(person=records_pb2.Person(**fields), handling=handling)
    return query_pb2.Record(vehicle=records_pb2.Vehicle(**fields), handling=handling)


def _kind_of(record: Document | Person | Vehicle) -> str:
    if isinstance(record, Document):
        return "document"
    return "person" if isinstance(record, Person) else "vehicle"


@dataclasses.dataclass(slots=True)
class _Context:
    """Who asks (``bureau``: the bureau answering for ``requester``), and where hits on
    flagged records go."""

    store: RecordStore
    requester: str | None
    message_id: str
    on_hit: OnHit | None
    clock: Callable[[], float]
    owner: str = ""
    bureau: str | None = None

    def notify(
        self, control: Control, ref: str, record_kind: str, query_kind: str, outcome: str
    ) -> None:
        if (
            self.on_hit is None
            or not control.notify
            or self.requester is None
            or self.bureau == self.owner
        ):
            return
        event = HitEvent(
            at_ms=int(self.clock() * 1000),
            requester=self.requester,
            ref=ref,
            record_kind=record_kind,
            query_kind=query_kind,
            outcome=outcome,
            message_id=self.message_id,
        )
        try:
            self.on_hit(event)
        except Exception:
            # The requester must not learn of the notification, even from a failure.
            log.exception("hit_notification_failed", ref=ref, message_id=self.message_id)

    def hits(
        self, matches: list[Match], query_kind: str, limit: int | None = None
    ) -> query_pb2.Answer:
        released: list[query_pb2.Match] = []
        for m in matches:
            control = self.store.control(m.ref)
            if not control.visible_to(self.bureau, self.owner):
                self.notify(control, m.ref, m.kind, query_kind, "withheld")
                continue
            if limit is not None and len(released) >= limit:
                break
            self.notify(control, m.ref, m.kind, query_kind, "hit")
            released.append(
                query_pb2.Match(
                    ref=m.ref,
                    kind=_KINDS[m.kind],
                    score=m.score,
                    handling=_HANDLING[control.handling],
                )
            )
        return query_pb2.Answer(hits=query_pb2.Hits(matches=released))

    def fetch(self, ref: str) -> query_pb2.Answer:
        # The same lookups whatever the outcome: the control, then every table.
        control = self.store.control(ref)
        record = self.store.fetch_full(ref)
        if record is None:
            return query_pb2.Answer(not_found=query_pb2.NotFound())
        if not control.visible_to(self.bureau, self.owner):
            self.notify(control, ref, _kind_of(record), "fetch", "withheld")
            # Indistinguishable from a reference never issued: the very same body.
            return query_pb2.Answer(not_found=query_pb2.NotFound())
        self.notify(control, ref, _kind_of(record), "fetch", "released")
        return query_pb2.Answer(record=_record(record, control))


def answer(
    store: RecordStore,
    request: query_pb2.Query,
    *,
    requester: str | None = None,
    message_id: str = "",
    on_hit: OnHit | None = None,
    clock: Callable[[], float] = time.time,
) -> query_pb2.Answer:
    """Run one query against ``store`` for ``requester``. Unusable queries get an error body.

    ``requester`` is the authenticated sender: a bureau (alpha-2) or one of its users
    (``FR/x``), who sees the records the owner lets its bureau see; the owner itself
    (and its own users) sees all of them. ``None`` (nobody
    authenticated) sees only unrestricted records. ``on_hit`` is called for every hit
    by another bureau on a notify-flagged record, with ``message_id`` (hex) and the
    time from ``clock``; it must return at once (the node passes ``HitLog.record``).
    """
    bureau = bureau_of(requester) if requester is not None else None
    context = _Context(store, requester, message_id, on_hit, clock, bureau=bureau)
    try:
        context.owner = store.bureau
        return _answer(context, request)
    except ValueError as exc:  # QueryError, or the store refusing a value
        return query_pb2.Answer(error=query_pb2.QueryError(message=str(exc)))


def _answer(context: _Context, request: query_pb2.Query) -> query_pb2.Answer:
    store = context.store
    which = request.WhichOneof("query")
    if which == "document":
        doc = request.document
        return context.hits(
            store.find_document(_field(doc.number, "number"), _field(doc.issuer, "issuer")),
            "document",
        )
    if which == "person":
        person = request.person
        dob = _field(person.date_of_birth, "date_of_birth")
        if not _DATE.match(dob):
            raise QueryError("date_of_birth must be YYYY-MM-DD")
        # Every candidate over the threshold: withheld ones must not take a place.
        candidates = store.find_person(
            _field(person.surname, "surname"),
            _field(person.given_names, "given_names", required=False),
            dob,
            limit=None,
        )
        return context.hits(candidates, "person", MAX_CANDIDATES)
    if which == "vehicle":
        vin = _field(request.vehicle.vin, "vin", required=False)
        plate = _field(request.vehicle.plate, "plate", required=False)
        if not vin and not plate:
            raise QueryError("a vehicle query needs a vin or a plate")
        return context.hits(store.find_vehicle(vin=vin or None, plate=plate or None), "vehicle")
    if which == "fetch":
        return context.fetch(_field(request.fetch.ref, "ref"))
    raise QueryError("the query names no record kind")
