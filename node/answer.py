"""Answer a decoded query from the bureau's records: the plain typed core of Bureau.Handle.

Step 1 (document, person, vehicle) returns hit or no-hit and opaque references, as
Prüm does; step 2 (fetch) returns the full record for a reference.
"""

from __future__ import annotations

import dataclasses
import re

from ncbsim.errors import QueryError
from ncbsim.v1 import query_pb2, records_pb2
from node.store import Document, Match, Person, RecordStore, Vehicle

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


def _hits(matches: list[Match]) -> query_pb2.QueryResponse:
    return query_pb2.QueryResponse(
        hits=query_pb2.Hits(
            matches=[
                query_pb2.Match(ref=m.ref, kind=_KINDS[m.kind], score=m.score) for m in matches
            ]
        )
    )


def _record(record: Document | Person | Vehicle) -> query_pb2.Record:
    fields = dataclasses.asdict(record)
    if isinstance(record, Document):
        return query_pb2.Record(document=records_pb2.TravelDocument(**fields))
    if isinstance(record, Person):
        return query_pb2.Record(person=records_pb2.Person(**fields))
    return query_pb2.Record(vehicle=records_pb2.Vehicle(**fields))


def answer(store: RecordStore, request: query_pb2.QueryRequest) -> query_pb2.QueryResponse:
    """Run one query against ``store``. Unusable queries get an error body, not an exception."""
    try:
        return _answer(store, request)
    except ValueError as exc:  # QueryError, or the store refusing a value
        return query_pb2.QueryResponse(error=query_pb2.QueryError(message=str(exc)))


def _answer(store: RecordStore, request: query_pb2.QueryRequest) -> query_pb2.QueryResponse:
    which = request.WhichOneof("query")
    if which == "document":
        doc = request.document
        return _hits(
            store.find_document(_field(doc.number, "number"), _field(doc.issuer, "issuer"))
        )
    if which == "person":
        person = request.person
        dob = _field(person.date_of_birth, "date_of_birth")
        if not _DATE.match(dob):
            raise QueryError("date_of_birth must be YYYY-MM-DD")
        return _hits(
            store.find_person(
                _field(person.surname, "surname"),
                _field(person.given_names, "given_names", required=False),
                dob,
            )
        )
    if which == "vehicle":
        vin = _field(request.vehicle.vin, "vin", required=False)
        plate = _field(request.vehicle.plate, "plate", required=False)
        if not vin and not plate:
            raise QueryError("a vehicle query needs a vin or a plate")
        return _hits(store.find_vehicle(vin=vin or None, plate=plate or None))
    if which == "fetch":
        record = store.fetch(_field(request.fetch.ref, "ref"))
        if record is None:
            return query_pb2.QueryResponse(not_found=query_pb2.NotFound())
        return query_pb2.QueryResponse(record=_record(record))
    raise QueryError("the query names no record kind")
