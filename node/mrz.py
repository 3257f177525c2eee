"""ICAO Doc 9303 machine-readable zones for passports (TD3: two lines of 44 characters).

Check digits use the 7-3-1 weights over character values ``0``-``9`` = 0-9, ``A``-``Z`` =
10-35 and the filler ``<`` = 0, taken modulo 10.

A TD3 line 2 carries five check digits: document number, date of birth, date of expiry,
personal number and a composite over all of these. The nationality and sex fields are not
covered by any check digit, and, because values are summed modulo 10, replacing a character
of an alphanumeric field by one whose value differs by a multiple of 10 (``0``/``A``/``K``/
``U``/``<``, ``1``/``B``/``L``/``V``, ...) is not detected either. :func:`validate_td3`
therefore also checks each field's format, the calendar dates, the sex code, and that both
state codes are known ICAO codes.

The fields' own rules, as Doc 9303 Part 3 and Part 4 state them and :func:`td3_problems`
checks them:

- the name field (line 1, positions 6-44) holds letters and ``<`` only: the primary
  identifier first, then ``<<`` and the secondary identifier if there is one, single ``<``
  between the components of each, and nothing but fillers after the name
  (``ERIKSSON<<ANNA<MARIA<<<...``; ``ERIKSSON<<<<...`` for a name without a secondary
  identifier). ``ANNETT<<<<<<<C`` (a letter after the fillers) and ``SMITH<<RUTH<<Z`` (a
  third identifier) are not names;
- the document number is left-aligned: at least one letter or digit first, fillers only
  after it, never before or between its characters;
- the sex is ``F``, ``M`` or ``<`` (unspecified). The visual zone and our records write
  an unspecified sex ``X``; the MRZ writes ``<`` in its place (Parts 4-6), so
  :func:`build_td3` turns ``X`` into ``<`` and :func:`parse_td3` reads ``<`` back as ``X``.

Names are transliterated to ``A``-``Z`` following the recommendations of Doc 9303 Part 3:
national characters use the table there (``Ä`` → ``AE``, ``Ø`` → ``OE``, ``ß`` → ``SS``,
``Þ`` → ``TH``...), other accented letters lose their accent, apostrophes are dropped, and
spaces and hyphens become the filler ``<``. A name too long for its 39 positions is
truncated as Part 3 describes: the given names are shortened from the last one backwards,
each keeping at least its initial, and only then is the surname cut. A truncated name
ends in a letter in the last position, which is how a reader tells that it may have been
truncated: when the cut would end on the ``<<`` separator (or a filler inside the surname),
the surname is cut shorter instead so that the first initial still fits. A cut that ends
on a filler between given names keeps the initials before it (``...<<A<B<C``) and drops
the filler, so a cut never leaves a filler after the last letter it keeps.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache, lru_cache

import pycountry

from ncbsim.errors import MrzError

__all__ = [
    "TD3",
    "build_td3",
    "check_digit",
    "name_field",
    "parse_td3",
    "td3_problems",
    "transliterate",
    "validate_td3",
]

LINE_LENGTH = 44
NAME_LENGTH = 39
FILLER = "<"

_VALUES: dict[str, int] = {str(d): d for d in range(10)}
_VALUES.update({chr(ord("A") + i): 10 + i for i in range(26)})
_VALUES[FILLER] = 0
_INVALID = 255
# Byte translation table: an MRZ character's byte becomes its value, anything else 255.
_VALUE_BYTES = bytes(_VALUES.get(chr(i), _INVALID) for i in range(256))
_DIGIT_CHARS = "0123456789"

# Doc 9303 Part 3, transliteration of Latin national characters that do not simply lose an
# accent. Everything else is decomposed (NFKD) and stripped of combining marks.
# fmt: off
_LATIN_SPECIAL = {
    "Ä": "AE", "Å": "AA", "Æ": "AE", "Ð": "D", "Đ": "D", "Ö": "OE", "Ø": "OE", "Œ": "OE",
    "Ü": "UE", "ß": "SS", "ẞ": "SS", "Þ": "TH", "Ĳ": "IJ", "Ł": "L", "Ħ": "H", "ı": "I",  # noqa: RUF001 - look-alike letters are the point
    "Ŋ": "N", "Ə": "A", "ə": "A",
}
# fmt: on
_DROPPED = frozenset("'’‘`´ʼ.")  # noqa: RUF001 - look-alike letters are the point
_NOT_MRZ = re.compile(r"[^A-Z<]")
_CODE = re.compile(r"^[A-Z]{1,3}<{0,2}$")
_ALNUM_FIELD = re.compile(r"^[A-Z0-9<]+$")
_DIGITS = re.compile(r"^[0-9]{6}$")
_MRZ_SEXES = frozenset("FM<")
_UNSPECIFIED_SEX = "X"
"""How the visual zone and the records write the sex the MRZ writes ``<``."""
_TO_MRZ_SEX = {"F": "F", "M": "M", _UNSPECIFIED_SEX: FILLER, FILLER: FILLER}
# The name field: primary identifier, optionally << and the secondary identifier, with
# single fillers between components, then fillers only (Doc 9303 Part 3).
_NAME_FIELD = re.compile(r"[A-Z]+(?:<[A-Z]+)*(?:<<[A-Z]+(?:<[A-Z]+)*)?<*")
_NUMBER_FIELD = re.compile(r"[A-Z0-9]+<*")  # left-aligned, fillers only at the end
_EMPTY_OPTIONAL = FILLER * 14
_PASSPORT_CODES = frozenset({"P", "P<"} | {"P" + chr(c) for c in range(ord("A"), ord("Z") + 1)})

# Codes of Doc 9303 Part 3 that are not ISO 3166-1 alpha-3, plus the specimen state Utopia.
# fmt: off
_ICAO_SPECIAL_CODES = frozenset(
    {
        "D", "RKS", "UTO", "EUE", "GBD", "GBN", "GBO", "GBP", "GBS", "UNA", "UNK", "UNO",
        "XBA", "XCC", "XCE", "XCO", "XEC", "XES", "XIM", "XMP", "XOM", "XPO", "XXA", "XXB",
        "XXC", "XXX",
    }
)
# fmt: on


@dataclass(frozen=True, slots=True)
class TD3:
    """The fields of a TD3 MRZ, as written in it (dates as ``YYMMDD``, no fillers).

    ``sex`` is ``F``, ``M`` or ``X``: the MRZ's ``<`` (unspecified) is read as ``X``, the
    code the visual zone and the records use for it.
    """

    document_code: str
    issuing_state: str
    surname: str
    given_names: str
    number: str
    nationality: str
    date_of_birth: str
    sex: str
    date_of_expiry: str
    personal_number: str


@cache
def _known_codes() -> frozenset[str]:
    return frozenset(str(c.alpha_3) for c in pycountry.countries) | _ICAO_SPECIAL_CODES


def check_digit(data: str) -> str:
    """The 9303 check digit (``0``-``9``) of ``data``, which holds only ``0-9``, ``A-Z``, ``<``."""
    values = data.encode("latin-1", "replace").translate(_VALUE_BYTES)
    if _INVALID in values:
        bad = next(ch for ch in data if ch not in _VALUES)
        raise MrzError(f"character {bad!r} cannot appear in an MRZ")
    total = 7 * sum(values[0::3]) + 3 * sum(values[1::3]) + sum(values[2::3])
    return _DIGIT_CHARS[total % 10]


@lru_cache(maxsize=65536)
def transliterate(text: str) -> str:
    """``text`` in MRZ characters: upper case ``A``-``Z``, with ``<`` for spaces and hyphens."""
    out: list[str] = []
    for ch in text.strip():
        if ch in _DROPPED:
            continue
        upper = ch.upper() if ch not in _LATIN_SPECIAL else ch
        if upper in _LATIN_SPECIAL:
            out.append(_LATIN_SPECIAL[upper])
            continue
        for base in unicodedata.normalize("NFKD", upper):
            if "A" <= base <= "Z":
                out.append(base)
            elif not unicodedata.combining(base):
                out.append(FILLER)
    collapsed = re.sub("<+", FILLER, "".join(out)).strip(FILLER)
    if _NOT_MRZ.search(collapsed):  # pragma: no cover - every character was mapped above
        raise MrzError(f"cannot transliterate {text!r}")
    return collapsed


def _parts(name: str) -> list[str]:
    """The transliterated parts of a name (each space-separated word is cached on its own)."""
    return [part for word in name.split() for part in transliterate(word).split(FILLER) if part]


def name_field(surname: str, given_names: str, width: int = NAME_LENGTH) -> str:
    """The MRZ name field: ``SURNAME<<GIVEN<NAMES``, padded or truncated to ``width``."""
    primary = FILLER.join(_parts(surname))
    if not primary:
        raise MrzError("a surname is required")
    secondary = _parts(given_names)
    field = _join_name(primary, secondary)
    # Shorten given names from the last one backwards, each keeping its initial.
    for index in reversed(range(len(secondary))):
        excess = len(field) - width
        if excess <= 0:
            break
        keep = max(1, len(secondary[index]) - excess)
        secondary[index] = secondary[index][:keep]
        field = _join_name(primary, secondary)
    if len(field) > width:
        cut = field[:width]
        if cut.endswith(FILLER) and secondary and width <= len(primary) + 2:
            # The cut falls on a filler of the primary identifier or on its << separator:
            # shorten the primary identifier instead, so that the first initial still fits
            # and the field ends in a letter. A cut on a filler between given names only
            # drops the fillers: the initials before it stay.
            cut = primary[: width - 3].rstrip(FILLER) + FILLER * 2 + secondary[0][0]
        field = cut.rstrip(FILLER)
    return field.ljust(width, FILLER)


def _join_name(primary: str, secondary: list[str]) -> str:
    return primary + FILLER * 2 + FILLER.join(secondary) if secondary else primary


@lru_cache(maxsize=1024)
def _code_field(code: str) -> str:
    code = code.strip().upper()
    if not _CODE.match(code):
        raise MrzError(f"{code!r} is not an ICAO state code")
    return code.ljust(3, FILLER)


@lru_cache(maxsize=65536)
def _dated(value: date) -> str:
    """``YYMMDD`` and its check digit."""
    digits = f"{value.year % 100:02d}{value.month:02d}{value.day:02d}"
    return digits + check_digit(digits)


def _alnum_field(value: str, width: int, name: str) -> str:
    if not value:
        return FILLER * width
    value = value.strip().upper().replace(" ", "")
    if len(value) > width or not _ALNUM_FIELD.match(value):
        raise MrzError(f"{name} {value!r} does not fit {width} MRZ characters")
    return value.ljust(width, FILLER)


def _number_field(number: str) -> str:
    field = _alnum_field(number, 9, "document number")
    if not _NUMBER_FIELD.fullmatch(field):
        raise MrzError(f"document number {number!r}: letters and digits, fillers only after them")
    return field


def build_td3(
    *,
    document_code: str = "P",
    issuing_state: str,
    surname: str,
    given_names: str,
    number: str,
    nationality: str,
    date_of_birth: date,
    sex: str,
    date_of_expiry: date,
    personal_number: str = "",
) -> tuple[str, str]:
    """The two lines of a passport MRZ built from its fields, with all five check digits.

    ``issuing_state`` and ``nationality`` are ICAO codes (``D`` for Germany). ``sex`` is
    ``F``, ``M``, or ``X`` (or ``<``) for unspecified, which the MRZ writes ``<``. An empty
    personal number gets the filler ``<`` as its check digit, as 9303 allows.
    """
    if document_code not in _PASSPORT_CODES:
        raise MrzError(f"{document_code!r} is not a passport document code")
    if sex not in _TO_MRZ_SEX:
        raise MrzError(f"{sex!r} is not a sex code: expected F, M or X")
    line1 = (
        document_code.ljust(2, FILLER)
        + _code_field(issuing_state)
        + name_field(surname, given_names)
    )
    number_field = _number_field(number)
    optional = _alnum_field(personal_number, 14, "personal number")
    optional_check = FILLER if optional == _EMPTY_OPTIONAL else check_digit(optional)
    part_number = number_field + check_digit(number_field)
    part_birth = _dated(date_of_birth)
    part_expiry = _dated(date_of_expiry) + optional + optional_check
    composite = check_digit(part_number + part_birth + part_expiry)
    line2 = (
        part_number
        + _code_field(nationality)
        + part_birth
        + _TO_MRZ_SEX[sex]
        + part_expiry
        + composite
    )
    return line1, line2


def _lines(mrz: str | Sequence[str]) -> tuple[str, str]:
    lines = mrz.split() if isinstance(mrz, str) else list(mrz)
    if len(lines) != 2 or any(len(line) != LINE_LENGTH for line in lines):
        raise MrzError("a TD3 MRZ has two lines of 44 characters")
    line1, line2 = lines
    if any(ch not in _VALUES for ch in line1 + line2):
        raise MrzError("an MRZ holds only 0-9, A-Z and <")
    return line1, line2


def parse_td3(mrz: str | Sequence[str]) -> TD3:
    """Split a TD3 MRZ (two lines, or one string with the lines separated by whitespace).

    Raises :class:`MrzError` if the MRZ is not two lines of 44 MRZ characters. Check digits
    and field formats are not verified here; see :func:`validate_td3`. A ``<`` in the sex
    position (unspecified) is read as ``X``.
    """
    line1, line2 = _lines(mrz)
    surname, _, given = line1[5:].partition(FILLER * 2)
    return TD3(
        document_code=line1[0:2].rstrip(FILLER),
        issuing_state=line1[2:5].rstrip(FILLER),
        surname=surname.strip(FILLER).replace(FILLER, " "),
        given_names=given.strip(FILLER).replace(FILLER, " "),
        number=line2[0:9].rstrip(FILLER),
        nationality=line2[10:13].rstrip(FILLER),
        date_of_birth=line2[13:19],
        sex=_UNSPECIFIED_SEX if line2[20] == FILLER else line2[20],
        date_of_expiry=line2[21:27],
        personal_number=line2[28:42].rstrip(FILLER),
    )


def _is_date(yymmdd: str) -> bool:
    if not _DIGITS.match(yymmdd):
        return False
    try:
        date(2000 + int(yymmdd[0:2]), int(yymmdd[2:4]), int(yymmdd[4:6]))
    except ValueError:
        return False
    return True


def td3_problems(mrz: str | Sequence[str]) -> list[str]:
    """What is wrong with ``mrz`` as a passport MRZ: one short phrase per broken rule.

    An empty list means the MRZ is well formed (see the module docstring for the rules)
    and its five check digits are right. The phrases name fields, never their contents.
    """
    try:
        line1, line2 = _lines(mrz)
    except MrzError as exc:
        return [str(exc)]
    known = _known_codes()
    optional, optional_check = line2[28:42], line2[42]
    checks = {
        "document code": line1[0] == "P" and (line1[1] == FILLER or line1[1].isalpha()),
        "issuing state": line1[2:5].rstrip(FILLER) in known,
        "name": bool(_NAME_FIELD.fullmatch(line1, 5)),
        "document number": bool(_NUMBER_FIELD.fullmatch(line2, 0, 9)),
        "document number check digit": line2[9] == check_digit(line2[0:9]),
        "nationality": line2[10:13].rstrip(FILLER) in known,
        "date of birth": _is_date(line2[13:19]),
        "date of birth check digit": line2[19] == check_digit(line2[13:19]),
        "sex": line2[20] in _MRZ_SEXES,
        "date of expiry": _is_date(line2[21:27]),
        "date of expiry check digit": line2[27] == check_digit(line2[21:27]),
        "personal number check digit": optional_check == check_digit(optional)
        or (optional_check == FILLER and optional == _EMPTY_OPTIONAL),
        "composite check digit": line2[43]
        == check_digit(line2[0:10] + line2[13:20] + line2[21:43]),
    }
    return [name for name, ok in checks.items() if not ok]


def validate_td3(mrz: str | Sequence[str]) -> bool:
    """Whether ``mrz`` is a well-formed TD3 MRZ whose five check digits are all correct."""
    return not td3_problems(mrz)
