"""Property-based fuzzing of what an operator feeds in: audit search filters and scenario
files.

Each test states the one contract a caller relies on: the parser either returns a
well-formed result or raises its documented error, never anything else.
"""

from __future__ import annotations

import contextlib
import copy
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
from fuzz_values import BUREAUS, INT64, NOW
from hypothesis import event, given, settings
from hypothesis import strategies as st

from ncbsim import auditlog, auditread
from ncbsim.errors import ConfigError, NcbsimError
from ncbsim.simulations import checks, scenario

# ----------------------------------------------------------------------------- audit search


@pytest.fixture(scope="module")
def audit_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small node-style audit log with a few rows."""
    path = tmp_path_factory.mktemp("fuzz-audit") / "audit.sqlite"
    log = auditlog.ChainedLog(
        path,
        (
            ("at_ms", "INTEGER"),
            ("message_id", "TEXT"),
            ("sender", "TEXT"),
            ("recipient", "TEXT"),
            ("kind", "TEXT"),
        ),
        batch_wait_s=0.001,
    )
    for i in range(8):
        log.record((NOW + i, f"{i:032x}", BUREAUS[i % 3], "DE", "query_request"))
    log.close()
    return path


SEARCH_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["FR", "DE", "query", "query_request", "query_", "%", "_", "' OR 1=1 --", "\x00"]
    ),
)
SEARCH_QUERIES = st.builds(
    auditread.Query,
    sender=SEARCH_TEXT,
    recipient=SEARCH_TEXT,
    kind=SEARCH_TEXT,
    message_id=SEARCH_TEXT,
    since_ms=st.none() | INT64,
    until_ms=st.none() | INT64,
    limit=st.none() | st.integers(1, 2**63 - 1),
)


@given(SEARCH_QUERIES)
def test_audit_search_with_random_filters(audit_log: Path, query: auditread.Query) -> None:
    """search() with any filter values returns matching rows only, or a clear NcbsimError."""
    columns, rows = auditread.search(audit_log, query)
    assert columns[0] == "seq"
    assert columns[-1] == "hash"
    assert len(rows) <= 8
    named = [dict(zip(columns, row, strict=True)) for row in rows]
    for row in named:
        assert not query.sender or row["sender"] == query.sender
        assert not query.recipient or row["recipient"] == query.recipient
        assert query.since_ms is None or row["at_ms"] >= query.since_ms
        assert query.until_ms is None or row["at_ms"] < query.until_ms


@pytest.mark.parametrize(
    "query",
    [
        auditread.Query(limit=2**64),
        auditread.Query(since_ms=-(2**70)),
        auditread.Query(sender="\udcff"),
    ],
    ids=["limit-overflow", "since-overflow", "lone-surrogate"],
)
def test_audit_search_out_of_range_filters_are_a_clear_error(
    audit_log: Path, query: auditread.Query
) -> None:
    """Filter values SQLite cannot bind are refused with NcbsimError (the CLI's clear error)."""
    with contextlib.suppress(NcbsimError):
        auditread.search(audit_log, query)


# ----------------------------------------------------------------------------- scenarios


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return (
            '"'
            + "".join(c if c.isalnum() or c in " -_." else f"\\u{ord(c):04x}" for c in value)
            + '"'
        )
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + "}"
    raise TypeError(value)


def _toml(data: dict[str, Any]) -> str:
    return "".join(f'"{key}" = {_toml_value(value)}\n' for key, value in data.items())


SCALARS = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(alphabet=st.characters(exclude_categories=("Cs",), max_codepoint=0xFFFF), max_size=6),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["documents", "rate_per_s", "at_s", "fault", "expect", "x"]),
            inner,
            max_size=3,
        )
    ),
    max_leaves=8,
)
RANDOM_SCENARIOS = st.dictionaries(
    st.sampled_from(
        [
            "name",
            "description",
            "bureaus",
            "seed",
            "records",
            "traffic",
            "engine",
            "events",
            "checks",
            "x",
        ]
    ),
    VALUES,
    max_size=7,
)
"""Tables with the scenario's keys (and one unknown) holding values of any TOML type."""

