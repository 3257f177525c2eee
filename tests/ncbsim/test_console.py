"""How `ncbsim query` shows a released record to a person: every field, readable labels,
the handling code with its meaning, on an 80-column terminal."""

from __future__ import annotations

import io

from rich.console import Console

from ncbsim.console import record_fields, record_view
from ncbsim.v2 import query_pb2, records_pb2

MRZ = "P<D<<GIESS<<SIGLINDE<<<<<<<<<<<<<<<<<<<<<<<<\nC07GMV2B07D<<8002055F2507145<<<<<<<<<<<<<<<4"
DOCUMENT = query_pb2.Record(
    document=records_pb2.TravelDocument(
        ref="5bzpwnvqk7cqiyxaeiux",
        number="C07GMV2B0",
        issuer="DE",
        doc_type="P",
        surname="Gieß",
        given_names="Siglinde",
        nationality="DE",
        date_of_birth="1980-02-05",
        sex="F",
        date_of_expiry="2025-07-14",
        mrz=MRZ,
        status="stolen",
        reported_on="2019-04-30",
    ),
    handling=records_pb2.HANDLING_CODE_H2,
)


def _rendered(record: query_pb2.Record) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(record_view("DE", record))
    return out.getvalue().splitlines()


def test_a_released_document_shows_every_field_with_its_label() -> None:
    """Each field of a stolen passport is listed under a readable label, codes spelled
    out, the handling code first with what it asks of the requester."""
    assert record_fields(DOCUMENT) == [
        ("Handling", "H2: not to be disseminated without the owner's permission"),
        ("Document number", "C07GMV2B0"),
        ("Document type", "P (passport)"),
        ("Issuing state", "DE (Germany)"),
        ("Status", "stolen"),
        ("Reported on", "2019-04-30"),
        ("Surname", "Gieß"),
        ("Given names", "Siglinde"),
        ("Date of birth", "1980-02-05"),
        ("Sex", "F (female)"),
        ("Nationality", "DE (Germany)"),
        ("Date of expiry", "2025-07-14"),
        ("MRZ", MRZ),
    ]


def test_fields_the_owner_left_empty_are_left_out() -> None:
    """A stolen blank has no holder: no empty Surname or Date of birth lines; a record
    without a handling code says to handle it as H0."""
    blank = query_pb2.Record(
        document=records_pb2.TravelDocument(
            ref="o52codxcfqpe3hzg2go2", number="MG4560291", issuer="IT", doc_type="P",
            status="stolen_blank", reported_on="2023-07-14",
        )
    )  # fmt: skip
    assert [label for label, _ in record_fields(blank)] == [
        "Handling", "Document number", "Document type", "Issuing state", "Status", "Reported on",
    ]  # fmt: skip
    assert dict(record_fields(blank))["Status"] == "stolen blank"
    assert dict(record_fields(blank))["Handling"].startswith("none (handle as H0: may be used")


def test_person_and_vehicle_records_are_shown_too() -> None:
    """A wanted person and a stolen vehicle list their own fields, with the model year."""
    person = query_pb2.Record(
        person=records_pb2.Person(
            ref="2buzowruqroekolrttqt", surname="Tafuri", given_names="Claudio",
            date_of_birth="2014-03-14", nationality="IT", sex="M", flag="missing",
            summary="Missing since 2023-04-11: did not return home from school.",
        ),
        handling=records_pb2.HANDLING_CODE_H1,
    )  # fmt: skip
    vehicle = query_pb2.Record(
        vehicle=records_pb2.Vehicle(
            ref="7r5gea6skfldmumxwimc", vin="1FA18JM8XJB044599", plate="RX752JU",
            make="Ford", model="F-150", year=2018, colour="grey",
            registration_country="IT", status="stolen", reported_on="2018-09-18",
        )
    )  # fmt: skip
    shown = dict(record_fields(person))
    assert (shown["Status"], shown["Nationality"], shown["Sex"]) == (
        "missing", "IT (Italy)", "M (male)",
    )  # fmt: skip
    assert shown["Handling"].startswith("H1: not for criminal proceedings")
    assert "Summary" in shown
    shown = dict(record_fields(vehicle))
    assert (shown["VIN"], shown["Model year"], shown["Registered in"]) == (
        "1FA18JM8XJB044599", "2018", "IT (Italy)",
    )  # fmt: skip


def test_the_block_fits_80_columns_and_keeps_the_mrz_lines_whole() -> None:
    """On an 80-column terminal no line is longer than 80, the heading names the bureau,
    kind and reference, and both MRZ lines appear unbroken."""
    lines = _rendered(DOCUMENT)
    assert lines[0] == "DE released document 5bzpwnvqk7cqiyxaeiux"
    assert max(len(line) for line in lines) <= 80
    for mrz_line in MRZ.splitlines():
        assert any(mrz_line in line for line in lines)
    long = query_pb2.Record(person=records_pb2.Person(ref="r", surname="X", summary="word " * 60))
    assert max(len(line) for line in _rendered(long)) <= 80


def test_an_owners_text_is_shown_as_text_never_as_markup() -> None:
    """A bureau's value that looks like console markup is printed as it is."""
    odd = query_pb2.Record(person=records_pb2.Person(ref="r", surname="[bold red]Doe[/]"))
    assert any("[bold red]Doe[/]" in line for line in _rendered(odd))


def test_a_candidate_list_and_a_confirmation_are_shown_and_dumped() -> None:
    """Candidates print as rank. ref score; a confirmation says so, with the person."""
    from ncbsim.client import Answer, Outcome
    from ncbsim.console import answer_dict, released, second_steps

    candidates = query_pb2.Answer(
        candidates=query_pb2.Candidates(
            candidates=[
                query_pb2.Candidate(ref="a" * 20, score=0.71, rank=1),
                query_pb2.Candidate(ref="b" * 20, score=0.4, rank=2),
            ]
        )
    )
    hit = Answer("DE", Outcome.HIT, candidates)
    assert answer_dict(hit)["candidates"] == [
        {"rank": 1, "ref": "a" * 20, "score": 0.71},
        {"rank": 2, "ref": "b" * 20, "score": 0.4},
    ]
    search = query_pb2.Query(
        biometric=query_pb2.BiometricQuery(modality=query_pb2.MODALITY_FACE, template=b"\x01")
    )
    steps = second_steps(search, hit)
    assert [(s.confirm.ref, s.confirm.modality, s.confirm.template) for s in steps] == [
        ("a" * 20, query_pb2.MODALITY_FACE, b"\x01"),
        ("b" * 20, query_pb2.MODALITY_FACE, b"\x01"),
    ]
    person = query_pb2.Record(person=records_pb2.Person(ref="p" * 20, surname="Wieloch"))
    confirmed = Answer(
        "DE",
        Outcome.RECORD,
        query_pb2.Answer(
            confirmation=query_pb2.Confirmation(confirmed=True, score=0.71, record=person)
        ),
    )
    data = answer_dict(confirmed)
    assert (data["confirmed"], data["score"], data["record"]["person"]["surname"]) == (
        True,
        0.71,
        "Wieloch",
    )
    assert released(confirmed) == person
