"""Data-owner control: allow- and deny-lists, handling codes, and denials that look like misses."""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from support import (
    fetch_query,
    generate_records,
    person_query,
    query_for,
    uncontrolled_documents,
)

from ncbsim.cli import records
from ncbsim.errors import NcbsimError
from ncbsim.node import admin, datagen
from ncbsim.node.answer import answer
from ncbsim.node.matching import name_key
from ncbsim.node.records import NO_CONTROL, TABLES_DDL, Control
from ncbsim.node.store import RecordStore
from ncbsim.simulations.traffic import Drawer
from ncbsim.v2 import query_pb2, records_pb2

OWNER = "DE"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A fresh DE database, laid out as ``ncbsim up`` lays it out, for each test."""
    return generate_records(
        tmp_path, OWNER, seed=11, documents=200, persons=80, vehicles=80, workers=1
    )


@pytest.fixture
def store(db: Path, open_store: Callable[[Path], RecordStore]) -> RecordStore:
    return open_store(db)


def _refs(response: query_pb2.Answer) -> list[str]:
    return [m.ref for m in response.hits.matches]


def test_allow_list_shows_the_record_only_to_listed_bureaus(db: Path, store: RecordStore) -> None:
    """An allow-listed record hits and is released for FR and NL, and for no one else."""
    (doc,) = uncontrolled_documents(store, 1, sample=200, seed=1)
    admin.restrict(
        db, doc.ref, admin.ControlChange(access="allow", bureaus=frozenset({"FR", "NL"}))
    )
    for allowed in ("FR", "NL"):
        assert _refs(answer(store, query_for(doc), requester=allowed)) == [doc.ref]
        fetched = answer(store, fetch_query(doc.ref), requester=allowed)
        assert fetched.record.document.number == doc.number
    for other in ("IT", "US"):
        assert answer(store, query_for(doc), requester=other).hits.matches == []
        assert answer(store, fetch_query(doc.ref), requester=other).HasField("not_found")


@pytest.mark.attack(
    "a deny-listed bureau checks and then fetches a record hidden from it",
    adversary="rogue bureau",
    expect="no-hit at step 1, NotFound at step 2; other bureaus unaffected",
)
def test_deny_list_hides_the_record_at_both_steps(db: Path, store: RecordStore) -> None:
    """A deny-listed bureau gets no hit and NotFound; any other bureau gets both."""
    (doc,) = uncontrolled_documents(store, 1, sample=200, seed=1)
    admin.restrict(db, doc.ref, admin.ControlChange(access="deny", bureaus=frozenset({"RU"})))
    step1 = answer(store, query_for(doc), requester="RU")
    assert step1.WhichOneof("result") == "hits"
    assert step1.hits.matches == []
    assert answer(store, fetch_query(doc.ref), requester="RU").WhichOneof("result") == "not_found"
    assert _refs(answer(store, query_for(doc), requester="FR")) == [doc.ref]
    assert answer(store, fetch_query(doc.ref), requester="FR").WhichOneof("result") == "record"


@pytest.mark.attack(
    "a rogue bureau tells a withheld reference from a never-issued one by the answer bytes",
    adversary="rogue bureau",
    expect="the same NotFound body, byte for byte",
)
@pytest.mark.parametrize("access", ["allow", "deny"])
def test_denied_fetch_is_byte_identical_to_an_unknown_reference(
    db: Path, store: RecordStore, access: str
) -> None:
    """The withheld answer and the unknown-reference answer serialize to the same bytes."""
    doc, other = uncontrolled_documents(store, 2, sample=200, seed=1)
    bureaus = frozenset({"FR"}) if access == "allow" else frozenset({"RU"})
    admin.restrict(db, doc.ref, admin.ControlChange(access=access, bureaus=bureaus))  # type: ignore[arg-type]
    withheld = answer(store, fetch_query(doc.ref), requester="RU").SerializeToString()
    # A reference of the same shape that was never issued, and one that is plain junk.
    never = answer(store, fetch_query("a" * 20), requester="RU").SerializeToString()
    junk = answer(store, fetch_query("nope"), requester="RU").SerializeToString()
    assert withheld == never == junk
    assert withheld == query_pb2.Answer(not_found=query_pb2.NotFound()).SerializeToString()
    # The same requester still gets an open record: the refusal is about this record only.
    assert answer(store, fetch_query(other.ref), requester="RU").HasField("record")


def test_owner_always_sees_its_own_records(db: Path, store: RecordStore) -> None:
    """The owner is never on its own lists: an empty allow-list still lets DE see its record."""
    (doc,) = uncontrolled_documents(store, 1, sample=200, seed=1)
    admin.restrict(db, doc.ref, admin.ControlChange(access="allow", bureaus=frozenset()))
    assert _refs(answer(store, query_for(doc), requester=OWNER)) == [doc.ref]
    assert answer(store, fetch_query(doc.ref), requester=OWNER).HasField("record")
    assert answer(store, query_for(doc), requester="FR").hits.matches == []


def test_unauthenticated_caller_sees_only_open_records(db: Path, store: RecordStore) -> None:
    """Without a requester (requester=None), a deny-listed record is hidden too: fail closed."""
    denied, handled = uncontrolled_documents(store, 2, sample=200, seed=1)
    admin.restrict(db, denied.ref, admin.ControlChange(access="deny", bureaus=frozenset({"RU"})))
    admin.restrict(db, handled.ref, admin.ControlChange(handling=2))
    assert answer(store, query_for(denied)).hits.matches == []
    assert answer(store, fetch_query(denied.ref)).HasField("not_found")
    assert _refs(answer(store, query_for(handled))) == [handled.ref]


def test_handling_code_travels_with_match_and_record(db: Path, store: RecordStore) -> None:
    """H2 on a record comes back on the step-1 match and the step-2 record; none is UNSPECIFIED."""
    coded, plain = uncontrolled_documents(store, 2, sample=200, seed=1)
    admin.restrict(db, coded.ref, admin.ControlChange(handling=2))
    (match,) = answer(store, query_for(coded), requester="FR").hits.matches
    assert match.handling == records_pb2.HANDLING_CODE_H2
    record = answer(store, fetch_query(coded.ref), requester="FR").record
    assert record.handling == records_pb2.HANDLING_CODE_H2
    assert record.document.number == coded.number
    (match,) = answer(store, query_for(plain), requester="FR").hits.matches
    assert match.handling == records_pb2.HANDLING_CODE_UNSPECIFIED
    for code, wire in enumerate(
        (records_pb2.HANDLING_CODE_H0, records_pb2.HANDLING_CODE_H1,
         records_pb2.HANDLING_CODE_H2, records_pb2.HANDLING_CODE_H3)
    ):  # fmt: skip
        admin.restrict(db, coded.ref, admin.ControlChange(handling=code))
        assert answer(store, fetch_query(coded.ref), requester="FR").record.handling == wire


def test_withheld_person_does_not_take_a_candidate_place(db: Path, store: RecordStore) -> None:
    """Six close names, one denied to RU: RU gets the five others, FR the best five of six."""
    conn = sqlite3.connect(db)
    refs = [f"plantedsmithjohn{i:04d}" for i in range(6)]
    with conn:
        conn.executemany(
            "INSERT INTO persons (ref, surname, given_names, date_of_birth, nationality, sex, "
            "flag, summary, surname_key, given_key) VALUES (?, 'Smith', 'John', '1990-01-01', "
            "'DE', 'M', 'wanted', 'Wanted for fraud.', ?, ?)",
            [(ref, name_key("Smith"), name_key("John")) for ref in refs],
        )
    conn.close()
    admin.restrict(db, refs[0], admin.ControlChange(access="deny", bureaus=frozenset({"RU"})))
    query = person_query("SMITH", given_names="JOHN", date_of_birth="1990-01-01")
    assert _refs(answer(store, query, requester="RU")) == refs[1:]
    assert _refs(answer(store, query, requester="FR")) == refs[:5]


def test_restrict_applies_to_an_open_store_at_the_next_query(db: Path, store: RecordStore) -> None:
    """A separate writer changes the control; the already open (read-only) store obeys it."""
    (doc,) = uncontrolled_documents(store, 1, sample=200, seed=1)
    assert _refs(answer(store, query_for(doc), requester="RU")) == [doc.ref]
    admin.restrict(db, doc.ref, admin.ControlChange(access="deny", bureaus=frozenset({"RU"})))
    assert answer(store, query_for(doc), requester="RU").hits.matches == []
    admin.restrict(db, doc.ref, admin.ControlChange(access="open"))
    assert _refs(answer(store, query_for(doc), requester="RU")) == [doc.ref]
    assert store.control(doc.ref) == NO_CONTROL


def test_restrict_changes_only_what_is_given(db: Path, store: RecordStore) -> None:
    """Handling and notify survive a new list; a new handling code keeps the list."""
    (doc,) = uncontrolled_documents(store, 1, sample=200, seed=1)
    admin.restrict(db, doc.ref, admin.ControlChange(handling=3, notify=True))
    admin.restrict(db, doc.ref, admin.ControlChange(access="deny", bureaus=frozenset({"RU"})))
    admin.restrict(db, doc.ref, admin.ControlChange(handling=1))
    assert store.control(doc.ref) == Control("deny", frozenset({"RU"}), 1, True)
    admin.restrict(db, doc.ref, admin.ControlChange(handling=-1, notify=False))
    assert store.control(doc.ref) == Control("deny", frozenset({"RU"}), None, False)


def test_restrict_refuses_an_unknown_reference(db: Path) -> None:
    """A reference the bureau does not hold is an error, and nothing is written."""
    with pytest.raises(NcbsimError, match="holds no record"):
        admin.restrict(db, "nosuchref", admin.ControlChange(handling=2))
    assert admin.read_control(db, "nosuchref") == NO_CONTROL


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ncbsim")
    records.add_parsers(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_record_restrict_command(
    db: Path, store: RecordStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ncbsim record restrict` sets list, handling and notify, and prints the result."""
    (doc,) = uncontrolled_documents(store, 1, sample=200, seed=1)
    base = ["record", "restrict", "--workdir", str(tmp_path), "--as", "de", "--ref", doc.ref]
    args = _parse([*base, "--deny", "ru,BY", "--handling", "h2", "--notify", "--json"])
    assert args.func(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {
        "bureau": "DE",
        "ref": doc.ref,
        "access": "deny",
        "bureaus": ["BY", "RU"],
        "handling": "H2",
        "notify": True,
    }
    assert store.control(doc.ref) == Control("deny", frozenset({"BY", "RU"}), 2, True)
    args = _parse([*base, "--open", "--no-notify"])
    assert args.func(args) == 0
    assert "visible to every bureau" in capsys.readouterr().out
    assert store.control(doc.ref) == Control("open", frozenset(), 2, False)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--deny", "DE"], "owns the record"),
        (["--allow", "XX"], "not a country code"),
        (["--handling", "H7"], "--handling must be"),
        (["--deny", ""], "at least one bureau"),
    ],
)
def test_record_restrict_rejects_bad_options(
    db: Path, tmp_path: Path, option: list[str], message: str
) -> None:
    """Listing the owner, an unknown country, an unknown code or an empty deny-list fails."""
    args = _parse(["record", "restrict", "--workdir", str(tmp_path), "--as", "DE",
                   "--ref", "whatever", *option])  # fmt: skip
    with pytest.raises(NcbsimError, match=message):
        args.func(args)


