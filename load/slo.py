"""Service-level objectives for a load run: read ``slo.toml``, judge the figures, show a verdict.

The file has an ``[overall]`` table and one ``[requests.NAME]`` table per request
name (``document``, ``person``, ...). Each may set ``p50_ms``, ``p95_ms``,
``p99_ms``, ``max_failure_ratio`` and ``min_rps``; a key left out is not checked.
Latency limits are inclusive upper bounds, ``min_rps`` an inclusive lower bound.

Warm-up calls are not judged. A call a user makes once before its first check
(its directory fetch, which also opens its TLS connection) is reported under the
request type :data:`WARM_UP`; the gate leaves every request of that type out of
the judged figures, ``overall`` included, and lists it separately in the verdict.
A short run has few checks, so a handful of slow first calls would otherwise set
its p99.

This module is plain Python (no locust import): the locust file feeds it figures
taken from locust's statistics, and the tests feed it figures directly.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ncbsim.errors import ConfigError

DEFAULT_SLO = Path(__file__).with_name("slo.toml")
_LIMIT_KEYS = ("p50_ms", "p95_ms", "p99_ms", "max_failure_ratio", "min_rps")
_PERCENTILES = {"p50_ms": 0.50, "p95_ms": 0.95, "p99_ms": 0.99}
WARM_UP = "warm-up"
"""Request type of a user's warm-up calls: reported under it, never judged."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Thresholds for one request name, or for all requests together."""

    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_failure_ratio: float | None = None
    min_rps: float | None = None


@dataclass(frozen=True, slots=True)
class Slo:
    """Every threshold of one SLO file."""

    source: Path
    overall: Limits
    requests: dict[str, Limits] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Measured:
    """What a load run measured for one request name (or ``overall``)."""

    name: str
    requests: int
    failures: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rps: float

    @property
    def failure_ratio(self) -> float:
        """Failed requests over all requests (1.0 when nothing was sent: nothing worked)."""
        return self.failures / self.requests if self.requests else 1.0


@dataclass(frozen=True, slots=True)
class Check:
    """One threshold against one figure."""

    scope: str  # "overall" or a request name
    metric: str  # a key of Limits
    limit: float
    measured: float
    passed: bool

    @property
    def relation(self) -> str:
        """How the figure must compare with the limit."""
        return ">=" if self.metric == "min_rps" else "<="

    @property
    def line(self) -> str:
        """The SLO line with its relation, e.g. ``requests.multi.p99_ms <= 200``."""
        where = self.scope if self.scope == "overall" else f"requests.{self.scope}"
        limit = int(self.limit) if self.limit.is_integer() else self.limit
        return f"{where}.{self.metric} {self.relation} {limit}"


def _limits(path: Path, where: str, table: object) -> Limits:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{where}] must be a table of limits")
    values: dict[str, float] = {}
    for key, value in table.items():
        if key not in _LIMIT_KEYS:
            raise ConfigError(
                f"{path}: [{where}] {key}: unknown key; expected one of {', '.join(_LIMIT_KEYS)}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{path}: [{where}] {key}: expected a number >= 0, got {value!r}")
        if key == "max_failure_ratio" and value > 1:
            raise ConfigError(f"{path}: [{where}] {key}: expected a ratio between 0 and 1")
        values[key] = float(value)
    return Limits(**values)


