"""Durations as users type them on the command line: ``20s``, ``2m``, ``1h30m`` or ``45``."""

from __future__ import annotations

import re

from ncbsim.errors import ConfigError

__all__ = ["parse_duration"]

_DURATION = re.compile(r"^\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s?)?\s*$")


def parse_duration(text: str, *, option: str = "--duration", minimum_s: int = 1) -> int:
    """Seconds in ``text`` such as ``20s``, ``2m``, ``1h30m`` or ``45`` (at least ``minimum_s``)."""
    match = _DURATION.match(text)
    if not match or not any(match.groups()):
        raise ConfigError(f"{option}: expected a duration such as 20s, 2m or 1h30m, not {text!r}")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total < minimum_s:
        raise ConfigError(f"{option} must be at least {minimum_s}s")
    return total
