"""ICAO 9303 TD3 MRZ: the published specimen, check digits, transliteration and validation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import pytest

from ncbsim.errors import MrzError
from ncbsim.node.mrz import (
    build_td3,
    check_digit,
    name_field,
    parse_td3,
    td3_problems,
    transliterate,
    validate_td3,
)

# ICAO Doc 9303 Part 4, specimen passport of Anna Maria Eriksson, Utopia.
SPECIMEN = (
    "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<",
    "L898902C36UTO7408122F1204159ZE184226B<<<<<10",
)
MRZ_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ<"


def _value(ch: str) -> int:
    return 0 if ch == "<" else int(ch, 36)


def _specimen() -> tuple[str, str]:
    return build_td3(
        document_code="P",
        issuing_state="UTO",
        surname="Eriksson",
        given_names="Anna Maria",
        number="L898902C3",
        nationality="UTO",
        date_of_birth=date(1974, 8, 12),
        sex="F",
        date_of_expiry=date(2012, 4, 15),
        personal_number="ZE184226B",
    )


def test_check_digits_of_the_specimen_fields() -> None:
    """Each of the specimen's five check digits comes out as published (6, 2, 9, 1, 0)."""
    line2 = SPECIMEN[1]
    assert check_digit("L898902C3") == "6"
    assert check_digit("740812") == "2"
    assert check_digit("120415") == "9"
    assert check_digit("ZE184226B<<<<<") == "1"
    assert check_digit(line2[0:10] + line2[13:20] + line2[21:43]) == "0"


def test_check_digit_rejects_non_mrz_characters() -> None:
    """A field holding a character outside 0-9, A-Z and < has no check digit."""
    with pytest.raises(MrzError):
        check_digit("L8989o2C3")


def test_specimen_built_from_fields_byte_for_byte() -> None:
    """Building the specimen from its fields reproduces both published lines exactly."""
    assert _specimen() == SPECIMEN


def test_specimen_validates_and_parses() -> None:
    """The published specimen validates, and parsing recovers its fields."""
    assert validate_td3(SPECIMEN)
    assert validate_td3("\n".join(SPECIMEN))
    fields = parse_td3(SPECIMEN)
    assert (fields.surname, fields.given_names) == ("ERIKSSON", "ANNA MARIA")
    assert (fields.number, fields.nationality, fields.sex) == ("L898902C3", "UTO", "F")
    assert (fields.date_of_birth, fields.date_of_expiry) == ("740812", "120415")
    assert fields.personal_number == "ZE184226B"


def _undetectable(position: int, old: str, new: str) -> bool:
    """Changes 9303 cannot catch: sex code swaps, another valid state code, and (in the
    alphanumeric number and personal-number fields) values equal modulo 10, except a
    filler inside the document number."""
    if position == 20:
        return new in "MF<"
    if position < 9 and new == "<":
        return False  # the specimen's number has no filler at its end to begin with
    if 10 <= position <= 12:
        code = SPECIMEN[1][10:13]
        swapped = code[: position - 10] + new + code[position - 9 :]
        # The only ICAO codes one letter away from UTO: Trinidad and Tobago, United Nations.
        return swapped in {"TTO", "UNO"}
    alphanumeric = position < 9 or 28 <= position < 42
    return alphanumeric and _value(new) % 10 == _value(old) % 10


def test_every_single_character_change_of_line_2_is_caught() -> None:
    """Changing any one character of line 2 fails validation, except 9303's blind spots."""
    line1, line2 = SPECIMEN
    undetected = []
    for position, old in enumerate(line2):
        for new in MRZ_CHARS:
            if new == old:
                continue
            mutated = line2[:position] + new + line2[position + 1 :]
            accepted = validate_td3((line1, mutated))
            assert accepted == _undetectable(position, old, new), (position, old, new)
            if accepted:
                undetected.append((position, old, new))
    # A digit replaced by another digit is never missed where a check digit protects it.
    protected = [*range(0, 10), *range(13, 20), *range(21, 44)]
    assert not [u for u in undetected if u[0] in protected and u[1].isdigit() and u[2].isdigit()]
    assert undetected  # the blind spots are real: e.g. sex F -> M, number C -> M


def test_validation_rejects_malformed_zones() -> None:
    """Wrong line count or length, lower case and non-passport codes do not validate."""
    line1, line2 = SPECIMEN
    assert not validate_td3((line1,))
    assert not validate_td3((line1, line2 + "<"))
    assert not validate_td3((line1.lower(), line2))
    assert not validate_td3(("V" + line1[1:], line2))
    assert not validate_td3((line1[:2] + "ZZZ" + line1[5:], line2))
    with pytest.raises(MrzError):
        parse_td3((line1, line2[:-1]))


