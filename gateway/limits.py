"""Per-bureau rate limits at the gateway: a token bucket plus a daily quota.

Modelled on the Prüm capacity rules, where each member state fixes how many queries it
accepts a day, and on a token bucket for bursts. Every envelope the gateway relays
counts one, so a MultiQuery to five bureaus counts five; a call that does not fit is
refused whole, and nothing of it is counted.

- **Bucket:** ``burst`` tokens, refilled at ``rate_per_s`` a second. An envelope takes
  one. Refusal says when enough tokens will be back.
- **Daily quota:** at most ``daily_quota`` envelopes a UTC day; the count starts again
  at 00:00 UTC. Refusal says when the day ends.

Pure and synchronous (the gateway's event loop is the only caller): the clocks are
injected, so tests drive it with a fake one. The bucket runs on a monotonic clock, so a
wall-clock step cannot refill it; the quota's day comes from the wall clock, and a step
backwards never starts a day over.

Per-bureau overrides come from a TOML file (:func:`load_overrides`)::

    [bureaus.FR]          # any key left out keeps the gateway-wide value
    rate = 50             # envelopes per second, sustained
    burst = 100           # envelopes at once
    daily_quota = 50000   # envelopes per UTC day

A bureau's user (``FR/x``, docs/users.md) is held to the rate and daily limit its bureau
signed in its rights (:func:`user_limit`), keyed by the user's principal: its traffic
does not eat its bureau's own budget.
"""

from __future__ import annotations

import math
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from ncbsim.errors import PUSHBACK_KEY, RETRY_AFTER_KEY, ConfigError, LimitExceeded, PkiError
from ncbsim.pki import check_bureau_code
from ncbsim.users import Rights

__all__ = [
    "PUSHBACK_KEY",
    "RETRY_AFTER_KEY",
    "BureauLimit",
    "LimitExceeded",
    "RateLimiter",
    "check_size",
    "load_overrides",
    "user_limit",
    "wrapped_size",
]

DAY_MS = 86_400_000
_EPSILON = 1e-6
NO_DAILY_LIMIT = 2**62
"""The daily quota of a user whose rights set none (``daily_limit`` 0)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class BureauLimit:
    """How much one bureau may send through the gateway."""

    rate_per_s: float
    burst: int
    daily_quota: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_per_s) and self.rate_per_s > 0):
            raise ConfigError("rate must be a positive number of envelopes per second")
        if self.burst < 1:
            raise ConfigError("burst must be at least 1")
        if self.daily_quota < 1:
            raise ConfigError("daily quota must be at least 1")


def user_limit(rights: Rights) -> BureauLimit:
    """A user's limit from the rights its bureau signed: ``rate_per_s`` sustained, a
    burst of two seconds' worth, ``daily_limit`` envelopes a UTC day (0: no daily limit)."""
    return BureauLimit(
        rate_per_s=float(rights.rate_per_s),
        burst=max(2 * rights.rate_per_s, 1),
        daily_quota=rights.daily_limit or NO_DAILY_LIMIT,
    )


def check_size(size: int, maximum: int) -> None:
    """Raise LimitExceeded (never retry) if a request of ``size`` bytes is over ``maximum``."""
    if size > maximum:
        raise LimitExceeded(
            f"request of {size} bytes exceeds the gateway's limit of {maximum} bytes", None
        )


_FIELD_1_BYTES = 0x0A  # the tag of field 1, length-delimited (wire type 2)
_MAX_VARINT_BYTES = 10


def wrapped_size(raw: bytes) -> int | None:
    """The size of the one message ``raw`` wraps, read from its framing, without parsing.

    A request that holds one envelope in field 1 (``QueryRequest``) is serialized as the
    tag ``0x0A``, the envelope's length as a varint, then the envelope. If ``raw`` is
    exactly that, this is the length; for anything else (other fields, a second envelope,
    a length that does not reach the end) it is None.
    """
    if not raw or raw[0] != _FIELD_1_BYTES:
        return None
    length = 0
    for i in range(1, min(len(raw), 1 + _MAX_VARINT_BYTES)):
        length |= (raw[i] & 0x7F) << (7 * (i - 1))
        if not raw[i] & 0x80:  # the varint's last byte
            return length if i + 1 + length == len(raw) else None
    return None


@dataclass(slots=True)
class _State:
    tokens: float
    refilled_at: float  # monotonic seconds
    day: int  # UTC days since the epoch
    used: int  # envelopes counted on ``day``


