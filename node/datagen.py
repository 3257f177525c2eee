"""Synthetic records for one bureau: stolen and lost travel documents, persons, stolen vehicles.

:func:`generate` writes a new SQLite database with the schema of :mod:`node.store`. Its
contents depend only on ``(bureau, seed)`` and the requested counts, never on the clock:
dates are drawn relative to :data:`AS_OF`, and each record kind draws from its own
``random.Random`` seeded from ``"{bureau}:{seed}:{kind}"``.

Names suit the country. Faker, seeded, draws a pool of a few hundred surnames and given
names per locale once; records then combine pool entries with ``random.Random``, which is
what makes a million documents take seconds rather than hours. Cyrillic, Greek, Georgian,
Armenian and Hangul names are romanised (ICAO 9303 for Russian Cyrillic, the national
systems elsewhere; Chinese and Japanese come from Faker's romanised names), so every name
can be written in an MRZ.

Every record gets an opaque reference: 20 base32 characters (100 bits) from the seeded
generator, which say nothing about the record's kind or position.
"""

from __future__ import annotations

import bisect
import itertools
import random
import sqlite3
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TypeVar

from faker import Faker

from ncbsim.countries import INTERPOL_MEMBERS, Country, country
from node.mrz import build_td3, transliterate
from node.store import (
    DOCUMENT_STATUSES,
    INDEXES_DDL,
    SCHEMA_VERSION,
    TABLES_DDL,
    name_key,
    normalize_plate,
)
from node.vin import make_vin

__all__ = ["AS_OF", "GenerationSummary", "generate", "romanize"]

AS_OF = date(2025, 6, 30)
"""The day the synthetic data is "as of": every date lies on or before it."""

POOL_DRAWS = 400
BATCH = 20_000

_T = TypeVar("_T")

# ---------------------------------------------------------------- romanisation

_CYRILLIC = dict(
    zip(
        "АБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ",
        "A B V G D E E ZH Z I I K L M N O P R S T U F KH TS CH SH SHCH IE Y - E IU IA".split(),
        strict=True,
    )
)
_CYRILLIC["Ь"] = ""
_CYRILLIC_BY_LANGUAGE = {
    "uk": {"Г": "H", "Ґ": "G", "Є": "IE", "І": "I", "Ї": "I", "И": "Y", "'": "", "ʼ": ""},
    "bg": {"Й": "Y", "Х": "H", "Щ": "SHT", "Ъ": "A", "Ь": "Y", "Ю": "YU", "Я": "YA"},
    "mk": {"Ѓ": "GJ", "Ѕ": "DZ", "Ј": "J", "Љ": "LJ", "Њ": "NJ", "Ќ": "KJ", "Џ": "DJ", "Х": "H",
           "Ц": "C"},
}  # fmt: skip
_GREEK_DIGRAPHS = (("ΟΥ", "OU"), ("ΑΥ", "AV"), ("ΕΥ", "EV"), ("ΓΓ", "NG"), ("ΜΠ", "MP"))
_GREEK = dict(
    zip(
        "ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩ",
        "A V G D E Z I TH I K L M N X O P R S T Y F CH PS O".split(),
        strict=True,
    )
)
_GEORGIAN = dict(
    zip(
        "აბგდევზთიკლმნოპჟრსტუფქღყშჩცძწჭხჯჰ",
        "a b g d e v z t i k l m n o p zh r s t u p k gh q sh ch ts dz ts ch kh j h".split(),
        strict=True,
    )
)
_ARMENIAN = dict(
    zip(
        "աբգդեզէըթժիլխծկհձղճմյնշոչպջռսվտրցւփքօֆ",
        "a b g d e z e y t zh i l kh ts k h dz gh ch m y n sh o ch p j r s v t r ts v p k o f"
        .split(),
        strict=True,
    )
)
_HANGUL_INITIALS = "g kk n d tt r m b pp s ss - j jj ch k t p h".split()
_HANGUL_MEDIALS = "a ae ya yae eo e yeo ye o wa wae oe yo u wo we wi yu eu ui i".split()
_HANGUL_FINALS = "- k k k n n n t l k m l l l p l m p p t t ng t t k t p t".split()
_KOREAN_SURNAMES = {
    "김": "Kim", "이": "Lee", "박": "Park", "최": "Choi", "정": "Jung", "강": "Kang", "조": "Cho",
    "윤": "Yoon", "장": "Jang", "임": "Lim", "한": "Han", "오": "Oh", "서": "Seo", "신": "Shin",
    "권": "Kwon", "황": "Hwang", "안": "Ahn", "송": "Song", "류": "Ryu", "유": "Yoo", "전": "Jeon",
    "홍": "Hong", "고": "Ko", "문": "Moon", "양": "Yang", "손": "Son", "배": "Bae", "백": "Baek",
    "허": "Heo", "노": "Noh", "심": "Shim", "하": "Ha", "곽": "Kwak", "성": "Sung", "차": "Cha",
    "주": "Joo", "우": "Woo", "구": "Koo", "나": "Na", "민": "Min", "진": "Jin", "지": "Ji",
    "엄": "Um", "채": "Chae", "원": "Won", "천": "Cheon", "방": "Bang", "공": "Kong", "현": "Hyun",
    "남": "Nam", "석": "Seok", "선": "Sun", "설": "Seol", "길": "Gil", "연": "Yeon", "표": "Pyo",
    "명": "Myung", "기": "Ki", "반": "Ban", "왕": "Wang", "금": "Keum", "옥": "Ok", "육": "Yook",
    "인": "In", "맹": "Maeng", "제": "Je", "모": "Mo", "탁": "Tak", "국": "Kook", "여": "Yeo",
    "은": "Eun", "편": "Pyun", "용": "Yong", "예": "Ye", "경": "Kyung", "봉": "Bong", "부": "Boo",
    "황보": "Hwangbo", "남궁": "Namgung", "제갈": "Jegal", "선우": "Sunwoo", "독고": "Dokgo",
}  # fmt: skip


