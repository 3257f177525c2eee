"""Latin-script names for every locale: romanisation and per-locale name pools.

Private helpers of :mod:`ncbsim.node.datagen`, which re-exports :func:`romanize`. Cyrillic, Greek,
Georgian, Armenian and Hangul names are romanised (ICAO 9303 for Russian Cyrillic, the
national systems elsewhere; Chinese and Japanese come from Faker's romanised names), so
every name can be written in an MRZ. :class:`Names` draws a pool of names per locale from
a seeded Faker once; records then combine pool entries with ``random.Random``.
"""

# Romanisation tables hold Cyrillic, Greek and other letters that look like Latin ones.
# ruff: noqa: RUF001

from __future__ import annotations

import random
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from faker import Faker

from ncbsim.node.mrz import transliterate

__all__ = ["Names", "romanize"]

_T = TypeVar("_T")

# ---------------------------------------------------------------- romanisation


def _table(letters: str, latin: str) -> dict[str, str]:
    """Map each of ``letters`` to the space-separated word at its place in ``latin``."""
    return {
        letter: "" if word == "-" else word
        for letter, word in zip(letters, latin.split(), strict=True)
    }


_CYRILLIC = _table(
    "АБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ",
    "A B V G D E E ZH Z I I K L M N O P R S T U F KH TS CH SH SHCH IE Y - E IU IA",
)
# fmt: off
_CYRILLIC_BY_LANGUAGE = {
    "uk": {"Г": "H", "Ґ": "G", "Є": "IE", "І": "I", "Ї": "I", "И": "Y", "'": "", "ʼ": ""},
    "bg": {"Й": "Y", "Х": "H", "Щ": "SHT", "Ъ": "A", "Ь": "Y", "Ю": "YU", "Я": "YA"},
    "mk": {"Ѓ": "GJ", "Ѕ": "DZ", "Ј": "J", "Љ": "LJ", "Њ": "NJ", "Ќ": "KJ", "Џ": "DJ", "Х": "H",
           "Ц": "C"},
}
# fmt: on
_GREEK_DIGRAPHS = (("ΟΥ", "OU"), ("ΑΥ", "AV"), ("ΕΥ", "EV"), ("ΓΓ", "NG"), ("ΜΠ", "MP"))
_GREEK = _table("ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩ", "A V G D E Z I TH I K L M N X O P R S T Y F CH PS O")
_GEORGIAN = _table(
    "აბგდევზთიკლმნოპჟრსტუფქღყშჩცძწჭხჯჰ",
    "a b g d e v z t i k l m n o p zh r s t u p k gh q sh ch ts dz ts ch kh j h",
)
_ARMENIAN = _table(
    "աբգդեզէըթժիլխծկհձղճմյնշոչպջռսվտրցւփքօֆ",
    "a b g d e z e y t zh i l kh ts k h dz gh ch m y n sh o ch p j r s v t r ts v p k o f",
)
# Revised Romanization of Hangul jamo: initial consonants, vowels, final consonants.
_HANGUL_INITIALS = tuple(
    _table(
        "ᄀᄁᄂᄃᄄᄅᄆᄇᄈᄉᄊᄋᄌᄍᄎᄏᄐᄑᄒ", "g kk n d tt r m b pp s ss - j jj ch k t p h"
    ).values()
)
_HANGUL_MEDIALS = tuple(
    _table(
        "ᅡᅢᅣᅤᅥᅦᅧᅨᅩᅪᅫᅬᅭᅮᅯᅰᅱᅲᅳᅴᅵ",
        "a ae ya yae eo e yeo ye o wa wae oe yo u wo we wi yu eu ui i",
    ).values()
)
_HANGUL_FINALS = (
    "",
    *_table(
        "ᆨᆩᆪᆫᆬᆭᆮᆯᆰᆱᆲᆳᆴᆵᆶᆷᆸᆹᆺᆻᆼᆽᆾᆿᇀᇁᇂ",
        "k k k n n n t l k m l l l p l m p p t t ng t t k t p t",
    ).values(),
)
# fmt: off
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
}
# fmt: on


def _hangul(text: str) -> str:
    out: list[str] = []
    for ch in text:
        code = ord(ch) - 0xAC00
        if 0 <= code < 11172:
            initial, rest = divmod(code, 588)
            medial, final = divmod(rest, 28)
            out.append(_HANGUL_INITIALS[initial] + _HANGUL_MEDIALS[medial] + _HANGUL_FINALS[final])
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
    language = locale.partition("_")[0]
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


def _pick(rng: random.Random, options: Sequence[_T]) -> _T:
    """``rng.choice`` at a third of the cost (bias below 2**-40 for pools this small)."""
    return options[int(rng.random() * len(options))]


@dataclass(frozen=True, slots=True)
class _Pool:
    surnames_male: tuple[str, ...]
    surnames_female: tuple[str, ...]
    given_male: tuple[str, ...]
    given_female: tuple[str, ...]
    double_surnames: bool


def _draw(make: Callable[[], str], locale: str, draws: int) -> tuple[str, ...]:
    names = (romanize(make(), locale) for _ in range(draws))
    return tuple(dict.fromkeys(n for n in names if _writable(n)))


def _build_pool(locale: str, seed_text: str, draws: int) -> _Pool:
    fake = Faker(locale)
    fake.seed_instance(random.Random(seed_text).getrandbits(64))
    if locale in ("ja_JP", "zh_CN", "zh_TW"):
        surnames = _draw(fake.last_romanized_name, locale, draws)
        female_first = getattr(fake, "first_romanized_name_female", fake.first_romanized_name)
        male_first = getattr(fake, "first_romanized_name_male", fake.first_romanized_name)
        return _Pool(
            surnames,
            surnames,
            _draw(male_first, locale, draws),
            _draw(female_first, locale, draws),
            False,
        )
    return _Pool(
        surnames_male=_draw(fake.last_name_male, locale, draws),
        surnames_female=_draw(fake.last_name_female, locale, draws),
        given_male=_draw(fake.first_name_male, locale, draws),
        given_female=_draw(fake.first_name_female, locale, draws),
        double_surnames=locale.startswith(("es_", "pt_")),
    )


class Names:
    """Name pools per locale, built on first use, each seeded from ``(bureau, seed, locale)``.

    Each pool keeps the distinct, MRZ-writable names among ``draws`` draws from Faker.
    """

    def __init__(self, seed_text: str, draws: int) -> None:
        self._seed_text = seed_text
        self._draws = draws
        self._pools: dict[str, _Pool] = {}

    def pool(self, locale: str) -> _Pool:
        if locale not in self._pools:
            self._pools[locale] = _build_pool(
                locale, f"{self._seed_text}:names:{locale}", self._draws
            )
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