def _iso_day(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RateLimiter:
    """Token bucket and daily quota for each sending bureau.

    ``monotonic`` returns seconds (bucket refills); ``wall_ms`` returns Unix time in
    milliseconds (the quota's UTC day).
    """

    def __init__(
        self,
        default: BureauLimit,
        overrides: Mapping[str, BureauLimit] | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._default = default
        self._overrides = dict(overrides or {})
        self._monotonic = monotonic
        self._wall_ms = wall_ms
        self._states: dict[str, _State] = {}

    def limit(self, bureau: str) -> BureauLimit:
        """The limits that apply to ``bureau``."""
        return self._overrides.get(bureau, self._default)

    def take(self, bureau: str, count: int = 1, *, limit: BureauLimit | None = None) -> None:
        """Count ``count`` envelopes from ``bureau``, or raise LimitExceeded counting none.
        ``limit`` replaces the configured one (a user's, from its rights)."""
        if limit is None:
            limit = self._overrides.get(bureau, self._default)
        now = self._monotonic()
        wall_ms = self._wall_ms()
        day = wall_ms // DAY_MS
        state = self._states.get(bureau)
        if state is None:
            state = self._states[bureau] = _State(float(limit.burst), now, day, 0)
        else:
            elapsed = max(now - state.refilled_at, 0.0)
            state.tokens = min(float(limit.burst), state.tokens + elapsed * limit.rate_per_s)
            state.refilled_at = now
            if day > state.day:  # a new UTC day; a clock stepped back keeps the old count
                state.day, state.used = day, 0
        if count > limit.burst or count > limit.daily_quota:
            cap = min(limit.burst, limit.daily_quota)
            raise LimitExceeded(
                f"{count} envelopes in one call exceed the limit of {cap} for {bureau}", None
            )
        if state.used + count > limit.daily_quota:
            reset_ms = (state.day + 1) * DAY_MS
            wait_ms = max(reset_ms - wall_ms, 1)
            left = limit.daily_quota - state.used
            used = "used" if left == 0 else f"has {left} left, {count} asked"
            raise LimitExceeded(
                f"daily quota of {limit.daily_quota} queries for {bureau} {used}; "
                f"resets {_iso_day(state.day + 1)} (retry after {math.ceil(wait_ms / 1000)} s)",
                wait_ms,
            )
        missing = count - state.tokens
        if missing > _EPSILON:  # tokens are floats: a refill can fall short by a rounding
            wait_ms = max(math.ceil(missing / limit.rate_per_s * 1000 - _EPSILON), 1)
            raise LimitExceeded(f"rate limit for {bureau}: retry after {wait_ms} ms", wait_ms)
        state.tokens = max(state.tokens - count, 0.0)
        state.used += count


# --------------------------------------------------------------------------- TOML overrides

_KEYS = {"rate": "rate_per_s", "burst": "burst", "daily_quota": "daily_quota"}


def _number(path: Path, key: str, value: object, *, integer: bool) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{path}: {key}: expected a number, got {value!r}")
    if integer and not isinstance(value, int):
        raise ConfigError(f"{path}: {key}: expected a whole number, got {value!r}")
    return value


def load_overrides(path: Path, default: BureauLimit) -> dict[str, BureauLimit]:
    """Per-bureau limits from the TOML file at ``path``; keys left out keep ``default``.

    Any problem is a ConfigError that names the file and the key.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the limits file: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"bureaus"})
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown key (expected [bureaus.XX] tables)")
    bureaus = data.get("bureaus", {})
    if not isinstance(bureaus, dict):
        raise ConfigError(f"{path}: bureaus: expected tables such as [bureaus.FR]")
    overrides: dict[str, BureauLimit] = {}
    for code, table in bureaus.items():
        where = f"bureaus.{code}"
        try:
            check_bureau_code(code)
        except PkiError:
            raise ConfigError(f"{path}: {where}: not a bureau code (two capital letters)") from None
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {where}: expected a table of rate, burst, daily_quota")
        fields: dict[str, float | int] = {}
        for key, value in table.items():
            if key not in _KEYS:
                raise ConfigError(
                    f"{path}: {where}.{key}: unknown key (expected rate, burst or daily_quota)"
                )
            fields[_KEYS[key]] = _number(path, f"{where}.{key}", value, integer=key != "rate")
        try:
            overrides[code] = replace(default, **fields)  # type: ignore[arg-type]
        except ConfigError as exc:
            raise ConfigError(f"{path}: {where}: {exc}") from None
    return overrides