def _hangul(text: str) -> str:
    out: list[str] = []
    for ch in text:
        code = ord(ch) - 0xAC00
        if 0 <= code < 11172:
            initial, rest = divmod(code, 588)
            medial, final = divmod(rest, 28)
            for piece in (_HANGUL_INITIALS[initial], _HANGUL_MEDIALS[medial]):
                out.append(piece.strip("-"))
            out.append(_HANGUL_FINALS[final].strip("-"))
        else:
            out.append(ch)
    return "".join(out)


def _by_table(text: str, table: dict[str, str]) -> str:
    return "".join(table.get(ch, ch) for ch in text)


def romanize(text: str, locale: str) -> str:
    """``text`` in Latin script, title-cased if it had to be romanised.

    Cyrillic follows ICAO 9303 (Russian) or the national system (Ukrainian, Bulgarian,
    Macedonian), Greek ELOT 743, Georgian and Armenian their national systems, and Hangul
    the Revised Romanization, with the customary spelling of common surnames (Kim, Lee,
    Park). Latin text is returned unchanged.
    """
    if all(ord(ch) < 0x370 for ch in text):
        return text
    language = locale.split("_")[0]
    if text in _KOREAN_SURNAMES:
        return _KOREAN_SURNAMES[text]
    upper = text.upper()
    if any("\u0400" <= ch <= "\u04ff" for ch in text):
        table = {**_CYRILLIC, **_CYRILLIC_BY_LANGUAGE.get(language, {})}
        latin = _by_table(upper, table)
    elif any("\u0370" <= ch <= "\u03ff" or "\u1f00" <= ch <= "\u1fff" for ch in text):
        plain = "".join(
            ch for ch in unicodedata.normalize("NFD", upper) if not unicodedata.combining(ch)
        )
        for digraph, latin_pair in _GREEK_DIGRAPHS:
            plain = plain.replace(digraph, latin_pair)
        latin = _by_table(plain, _GREEK)
    elif any("\u10a0" <= ch <= "\u10ff" for ch in text):
        latin = _by_table(text, _GEORGIAN)
    elif any("\u0530" <= ch <= "\u058f" for ch in text):
        latin = _by_table(text.lower().replace("ու", "u").replace("և", "ev"), _ARMENIAN)
    elif any("\uac00" <= ch <= "\ud7a3" for ch in text):
        latin = _hangul(text)
    else:
        return text
    return latin.lower().title()