def test_transliteration_follows_9303() -> None:
    """National characters map per 9303, apostrophes vanish, spaces and hyphens become <."""
    assert transliterate("Müller-Lüdenscheidt") == "MUELLER<LUEDENSCHEIDT"
    assert transliterate("Groß") == "GROSS"
    assert transliterate("Øster Ærø") == "OESTER<AEROE"
    assert transliterate("Þórsdóttir") == "THORSDOTTIR"
    assert transliterate("O'Brien") == "OBRIEN"
    assert transliterate("Łukasz Ñúñez") == "LUKASZ<NUNEZ"
    assert transliterate("Yılmaz Şahin") == "YILMAZ<SAHIN"  # noqa: RUF001 - look-alike letters are the point


def test_long_names_are_truncated_given_names_first() -> None:
    """A long name keeps the surname whole and shortens given names from the last one."""
    field = name_field("Wolfeschlegelsteinhausen", "Hubert Blaine Maximilian Friedrich")
    assert len(field) == 39
    assert field == "WOLFESCHLEGELSTEINHAUSEN<<HUBERT<BL<M<F"
    assert field[-1].isalpha()
    overlong = name_field("A" * 45, "Bob")
    assert overlong == "A" * 39


def test_germany_is_written_d_and_still_validates() -> None:
    """Germany's ICAO code D is written D<< in both state fields and validates."""
    line1, line2 = build_td3(
        issuing_state="D",
        surname="Mustermann",
        given_names="Erika",
        number="C01X00T47",
        nationality="D",
        date_of_birth=date(1964, 8, 12),
        sex="F",
        date_of_expiry=date(2027, 10, 31),
    )
    assert line1.startswith("P<D<<MUSTERMANN<<ERIKA<")
    assert line2[10:13] == "D<<"
    assert line2[42] == "<"  # empty personal number: filler check digit
    assert validate_td3((line1, line2))


@pytest.mark.parametrize(
    ("field", "value"),
    [("sex", "Q"), ("number", "L898902C3X"), ("document_code", "V"), ("issuing_state", "U1O")],
)
def test_build_rejects_fields_that_do_not_fit(field: str, value: str) -> None:
    """Fields that cannot be written in a TD3 MRZ raise MrzError instead of being mangled."""
    fields: dict[str, str] = {
        "sex": "F",
        "number": "L898902C3",
        "document_code": "P",
        "issuing_state": "UTO",
    }
    fields[field] = value
    with pytest.raises(MrzError):
        build_td3(
            document_code=fields["document_code"],
            issuing_state=fields["issuing_state"],
            surname="Eriksson",
            given_names="Anna",
            number=fields["number"],
            nationality="UTO",
            date_of_birth=date(1974, 8, 12),
            sex=fields["sex"],
            date_of_expiry=date(2012, 4, 15),
        )


def _with(line: int, start: int, text: str, lines: Sequence[str] = SPECIMEN) -> list[str]:
    """``lines`` with ``text`` written over line ``line`` (0 or 1) from position ``start``."""
    out = list(lines)
    out[line] = out[line][:start] + text + out[line][start + len(text) :]
    assert len(out[line]) == 44
    return out


def _recomposite(lines: list[str]) -> list[str]:
    """``lines`` with the number, optional and composite check digits recomputed."""
    line2 = lines[1]
    line2 = line2[:9] + check_digit(line2[:9]) + line2[10:43]
    line2 += check_digit(line2[0:10] + line2[13:20] + line2[21:43])
    return [lines[0], line2]


def test_unspecified_sex_is_written_filler_and_read_back_as_x() -> None:
    """A holder of unspecified sex (X in the record) gets < in the MRZ, parsed back as X."""
    line1, line2 = build_td3(
        issuing_state="UTO",
        surname="Eriksson",
        given_names="Anna",
        number="L898902C3",
        nationality="UTO",
        date_of_birth=date(1974, 8, 12),
        sex="X",
        date_of_expiry=date(2012, 4, 15),
    )
    assert line2[20] == "<"
    assert validate_td3((line1, line2))
    assert parse_td3((line1, line2)).sex == "X"
    assert parse_td3(SPECIMEN).sex == "F"


def test_x_in_the_mrz_sex_position_does_not_validate() -> None:
    """Doc 9303 allows only F, M and < in the MRZ's sex position: X there is an error."""
    lines = _with(1, 20, "X")
    assert not validate_td3(lines)
    assert td3_problems(lines) == ["sex"]
    assert validate_td3(_with(1, 20, "<"))
    assert validate_td3(_with(1, 20, "M"))