def load(path: Path = DEFAULT_SLO) -> Slo:
    """Read and validate an SLO file; ConfigError names the file and the key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such SLO file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(data) - {"overall", "requests"}
    if unknown:
        raise ConfigError(
            f"{path}: unknown table {sorted(unknown)[0]!r}; expected [overall] and [requests.NAME]"
        )
    requests = data.get("requests", {})
    if not isinstance(requests, dict):
        raise ConfigError(f"{path}: [requests] must hold one table per request name")
    return Slo(
        source=path,
        overall=_limits(path, "overall", data.get("overall", {})),
        requests={name: _limits(path, f"requests.{name}", t) for name, t in requests.items()},
    )


def _judge(scope: str, limits: Limits, measured: Measured | None) -> list[Check]:
    checks = []
    for metric in _LIMIT_KEYS:
        limit = getattr(limits, metric)
        if limit is None:
            continue
        if measured is None or measured.requests == 0:
            # A request that never ran cannot meet its objective.
            checks.append(Check(scope, metric, limit, math.nan, passed=False))
            continue
        if metric == "max_failure_ratio":
            value = measured.failure_ratio
        elif metric == "min_rps":
            value = measured.rps
        else:
            value = getattr(measured, metric)
        passed = value >= limit if metric == "min_rps" else value <= limit
        checks.append(Check(scope, metric, limit, value, passed))
    return checks


def evaluate(slo: Slo, overall: Measured, per_name: Mapping[str, Measured]) -> list[Check]:
    """Every check of ``slo`` against the figures, overall first, then by request name."""
    checks = _judge("overall", slo.overall, overall)
    for name, limits in slo.requests.items():
        checks += _judge(name, limits, per_name.get(name))
    return checks


def from_locust(entry: Any, name: str) -> Measured:
    """Figures from one locust ``StatsEntry`` (duck-typed, so this module needs no locust)."""
    return Measured(
        name=name,
        requests=int(entry.num_requests),
        failures=int(entry.num_failures),
        p50_ms=float(entry.get_response_time_percentile(_PERCENTILES["p50_ms"])),
        p95_ms=float(entry.get_response_time_percentile(_PERCENTILES["p95_ms"])),
        p99_ms=float(entry.get_response_time_percentile(_PERCENTILES["p99_ms"])),
        rps=float(entry.total_rps),
    )


def verdict(
    slo: Slo,
    checks: list[Check],
    overall: Measured,
    per_name: Mapping[str, Measured],
    *,
    workers: int,
    exceptions: int,
    warm_up: Mapping[str, Measured] | None = None,
    target: Mapping[str, str] | None = None,
    duration_s: float = 0.0,
) -> dict[str, Any]:
    """The machine-readable verdict written next to locust's reports.

    ``overall`` and ``requests`` hold the judged figures; ``warm_up`` the calls of
    type :data:`WARM_UP`, which no check reads. ``target`` says what was loaded.
    """
    passed = all(c.passed for c in checks) and exceptions == 0

    def figures(m: Measured) -> dict[str, Any]:
        return {**asdict(m), "failure_ratio": m.failure_ratio}

    return {
        "passed": passed,
        "slo": str(slo.source),
        "target": dict(target or {}),
        "duration_s": duration_s,
        "workers": workers,
        "user_exceptions": exceptions,
        "overall": figures(overall),
        "requests": {n: figures(m) for n, m in sorted(per_name.items())},
        "warm_up": {n: figures(m) for n, m in sorted((warm_up or {}).items())},
        "checks": [
            {
                **asdict(c),
                "line": c.line,
                "relation": c.relation,
                "measured": None if math.isnan(c.measured) else c.measured,
            }
            for c in checks
        ],
    }


def write_verdict(path: Path, data: dict[str, Any]) -> None:
    """Write the verdict as JSON (the folder is created if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def format_value(metric: str, value: float | None) -> str:
    """A limit or a figure of ``metric`` with its unit; ``no requests`` when there is none."""
    if value is None or math.isnan(value):
        return "no requests"
    if metric == "max_failure_ratio":
        return f"{value:.2%}"
    if metric == "min_rps":
        return f"{value:.1f}/s"
    return f"{value:g} ms"


def render(
    checks: list[Check],
    *,
    exceptions: int,
    source: Path,
    warm_up: Mapping[str, Measured] | None = None,
) -> str:
    """The verdict as a table of text, one row per check, breaches marked FAIL.

    Warm-up calls follow the table on a line of their own, marked as not judged.
    """
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"SLO verdict ({source})", title_justify="left")
    for column in ("scope", "objective", "limit", "measured", "verdict"):
        table.add_column(column, justify="right" if column in {"limit", "measured"} else "left")
    for c in checks:
        table.add_row(
            c.scope,
            c.metric.replace("max_", "").replace("min_", ""),
            f"{c.relation} {format_value(c.metric, c.limit)}",
            format_value(c.metric, c.measured),
            "[green]PASS[/]" if c.passed else "[bold red]FAIL[/]",
        )
    breaches = sum(not c.passed for c in checks)
    if exceptions:
        table.add_row("users", "exceptions", "= 0", str(exceptions), "[bold red]FAIL[/]")
        breaches += 1
    buffer = StringIO()
    console = Console(file=buffer, width=100, force_terminal=False, color_system=None)
    console.print(table)
    for name, m in sorted((warm_up or {}).items()):
        console.print(
            f"warm-up, not judged: {name} {m.requests} calls, {m.failures} failed, "
            f"p50 {m.p50_ms:g} ms, p99 {m.p99_ms:g} ms"
        )
    if breaches:
        console.print(f"SLO BREACHED: {breaches} of {len(checks) + bool(exceptions)} checks failed")
    else:
        console.print(f"SLO met: all {len(checks)} checks passed")
    return buffer.getvalue()