def _writable(name: str) -> bool:
    """Whether every character of ``name`` has an MRZ transliteration."""
    return bool(name.strip()) and all(ch in " -'’" or transliterate(ch) for ch in name)


# ---------------------------------------------------------------- name pools


@dataclass(frozen=True, slots=True)
class _Pool:
    surnames_male: tuple[str, ...]
    surnames_female: tuple[str, ...]
    given_male: tuple[str, ...]
    given_female: tuple[str, ...]
    double_surnames: bool


def _draw(make: Callable[[], str], locale: str) -> tuple[str, ...]:
    names = (romanize(make(), locale) for _ in range(POOL_DRAWS))
    return tuple(dict.fromkeys(n for n in names if _writable(n)))


def _build_pool(locale: str, seed_text: str) -> _Pool:
    fake = Faker(locale)
    fake.seed_instance(random.Random(seed_text).getrandbits(64))
    if locale in ("ja_JP", "zh_CN", "zh_TW"):
        surnames = _draw(fake.last_romanized_name, locale)
        female_first = getattr(fake, "first_romanized_name_female", fake.first_romanized_name)
        male_first = getattr(fake, "first_romanized_name_male", fake.first_romanized_name)
        return _Pool(
            surnames, surnames, _draw(male_first, locale), _draw(female_first, locale), False
        )
    return _Pool(
        surnames_male=_draw(fake.last_name_male, locale),
        surnames_female=_draw(fake.last_name_female, locale),
        given_male=_draw(fake.first_name_male, locale),
        given_female=_draw(fake.first_name_female, locale),
        double_surnames=locale.startswith(("es_", "pt_")),
    )


class _Names:
    """Name pools per locale, built on first use, each seeded from ``(bureau, seed, locale)``."""

    def __init__(self, seed_text: str) -> None:
        self._seed_text = seed_text
        self._pools: dict[str, _Pool] = {}

    def pool(self, locale: str) -> _Pool:
        if locale not in self._pools:
            self._pools[locale] = _build_pool(locale, f"{self._seed_text}:names:{locale}")
        return self._pools[locale]

    def draw(self, rng: random.Random, locale: str, sex: str) -> tuple[str, str]:
        """A ``(surname, given names)`` pair for a person of ``sex`` from ``locale``."""
        pool = self.pool(locale)
        female = sex == "F" or (sex == "X" and rng.random() < 0.5)
        surnames = pool.surnames_female if female else pool.surnames_male
        given = pool.given_female if female else pool.given_male
        surname = _pick(rng, surnames)
        if pool.double_surnames and rng.random() < 0.6:
            second = _pick(rng, pool.surnames_male)
            if second != surname:
                surname = f"{surname} {second}"
        first = _pick(rng, given)
        if rng.random() < 0.25:
            middle = _pick(rng, given)
            if middle != first:
                return surname, f"{first} {middle}"
        return surname, first


# ---------------------------------------------------------------- small helpers


_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
_BASE32_PAIRS = tuple(a + b for a in _BASE32 for b in _BASE32)  # 10 bits per entry


def _token(rng: random.Random) -> str:
    """20 base32 characters carrying 100 random bits."""
    bits = rng.getrandbits(100)
    return "".join([_BASE32_PAIRS[(bits >> shift) & 1023] for shift in range(0, 100, 10)])


def _pick(rng: random.Random, options: Sequence[_T]) -> _T:
    """``rng.choice`` at a third of the cost (bias below 2**-40 for pools this small)."""
    return options[int(rng.random() * len(options))]


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def _between(rng: random.Random, first: date, last: date) -> date:
    """A day from ``first`` to ``last``, both included (``first`` if ``last`` is earlier)."""
    span = max(last.toordinal() - first.toordinal(), 0) + 1
    return date.fromordinal(first.toordinal() + int(rng.random() * span))


def _birth(rng: random.Random, on: date, youngest: float, oldest: float, mode: float) -> date:
    """A birthday for someone aged ``youngest`` to ``oldest`` (most often ``mode``) on ``on``."""
    age_days = int(rng.triangular(youngest, oldest, mode) * 365.25 + rng.random() * 365)
    return date.fromordinal(on.toordinal() - age_days)