def test_database_without_controls_table(tmp_path: Path) -> None:
    """A database made before controls existed reads as open; restrict adds the table."""
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    with conn:
        conn.executescript(TABLES_DDL.split("CREATE TABLE controls")[0])
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [("schema_version", "1"), ("bureau", "DE")],
        )
        conn.execute(
            "INSERT INTO vehicles (ref, vin, plate, plate_key, make, model, year, colour, "
            "registration_country, status, reported_on) VALUES ('oldref', 'WVWZZZ1JZXW000001', "
            "'B-AB 1', 'BAB1', 'VW', 'Golf', 2010, 'red', 'DE', 'stolen', '2020-01-01')"
        )
    conn.close()
    store = RecordStore(path)
    try:
        assert store.control("oldref") == NO_CONTROL
        assert answer(store, fetch_query("oldref"), requester="RU").HasField("record")
        admin.restrict(
            path, "oldref", admin.ControlChange(access="deny", bureaus=frozenset({"RU"}))
        )
        assert answer(store, fetch_query("oldref"), requester="RU").HasField("not_found")
    finally:
        store.close()


def test_generated_controls_are_a_seeded_minority(tmp_path: Path) -> None:
    """Some records get lists, codes and notify flags; the same seed gives the same ones."""

    def controls(path: Path) -> list[tuple[object, ...]]:
        conn = sqlite3.connect(path)
        try:
            return conn.execute("SELECT ref, access, bureaus, handling, notify FROM controls "
                                "ORDER BY id").fetchall()  # fmt: skip
        finally:
            conn.close()

    first, second = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    datagen.generate(first, "FR", seed=3, documents=2000, persons=500, vehicles=500, workers=1)
    datagen.generate(second, "FR", seed=3, documents=2000, persons=500, vehicles=500, workers=2)
    rows = controls(first)
    assert rows == controls(second)
    accesses = [row[1] for row in rows]
    assert 0.01 * 3000 < accesses.count("deny") + accesses.count("allow") < 0.06 * 3000
    assert accesses.count("deny") > 0
    assert accesses.count("allow") > 0
    assert len(rows) < 0.15 * 3000
    assert {row[3] for row in rows} >= {None, 0, 1, 2, 3}
    assert any(row[4] for row in rows)
    for _ref, access, bureaus, _handling, _notify in rows:
        listed = str(bureaus).split(",") if bureaus else []
        assert "FR" not in listed
        assert (access == "open") == (not listed)


def test_planted_queries_never_use_a_restricted_record(db: Path, store: RecordStore) -> None:
    """The simulator and load corpus plant only open records, so a right denial is no failure."""
    docs = store.sample("document", 200, random.Random(0))
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            "INSERT OR REPLACE INTO controls (ref, access, bureaus, handling, notify) "
            "VALUES (?, 'allow', 'FR', NULL, 0)",
            [(doc.ref,) for doc in docs[:190]],
        )
    conn.close()
    open_refs = {d.ref for d in docs if not store.control(d.ref).restricted}
    drawer = Drawer({OWNER: store}, random.Random(4))
    for _ in range(20):
        _query, ref, _probes = drawer.planted("document", OWNER)
        assert ref in open_refs
