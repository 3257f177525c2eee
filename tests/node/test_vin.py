"""VINs: the North American check digit on published examples, mutations and generated VINs."""

from __future__ import annotations

import random

import pytest

from ncbsim.node.vin import (
    ALPHABET,
    check_digit,
    is_valid,
    make_vin,
    model_year_code,
    requires_check_digit,
)

PUBLISHED = "1M8GDM9AXKP042788"  # check digit X (remainder 10)
TRANSLITERATED = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}


def test_published_example_has_check_digit_x() -> None:
    """1M8GDM9AXKP042788 computes to X (remainder 10) and is valid."""
    assert check_digit(PUBLISHED) == "X"
    assert is_valid(PUBLISHED)
    assert is_valid(PUBLISHED.lower())


def test_all_ones_is_valid() -> None:
    """11111111111111111 sums to 89, and 89 mod 11 = 1 is the digit in position 9."""
    assert check_digit("11111111111111111") == "1"
    assert is_valid("11111111111111111")


def test_every_mutation_with_a_new_value_is_rejected() -> None:
    """Changing any one character to one of another transliterated value fails the check."""
    for position, old in enumerate(PUBLISHED):
        for new in ALPHABET:
            if new == old:
                continue
            mutated = PUBLISHED[:position] + new + PUBLISHED[position + 1 :]
            if position == 8 or TRANSLITERATED[new] != TRANSLITERATED[old]:
                assert not is_valid(mutated), mutated
            else:  # same value (A/J/1, B/K/S/2, ...): the check digit cannot tell them apart
                assert is_valid(mutated), mutated


@pytest.mark.parametrize(
    "vin",
    ["1M8GDM9AXKP04278", "1M8GDM9AXKP0427888", "1M8GDM9AXKP04278O", "IM8GDM9AXKP042788", ""],
)
def test_malformed_vins_are_invalid(vin: str) -> None:
    """Wrong length or the letters I, O and Q make a VIN invalid."""
    assert not is_valid(vin)
    with pytest.raises(ValueError, match="VIN"):
        check_digit(vin)


def test_model_year_codes_repeat_every_30_years() -> None:
    """1989 and 2019 share K, 2001 is 1, 2010 is A; years before 1980 have no code."""
    assert model_year_code(1989) == model_year_code(2019) == "K"
    assert model_year_code(2001) == "1"
    assert model_year_code(2010) == "A"
    with pytest.raises(ValueError, match="1980"):
        model_year_code(1979)


def test_generated_vins_are_valid_and_carry_wmi_and_year() -> None:
    """make_vin writes the WMI, the model-year code and a valid check digit, never I/O/Q."""
    rng = random.Random(7)
    vins = [make_vin(rng, "WVW", year=2015) for _ in range(2000)]
    assert all(is_valid(v) for v in vins)
    assert all(v.startswith("WVW") and v[9] == "F" for v in vins)
    assert not any(set(v) & set("IOQ") for v in vins)
    assert len(set(vins)) == len(vins)
    assert make_vin(random.Random(1), "5YJ") == make_vin(random.Random(1), "5YJ")


def test_make_vin_rejects_bad_wmi() -> None:
    """A WMI that is not three VIN characters is refused."""
    with pytest.raises(ValueError, match="manufacturer"):
        make_vin(random.Random(0), "WO")
    with pytest.raises(ValueError, match="manufacturer"):
        make_vin(random.Random(0), "WOW")


def test_only_north_american_vins_require_a_check_digit() -> None:
    """Position 9 is a check digit where 49 CFR 565 applies (WMI 1 to 5), not elsewhere."""
    assert requires_check_digit(PUBLISHED)
    assert requires_check_digit("3VWFE21C04M000001")  # Mexico
    assert not requires_check_digit("WVWZZZ1JZXW000001")  # Germany
    assert not requires_check_digit("JHMCM56557C404453")  # Japan
    assert not requires_check_digit("")
