"""Country codes: the INTERPOL membership, alpha-2/alpha-3/MRZ codes, Faker locales, errors."""

from __future__ import annotations

import pytest
from faker.config import AVAILABLE_LOCALES

from ncbsim.countries import INTERPOL_MEMBERS, alpha2_of, country
from ncbsim.errors import NcbsimError, UnknownCountry


def test_interpol_members_are_the_196() -> None:
    """196 distinct members: UN states less KP and TV, plus VA, PS, AW, CW and SX."""
    assert len(INTERPOL_MEMBERS) == len(set(INTERPOL_MEMBERS)) == 196
    assert {"VA", "PS", "AW", "CW", "SX", "FM", "PW"} <= set(INTERPOL_MEMBERS)
    assert not {"KP", "TV", "XK", "TW"} & set(INTERPOL_MEMBERS)


def test_country_codes_and_locales() -> None:
    """Germany's MRZ code is D, Kosovo is XKX/RKS, every member has a Faker locale."""
    germany = country("de")
    assert (germany.alpha3, germany.mrz_code, germany.faker_locale) == ("DEU", "D", "de_DE")
    kosovo = country("XK")
    assert (kosovo.alpha3, kosovo.mrz_code) == ("XKX", "RKS")
    assert country("FR").mrz_code == country("FR").alpha3 == "FRA"
    assert all(country(code).faker_locale in AVAILABLE_LOCALES for code in INTERPOL_MEMBERS)
    assert alpha2_of("D<<") == alpha2_of("deu") == "DE"
    assert alpha2_of("RKS") == "XK"


def test_unknown_country_is_a_key_error() -> None:
    """An unassigned code raises UnknownCountry, an NcbsimError callers can catch as KeyError."""
    with pytest.raises(UnknownCountry):
        country("ZZ")
    with pytest.raises(NcbsimError):
        country("ZZ")
    with pytest.raises(KeyError):
        alpha2_of("ATLANTIS")


def test_gs_is_the_general_secretariat_not_a_member() -> None:
    """GS names INTERPOL's General Secretariat, whose documents carry the ICAO code XPO."""
    gs = country("GS")
    assert (gs.name, gs.mrz_code) == ("INTERPOL General Secretariat", "XPO")
    assert alpha2_of("XPO") == "GS"
    assert "GS" not in INTERPOL_MEMBERS
