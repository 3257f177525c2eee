"""Synthetic bureau data: determinism, valid MRZs and VINs, plausible values, every locale."""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from datetime import date
from pathlib import Path

import pytest

from ncbsim.countries import INTERPOL_MEMBERS, country
from ncbsim.node import datagen
from ncbsim.node.datagen import AS_OF, generate, romanize
from ncbsim.node.mrz import parse_td3, transliterate, validate_td3
from ncbsim.node.records import DOCUMENT_STATUSES
from ncbsim.node.vin import is_valid

REF = re.compile(r"^[a-z2-7]{20}$")
NAME_PUNCTUATION = " -'\u2019\u02bc"  # space, hyphen and three kinds of apostrophe


def _dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def small_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("datagen") / "fr.sqlite"
    generate(path, "FR", seed=11, documents=2000, persons=500, vehicles=500)
    return path


def test_same_inputs_give_identical_databases(tmp_path: Path) -> None:
    """Two runs with the same bureau, seed and counts write identical contents."""
    first, second, other = tmp_path / "a.sqlite", tmp_path / "b.sqlite", tmp_path / "c.sqlite"
    generate(first, "DE", seed=5, documents=400, persons=80, vehicles=80)
    generate(second, "DE", seed=5, documents=400, persons=80, vehicles=80)
    generate(other, "DE", seed=6, documents=400, persons=80, vehicles=80)
    assert _dump(first) == _dump(second)
    assert _dump(first) != _dump(other)


def test_worker_processes_do_not_change_the_contents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Generating chunks in parallel worker processes gives the same database as serially."""
    monkeypatch.setattr(datagen, "CHUNK", 120)
    serial, parallel = tmp_path / "serial.sqlite", tmp_path / "parallel.sqlite"
    generate(serial, "NG", seed=3, documents=300, persons=130, vehicles=130, workers=1)
    generate(parallel, "NG", seed=3, documents=300, persons=130, vehicles=130, workers=2)
    assert _dump(serial) == _dump(parallel)


def test_summary_matches_database(small_db: Path, tmp_path: Path) -> None:
    """The summary's counts are what the database holds; status counts add up."""
    summary = generate(tmp_path / "x.sqlite", "FR", seed=11, documents=2000, persons=8, vehicles=9)
    assert (summary.documents, summary.persons, summary.vehicles) == (2000, 8, 9)
    assert sum(summary.document_statuses.values()) == 2000
    grouped = _rows(small_db, "SELECT status, count(*) FROM documents GROUP BY status")
    in_db = {str(status): count for status, count in grouped}
    assert in_db == summary.document_statuses


def test_every_status_occurs_and_blanks_have_no_holder(small_db: Path) -> None:
    """All five SLTD statuses occur; stolen blanks have no holder or MRZ, others have both."""
    rows = _rows(small_db, "SELECT status, surname, date_of_birth, mrz FROM documents")
    assert {row[0] for row in rows} == set(DOCUMENT_STATUSES)
    for status, surname, born, mrz in rows:
        if status == "stolen_blank":
            assert (surname, born, mrz) == (None, None, None)
        else:
            assert surname
            assert born
            assert mrz


def test_every_mrz_is_valid_and_matches_its_record(small_db: Path) -> None:
    """Every MRZ validates and carries the record's number, names, dates and sex."""
    rows = _rows(
        small_db,
        "SELECT number, issuer, doc_type, surname, given_names, date_of_birth, sex, "
        "date_of_expiry, mrz FROM documents WHERE mrz IS NOT NULL",
    )
    assert len(rows) > 1500
    for number, issuer, doc_type, surname, given, born, sex, expiry, mrz in rows:
        assert issuer == "FR"
        assert isinstance(mrz, str)
        lines = mrz.split("\n")
        assert validate_td3(lines), mrz
        fields = parse_td3(lines)
        assert fields.document_code == doc_type
        assert fields.issuing_state == fields.nationality == "FRA"
        assert fields.number == number
        assert re.fullmatch(r"[0-9]{2}[A-Z]{2}[0-9]{5}", str(number))
        assert fields.surname == transliterate(str(surname)).replace("<", " ")
        assert fields.given_names == transliterate(str(given)).replace("<", " ")
        assert fields.sex == sex
        assert fields.date_of_birth == date.fromisoformat(str(born)).strftime("%y%m%d")
        assert fields.date_of_expiry == date.fromisoformat(str(expiry)).strftime("%y%m%d")


def test_unspecified_sex_is_x_in_the_record_and_a_filler_in_the_mrz(small_db: Path) -> None:
    """Holders of unspecified sex keep X in the record; their MRZ writes < (never X) there."""
    rows = _rows(small_db, "SELECT sex, mrz FROM documents WHERE mrz IS NOT NULL")
    in_mrz = {(str(sex), str(mrz).split("\n")[1][20]) for sex, mrz in rows}
    assert in_mrz == {("F", "F"), ("M", "M"), ("X", "<")}