@pytest.mark.parametrize(
    "name",
    [
        "ERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<",  # the specimen
        "ERIKSSON<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<",  # no secondary identifier
        "VAN<DER<BERG<<ANNA<<<<<<<<<<<<<<<<<<<<<",  # components of the primary identifier
        "WOLFESCHLEGELSTEINHAUSEN<<HUBERT<BL<M<F",  # truncated, ends in a letter
        "A" * 39,  # a primary identifier cut to the whole field
    ],
)
def test_well_formed_name_fields_validate(name: str) -> None:
    """Names as Doc 9303 Part 3 writes them validate, with or without a secondary identifier."""
    assert validate_td3(_with(0, 5, name))


@pytest.mark.parametrize(
    "name",
    [
        "ERIKSSON<<ANNETT<<<<<<<<<<<<<<<<<<<<<<C",  # a letter after the fillers
        "SMITH<<RUTH<<Z<<<<<<<<<<<<<<<<<<<<<<<<<",  # a third identifier
        "ERIKSSON<<<ANNA<<<<<<<<<<<<<<<<<<<<<<<<",  # three fillers as a separator
        "ERIKSSON<<ANNA<<MARIA<<<<<<<<<<<<<<<<<<",  # two fillers between given names
        "<ERIKSSON<<ANNA<<<<<<<<<<<<<<<<<<<<<<<<",  # a leading filler
        "<<ANNA<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<",  # no primary identifier
        "<" * 39,  # no name at all
        "ERIKSS0N<<ANNA<<<<<<<<<<<<<<<<<<<<<<<<<",  # a digit
    ],
)
def test_broken_name_fields_do_not_validate(name: str) -> None:
    """A name field that breaks Doc 9303 Part 3's structure fails validation as a name."""
    assert td3_problems(_with(0, 5, name)) == ["name"]


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("L898902C3", True),
        ("L8989<<<<", True),  # a short number, padded on the right
        ("<L898902C", False),  # a leading filler
        ("L8989<2C3", False),  # a filler inside the number
        ("<<<<<<<<<", False),  # no number
    ],
)
def test_document_number_is_left_aligned(number: str, valid: bool) -> None:
    """A document number starts with a letter or digit and has fillers only at its end."""
    lines = _recomposite(_with(1, 0, number))
    assert validate_td3(lines) == valid
    assert td3_problems(lines) == ([] if valid else ["document number"])


@pytest.mark.parametrize("number", ["<L898902C", "L8989<2C3", ""])
def test_build_refuses_a_number_that_would_not_validate(number: str) -> None:
    """build_td3 raises on a document number with a leading or inner filler, or none."""
    with pytest.raises(MrzError):
        build_td3(
            issuing_state="UTO",
            surname="Eriksson",
            given_names="Anna",
            number=number,
            nationality="UTO",
            date_of_birth=date(1974, 8, 12),
            sex="F",
            date_of_expiry=date(2012, 4, 15),
        )


def test_problems_name_each_broken_rule() -> None:
    """td3_problems names every broken field and check digit; a good MRZ has none."""
    assert td3_problems(SPECIMEN) == []
    broken = _with(1, 9, "7", _with(1, 20, "Q"))
    assert td3_problems(broken) == ["document number check digit", "sex", "composite check digit"]
    assert td3_problems(("P<UTO",)) == ["a TD3 MRZ has two lines of 44 characters"]


@pytest.mark.parametrize(
    ("surname", "given", "field"),
    [
        # The cut would fall on the << separator: the surname gives way to the initial.
        ("A" * 37, "Bob", "A" * 36 + "<<B"),
        ("A" * 38, "Bob", "A" * 36 + "<<B"),
        # The cut falls on the single filler inside the surname: no filler is left last.
        ("A" * 30 + " " + "B" * 12, "", "A" * 30 + "<" + "B" * 8),
        ("A" * 38 + " B", "", "A" * 38 + "<"),
        # The cut falls on a filler between initials: the initials that fit stay, and
        # the surname is not cut (the fillers after the last initial are dropped).
        ("A" * 31, "Anna Beth Carl Dora Emma Fay", "A" * 31 + "<<A<B<C<"),
    ],
)
def test_truncation_never_ends_on_a_filler(surname: str, given: str, field: str) -> None:
    """A truncated name ends in a letter where it can, and always parses as a name."""
    assert name_field(surname, given) == field
    assert validate_td3(_with(0, 5, name_field(surname, given)))
