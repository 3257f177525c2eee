"""Countries that run a bureau: ISO codes, ICAO 9303 MRZ codes and a Faker locale for names.

``INTERPOL_MEMBERS`` lists INTERPOL's 196 member countries as ISO 3166-1 alpha-2 codes. It
is built from the 193 United Nations member states, minus the two UN members that are not in
INTERPOL (North Korea, KP, and Tuvalu, TV), plus five members that are not UN member states:
the Vatican City State (VA), Palestine (PS, admitted 2017), and Aruba (AW), Curaçao (CW) and
Sint Maarten (SX), which INTERPOL lists as member countries of their own. Micronesia (FM,
2021) and Palau (PW, 2023, the 196th member) are included. Kosovo is not a member (its 2018
application failed), but :func:`country` still knows it under the user-assigned code XK,
with alpha-3 ``XKX`` and the ICAO code ``RKS`` found on its passports.

``mrz_code`` is the ICAO 9303 code of the state: the ISO alpha-3 code, except Germany, whose
code is the single letter ``D`` (written ``D<<`` in a three-character MRZ field).

``faker_locale`` is the Faker locale whose names suit the country. Where Faker has no person
provider for the country, a locale of the same region or naming tradition stands in (for
example ``fr_DZ`` for Arabic-speaking countries, ``zu_ZA`` for southern Africa); the rest fall
back to ``en_US``. Some locales write names in Cyrillic, Greek, Georgian, Armenian, Hangul or
kanji; the data generator romanises those, so every name can be written in an MRZ.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import pycountry

from ncbsim.errors import UnknownCountry

__all__ = [
    "GENERAL_SECRETARIAT",
    "INTERPOL_MEMBERS",
    "Country",
    "alpha2_of",
    "country",
]

# fmt: off
_UN_MEMBERS = (
    "AF", "AL", "DZ", "AD", "AO", "AG", "AR", "AM", "AU", "AT", "AZ", "BS", "BH", "BD", "BB",
    "BY", "BE", "BZ", "BJ", "BT", "BO", "BA", "BW", "BR", "BN", "BG", "BF", "BI", "CV", "KH",
    "CM", "CA", "CF", "TD", "CL", "CN", "CO", "KM", "CG", "CD", "CR", "CI", "HR", "CU", "CY",
    "CZ", "DK", "DJ", "DM", "DO", "EC", "EG", "SV", "GQ", "ER", "EE", "SZ", "ET", "FJ", "FI",
    "FR", "GA", "GM", "GE", "DE", "GH", "GR", "GD", "GT", "GN", "GW", "GY", "HT", "HN", "HU",
    "IS", "IN", "ID", "IR", "IQ", "IE", "IL", "IT", "JM", "JP", "JO", "KZ", "KE", "KI", "KP",
    "KR", "KW", "KG", "LA", "LV", "LB", "LS", "LR", "LY", "LI", "LT", "LU", "MG", "MW", "MY",
    "MV", "ML", "MT", "MH", "MR", "MU", "MX", "FM", "MD", "MC", "MN", "ME", "MA", "MZ", "MM",
    "NA", "NR", "NP", "NL", "NZ", "NI", "NE", "NG", "MK", "NO", "OM", "PK", "PW", "PA", "PG",
    "PY", "PE", "PH", "PL", "PT", "QA", "RO", "RU", "RW", "KN", "LC", "VC", "WS", "SM", "ST",
    "SA", "SN", "RS", "SC", "SL", "SG", "SK", "SI", "SB", "SO", "ZA", "SS", "ES", "LK", "SD",
    "SR", "SE", "CH", "SY", "TJ", "TZ", "TH", "TL", "TG", "TO", "TT", "TN", "TR", "TM", "TV",
    "UG", "UA", "AE", "GB", "US", "UY", "UZ", "VU", "VE", "VN", "YE", "ZM", "ZW",
)
# fmt: on
_UN_NOT_INTERPOL = frozenset({"KP", "TV"})
_INTERPOL_NOT_UN = ("VA", "PS", "AW", "CW", "SX")

INTERPOL_MEMBERS: tuple[str, ...] = tuple(
    sorted([c for c in _UN_MEMBERS if c not in _UN_NOT_INTERPOL] + list(_INTERPOL_NOT_UN))
)

# Faker locales with a person provider of their own, grouped by the countries they serve.
_LOCALE_GROUPS: dict[str, str] = {
    "fr_FR": "FR MC HT",
    "fr_BE": "BE",
    "de_DE": "DE",
    "de_AT": "AT",
    "de_CH": "CH",
    "de_LI": "LI",
    "de_LU": "LU",
    "it_IT": "IT SM VA",
    "es_ES": "ES",
    "es_CA": "AD",
    "es_MX": "MX GT HN SV NI CR PA CU DO",
    "es_CO": "CO VE EC PE BO",
    "es_AR": "AR UY PY",
    "es_CL": "CL",
    "pt_PT": "PT AO MZ GW CV ST TL",
    "pt_BR": "BR",
    "nl_NL": "NL SR AW CW SX",
    "pl_PL": "PL",
    "cs_CZ": "CZ",
    "sk_SK": "SK",
    "hu_HU": "HU",
    "ro_RO": "RO MD",
    "sl_SI": "SI",
    "hr_HR": "HR BA RS ME",
    "mk_MK": "MK",
    "bg_BG": "BG",
    "el_GR": "GR CY",
    "tr_TR": "TR",
    "en_GB": "GB MT JM TT BB BS AG DM GD KN LC VC GY BZ",
    "en_IE": "IE",
    "en_US": "US",
    "en_CA": "CA",
    "en_AU": "AU FJ PG SB VU WS TO KI NR MH FM PW",
    "en_NZ": "NZ",
    "et_EE": "EE",
    "lv_LV": "LV",
    "lt_LT": "LT",
    "fi_FI": "FI",
    "sv_SE": "SE",
    "no_NO": "NO",
    "da_DK": "DK",
    "is_IS": "IS",
    "ru_RU": "RU BY KZ KG MN",
    "uk_UA": "UA",
    "uz_UZ": "UZ TM TJ",
    "az_AZ": "AZ",
    "ka_GE": "GE",
    "hy_AM": "AM",
    "fr_DZ": "DZ MA TN LY MR EG SD SA AE QA KW BH OM YE JO LB SY IQ PS SO DJ KM",
    "en_PK": "PK AF IR MV BD",
    "en_IN": "IN NP LK BT",
    "en_TH": "TH LA KH MM",
    "vi_VN": "VN",
    "id_ID": "ID MY BN",
    "zh_CN": "CN SG",
    "ja_JP": "JP",
    "ko_KR": "KR",
    "en_NG": "NG LR SL GM",
    "ha_NG": "NE TD ML BF SN GN",
    "yo_NG": "BJ TG",
    "tw_GH": "GH CI",
    "en_KE": "KE UG SS ET ER SC MU",
    "sw": "TZ RW BI CD CG CF CM GA GQ MG",
    "zu_ZA": "ZA LS SZ BW ZW ZM MW NA",
}
_FALLBACK_LOCALE = "en_US"
_LOCALE_OF: dict[str, str] = {
    code: locale for locale, codes in _LOCALE_GROUPS.items() for code in codes.split()
}

GENERAL_SECRETARIAT = "GS"
"""The code of the General Secretariat's node. ISO assigns GS to South Georgia and the South
Sandwich Islands, a territory with no bureau of its own, so ncbsim gives it to INTERPOL's
General Secretariat."""

# ICAO 9303 codes that differ from ISO 3166-1 alpha-3.
_MRZ_EXCEPTIONS = {"DE": "D"}


@dataclass(frozen=True, slots=True)
class Country:
    """One country: ISO codes, English short name, ICAO MRZ code and name locale."""

    alpha2: str
    alpha3: str
    name: str
    mrz_code: str
    faker_locale: str


@cache
def country(alpha2: str) -> Country:
    """The country with ISO 3166-1 alpha-2 code ``alpha2`` (case-insensitive).

    Raises :class:`UnknownCountry` for a code that is not assigned.
    """
    code = alpha2.strip().upper()
    if code == "XK":
        return Country("XK", "XKX", "Kosovo", "RKS", "en_US")
    if code == GENERAL_SECRETARIAT:
        # Not a member: INTERPOL's own node in Lyon, holding the central records. "XPO"
        # is the ICAO 9303 code of documents INTERPOL issues.
        return Country("GS", "XPO", "INTERPOL General Secretariat", "XPO", "fr_FR")
    record = pycountry.countries.get(alpha_2=code) if len(code) == 2 else None
    if record is None:
        raise UnknownCountry(alpha2)
    name = str(getattr(record, "common_name", record.name))
    alpha3 = str(record.alpha_3)
    return Country(
        alpha2=code,
        alpha3=alpha3,
        name=name,
        mrz_code=_MRZ_EXCEPTIONS.get(code, alpha3),
        faker_locale=_LOCALE_OF.get(code, _FALLBACK_LOCALE),
    )


@cache
def _by_code() -> dict[str, str]:
    table: dict[str, str] = {"XKX": "XK", "RKS": "XK", "XPO": GENERAL_SECRETARIAT}
    for record in pycountry.countries:
        table[str(record.alpha_3)] = str(record.alpha_2)
    table["D"] = "DE"
    return table


def alpha2_of(code: str) -> str:
    """The alpha-2 code for an alpha-2, alpha-3 or ICAO MRZ code (``D``, ``D<<``, ``RKS``).

    Raises :class:`UnknownCountry` when ``code`` names no country.
    """
    cleaned = code.strip().upper().rstrip("<")
    if len(cleaned) == 2:
        return country(cleaned).alpha2
    try:
        return _by_code()[cleaned]
    except KeyError:
        raise UnknownCountry(code) from None
