"""What `ncbsim query` checks before sending: each format, what the error says, and that
every record the data generator makes passes."""

from __future__ import annotations

import argparse
import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from ncbsim.errors import ConfigError
from ncbsim.node import datagen
from ncbsim.simulations import query_input

TODAY = dt.date(2026, 3, 1)
# Bureaus whose document numbers and plates have formats of their own (node/_tables.py),
# and name locales in several scripts.
BUREAUS = ["FR", "DE", "GB", "US", "IT", "ES", "NL", "CH", "NG", "JP", "RU", "GR", "CN"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("DE", ["DE"]), ("de, it ,DE", ["DE", "IT"]), ("ALL", ["ALL"]), ("gs,xk", ["GS", "XK"])],
)
def test_recipients_accept_known_codes_or_all(text: str, expected: list[str]) -> None:
    """--to takes assigned codes (GS and Kosovo's XK too) in any case, once each, or ALL."""
    assert query_input.recipients(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("XX", "'XX' is not a bureau code"),
        ("DE,GERMANY", "'GERMANY' is not a bureau code"),
        ("ALL,DE", "ALL already means every bureau"),
        (" , ", "name at least one bureau"),
    ],
)
def test_recipients_refuse_unknown_codes(text: str, says: str) -> None:
    """An unassigned code, ALL among others, or nothing at all is refused by name."""
    with pytest.raises(ConfigError, match=says):
        query_input.recipients(text)


@pytest.mark.parametrize("text", ["1980-02-03", " 2026-03-01 ", "2000-02-29"])
def test_date_of_birth_accepts_real_past_dates(text: str) -> None:
    """A calendar date written YYYY-MM-DD, today included, is sent as typed (trimmed)."""
    assert query_input.date_of_birth(text, today=TODAY) == text.strip()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("03/02/1980", "expected a date written YYYY-MM-DD, got '03/02/1980'"),
        ("1980-2-3", "expected a date written YYYY-MM-DD"),
        ("19800203", "expected a date written YYYY-MM-DD"),
        ("1980-02-30", "1980-02-30 is not a date in the calendar"),
        ("1900-02-29", "1900-02-29 is not a date in the calendar"),
        ("2026-03-02", "2026-03-02 is in the future"),
        ("", "expected a date"),
    ],
)
def test_date_of_birth_refuses_what_is_not_a_past_date(text: str, says: str) -> None:
    """Another layout, an impossible day or a future date is refused, saying which."""
    with pytest.raises(ConfigError, match=f"^--dob: {says}"):
        query_input.date_of_birth(text, today=TODAY)


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ("1M8GDM9AXKP042788", "1M8GDM9AXKP042788"),  # North American, right check digit
        ("1m8gdm9axkp042788", "1M8GDM9AXKP042788"),
        ("WVWZZZ1JZXW000001", "WVWZZZ1JZXW000001"),  # European: position 9 is the maker's
        ("WVW ZZZ1JZ-XW000001", "WVWZZZ1JZXW000001"),
    ],
)
def test_vin_accepts_well_formed_vins(text: str, sent: str) -> None:
    """17 VIN characters pass, upper-cased and without spaces or dashes; the check digit
    is required of North American VINs only."""
    assert query_input.vin(text) == sent


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("123", "a VIN has 17 characters, got 3"),
        ("1M8GDM9AXKP0427880", "a VIN has 17 characters, got 18"),
        ("WVWZZZ1JZOW000001", "except I, O and Q \\(found 'O' at position 10\\)"),
        ("WVWZZZ1JZ*W000001", "found '\\*' at position 10"),
        ("1M8GDM9A1KP042788", "position 9, which should be 'X', not '1'"),
    ],
)
def test_vin_refuses_malformed_vins(text: str, says: str) -> None:
    """Wrong length, I/O/Q or a symbol, or a wrong North American check digit is refused."""
    with pytest.raises(ConfigError, match=f"^--vin: .*{says}"):
        query_input.vin(text)