def _sex(rng: random.Random) -> str:
    draw = rng.random()
    return "X" if draw < 0.002 else ("F" if draw < 0.501 else "M")


def _weighted(choices: Sequence[tuple[_T, float]]) -> Callable[[random.Random], _T]:
    values = [value for value, _ in choices]
    cumulative = list(itertools.accumulate(weight for _, weight in choices))
    total = cumulative[-1]

    def pick(rng: random.Random) -> _T:
        return values[bisect.bisect(cumulative, rng.random() * total)]

    return pick


def _pattern(spec: str) -> list[Sequence[str]]:
    """Per-position alphabets for a pattern: D digit, L letter, C consonant, A alphanumeric."""
    alphabets = {
        "D": "0123456789",
        "L": "ABCDEFGHJKLMNPRSTUVWXYZ",
        "C": "BCDFGHJKLMNPRSTVWXYZ",
        "A": "0123456789ABCDEFGHJKLMNPRSTUVWXYZ",
    }
    return [alphabets.get(ch, ch) for ch in spec]


def _fill(rng: random.Random, pattern: list[Sequence[str]]) -> str:
    """A string drawn from ``pattern``, from one 96-bit draw split by mixed radix."""
    draw = rng.getrandbits(96)
    out: list[str] = []
    for alphabet in pattern:
        draw, index = divmod(draw, len(alphabet))
        out.append(alphabet[index])
    return "".join(out)


# ---------------------------------------------------------------- documents

_STATUS = _weighted(
    [("stolen", 0.45), ("lost", 0.39), ("revoked", 0.06), ("invalid", 0.04), ("stolen_blank", 0.06)]
)
_DOC_TYPE = _weighted([("P", 0.96), ("PD", 0.02), ("PS", 0.02)])
_DOCUMENT_NUMBERS = {
    "FR": "DDLLDDDDD",
    "DE": "[CFGHJK]AAAAAAAA",
    "GB": "DDDDDDDDD",
    "US": "LDDDDDDDD",
    "IT": "LLDDDDDDD",
    "ES": "LLLDDDDDD",
    "NL": "LLAAAAAAD",
    "CH": "LDDDDDDDD",
}
_DEFAULT_DOCUMENT_NUMBER = "LLDDDDDDD"


def _number_pattern(bureau: str) -> list[Sequence[str]]:
    spec = _DOCUMENT_NUMBERS.get(bureau, _DEFAULT_DOCUMENT_NUMBER)
    if spec.startswith("["):
        head, _, rest = spec[1:].partition("]")
        return [head, *_pattern(rest)]
    return _pattern(spec)


def _documents(
    rng: random.Random, home: Country, names: _Names, count: int
) -> Iterator[tuple[str | None, ...]]:
    number_pattern = _number_pattern(home.alpha2)
    seen: set[str] = set()
    issued_from = _add_years(AS_OF, -10)
    for _ in range(count):
        ref = _token(rng)
        number = _fill(rng, number_pattern)
        while number in seen:
            number = _fill(rng, number_pattern)
        seen.add(number)
        status = _STATUS(rng)
        doc_type = _DOC_TYPE(rng)
        if status == "stolen_blank":
            reported = _between(rng, issued_from, AS_OF)
            yield (ref, number, home.alpha2, doc_type, None, None, None, None, None, None,
                   None, status, reported.isoformat())  # fmt: skip
            continue
        issued = _between(rng, issued_from, AS_OF)
        born = _birth(rng, issued, 0, 85, 38)
        minor = _add_years(born, 18) > issued
        expiry = _add_years(issued, 5 if minor else 10) - timedelta(days=1)
        reported = _between(rng, issued, min(expiry, AS_OF))
        sex = _sex(rng)
        surname, given = names.draw(rng, home.faker_locale, sex)
        line1, line2 = build_td3(
            document_code=doc_type,
            issuing_state=home.mrz_code,
            surname=surname,
            given_names=given,
            number=number,
            nationality=home.mrz_code,
            date_of_birth=born,
            sex=sex,
            date_of_expiry=expiry,
        )
        yield (ref, number, home.alpha2, doc_type, surname, given, home.alpha2,
               born.isoformat(), sex, expiry.isoformat(), f"{line1}\n{line2}", status,
               reported.isoformat())  # fmt: skip