def test_document_dates_are_consistent(small_db: Path) -> None:
    """Holders are born before the report, reports fall before expiry and before AS_OF."""
    rows = _rows(
        small_db,
        "SELECT date_of_birth, date_of_expiry, reported_on FROM documents WHERE mrz IS NOT NULL",
    )
    for born, expiry, reported in rows:
        assert str(born) < str(reported) <= min(str(expiry), AS_OF.isoformat())


def test_document_numbers_are_unique(small_db: Path) -> None:
    """No two documents of the bureau share a number."""
    numbers = [row[0] for row in _rows(small_db, "SELECT number FROM documents")]
    assert len(numbers) == len(set(numbers)) == 2000


def test_every_vin_is_valid_and_plates_look_french(small_db: Path) -> None:
    """Every VIN passes the check digit; French plates are AA-123-AA; years are plausible."""
    rows = _rows(small_db, "SELECT vin, plate, plate_key, year, reported_on FROM vehicles")
    assert len(rows) == 500
    for vin, plate, plate_key, year, reported in rows:
        assert is_valid(str(vin)), vin
        assert re.fullmatch(r"[A-Z]{2}-[0-9]{3}-[A-Z]{2}", str(plate))
        assert plate_key == str(plate).replace("-", "")
        assert isinstance(year, int)
        assert 2004 <= year <= int(str(reported)[:4]) <= AS_OF.year


def test_persons_are_flagged_with_a_matching_summary(small_db: Path) -> None:
    """Wanted persons carry an offence and missing ones circumstances; most are nationals."""
    rows = _rows(small_db, "SELECT flag, summary, nationality, date_of_birth FROM persons")
    flags = {row[0] for row in rows}
    assert flags == {"wanted", "missing"}
    for flag, summary, _, born in rows:
        assert str(summary).startswith("Wanted for " if flag == "wanted" else "Missing since ")
        assert str(born) < AS_OF.isoformat()
    nationals = sum(row[2] == "FR" for row in rows)
    assert 0.75 * len(rows) < nationals < len(rows)


def test_refs_are_opaque_and_unique(small_db: Path) -> None:
    """Refs are 20 base32 characters, unique across kinds, and not in insertion order."""
    refs: list[str] = []
    for table in ("documents", "persons", "vehicles"):
        refs.extend(str(row[0]) for row in _rows(small_db, f"SELECT ref FROM {table} ORDER BY id"))
    assert all(REF.match(ref) for ref in refs)
    assert len(set(refs)) == len(refs)
    assert refs[:100] != sorted(refs[:100])


def test_an_existing_path_is_not_overwritten(small_db: Path) -> None:
    """generate refuses to write over an existing file."""
    before = small_db.stat().st_size
    with pytest.raises(FileExistsError):
        generate(small_db, "FR", seed=1, documents=1, persons=1, vehicles=1)
    assert small_db.stat().st_size == before


@pytest.mark.parametrize(
    ("text", "locale", "latin"),
    [
        ("Щербаков", "ru_RU", "Shcherbakov"),
        ("Григорій", "uk_UA", "Hryhorii"),
        ("Щерев", "bg_BG", "Shterev"),
        ("Κατσαμάνης", "el_GR", "Katsamanis"),
        ("გაგნიძე", "ka_GE", "Gagnidze"),
        ("Աժտեհանյան", "hy_AM", "Azhtehanyan"),
        ("김", "ko_KR", "Kim"),
        ("준혁", "ko_KR", "Junhyeok"),
        ("Müller", "de_DE", "Müller"),
    ],
)
def test_romanisation(text: str, locale: str, latin: str) -> None:
    """Names in other scripts are romanised by the national or ICAO system; Latin is kept."""
    assert romanize(text, locale) == latin


def test_every_locale_gives_names_an_mrz_can_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For one bureau per name locale, every name is Latin and every MRZ validates."""
    monkeypatch.setattr(datagen, "POOL_DRAWS", 60)  # smaller pools, same code paths
    bureaus: dict[str, str] = {}
    for code in INTERPOL_MEMBERS:
        bureaus.setdefault(country(code).faker_locale, code)
    assert len(bureaus) > 50
    for locale, code in bureaus.items():
        path = tmp_path / f"{code}.sqlite"
        generate(path, code, seed=1, documents=12, persons=0, vehicles=0)
        rows = _rows(path, "SELECT surname, given_names, mrz FROM documents WHERE mrz NOT NULL")
        assert rows, code
        for surname, given, mrz in rows:
            name = f"{surname} {given}"
            assert all(
                ch in NAME_PUNCTUATION or unicodedata.name(ch, "").startswith("LATIN")
                for ch in name
            ), (locale, name)
            assert validate_td3(str(mrz).split("\n")), (locale, mrz)
