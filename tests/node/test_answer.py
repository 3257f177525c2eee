"""Answering decoded queries: step 1 answers references, step 2 the record, bad input errors."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import document_query

from ncbsim.node import datagen
from ncbsim.node.answer import answer
from ncbsim.node.store import RecordStore
from ncbsim.v2 import query_pb2, records_pb2


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordStore]:
    """A small generated store for bureau DE."""
    path = tmp_path_factory.mktemp("answer") / "records.sqlite"
    datagen.generate(path, "DE", seed=11, documents=200, persons=80, vehicles=80)
    records = RecordStore(path)
    yield records
    records.close()


def test_document_hit_returns_only_a_reference(store: RecordStore) -> None:
    """Step 1 for a held document is a hit carrying the reference and nothing of the record."""
    doc = store.sample("document", 1, random.Random(1))[0]
    response = answer(
        store,
        document_query(doc.number.lower(), "DE"),
    )
    assert response.WhichOneof("result") == "hits"
    assert [(m.ref, m.kind, m.score) for m in response.hits.matches] == [
        (doc.ref, records_pb2.RECORD_KIND_DOCUMENT, 1.0)
    ]
    assert doc.number.encode() not in response.SerializeToString()


def test_fetch_returns_the_full_record(store: RecordStore) -> None:
    """Step 2 for a reference returns every field of the stored record."""
    vehicle = store.sample("vehicle", 1, random.Random(2))[0]
    response = answer(store, query_pb2.Query(fetch=query_pb2.FetchQuery(ref=vehicle.ref)))
    record = response.record.vehicle
    assert (record.vin, record.plate, record.make, record.year) == (
        vehicle.vin,
        vehicle.plate,
        vehicle.make,
        vehicle.year,
    )


def test_fetch_of_unknown_reference_is_not_found(store: RecordStore) -> None:
    """Step 2 for a reference the bureau never issued answers not_found."""
    response = answer(store, query_pb2.Query(fetch=query_pb2.FetchQuery(ref="nope")))
    assert response.WhichOneof("result") == "not_found"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (query_pb2.Query(), "names no record kind"),
        (
            query_pb2.Query(
                person=query_pb2.PersonQuery(surname="Muller", date_of_birth="03/02/1980")
            ),
            "YYYY-MM-DD",
        ),
        (query_pb2.Query(vehicle=query_pb2.VehicleQuery()), "vin or a plate"),
        (
            document_query("X" * 65, "DE"),
            "longer than",
        ),
    ],
    ids=["empty", "bad-dob", "no-vehicle-key", "oversized-field"],
)
def test_unusable_query_gets_an_error_body(
    store: RecordStore, query: query_pb2.Query, message: str
) -> None:
    """A query the bureau cannot run is answered with an explanation, not a crash."""
    response = answer(store, query)
    assert response.WhichOneof("result") == "error"
    assert message in response.error.message


def test_person_query_with_accents_dropped_still_hits(store: RecordStore) -> None:
    """A name typed without accents and in upper case still finds the person."""
    person = store.sample("person", 1, random.Random(3))[0]
    response = answer(
        store,
        query_pb2.Query(
            person=query_pb2.PersonQuery(
                surname=person.surname.upper(),
                given_names=person.given_names,
                date_of_birth=person.date_of_birth,
            )
        ),
    )
    assert person.ref in [m.ref for m in response.hits.matches]


def test_store_path_is_a_real_sqlite_file(store: RecordStore, tmp_path: Path) -> None:
    """The store is a WAL-mode SQLite file on disk."""
    import sqlite3

    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_value_the_store_refuses_is_an_error_body(store: RecordStore) -> None:
    """A plate that normalises to nothing is answered as an error, never an exception."""
    response = answer(store, query_pb2.Query(vehicle=query_pb2.VehicleQuery(plate="-")))
    assert response.WhichOneof("result") == "error"
