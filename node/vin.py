"""Vehicle identification numbers (ISO 3779) and the North American check digit.

A VIN has 17 characters from ``0-9`` and ``A-Z`` without ``I``, ``O`` and ``Q``: a
three-character world manufacturer identifier (WMI), a six-character descriptor section
whose last character (position 9) is the check digit, and an eight-character indicator
section that starts with the model-year code (position 10) and the plant code (position 11).

ISO 3779 leaves position 9 to the manufacturer; North America (49 CFR 565) makes it a check
digit: transliterate letters to numbers, weight positions with 8,7,6,5,4,3,2,10,0,9,8,7,6,5,
4,3,2, and take the sum modulo 11, with 10 written ``X``. :func:`is_valid` checks that rule;
:func:`make_vin` always writes a valid check digit, so every generated VIN passes it.
"""

from __future__ import annotations

import random
import re

__all__ = ["check_digit", "is_valid", "make_vin", "model_year_code", "requires_check_digit"]

LENGTH = 17
CHECK_POSITION = 8  # zero-based index of position 9
ALPHABET = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"

_TRANSLITERATION: dict[str, int] = {str(d): d for d in range(10)}
_TRANSLITERATION.update(
    zip("ABCDEFGH", range(1, 9), strict=True),
)
_TRANSLITERATION.update(zip("JKLMN", range(1, 6), strict=True))
_TRANSLITERATION.update({"P": 7, "R": 9})
_TRANSLITERATION.update(zip("STUVWXYZ", range(2, 10), strict=True))
_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_SHAPE = re.compile(r"[0-9A-HJ-NPR-Z]{17}")  # used with fullmatch: no trailing newline
# First WMI characters of the North American region (1, 4, 5: United States; 2: Canada;
# 3: Mexico), whose VINs carry the 49 CFR 565 check digit.
_NORTH_AMERICA = frozenset("12345")

# Model-year codes repeat every 30 years: 1980 = A ... 2000 = Y, 2001 = 1 ... 2009 = 9,
# 2010 = A again. I, O, Q, U, Z and 0 are never used.
_YEAR_CODES = "ABCDEFGHJKLMNPRSTVWXY123456789"
_SERIAL_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"


def check_digit(vin: str) -> str:
    """The North American check digit (``0``-``9`` or ``X``) for a 17-character VIN.

    The character at position 9 itself is ignored (its weight is 0). Raises ``ValueError``
    if ``vin`` is not 17 VIN characters.
    """
    vin = vin.upper()
    if not _SHAPE.fullmatch(vin):
        raise ValueError(f"{vin!r} is not 17 VIN characters")
    total = sum(map(int.__mul__, map(_TRANSLITERATION.__getitem__, vin), _WEIGHTS))
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def is_valid(vin: str) -> bool:
    """Whether ``vin`` is 17 VIN characters whose position 9 holds the right check digit."""
    vin = vin.strip().upper()
    return bool(_SHAPE.fullmatch(vin)) and vin[CHECK_POSITION] == check_digit(vin)


def requires_check_digit(vin: str) -> bool:
    """Whether the standard makes position 9 of ``vin`` a check digit.

    Only North American VINs (49 CFR 565: the WMI starts with ``1`` to ``5``) must carry
    one; elsewhere ISO 3779 leaves position 9 to the manufacturer.
    """
    return vin.strip().upper()[:1] in _NORTH_AMERICA


def model_year_code(year: int) -> str:
    """The position-10 code for a model year (1980 and later)."""
    if year < 1980:
        raise ValueError("model-year codes start in 1980")
    return _YEAR_CODES[(year - 1980) % 30]


def make_vin(rng: random.Random, wmi: str, *, year: int | None = None) -> str:
    """A random, valid VIN for manufacturer ``wmi`` (and model ``year``, if given).

    The descriptor section is random VIN characters, the plant code a letter, and the
    serial number six digits, as most manufacturers write it.
    """
    wmi = wmi.upper()
    if len(wmi) != 3 or any(ch not in ALPHABET for ch in wmi):
        raise ValueError(f"{wmi!r} is not a world manufacturer identifier")
    year_code = model_year_code(year) if year is not None else rng.choice(_YEAR_CODES)
    descriptor = "".join(rng.choices(ALPHABET, k=5))
    plant = rng.choice(_SERIAL_LETTERS)
    serial = f"{rng.randrange(1_000_000):06d}"
    draft = f"{wmi}{descriptor}0{year_code}{plant}{serial}"
    return draft[:CHECK_POSITION] + check_digit(draft) + draft[CHECK_POSITION + 1 :]
