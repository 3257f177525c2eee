"""ICAO 9303 TD3 MRZ: the published specimen, check digits, transliteration and validation."""

from __future__ import annotations

from datetime import date

import pytest

from node.mrz import (
    MrzError,
    build_td3,
    check_digit,
    name_field,
    parse_td3,
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
    alphanumeric number and personal-number fields) values equal modulo 10."""
    if position == 20:
        return new in "MFX<"
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
