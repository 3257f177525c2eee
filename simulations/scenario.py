"""Scenario files: which bureaus, how many records, what traffic. TOML, validated on load."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from ncbsim.errors import ConfigError
from ncbsim.pki import check_bureau_code

SCENARIOS = Path(__file__).resolve().parent / "scenarios"


@dataclass(frozen=True, kw_only=True, slots=True)
class Records:
    """How many records each bureau holds."""

    documents: int = 2000
    persons: int = 500
    vehicles: int = 500

    def __post_init__(self) -> None:
        if min(self.documents, self.persons, self.vehicles) < 1:
            raise ConfigError("each bureau needs at least one record of each kind")


@dataclass(frozen=True, kw_only=True, slots=True)
class Traffic:
    """The query mix the simulator sends."""

    queries: int = 60
    hit_ratio: float = 0.4
    fetch_ratio: float = 0.5
    multi_queries: int = 2
    concurrency: int = 4
    deadline_ms: int = 3000

    def __post_init__(self) -> None:
        if self.queries < 1 or self.multi_queries < 0 or self.concurrency < 1:
            raise ConfigError("traffic needs at least one query and one worker")
        if not (0 <= self.hit_ratio <= 1 and 0 <= self.fetch_ratio <= 1):
            raise ConfigError("ratios must lie between 0 and 1")
        if self.deadline_ms < 100:
            raise ConfigError("deadline_ms must be at least 100")


@dataclass(frozen=True, kw_only=True, slots=True)
class Scenario:
    """A network and the traffic to run on it."""

    name: str
    description: str = ""
    bureaus: tuple[str, ...]
    seed: int = 1
    records: Records = Records()
    traffic: Traffic = Traffic()

    def __post_init__(self) -> None:
        if len(self.bureaus) < 2:
            raise ConfigError("a scenario needs at least two bureaus")
        if len(set(self.bureaus)) != len(self.bureaus):
            raise ConfigError("duplicate bureau codes in scenario")
        for code in self.bureaus:
            check_bureau_code(code)


def resolve(name_or_path: str) -> Path:
    """A scenario file: a path, or the name of one under simulations/scenarios/."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        return path
    candidate = SCENARIOS / f"{name_or_path}.toml"
    if candidate.exists():
        return candidate
    known = ", ".join(sorted(p.stem for p in SCENARIOS.glob("*.toml")))
    raise ConfigError(f"no scenario {name_or_path!r}; known: {known}")


def load(name_or_path: str) -> Scenario:
    """Load and validate a scenario."""
    path = resolve(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
        return Scenario(
            name=data.get("name", path.stem),
            description=data.get("description", ""),
            bureaus=tuple(data["bureaus"]),
            seed=int(data.get("seed", 1)),
            records=Records(**data.get("records", {})),
            traffic=Traffic(**data.get("traffic", {})),
        )
    except (KeyError, TypeError, ValueError, OverflowError, tomllib.TOMLDecodeError) as exc:
        # ValueError/OverflowError: a seed such as "x", nan or inf. ConfigError is itself
        # a ValueError, so a field's own validation message passes through unchanged.
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"invalid scenario {path}: {exc}") from exc