@pytest.mark.parametrize(
    ("text", "sent"), [("fr", "FR"), ("FRA", "FR"), ("D", "DE"), ("D<<", "DE"), ("xk", "XK")]
)
def test_issuer_is_an_issuing_state_sent_as_alpha2(text: str, sent: str) -> None:
    """Alpha-2, alpha-3 and ICAO codes name the issuer; the bureaus get alpha-2."""
    assert query_input.issuer(text) == sent


@pytest.mark.parametrize("text", ["GS", "XPO", "gs"])
def test_the_general_secretariat_issues_interpol_travel_documents(text: str) -> None:
    """GS's own documents (ICAO code XPO) can be queried: they are sent with issuer GS."""
    assert query_input.issuer(text) == "GS"


@pytest.mark.parametrize("text", ["XX", "", "France"])
def test_issuer_refuses_codes_that_issue_nothing(text: str) -> None:
    """Unassigned codes and names are not issuers."""
    with pytest.raises(ConfigError, match=r"^--issuer: .* is not an issuing state"):
        query_input.issuer(text)


@pytest.mark.parametrize(
    ("text", "sent"),
    [("C07GMV2B0", "C07GMV2B0"), ("c07 gmv-2b0", "C07GMV2B0"), ("12/34.56<", "123456")],
)
def test_document_number_is_normalised_as_the_bureaus_do(text: str, sent: str) -> None:
    """Case, spaces and the separators - . / < do not matter, as in the bureaus' lookup."""
    assert query_input.document_number(text) == sent


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "the document number is empty"),
        (" <<< ", "the document number is empty"),
        ("AB12_34", "a document number has letters A-Z and digits only \\(found '_'\\)"),
        ("ÉCOLE123", "a document number .* \\(found 'É'\\)"),
        ("A" * 21, "at most 20 letters and digits, got 21"),
    ],
)
def test_document_number_refuses_what_no_document_carries(text: str, says: str) -> None:
    """Empty, other characters than MRZ ones, or longer than any number in use: refused."""
    with pytest.raises(ConfigError, match=f"^--number: {says}"):
        query_input.document_number(text)


def test_names_need_a_letter_and_a_sane_length() -> None:
    """Names in any script pass; blank, letterless, control characters or over 64 do not."""
    assert query_input.name(" Käster ", "--surname", required=True) == "Käster"
    assert query_input.name("Ἀλέξανδρος", "--surname", required=True) == "Ἀλέξανδρος"
    assert query_input.name("", "--given-names", required=False) == ""
    for bad in ["", "  ", "1234", "Do\x00e", "A" * 65]:
        with pytest.raises(ConfigError, match=r"^--surname: "):
            query_input.name(bad, "--surname", required=True)


@pytest.mark.parametrize("text", ["5bzpwnvqk7cqiyxaeiux", "N" + "0123456789ABCDEF" * 2])
def test_reference_has_the_shape_bureaus_issue(text: str) -> None:
    """A generated reference and a notice's person reference pass unchanged."""
    assert query_input.reference(text) == text


@pytest.mark.parametrize(
    "text", ["R", "5BZPWNVQK7CQIYXAEIUX", "5bzpwnvqk7cqiyxaeiu", "5bzpwnvqk7cqiyxaeiu1", "N0"]
)
def test_reference_refuses_other_shapes(text: str) -> None:
    """Anything else (wrong case, length or alphabet) cannot be a reference."""
    with pytest.raises(ConfigError, match=r"^--ref: not a record reference"):
        query_input.reference(text)


def _args(kind: str, **fields: str) -> argparse.Namespace:
    defaults = {"number": "", "issuer": "", "surname": "", "given_names": "", "dob": ""}
    return argparse.Namespace(kind=kind, **{**defaults, "vin": "", "plate": "", **fields})


def test_vehicle_needs_a_vin_or_a_plate() -> None:
    """A vehicle query with neither is refused; with a plate only it is sent as typed."""
    with pytest.raises(ConfigError, match=r"^vehicle: give --vin, --plate or both"):
        query_input.request(_args("vehicle", plate="  "), today=TODAY)
    sent = query_input.request(_args("vehicle", plate="H VG 8600"), today=TODAY)
    assert (sent.vehicle.vin, sent.vehicle.plate) == ("", "H VG 8600")


