"""How a query's values are compared with a record's: document numbers, plates and names.

Numbers and plates are compared normalised (:func:`normalize_number`,
:func:`normalize_plate`). Names are matched fuzzily. Both sides are folded to a key
(:func:`name_key`): accents stripped, upper case, punctuation and hyphens removed, and
common transliteration variants merged (``MÜLLER``/``MUELLER``, ``MEYER``/``MAIER``,
``W``/``V``, doubled letters). Keys are compared with the mean of Jaro-Winkler and Indel
similarity (rapidfuzz), trying the names as given, with surname and given names swapped,
and as one sorted bag of name parts (:func:`name_similarity`).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from rapidfuzz.distance import Indel, JaroWinkler

__all__ = [
    "DEFAULT_THRESHOLD",
    "name_key",
    "name_similarity",
    "normalize_number",
    "normalize_plate",
]

DEFAULT_THRESHOLD = 0.85
"""The least :func:`name_similarity` at which a person lookup reports a candidate."""

_SEPARATORS = re.compile(r"[\s<\-./]+")


def normalize_number(number: str) -> str:
    """A document number as stored: upper case, without spaces, fillers or separators."""
    return _SEPARATORS.sub("", number).upper()


def normalize_plate(plate: str) -> str:
    """A plate as indexed: upper case letters and digits only (``AB-123 CD`` → ``AB123CD``)."""
    return "".join(ch for ch in plate.upper() if ch.isalnum())


# fmt: off
_FOLD = str.maketrans(
    {"ß": "SS", "ẞ": "SS", "Æ": "AE", "æ": "AE", "Ø": "O", "ø": "O", "Œ": "OE", "œ": "OE",
     "Þ": "TH", "þ": "TH", "Ð": "D", "ð": "D", "Đ": "D", "đ": "D", "Ł": "L", "ł": "L",
     "ı": "I", "Ə": "A", "ə": "A", "Ħ": "H", "ħ": "H"}  # noqa: RUF001 - look-alike letters are the point
)
# fmt: on
_DROPPED = str.maketrans("", "", "'’‘`´ʼ")  # noqa: RUF001 - look-alike letters are the point
_NON_LETTERS = re.compile(r"[^A-Z]+")
_VARIANTS = (
    ("SCH", "SH"),
    ("DZH", "J"),
    ("DJ", "J"),
    ("AE", "A"),
    ("OE", "O"),
    ("UE", "U"),
    ("PH", "F"),
    ("TH", "T"),
    ("CK", "K"),
    ("KH", "H"),
    ("W", "V"),
    ("Y", "I"),
    ("EI", "AI"),
)
_DOUBLED = re.compile(r"(.)\1+")


def name_key(name: str) -> str:
    """The matching key of a name: folded name parts separated by single spaces.

    ``name_key("Müller-Lüdenscheidt") == name_key("MUELLER LUEDENSCHEIDT")``.
    """
    return " ".join(filter(None, map(_word_key, name.split())))


@lru_cache(maxsize=1 << 16)
def _word_key(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word.translate(_FOLD).translate(_DROPPED))
    ascii_upper = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).upper()
    return " ".join(_variant_key(part) for part in _NON_LETTERS.split(ascii_upper) if part)


def _variant_key(part: str) -> str:
    for old, new in _VARIANTS:
        part = part.replace(old, new)
    return _DOUBLED.sub(r"\1", part)


def _similarity(a: str, b: str) -> float:
    """Mean of Jaro-Winkler (rewards a shared start) and Indel (penalises extra letters)."""
    return (JaroWinkler.normalized_similarity(a, b) + Indel.normalized_similarity(a, b)) / 2


def _field_similarity(query: list[str], record: list[str]) -> float:
    """Similarity of two multi-part names, allowing one side to omit parts (0.05 penalty)."""
    whole = _similarity("".join(query), "".join(record))
    if len(query) == len(record) or not query or not record:
        return whole
    shorter, longer = (query, record) if len(query) < len(record) else (record, query)
    parts = sum(max(_similarity(p, q) for q in longer) for p in shorter) / len(shorter)
    return max(whole, parts - 0.05)


def _ordered(qs: list[str], qg: list[str], rs: list[str], rg: list[str]) -> float:
    surname = _field_similarity(qs, rs)
    if not qg:
        return 0.95 * surname
    if not rg:
        return 0.6 * surname
    return 0.6 * surname + 0.4 * _field_similarity(qg, rg)


def name_similarity(
    query_surname_key: str, query_given_key: str, surname_key: str, given_key: str
) -> float:
    """How alike two names are, in [0, 1], from their :func:`name_key` keys.

    The best of: surname and given names compared in place (weighted 0.6 and 0.4), the
    same with the record's surname and given names swapped, and all name parts compared as
    one sorted string. Each comparison averages Jaro-Winkler and Indel similarity, and lets
    one side omit name parts (``GARCIA`` against ``GARCIA LOPEZ``) at a small cost. A query
    without given names scores its surname alone, times 0.95.
    """
    qs, qg = query_surname_key.split(), query_given_key.split()
    rs, rg = surname_key.split(), given_key.split()
    if not qs:
        qs, qg = qg, []
    if not qs or not (rs or rg):
        return 0.0
    best = max(_ordered(qs, qg, rs, rg), _ordered(qs, qg, rg, rs) if rg else 0.0)
    if qg:
        best = max(best, _similarity("".join(sorted(qs + qg)), "".join(sorted(rs + rg))))
    return round(best, 4)