VALID_SCENARIO: dict[str, Any] = {
    "name": "fuzz",
    "bureaus": ["FR", "DE", "IT"],
    "seed": 3,
    "records": {"documents": 1, "persons": 2, "vehicles": 3, "planted": 1},
    "traffic": {
        "duration_s": 2.0,
        "rate_per_s": 1.5,
        "hit_ratio": 0.5,
        "fetch_ratio": 0.0,
        "deadline_ms": 100,
        "max_in_flight": 1,
        "requesters": ["FR"],
        "mix": {"document": 1, "person": 0, "vehicle": 0.5, "multi": 0},
    },
    "engine": {"hosts": 1, "proxy": "auto", "mode": "loopback", "startup_timeout_s": 5},
    "events": [
        {"at_s": 0.5, "id": "cut", "fault": "latency", "bureaus": ["DE"], "latency_ms": 10},
        {"at_s": 1.0, "heal": "cut"},
        {"at_s": 0.2, "query": {"from": "FR", "to": ["DE"], "kind": "person"}, "expect": "hit"},
    ],
    "checks": [{"name": "ok", "expect": "queries.failed == 0 and faults.cut.after.failed == 0"}],
}
_EXPRESSIONS = [
    "queries.failed == 0",
    "0 < latency_ms.p99 < 250",
    "faults.cut.recovered_s < 5",
    "faults.nope.during.sent == 0",
    "bureaus.ES.queries.sent > 0",
    "len(queries) > 0",
    "queries.failed ==",
    "explicit.query_2.passed",
    "",
]
_SCENARIO_FIELDS: dict[tuple[str | int, ...], st.SearchStrategy[Any]] = {
    ("name",): st.text(max_size=5),
    ("description",): st.text(max_size=5),
    ("bureaus",): st.lists(
        st.sampled_from(["FR", "DE", "IT", "NL", "fr", "F", "FRA", "XX", ""]), max_size=4
    )
    | st.sampled_from(["all-members", "all"]),
    ("seed",): st.integers(-(2**63), 2**63 - 1),
    ("records",): st.dictionaries(
        st.sampled_from(["documents", "persons", "x"]), st.integers(-2, 3)
    ),
    ("traffic",): st.dictionaries(st.sampled_from(["rate_per_s", "x"]), st.integers(-2, 3)),
    **{("records", k): st.integers(-2, 3) for k in ("documents", "persons", "vehicles", "planted")},
    ("traffic", "duration_s"): st.floats(-1, 3) | st.integers(-1, 3),
    ("traffic", "rate_per_s"): st.floats(-1, 3) | st.just(math.inf),
    ("traffic", "hit_ratio"): st.floats(-1, 2) | st.just(math.nan),
    ("traffic", "fetch_ratio"): st.floats(-1, 2),
    ("traffic", "deadline_ms"): st.integers(0, 200),
    ("traffic", "max_in_flight"): st.integers(-2, 3),
    ("traffic", "requesters"): st.lists(st.sampled_from(["FR", "DE", "NL", ""]), max_size=3),
    ("traffic", "mix", "multi"): st.floats(-1, 2),
    ("traffic", "mix", "document"): st.integers(-1, 2),
    ("traffic", "x"): SCALARS,
    ("engine", "hosts"): st.integers(-1, 4),
    ("engine", "proxy"): st.sampled_from(["auto", "all", "none", "x"]),
    ("engine", "mode"): st.sampled_from(["loopback", "netns", "x"]),
    ("events", 0, "at_s"): st.floats(-1, 3) | st.integers(-1, 3),
    ("events", 0, "fault"): st.sampled_from(["latency", "kill", "partition", "skew", "reset", "x"]),
    ("events", 0, "bureaus"): st.lists(st.sampled_from(["FR", "DE", "NL", "ALL"]), max_size=3),
    ("events", 0, "latency_ms"): st.integers(-1, 5),
    ("events", 0, "duration_s"): st.floats(-1, 3),
    ("events", 0, "direction"): st.sampled_from(["both", "to-bureau", "up"]),
    ("events", 0, "id"): st.sampled_from(["cut", "query_2", "Cut", "if", ""]),
    ("events", 1, "heal"): st.sampled_from(["cut", "query_2", "x", ""]),
    ("events", 1, "at_s"): st.floats(-1, 3),
    ("events", 2, "query"): st.fixed_dictionaries(
        {
            "from": st.sampled_from(["FR", "DE", "NL"]),
            "to": st.lists(st.sampled_from(["FR", "DE", "IT", "ALL"]), max_size=3),
            "kind": st.sampled_from(["document", "person", "boat"]),
        },
        optional={"planted": st.booleans(), "fetch": st.booleans()},
    ),
    ("events", 2, "expect"): st.sampled_from(["hit", "record", "x"]),
    ("checks", 0, "expect"): st.sampled_from(_EXPRESSIONS) | st.text(max_size=8),
    ("x",): SCALARS,
}