# ---------------------------------------------------------------- persons

_OFFENCES = (
    "armed robbery", "murder", "attempted murder", "drug trafficking (cocaine)",
    "drug trafficking (heroin)", "trafficking in human beings", "migrant smuggling",
    "money laundering", "investment fraud", "online fraud", "ransomware extortion",
    "firearms trafficking", "kidnapping", "rape", "sexual exploitation of children",
    "terrorist financing", "membership of a criminal organisation", "aggravated burglary",
    "vehicle theft ring", "counterfeiting currency", "trafficking in cultural property",
    "environmental crime (illegal wildlife trade)", "corruption of a public official",
    "escape from lawful custody", "forgery of travel documents",
)  # fmt: skip
_CIRCUMSTANCES = (
    "did not return home from school", "left home on foot and has not been seen since",
    "failed to return from a trip abroad", "left a care home without notice",
    "last seen at a bus station", "phone switched off since the day of disappearance",
    "disappeared after a night out", "believed to have been taken abroad by a parent",
    "possible victim of human trafficking", "last seen at a border crossing",
    "missing after leaving work", "suffers from a medical condition requiring treatment",
    "last contact by text message", "left behind passport and bank cards",
)  # fmt: skip


def _persons(
    rng: random.Random, home: Country, names: _Names, count: int
) -> Iterator[tuple[str, ...]]:
    foreigners = [code for code in INTERPOL_MEMBERS if code != home.alpha2]
    for _ in range(count):
        ref = _token(rng)
        wanted = rng.random() < 0.55
        nationality = home if rng.random() < 0.88 else country(rng.choice(foreigners))
        sex = _sex(rng)
        surname, given = names.draw(rng, nationality.faker_locale, sex)
        born = _birth(rng, AS_OF, 18, 75, 32) if wanted else _birth(rng, AS_OF, 1, 90, 20)
        earliest = _add_years(born, 16) if wanted else born + timedelta(days=1)
        since = _between(rng, min(max(_add_years(AS_OF, -12), earliest), AS_OF), AS_OF)
        if wanted:
            summary = f"Wanted for {rng.choice(_OFFENCES)}; arrest warrant of {since}."
        else:
            circumstance = rng.choice(_CIRCUMSTANCES)
            summary = f"Missing since {since}: {circumstance}."
        yield (ref, surname, given, born.isoformat(), nationality.alpha2, sex,
               "wanted" if wanted else "missing", summary, name_key(surname),
               name_key(given))  # fmt: skip


# ---------------------------------------------------------------- vehicles

