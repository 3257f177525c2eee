"""Checking a scenario's values: numbers, integers, choices, bureau codes, tables.

Every check takes the key it reads (``traffic.rate_per_s``) and raises :class:`_Invalid`
naming it and what was expected, e.g. ``expected a number > 0, got 'fast'``; the loader
adds the file. A bool is never a number and ``1.5`` never an int.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ncbsim.countries import country
from ncbsim.envelope import MAX_TTL_MS
from ncbsim.errors import ConfigError, PkiError, UnknownCountry
from ncbsim.messages import MAX_TEXT_CHARS
from ncbsim.pki import check_bureau_code
from ncbsim.simulations.faults.kinds import Param

MAX_TTL_S = MAX_TTL_MS / 1000


class ScenarioError(ConfigError):
    """A scenario is invalid. The message is ``"{file}: {key}: {problem}"``."""


class _Invalid(ScenarioError):  # noqa: N818 - internal: (key, problem), the file added later
    """A ScenarioError that keeps its key apart, so the loader can add the file and section."""

    def __init__(self, key: str, problem: str = "invalid value") -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


# ---------------------------------------------------------------- value checks


def _got(value: object) -> str:
    return f"got {value!r}"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(
    key: str,
    value: object,
    *,
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
) -> float:
    bound = " and ".join(
        f"{op} {_fmt(b)}" for op, b in ((">", gt), (">=", ge), ("<=", le)) if b is not None
    )
    expected = f"expected a number{' ' + bound if bound else ''}"
    if not _is_number(value):
        raise _Invalid(key, f"{expected}, {_got(value)}")
    number = float(value)  # type: ignore[arg-type]
    if (
        not math.isfinite(number)
        or (gt is not None and not number > gt)
        or (ge is not None and not number >= ge)
        or (le is not None and not number <= le)
    ):
        raise _Invalid(key, f"{expected}, {_got(value)}")
    return number


def _int(key: str, value: object, *, ge: int | None = None, nonzero: bool = False) -> int:
    expected = "expected an integer" + (f" >= {ge}" if ge is not None else "")
    expected += " other than 0" if nonzero else ""
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Invalid(key, f"{expected}, {_got(value)}")
    if (ge is not None and value < ge) or (nonzero and value == 0):
        raise _Invalid(key, f"{expected}, {_got(value)}")
    return value


def _bool(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(key, f"expected true or false, {_got(value)}")
    return value


def _str(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid(key, f"expected a string, {_got(value)}")
    return value


def _choice(key: str, value: object, options: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in options:
        raise _Invalid(key, f"expected one of {', '.join(map(repr, options))}, {_got(value)}")
    return value


def _as_float(obj: object, *names: str) -> None:
    """Store validated numbers of a frozen dataclass as floats (an int 15 becomes 15.0)."""
    for name in names:
        value = getattr(obj, name)
        if _is_number(value):
            object.__setattr__(obj, name, float(value))


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _codes(key: str, value: object, *, within: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """A list of distinct bureau codes (each in ``within`` if given) as a tuple."""
    if not isinstance(value, list | tuple):
        raise _Invalid(key, f"expected a list of bureau codes, {_got(value)}")
    codes: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise _Invalid(key, f"expected bureau codes (strings), {_got(item)}")
        if within is not None and item not in within:
            raise _Invalid(key, f"{item!r} is not one of the scenario's bureaus")
        if item in codes:
            raise _Invalid(key, f"{item!r} appears twice")
        codes.append(item)
    return tuple(codes)


def _bureau_code(key: str, code: str) -> None:
    try:
        check_bureau_code(code)
        country(code)
    except PkiError:
        raise _Invalid(key, f"{code!r} is not a bureau code (two upper-case letters)") from None
    except UnknownCountry:
        raise _Invalid(key, f"{code!r} is not an assigned ISO 3166-1 alpha-2 code") from None


def _table(key: str, value: object, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    """``value`` as a table whose keys are all in ``allowed``."""
    if not isinstance(value, Mapping):
        raise _Invalid(key, f"expected a table, {_got(value)}")
    for name in value:
        if name not in allowed:
            where = f"{key}.{name}" if key else str(name)
            raise _Invalid(where, f"unknown key; expected one of {', '.join(allowed)}")
    return value


def _ttl(key: str, value: object) -> None:
    _number(key, value, gt=0, le=MAX_TTL_S)


def _text_bytes(key: str, value: object) -> None:
    _int(key, value, ge=1)
    assert isinstance(value, int)
    if value > MAX_TEXT_CHARS:
        raise _Invalid(key, f"expected an integer >= 1 and <= {MAX_TEXT_CHARS}, {_got(value)}")


def _param(key: str, value: object, param: Param) -> float:
    if param.kind == "int":
        return _int(
            key, value, ge=None if param.ge is None else int(param.ge), nonzero=param.nonzero
        )
    return _number(key, value, gt=param.gt, ge=param.ge, le=param.le)