def _child(table: Any, key: str | int) -> Any:
    """``table[key]`` if it is a table or an array inside a table or an array, else None."""
    if isinstance(table, list) and isinstance(key, int) and key < len(table):
        return table[key]
    if isinstance(table, dict) and isinstance(table.get(key), dict | list):
        return table[key]
    return None


@st.composite
def _near_valid_scenario(draw: st.DrawFn) -> dict[str, Any]:
    """The valid table above with up to three values replaced, removed or added."""
    data = copy.deepcopy(VALID_SCENARIO)
    paths = draw(st.lists(st.sampled_from(sorted(_SCENARIO_FIELDS)), max_size=3, unique=True))
    for path in paths:
        table: Any = data
        for key in path[:-1]:
            table = _child(table, key)
            if table is None:
                break
        else:
            if not isinstance(table, dict):
                continue
            if draw(st.integers(0, 4)) == 0:
                table.pop(path[-1], None)
            else:
                table[path[-1]] = draw(_SCENARIO_FIELDS[path] | VALUES)
    return data


SCENARIO_DICTS = st.one_of(_near_valid_scenario(), RANDOM_SCENARIOS)


def _load(tmp: Path, data: dict[str, Any]) -> scenario.Scenario | None:
    """The scenario, or None for a clear error (an NcbsimError the CLI prints in one line)."""
    path = tmp / "fuzz.toml"
    path.write_text(_toml(data))
    assert tomllib.loads(path.read_text()).keys() == data.keys()  # the writer above is sound
    try:
        return scenario.load(str(path))
    except NcbsimError:
        return None


@settings(max_examples=200)
@given(SCENARIO_DICTS)
def test_scenario_load_of_random_tables_is_a_scenario_or_clear_error(
    tmp_path_factory: pytest.TempPathFactory, data: dict[str, Any]
) -> None:
    """Any TOML table loads as a valid Scenario or raises an NcbsimError (ConfigError/PkiError)."""
    loaded = _load(tmp_path_factory.mktemp("scenario", numbered=True), data)
    event("loaded" if loaded is not None else "refused")
    if loaded is not None:
        if data["bureaus"] == "all-members":
            assert len(loaded.bureaus) == 196
        else:
            assert loaded.bureaus == tuple(data["bureaus"])
        assert len(set(loaded.bureaus)) == len(loaded.bureaus) >= 2
        assert min(loaded.records.documents, loaded.records.persons, loaded.records.vehicles) >= 1
        assert 0 <= loaded.traffic.hit_ratio <= 1
        assert loaded.traffic.deadline_ms >= 100
        assert 0 < loaded.traffic.rate_per_s < math.inf
        assert set(loaded.traffic.requesters) <= set(loaded.bureaus)
        assert [e.at_s for e in loaded.events] == sorted(e.at_s for e in loaded.events)
        ids = {e.id: e for e in loaded.events}
        assert len(ids) == len(loaded.events)
        for e in loaded.events:
            assert 0 <= e.at_s < loaded.traffic.duration_s
            if e.kind == "fault":
                assert set(e.bureaus) <= set(loaded.bureaus)
            if e.kind == "heal":
                assert ids[e.heal].kind == "fault"
                assert ids[e.heal].at_s < e.at_s
        for spec in loaded.checks:
            checks.parse(spec.expect)  # every check expression was vetted at load


@pytest.mark.parametrize("seed", ["x", math.inf, math.nan], ids=["text", "inf", "nan"])
def test_scenario_with_a_non_integer_seed_is_a_config_error(tmp_path: Path, seed: object) -> None:
    """A seed that is not an integer is a ConfigError naming the file."""
    path = tmp_path / "seed.toml"
    path.write_text(_toml({"bureaus": ["FR", "DE"], "seed": seed}))
    with pytest.raises(ConfigError, match=r"seed\.toml"):
        scenario.load(str(path))
