"""RecordStore: hits and misses per kind, fuzzy names, fetch, index use and thread safety."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ncbsim.errors import StoreClosedError
from ncbsim.node.datagen import generate
from ncbsim.node.matching import name_key
from ncbsim.node.records import Document, Match, Person, Vehicle
from ncbsim.node.store import LOOKUPS, RecordStore

# Persons planted next to the generated ones, to test fuzzy matching on known names.
PLANTED = [
    ("plantedmuellerjuergen", "Müller", "Jürgen", "1980-02-29"),
    ("plantedmeyerhanselke", "Meyer", "Hans-Elke", "1975-06-01"),
    ("plantederikssonannam", "Eriksson", "Anna Maria", "1974-08-12"),
    ("plantedgarcialopezjl", "García López", "José Luis", "1969-11-23"),
    *[(f"plantedsmithjohnaaa{i}", "Smith", "John", "1990-01-01") for i in range(4)],
    *[(f"plantedsmythjonaaaa{i}", "Smyth", "Jon", "1990-01-01") for i in range(3)],
]


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "de.sqlite"
    generate(path, "DE", seed=2, documents=1500, persons=800, vehicles=800)
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO persons (ref, surname, given_names, date_of_birth, nationality, sex, "
            "flag, summary, surname_key, given_key) VALUES (?, ?, ?, ?, 'DE', 'M', 'wanted', "
            "'Wanted for fraud.', ?, ?)",
            [(ref, s, g, dob, name_key(s), name_key(g)) for ref, s, g, dob in PLANTED],
        )
    conn.close()
    return path


@pytest.fixture
def store(db_path: Path) -> Iterator[RecordStore]:
    opened = RecordStore(db_path)
    yield opened
    opened.close()


def test_document_hit_ignores_case_and_issuer_spelling(store: RecordStore) -> None:
    """A held number hits whatever the case, with issuer given as DE, deu, D or D<<."""
    (doc,) = store.sample("document", 1, random.Random(1))
    expected = [Match(doc.ref, "document", 1.0)]
    for issuer in ("DE", "deu", "D", "D<<"):
        assert store.find_document(doc.number.lower(), issuer) == expected
    assert store.find_document(f" {doc.number[:4]} {doc.number[4:]} ", "DE") == expected


def test_document_misses(store: RecordStore) -> None:
    """An unknown number, another issuer, or an issuer that is no country give no hit."""
    (doc,) = store.sample("document", 1, random.Random(2))
    assert store.find_document("ZZ0000000", "DE") == []
    assert store.find_document(doc.number, "FR") == []
    assert store.find_document(doc.number, "Atlantis") == []


@pytest.mark.parametrize(
    ("surname", "given", "dob", "ref"),
    [
        ("MUELLER", "JUERGEN", "1980-02-29", "plantedmuellerjuergen"),
        ("muller", "jurgen", "1980-02-29", "plantedmuellerjuergen"),
        ("Jürgen", "Müller", "1980-02-29", "plantedmuellerjuergen"),
        ("MAIER", "Hans Elke", "1975-06-01", "plantedmeyerhanselke"),
        ("Mayer", "Hans-Elke", "1975-06-01", "plantedmeyerhanselke"),
        ("ERIKSON", "ANNA", "1974-08-12", "plantederikssonannam"),
        ("Anna-Maria", "Eriksson", "1974-08-12", "plantederikssonannam"),
        ("GARCIA", "JOSE", "1969-11-23", "plantedgarcialopezjl"),
        ("Garcia-Lopez", "Jose-Luis", "1969-11-23", "plantedgarcialopezjl"),
    ],
)
def test_person_variants_hit(
    store: RecordStore, surname: str, given: str, dob: str, ref: str
) -> None:
    """Accents, case, order, hyphens, omitted parts and MEYER/MAIER spellings still hit."""
    matches = store.find_person(surname, given, dob)
    assert matches, (surname, given)
    assert matches[0].ref == ref
    assert matches[0].kind == "person"
    assert 0.85 <= matches[0].score <= 1.0


def test_person_misses(store: RecordStore) -> None:
    """Another date of birth or an unrelated name on the right date gives no hit."""
    assert store.find_person("Müller", "Jürgen", "1980-03-01") == []
    assert store.find_person("Okonkwo", "Chinedu", "1980-02-29") == []
    assert store.find_person("Schneider", "Jürgen", "1980-02-29") == []
    assert store.find_person("", "", "1980-02-29") == []


def test_person_candidates_are_capped_and_sorted(store: RecordStore) -> None:
    """Seven similar persons on one date come back as the five best, best first."""
    matches = store.find_person("Smith", "John", "1990-01-01")
    assert len(matches) == 5
    scores = [m.score for m in matches]
    assert scores == sorted(scores, reverse=True)
    assert {m.ref for m in matches[:4]} == {f"plantedsmithjohnaaa{i}" for i in range(4)}
    assert scores[0] == 1.0 > scores[4]


def test_generated_person_found_by_exact_name(store: RecordStore) -> None:
    """Every sampled generated person is found by its own name and date of birth."""
    for person in store.sample("person", 50, random.Random(3)):
        refs = [m.ref for m in store.find_person(person.surname, person.given_names,
                                                 person.date_of_birth)]  # fmt: skip
        assert person.ref in refs


def test_vehicle_hits_by_vin_or_plate(store: RecordStore) -> None:
    """A VIN hits in any case; a plate hits without its spaces or with dashes instead."""
    (vehicle,) = store.sample("vehicle", 1, random.Random(4))
    expected = [Match(vehicle.ref, "vehicle", 1.0)]
    assert store.find_vehicle(vin=vehicle.vin.lower()) == expected
    assert store.find_vehicle(plate=vehicle.plate.replace(" ", "")) == expected
    assert store.find_vehicle(plate=vehicle.plate.replace(" ", "-").lower()) == expected
    assert store.find_vehicle(vin=vehicle.vin, plate=vehicle.plate) == expected


def test_vehicle_misses_and_needs_a_key(store: RecordStore) -> None:
    """Unknown VIN and plate give no hit; a lookup with neither is refused."""
    assert store.find_vehicle(vin="1M8GDM9AXKP042788") == []
    assert store.find_vehicle(plate="ZZ 0") == []
    with pytest.raises(ValueError, match="VIN or a plate"):
        store.find_vehicle()


def test_fetch_returns_the_full_record(store: RecordStore) -> None:
    """fetch gives back every field of each kind of record; an unknown ref gives None."""
    rng = random.Random(5)
    for kind, record_type in (("document", Document), ("person", Person), ("vehicle", Vehicle)):
        (record,) = store.sample(kind, 1, rng)
        assert isinstance(record, record_type)
        assert store.fetch(record.ref) == record
    planted = store.fetch("plantedmuellerjuergen")
    assert planted == Person(
        "plantedmuellerjuergen", "Müller", "Jürgen", "1980-02-29", "DE", "M", "wanted",
        "Wanted for fraud.",
    )  # fmt: skip
    assert store.fetch("aaaaaaaaaaaaaaaaaaaa") is None


def test_sample_is_reproducible_and_bounded(store: RecordStore) -> None:
    """The same RNG seed samples the same distinct records; n is capped at the count."""
    first = store.sample("vehicle", 20, random.Random(9))
    assert first == store.sample("vehicle", 20, random.Random(9))
    assert len({v.ref for v in first}) == 20
    assert len(store.sample("vehicle", 10_000, random.Random(9))) == 800
    with pytest.raises(ValueError, match="kind"):
        store.sample("notice", 1, random.Random(9))


def test_counts(store: RecordStore) -> None:
    """counts reports the records of each kind."""
    assert store.counts() == {"document": 1500, "person": 800 + len(PLANTED), "vehicle": 800}
    assert store.meta()["bureau"] == "DE"


@pytest.mark.parametrize("lookup", LOOKUPS)
def test_every_lookup_uses_an_index(store: RecordStore, lookup: str) -> None:
    """EXPLAIN QUERY PLAN shows an index search, never a table scan, for each lookup."""
    plan = " ".join(store.query_plan(lookup))
    assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan
    assert "SCAN" not in plan


def test_concurrent_lookups_from_threads(store: RecordStore) -> None:
    """Lookups from eight threads at once give the same answers as one thread."""
    rng = random.Random(6)
    docs = store.sample("document", 100, rng)
    people = store.sample("person", 100, rng)
    cars = store.sample("vehicle", 100, rng)

    def lookups(i: int) -> tuple[object, ...]:
        doc, person, car = docs[i % 100], people[i % 100], cars[i % 100]
        return (
            store.find_document(doc.number, doc.issuer),
            store.find_person(person.surname, person.given_names, person.date_of_birth),
            store.find_vehicle(plate=car.plate),
            store.fetch(doc.ref),
        )

    serial = [lookups(i) for i in range(400)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lookups, range(400)))
    assert parallel == serial


def test_store_is_read_only(store: RecordStore) -> None:
    """The store's connections refuse writes."""
    store.find_document("X", "DE")
    with pytest.raises(sqlite3.OperationalError):
        store._conn().execute("DELETE FROM documents")


def test_closed_store_refuses_lookups(db_path: Path) -> None:
    """After close, lookups raise StoreClosedError."""
    closing = RecordStore(db_path)
    closing.find_document("X", "DE")
    closing.close()
    with pytest.raises(StoreClosedError):
        closing.find_document("X", "DE")


def test_missing_database_is_an_error(tmp_path: Path) -> None:
    """Opening a path with no database raises FileNotFoundError."""
    with pytest.raises(FileNotFoundError):
        RecordStore(tmp_path / "absent.sqlite")


def test_name_keys_merge_transliteration_variants() -> None:
    """Keys fold accents, case, punctuation and common spelling variants to one form."""
    assert name_key("Müller") == name_key("MUELLER") == name_key("muller")
    assert name_key("Meyer") == name_key("Maier") == name_key("MAYER")
    assert name_key("Iwanow") == name_key("Ivanov")
    assert name_key("O'Brien-Smith") == "OBRIEN SMIT"
    assert name_key("Schmidt") != name_key("Schneider")