def test_request_carries_the_checked_values() -> None:
    """The query built for each kind holds the normalised values, nothing else."""
    doc = query_input.request(_args("document", number="c07 gmv2b0", issuer="D"), today=TODAY)
    assert (doc.document.number, doc.document.issuer) == ("C07GMV2B0", "DE")
    person = query_input.request(
        _args("person", surname="Gieß", given_names="Siglinde", dob="1980-02-05"), today=TODAY
    )
    assert (person.person.surname, person.person.date_of_birth) == ("Gieß", "1980-02-05")
    fetch = query_input.request(argparse.Namespace(kind="fetch", ref="x" * 20), today=TODAY)
    assert fetch.fetch.ref == "x" * 20


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Record databases of bureaus with different number, plate and name formats."""
    folder = tmp_path_factory.mktemp("records")
    paths = []
    for bureau in BUREAUS:
        path = folder / f"{bureau}.sqlite"
        datagen.generate(path, bureau, seed=3, documents=150, persons=50, vehicles=50, workers=1)
        paths.append(path)
    return paths


def test_every_generated_record_passes(generated: list[Path]) -> None:
    """Every document, person and vehicle the generator makes can be queried as it is
    stored, and every reference fetched: the checks refuse nothing real."""
    checked = 0
    for path in generated:
        conn = sqlite3.connect(path)
        try:
            docs = conn.execute("SELECT ref, number, issuer FROM documents").fetchall()
            persons = conn.execute(
                "SELECT ref, surname, given_names, date_of_birth FROM persons"
            ).fetchall()
            vehicles = conn.execute("SELECT ref, vin, plate FROM vehicles").fetchall()
        finally:
            conn.close()
        for ref, number, issuer in docs:
            assert query_input.document_number(number) == number
            assert query_input.issuer(issuer) == issuer
            assert query_input.reference(ref) == ref
        for ref, surname, given, born in persons:
            query_input.name(surname, "--surname", required=True)
            query_input.name(given, "--given-names", required=False)
            query_input.date_of_birth(born, today=datagen.AS_OF)
            query_input.reference(ref)
        for ref, vin_, plate in vehicles:
            assert query_input.vin(vin_) == vin_
            query_input.plate(plate)
            query_input.reference(ref)
        checked += len(docs) + len(persons) + len(vehicles)
    assert checked == len(BUREAUS) * 250


def test_a_biometric_search_reads_and_checks_its_probe(tmp_path: Path) -> None:
    """face/fingerprint: the probe file must be the modality's size and not all zero; --max
    from 0 (the owner's default) to the owners' cap."""
    face, short, zero = tmp_path / "face.bin", tmp_path / "short.bin", tmp_path / "zero.bin"
    face.write_bytes(bytes([5]) * 512)
    short.write_bytes(bytes([5]) * 256)
    zero.write_bytes(bytes(512))
    search = query_input.request(argparse.Namespace(kind="face", probe=face, max=7), today=TODAY)
    assert search.biometric.template == face.read_bytes()
    assert search.biometric.max_candidates == 7
    confirm = query_input.request(
        argparse.Namespace(kind="confirm", ref="a" * 20, modality="face", probe=face), today=TODAY
    )
    assert confirm.confirm.ref == "a" * 20
    for path, says in (
        (short, "--probe: a face probe is 512 bytes"),
        (zero, "is all zero"),
        (tmp_path / "missing.bin", "--probe: cannot read"),
    ):
        with pytest.raises(ConfigError, match=says):
            query_input.request(argparse.Namespace(kind="face", probe=path, max=0), today=TODAY)
    with pytest.raises(ConfigError, match="--max: from 1 to 10"):
        query_input.request(argparse.Namespace(kind="face", probe=face, max=11), today=TODAY)