# (make, WMIs, models, weight)
_MAKES: tuple[tuple[str, tuple[str, ...], tuple[str, ...], float], ...] = (
    ("Volkswagen", ("WVW", "WVG"), ("Golf", "Polo", "Passat", "Tiguan", "T-Roc"), 9),
    ("Toyota", ("JTD", "JTE", "JTN", "SB1"), ("Corolla", "Yaris", "RAV4", "Land Cruiser"), 10),
    ("BMW", ("WBA", "WBS"), ("3 Series", "5 Series", "X5", "X3"), 5),
    ("Mercedes-Benz", ("WDD", "WDB", "W1K"), ("C-Class", "E-Class", "GLE", "Sprinter"), 5),
    ("Audi", ("WAU",), ("A4", "A6", "Q5", "Q7"), 4),
    ("Renault", ("VF1",), ("Clio", "Megane", "Captur", "Master"), 5),
    ("Peugeot", ("VF3",), ("208", "308", "3008", "Partner"), 5),
    ("Citroën", ("VF7",), ("C3", "C4", "Berlingo"), 3),
    ("Fiat", ("ZFA",), ("Panda", "500", "Tipo", "Ducato"), 3),
    ("Ford", ("WF0", "1FA", "1FT"), ("Focus", "Fiesta", "Transit", "F-150", "Mustang"), 7),
    ("Chevrolet", ("1G1", "1GC"), ("Malibu", "Silverado", "Tahoe"), 3),
    ("Honda", ("JHM", "SHH"), ("Civic", "CR-V", "Accord"), 4),
    ("Nissan", ("JN1", "SJN"), ("Qashqai", "X-Trail", "Navara", "Patrol"), 4),
    ("Hyundai", ("KMH", "TMA"), ("Tucson", "i30", "Santa Fe", "Elantra"), 4),
    ("Kia", ("KNA", "U5Y"), ("Sportage", "Ceed", "Sorento", "Rio"), 3),
    ("Škoda", ("TMB",), ("Octavia", "Fabia", "Superb", "Kodiaq"), 3),
    ("Land Rover", ("SAL",), ("Range Rover", "Discovery", "Defender"), 2),
    ("Lexus", ("JTH",), ("RX", "NX", "LX"), 1),
    ("Porsche", ("WP0", "WP1"), ("911", "Cayenne", "Macan"), 1),
    ("Tesla", ("5YJ", "LRW"), ("Model 3", "Model Y"), 1),
    ("Mitsubishi", ("JMB", "MMB"), ("L200", "Outlander", "Pajero"), 2),
    ("Dacia", ("UU1",), ("Sandero", "Duster", "Logan"), 2),
    ("Volvo", ("YV1",), ("XC60", "XC90", "V60"), 2),
)  # fmt: skip
_MAKE = _weighted([((make, wmis, models), weight) for make, wmis, models, weight in _MAKES])
_COLOUR = _weighted(
    [("white", 25), ("black", 20), ("grey", 18), ("silver", 12), ("blue", 9), ("red", 7),
     ("green", 3), ("brown", 2), ("beige", 2), ("yellow", 1), ("orange", 1)]
)  # fmt: skip

_PLATES: dict[str, str] = {
    "FR": "LL-DDD-LL", "DE": "{B,M,HH,K,F,S,D,DO,E,L,H,N,DU,BO,KA,MA,WI} LL DDDD",
    "GB": "LLDD LLL", "IT": "LLDDDLL", "ES": "DDDD CCC", "NL": "LL-DDD-L", "BE": "D-LLL-DDD",
    "PL": "{WA,WB,KR,PO,GD,WR,LU,SZ} DDDDL", "PT": "LL-DD-LL", "AT": "{W,G,L,S,I,K} DDDDL",
    "CH": "{ZH,BE,GE,VD,TI,AG,SG,LU,BS,VS} DDDDDD", "US": "DLLLDDD", "CA": "LLLL DDD",
    "BR": "LLLDLDD", "AR": "LL DDD LL", "MX": "LLL-DDD-L", "RU": "{A,B,E,K,M,H,O,P,C,T,Y,X}"
    "DDD{A,B,E,K,M,H,O,P,C,T,Y,X}{A,B,E,K,M,H,O,P,C,T,Y,X} {77,99,177,197,50,78}",
    "UA": "{AA,KA,AX,BI,AI,BC} DDDD LL", "TR": "{01,06,07,16,34,35} LL DDD", "NG": "LLL DDD LL",
    "IN": "{MH,DL,KA,TN,UP,GJ} DD LL DDDD", "ZA": "LL DD LL GP", "AU": "DLLL DDD",
    "SE": "LLL DDL", "NO": "LL DDDDD", "DK": "LL DD DDD", "FI": "LLL-DDD", "IE": "DDD-D-DDDD",
    "GR": "LLL-DDDD", "RO": "{B,CJ,TM,IS,CT} DD LLL", "CZ": "DLD DDDD", "HU": "LLL-DDD",
}  # fmt: skip
_DEFAULT_PLATE = "LLL DDD"


def _plate_pattern(bureau: str) -> list[Sequence[str]]:
    spec = _PLATES.get(bureau, _DEFAULT_PLATE)
    pattern: list[Sequence[str]] = []
    rest = spec
    while rest:
        if rest[0] == "{":
            options, _, rest = rest[1:].partition("}")
            pattern.append(options.split(","))
        else:
            pattern.extend(_pattern(rest[0]))
            rest = rest[1:]
    return pattern


