"""Durations typed on the command line (``ncbsim.durations``)."""

from __future__ import annotations

import pytest

from ncbsim.durations import parse_duration
from ncbsim.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45", 45), ("20s", 20), ("2m", 120), ("1h30m", 5400), (" 1h 2m 3s ", 3723), ("0s", 0)],
)
def test_durations_in_hours_minutes_and_seconds(text: str, seconds: int) -> None:
    """Hours, minutes and seconds add up; a bare number is seconds."""
    assert parse_duration(text, minimum_s=0) == seconds


@pytest.mark.parametrize("text", ["", "soon", "1d", "2m1h", "-5s", "1.5h"])
def test_what_is_no_duration_is_refused_naming_the_option(text: str) -> None:
    """Text that is no duration is a ConfigError naming the option and the forms expected."""
    with pytest.raises(ConfigError, match=r"^--ttl: expected a duration such as 20s"):
        parse_duration(text, option="--ttl")


def test_a_duration_below_the_minimum_is_refused() -> None:
    """Below ``minimum_s`` is refused; the default minimum is one second."""
    with pytest.raises(ConfigError, match=r"^--duration must be at least 1s$"):
        parse_duration("0")
    with pytest.raises(ConfigError, match=r"^--grace must be at least 60s$"):
        parse_duration("59s", option="--grace", minimum_s=60)
    assert parse_duration("1m", option="--grace", minimum_s=60) == 60