def _vehicles(rng: random.Random, home: Country, count: int) -> Iterator[tuple[object, ...]]:
    plate_pattern = _plate_pattern(home.alpha2)
    seen_vins: set[str] = set()
    for _ in range(count):
        ref = _token(rng)
        make, wmis, models = _MAKE(rng)
        year = rng.randint(2004, AS_OF.year)
        vin = make_vin(rng, rng.choice(wmis), year=year)
        while vin in seen_vins:
            vin = make_vin(rng, rng.choice(wmis), year=year)
        seen_vins.add(vin)
        plate = _fill(rng, plate_pattern)
        reported = _between(rng, max(date(year, 1, 1), _add_years(AS_OF, -8)), AS_OF)
        yield (ref, vin, plate, normalize_plate(plate), make, rng.choice(models), year,
               _COLOUR(rng), home.alpha2, "stolen", reported.isoformat())  # fmt: skip


# ---------------------------------------------------------------- writing

_INSERT_DOCUMENT = (
    "INSERT INTO documents (ref, number, issuer, doc_type, surname, given_names, nationality, "
    "date_of_birth, sex, date_of_expiry, mrz, status, reported_on) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_PERSON = (
    "INSERT INTO persons (ref, surname, given_names, date_of_birth, nationality, sex, flag, "
    "summary, surname_key, given_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_VEHICLE = (
    "INSERT INTO vehicles (ref, vin, plate, plate_key, make, model, year, colour, "
    "registration_country, status, reported_on) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True, slots=True)
class GenerationSummary:
    """What :func:`generate` wrote."""

    db_path: Path
    bureau: str
    seed: int
    documents: int
    persons: int
    vehicles: int
    document_statuses: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _insert(conn: sqlite3.Connection, statement: str, rows: Iterator[tuple[object, ...]]) -> None:
    while batch := list(itertools.islice(rows, BATCH)):
        conn.executemany(statement, batch)


def _counting(rows: Iterator[tuple[str | None, ...]], counter: Counter[str]) -> Iterator[
    tuple[str | None, ...]
]:
    for row in rows:
        counter[row[11] or ""] += 1
        yield row


def generate(
    db_path: Path, bureau: str, *, seed: int, documents: int, persons: int, vehicles: int
) -> GenerationSummary:
    """Write a new record database for ``bureau`` (alpha-2) at ``db_path``.

    The same ``(bureau, seed)`` and counts always give the same contents. Raises
    ``FileExistsError`` if ``db_path`` exists and ``UnknownCountry`` for an unknown bureau.
    """
    started = time.perf_counter()
    home = country(bureau)
    if min(documents, persons, vehicles) < 0:
        raise ValueError("record counts cannot be negative")
    db_path = Path(db_path)
    if db_path.exists():
        raise FileExistsError(f"{db_path} already exists")
    seed_text = f"{home.alpha2}:{seed}"
    names = _Names(seed_text)
    statuses: Counter[str] = Counter()
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -262144")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.executescript(TABLES_DDL)
        conn.execute("BEGIN")
        meta = {
            "schema_version": str(SCHEMA_VERSION),
            "bureau": home.alpha2,
            "seed": str(seed),
            "as_of": AS_OF.isoformat(),
            "documents": str(documents),
            "persons": str(persons),
            "vehicles": str(vehicles),
        }
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
        doc_rng = random.Random(f"{seed_text}:documents")
        _insert(
            conn,
            _INSERT_DOCUMENT,
            _counting(_documents(doc_rng, home, names, documents), statuses),
        )
        person_rng = random.Random(f"{seed_text}:persons")
        _insert(conn, _INSERT_PERSON, _persons(person_rng, home, names, persons))
        vehicle_rng = random.Random(f"{seed_text}:vehicles")
        _insert(conn, _INSERT_VEHICLE, _vehicles(vehicle_rng, home, vehicles))
        for statement in INDEXES_DDL.strip().split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode = WAL")
    except BaseException:
        conn.close()
        db_path.unlink(missing_ok=True)
        raise
    conn.close()
    return GenerationSummary(
        db_path=db_path,
        bureau=home.alpha2,
        seed=seed,
        documents=documents,
        persons=persons,
        vehicles=vehicles,
        document_statuses={status: statuses[status] for status in DOCUMENT_STATUSES},
        seconds=time.perf_counter() - started,
    )
