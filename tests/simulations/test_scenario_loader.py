"""Scenario files: the schema, defaults, the timeline rules and every kind of error message."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from ncbsim.countries import INTERPOL_MEMBERS
from ncbsim.errors import ConfigError
from ncbsim.simulations import scenario
from ncbsim.simulations.scenario import (
    EngineSettings,
    ExplicitQuery,
    FaultEvent,
    Mix,
    Records,
    Scenario,
    ScenarioError,
    Traffic,
)

SMALL = Path(__file__).resolve().parent.parent / "scenarios" / "small.toml"
HEAD = 'bureaus = ["FR", "DE", "IT"]\n'

PARTITION_HEAL = """
name = "partition-heal"
bureaus = ["FR", "DE", "IT", "ES"]
seed = 3
[traffic]
duration_s = 30
[[events]]
at_s = 5.0
id = "cut"
fault = "partition"
bureaus = ["IT", "ES"]
settle_s = 1
[[events]]
at_s = 2
fault = "latency"
bureaus = ["DE"]
latency_ms = 80
direction = "to-bureau"
duration_s = 4
[[events]]
at_s = 15.0
heal = "cut"
[[events]]
at_s = 3.0
id = "first_check"
query = { from = "FR", to = ["DE"], kind = "document", planted = true, fetch = true }
expect = "record"
[[checks]]
name = "partitioned bureaus silent"
expect = "faults.cut.during.answered == 0 and faults.cut.after.no_answer == 0"
[[checks]]
expect = "explicit.first_check.passed and bureaus.FR.as_recipient.queries.failed == 0"
"""


def _write(tmp_path: Path, text: str, name: str = "sim.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _error(tmp_path: Path, text: str) -> str:
    """The ScenarioError message loading ``text`` gives, with the file path as 'sim.toml'."""
    path = _write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        scenario.load(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return "sim.toml: " + message.removeprefix(f"{path}: ")


def test_builtin_quickstart_loads_with_its_checks() -> None:
    """The built-in quickstart loads: five bureaus, seed 2024, ~15 s at 6 queries/s, checks."""
    s = scenario.load("quickstart")
    assert s.bureaus == ("FR", "DE", "IT", "ES", "NL")
    assert s.seed == 2024
    assert (s.records.documents, s.records.persons, s.records.vehicles) == (2000, 500, 500)
    assert (s.traffic.duration_s, s.traffic.rate_per_s) == (15.0, 6.0)
    assert any(c.expect == "queries.failed == 0" for c in s.checks)


def test_small_test_scenario_loads_unchanged_in_what_fixtures_rely_on() -> None:
    """tests/scenarios/small.toml keeps FR, DE, IT, NL, seed 7 and 300/120/120 records."""
    s = scenario.load(str(SMALL))
    assert s.name == "small"
    assert s.bureaus == ("FR", "DE", "IT", "NL")
    assert s.seed == 7
    assert (s.records.documents, s.records.persons, s.records.vehicles) == (300, 120, 120)


def test_minimal_scenario_gets_every_default_and_the_file_stem_as_name(tmp_path: Path) -> None:
    """Only `bureaus` is required; the name defaults to the file stem, the rest to the docs."""
    s = scenario.load(str(_write(tmp_path, HEAD, "border-drill.toml")))
    assert s.name == "border-drill"
    assert s.seed == 1
    assert s.records == Records()
    assert s.traffic == Traffic()
    assert s.traffic.mix.weights() == {"document": 5, "person": 3, "vehicle": 2, "multi": 0.2}
    assert s.engine == EngineSettings(
        hosts=0, proxy="auto", mode="loopback", startup_timeout_s=120.0
    )
    assert s.events == ()
    assert s.checks == ()


def test_full_scenario_reads_events_sorted_with_ids_params_and_defaults(tmp_path: Path) -> None:
    """Events come back sorted by at_s, with default ids, fault params and the query table."""
    s = scenario.load(str(_write(tmp_path, PARTITION_HEAL)))
    assert [e.id for e in s.events] == ["latency_1", "first_check", "cut", "heal_2"]
    assert [e.kind for e in s.events] == ["fault", "query", "fault", "heal"]
    latency = s.event("latency_1")
    assert latency.params == {"latency_ms": 80, "jitter_ms": 0}
    assert latency.direction == "to-bureau"
    assert latency.end_s == 6.0
    cut = s.event("cut")
    assert (cut.bureaus, cut.settle_s, cut.duration_s, cut.params) == (("IT", "ES"), 1.0, None, {})
    query = s.event("first_check").query
    assert query == ExplicitQuery(requester="FR", to=("DE",), kind="document", fetch=True)
    assert s.event("first_check").expect == "record"
    assert s.checks[1].name == s.checks[1].expect  # the name defaults to the expression


def test_all_members_expands_to_the_196_interpol_members(tmp_path: Path) -> None:
    """bureaus = "all-members" is the 196 INTERPOL members from ncbsim.countries."""
    s = scenario.load(str(_write(tmp_path, 'bureaus = "all-members"\n')))
    assert s.bureaus == INTERPOL_MEMBERS
    assert len(s.bureaus) == 196
    assert "another string" in _error(tmp_path, 'bureaus = "another string"\n')


def test_scenario_stays_constructible_in_code_with_defaults() -> None:
    """Scenario(name, bureaus, seed, records) works as load/bench.py builds one."""
    s = Scenario(
        name="bench", bureaus=("FR", "DE"), seed=3, records=Records(documents=9, persons=50)
    )
    assert s.traffic == Traffic()
    assert s.records.vehicles == 500
    with pytest.raises(ScenarioError, match=r"records\.persons: expected an integer >= 1"):
        Records(persons=0)


def test_scenario_error_is_a_config_error() -> None:
    """ScenarioError is a ConfigError (and so a ValueError) the CLI prints in one line."""
    assert issubclass(ScenarioError, ConfigError)
    assert issubclass(ScenarioError, ValueError)


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    """A TOML syntax error names the file and the line."""
    message = _error(tmp_path, HEAD + "seed = 1\n[traffic\n")
    assert message.startswith("sim.toml: invalid TOML:")
    assert "line 3" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            HEAD + "colour = 1\n",
            "sim.toml: colour: unknown key; expected one of name, description, bureaus, seed,",
        ),
        (
            HEAD + "[records]\ndocumnets = 5\n",
            "sim.toml: records.documnets: unknown key; expected one of documents, persons,"
            " vehicles, planted",
        ),
        (HEAD + "[traffic]\nqueries = 5\n", "sim.toml: traffic.queries: unknown key"),
        (HEAD + "[traffic.mix]\ndiffusion = 1\n", "sim.toml: traffic.mix.diffusion: unknown key"),
        (HEAD + "[engine]\nthreads = 2\n", "sim.toml: engine.threads: unknown key"),
        (
            HEAD + '[[events]]\nat_s = 1\nfault = "kill"\nbureaus = ["FR"]\nsignal = 9\n',
            "sim.toml: events[0].signal: unknown key",
        ),
        (
            HEAD + '[[events]]\nat_s = 1\nquery = {from = "FR", to = ["DE"], kind = "person",'
            " hits = 1}\n",
            "sim.toml: events[0].query.hits: unknown key; expected one of from, to, kind,"
            " planted, fetch",
        ),
        (HEAD + '[[checks]]\nexpect = "queries.sent > 0"\nwhy = "x"\n', "sim.toml: checks[0].why:"),
    ],
    ids=["top", "records", "traffic", "mix", "engine", "event", "query", "check"],
)
def test_unknown_keys_are_errors_at_every_level(tmp_path: Path, text: str, expected: str) -> None:
    """A typo anywhere is an error naming the full key and the keys allowed there."""
    assert _error(tmp_path, text).startswith(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            HEAD + '[traffic]\nrate_per_s = "fast"\n',
            "sim.toml: traffic.rate_per_s: expected a number > 0, got 'fast'",
        ),
        (
            HEAD + "[traffic]\nrate_per_s = true\n",
            "sim.toml: traffic.rate_per_s: expected a number > 0, got True",
        ),
        (
            HEAD + "[records]\ndocuments = 1.5\n",
            "sim.toml: records.documents: expected an integer >= 1, got 1.5",
        ),
        (
            HEAD + "[records]\npersons = true\n",
            "sim.toml: records.persons: expected an integer >= 1, got True",
        ),
        (HEAD + "seed = 1.0\n", "sim.toml: seed: expected an integer, got 1.0"),
        (HEAD + "seed = true\n", "sim.toml: seed: expected an integer, got True"),
        (HEAD + 'seed = "x"\n', "sim.toml: seed: expected an integer, got 'x'"),
        (
            HEAD + "[traffic]\ndeadline_ms = 3000.0\n",
            "sim.toml: traffic.deadline_ms: expected an integer >= 100, got 3000.0",
        ),
        (HEAD + "name = 5\n", "sim.toml: name: expected a string, got 5"),
        (HEAD + "records = 5\n", "sim.toml: records: expected a table, got 5"),
        (HEAD + "events = 5\n", "sim.toml: events: expected an array of tables ([[events]])"),
        (
            HEAD + "[engine]\nproxy = true\n",
            "sim.toml: engine.proxy: expected one of 'auto', 'all', 'none', got True",
        ),
        (
            HEAD + "[traffic]\nhit_ratio = nan\n",
            "sim.toml: traffic.hit_ratio: expected a number >= 0 and <= 1, got nan",
        ),
    ],
)
def test_wrong_types_name_the_key_and_what_was_expected(
    tmp_path: Path, text: str, expected: str
) -> None:
    """A bool is never a number, 1.5 never an int, a string never a number."""
    assert _error(tmp_path, text) == expected or _error(tmp_path, text).startswith(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HEAD + "[records]\nvehicles = 0\n", "records.vehicles: expected an integer >= 1, got 0"),
        (HEAD + "[records]\nplanted = 0\n", "records.planted: expected an integer >= 1, got 0"),
        (HEAD + "[traffic]\nduration_s = 0\n", "traffic.duration_s: expected a number > 0, got 0"),
        (
            HEAD + "[traffic]\nfetch_ratio = 1.5\n",
            "traffic.fetch_ratio: expected a number >= 0 and <= 1, got 1.5",
        ),
        (
            HEAD + "[traffic]\ndeadline_ms = 99\n",
            "traffic.deadline_ms: expected an integer >= 100, got 99",
        ),
        (
            HEAD + "[traffic]\nmax_in_flight = 0\n",
            "traffic.max_in_flight: expected an integer >= 1, got 0",
        ),
        (HEAD + "[traffic.mix]\nperson = -1\n", "traffic.mix.person: expected a number >= 0"),
        (
            HEAD + "[traffic.mix]\ndocument = 0\nperson = 0\nvehicle = 0\nmulti = 0\n",
            "traffic.mix: expected at least one weight > 0",
        ),
        (
            HEAD + '[traffic]\nrequesters = ["FR", "ES"]\n',
            "traffic.requesters: 'ES' is not one of the scenario's bureaus",
        ),
        (HEAD + "[engine]\nhosts = -1\n", "engine.hosts: expected an integer >= 0, got -1"),
        (HEAD + "[engine]\nhosts = 4\n", "engine.hosts: expected at most one host per bureau"),
        (
            HEAD + '[engine]\nmode = "docker"\n',
            "engine.mode: expected one of 'loopback', 'netns', got 'docker'",
        ),
        ('bureaus = ["FR"]\n', "bureaus: expected at least two bureaus, got 1"),
        ('bureaus = ["FR", "FR"]\n', "bureaus: 'FR' appears twice"),
        ('bureaus = ["FR", "de"]\n', "bureaus: 'de' is not a bureau code"),
        ('bureaus = ["FR", "XX"]\n', "bureaus: 'XX' is not an assigned ISO 3166-1 alpha-2 code"),
        ('name = "x"\n', "bureaus: required"),
    ],
)
def test_out_of_range_values_are_errors(tmp_path: Path, text: str, expected: str) -> None:
    """Values outside their range are refused with the bound in the message."""
    assert _error(tmp_path, text).startswith(f"sim.toml: {expected}")


def _events(*tables: str, duration: float = 20) -> str:
    text = HEAD + f"[traffic]\nduration_s = {duration}\n"
    return text + "".join(f"[[events]]\n{t.strip()}\n" for t in tables)


KILL_FR = 'at_s = 1\nid = "crash"\nfault = "kill"\nbureaus = ["FR"]'


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        (
            ['at_s = 1\nfault = "partition"\nbureaus = ["FR", "XX"]'],
            "events[0].bureaus: 'XX' is not one of the scenario's bureaus",
        ),
        (
            ['at_s = 1\nfault = "earthquake"\nbureaus = ["FR"]'],
            "events[0].fault: expected one of 'bandwidth', 'blackhole',",
        ),
        (
            ['at_s = 1\nfault = "latency"\nbureaus = ["FR"]'],
            "events[0].latency_ms: required for a latency fault",
        ),
        (
            ['at_s = 1\nfault = "skew"\nbureaus = ["FR"]\noffset_ms = 0'],
            "events[0].offset_ms: expected an integer other than 0, got 0",
        ),
        (
            ['at_s = 1\nfault = "loss"\nbureaus = ["FR"]\nloss = 1.5'],
            "events[0].loss: expected a number > 0 and <= 1, got 1.5",
        ),
        (
            ['at_s = 1\nfault = "kill"\nbureaus = ["FR"]\nlatency_ms = 5'],
            "events[0].latency_ms: not a key of a kill fault",
        ),
        (['at_s = 1\nfault = "down"'], "events[0].bureaus: required for a down fault"),
        (['at_s = 1\nheal = "nothing"'], "events[0].heal: no event has the id 'nothing'"),
        (['at_s = 25\nfault = "down"\nbureaus = ["FR"]'], "events[0].at_s: expected a time before"),
        (['at_s = -1\nfault = "down"\nbureaus = ["FR"]'], "events[0].at_s: expected a number >= 0"),
        (
            [
                'at_s = 1\nid = "cut"\nfault = "down"\nbureaus = ["FR"]',
                'at_s = 2\nid = "cut"\nfault = "down"\nbureaus = ["DE"]',
            ],
            "events[1].id: 'cut' is already the id of events[0]",
        ),
        (
            ['at_s = 1\nid = "Cut"\nfault = "down"\nbureaus = ["FR"]'],
            "events[0].id: expected an identifier [a-z][a-z0-9_]*, got 'Cut'",
        ),
        (
            ['at_s = 1\nid = "not"\nfault = "down"\nbureaus = ["FR"]'],
            "events[0].id: 'not' is a Python keyword",
        ),
        (['at_s = 1\nfault = "reset"\nbureaus = ["FR"]\nduration_s = 2'], "events[0].duration_s:"),
        (
            ['at_s = 1\nfault = "kill"\nbureaus = ["FR"]\ndirection = "to-bureau"'],
            "events[0].direction: only link faults have a direction",
        ),
        (
            ['at_s = 1\nfault = "down"\nbureaus = ["FR"]\ndirection = "sideways"'],
            "events[0].direction: expected one of 'to-bureau', 'from-bureau', 'both'",
        ),
        (["at_s = 1"], "events[0]: expected exactly one of fault, heal, query"),
        (
            ['at_s = 1\nheal = "x"\nfault = "down"\nbureaus = ["FR"]'],
            "events[0]: expected exactly one of fault, heal, query",
        ),
        (['heal = "x"'], "events[0].at_s: required"),
        (
            [
                'at_s = 1\nid = "cut"\nfault = "down"\nbureaus = ["FR"]\nduration_s = 3',
                'at_s = 5\nheal = "cut"',
            ],
            "events[1].heal: 'cut' heals by itself after its duration_s",
        ),
        (
            ['at_s = 5\nid = "cut"\nfault = "down"\nbureaus = ["FR"]', 'at_s = 5\nheal = "cut"'],
            "events[1].at_s: a heal must come after its fault 'cut'",
        ),
        (
            [
                'at_s = 1\nid = "cut"\nfault = "down"\nbureaus = ["FR"]',
                'at_s = 3\nheal = "cut"',
                'at_s = 4\nheal = "cut"',
            ],
            "events[2].heal: 'cut' was already ended by heal 'heal_1'",
        ),
        (
            ['at_s = 1\nid = "rs"\nfault = "reset"\nbureaus = ["FR"]', 'at_s = 3\nheal = "rs"'],
            "events[1].heal: 'rs' is a reset: instantaneous",
        ),
        (['at_s = 1\nfault = "restart"\nbureaus = ["FR"]'], "events[0].bureaus: restart of FR"),
        (
            [KILL_FR, 'at_s = 2\nfault = "restart"\nbureaus = ["FR"]', 'at_s = 3\nheal = "crash"'],
            "events[2].heal: 'crash' was already ended by restart 'restart_1'",
        ),
        (
            [KILL_FR, 'at_s = 2\nfault = "pause"\nbureaus = ["FR"]'],
            "events[1].bureaus: FR is already killed by 'crash'",
        ),
        (
            [
                'at_s = 1\nfault = "pause"\nbureaus = ["FR"]\nduration_s = 5',
                'at_s = 2\nfault = "resume"\nbureaus = ["FR"]',
            ],
            "events[1].bureaus: resume of FR, which no earlier pause without duration_s holds",
        ),
        (
            ['at_s = 1\nquery = {from = "FR", to = ["ES"], kind = "document"}'],
            "events[0].query.to: 'ES' is not one of the scenario's bureaus",
        ),
        (
            ['at_s = 1\nquery = {from = "FR", to = ["ALL", "DE"], kind = "document"}'],
            'events[0].query.to: "ALL" stands alone',
        ),
        (
            ['at_s = 1\nquery = {from = "FR", to = ["FR"], kind = "document"}'],
            "events[0].query.to: a bureau does not query itself",
        ),
        (
            ['at_s = 1\nquery = {from = "FR", to = ["DE"], kind = "boat"}'],
            "events[0].query.kind: expected one of 'document', 'person', 'vehicle', got 'boat'",
        ),
        (
            ['at_s = 1\nquery = {to = ["DE"], kind = "person"}'],
            "events[0].query.from: required",
        ),
        (
            ['at_s = 1\nquery = {from = "FR", to = ["DE"], kind = "person"}\nexpect = "record"'],
            "events[0].expect: 'record' is a fetch outcome; set fetch = true",
        ),
        (
            ['at_s = 1\nquery = {from = "FR", to = ["DE"], kind = "person"}\nexpect = "yes"'],
            "events[0].expect: expected one of 'hit', 'no_hit', 'no_answer', 'record',",
        ),
        (
            ['at_s = 1\nquery = {from = "FR", to = ["DE"], kind = "person"}\nsettle_s = 1'],
            "events[0].settle_s: not a key of a query event",
        ),
    ],
)
def test_timeline_errors_name_the_event_and_the_problem(
    tmp_path: Path, events: list[str], expected: str
) -> None:
    """Unknown bureaus, fault kinds, parameters, ids and heals are refused, naming events[i]."""
    assert _error(tmp_path, _events(*events)).startswith(f"sim.toml: {expected}")


def test_link_faults_need_the_fault_proxy(tmp_path: Path) -> None:
    """engine.proxy = "none" refuses link faults and partitions, but allows process faults."""
    text = _events('at_s = 1\nfault = "blackhole"\nbureaus = ["FR"]') + '[engine]\nproxy = "none"\n'
    assert "events[0].fault: a blackhole fault needs the fault proxy" in _error(tmp_path, text)
    ok = _events(KILL_FR, 'at_s = 2\nfault = "restart"\nbureaus = ["FR"]')
    s = scenario.load(str(_write(tmp_path, ok + '[engine]\nproxy = "none"\n', "ok.toml")))
    assert [e.fault for e in s.events] == ["kill", "restart"]


def test_kill_with_duration_restarts_by_itself_and_can_be_killed_again(tmp_path: Path) -> None:
    """A kill with duration_s ends by itself: a later kill of the same bureau is valid."""
    text = _events(
        'at_s = 1\nfault = "kill"\nbureaus = ["FR"]\nduration_s = 2',
        'at_s = 4\nid = "again"\nfault = "kill"\nbureaus = ["FR"]',
        'at_s = 6\nheal = "again"',
        'at_s = 7\nfault = "pause"\nbureaus = ["DE"]',
        'at_s = 8\nfault = "resume"\nbureaus = ["DE"]',
    )
    s = scenario.load(str(_write(tmp_path, text, "ok.toml")))
    assert [e.id for e in s.events] == ["kill_0", "again", "heal_2", "pause_3", "resume_4"]
    assert _error(tmp_path, text.replace("at_s = 4", "at_s = 2.5")).startswith(
        "sim.toml: events[1].bureaus: FR is already killed by 'kill_0'"
    )


def test_every_fault_kind_loads_with_its_parameters_and_defaults(tmp_path: Path) -> None:
    """Each fault kind accepts its parameters; optional ones get their documented defaults."""
    text = _events(
        'at_s = 1\nfault = "latency"\nbureaus = ["FR"]\nlatency_ms = 50\njitter_ms = 5',
        'at_s = 1\nfault = "bandwidth"\nbureaus = ["FR"]\nkbit_per_s = 64',
        'at_s = 1\nfault = "loss"\nbureaus = ["DE"]\nloss = 0.2\ndirection = "from-bureau"',
        'at_s = 1\nfault = "slice"\nbureaus = ["IT"]',
        'at_s = 1\nfault = "skew"\nbureaus = ["IT"]\noffset_ms = -90000',
        'at_s = 2\nfault = "blackhole"\nbureaus = ["DE"]\nduration_s = 1',
        'at_s = 3\nfault = "reset"\nbureaus = ["DE"]',
        'at_s = 4\nfault = "down"\nbureaus = ["DE"]\nduration_s = 1',
        'at_s = 6\nfault = "partition"\nbureaus = ["FR", "DE"]\nduration_s = 1',
    )
    s = scenario.load(str(_write(tmp_path, text, "ok.toml")))
    params = {e.fault: e.params for e in s.events}
    assert params["latency"] == {"latency_ms": 50, "jitter_ms": 5}
    assert params["slice"] == {"piece_bytes": 1, "pause_ms": 0}
    assert params["skew"] == {"offset_ms": -90000}
    assert params["reset"] == {}
    assert scenario.LINK_FAULTS | scenario.PROCESS_FAULTS | {"partition", "skew"} == {
        e for e in scenario.FAULTS
    }
    assert {"reset", "restart", "resume"} == scenario.INSTANT_FAULTS


@pytest.mark.parametrize(
    ("expect", "expected"),
    [
        ("queries.failed ==", "checks[0].expect: invalid syntax"),
        ("len(queries) > 0", "checks[0].expect: a function call is not allowed"),
        ("queries['failed'] == 0", "checks[0].expect: a subscript"),
        ("queries.failed == 'none'", "checks[0].expect: the constant 'none'"),
        ("lambda: 1", "checks[0].expect: a lambda is not allowed"),
        (
            "querys.failed == 0",
            "checks[0].expect: querys.failed: unknown report key 'querys'; expected one of",
        ),
        (
            "faults.cutt.during.answered == 0",
            "checks[0].expect: faults.cutt.during.answered: 'cutt' is not a fault event id;"
            " expected one of cut; did you mean faults.cut.during.answered?",
        ),
        ("bureaus.ES.queries.sent > 0", "checks[0].expect: bureaus.ES.queries.sent: 'ES' is not"),
        ("explicit.cut.passed", "checks[0].expect: explicit.cut.passed: 'cut' is not a query"),
        ("kinds.boat.queries.sent > 0", "checks[0].expect: kinds.boat.queries.sent: 'boat'"),
        (
            "startup_s.max < 5",
            "checks[0].expect: startup_s.max: startup_s is a number, not a table;"
            " did you mean startup_s?",
        ),
    ],
)
def test_bad_check_expressions_are_refused_at_load(
    tmp_path: Path, expect: str, expected: str
) -> None:
    """Syntax errors, forbidden constructs and unknown report paths fail the load."""
    text = _events('at_s = 1\nid = "cut"\nfault = "down"\nbureaus = ["FR"]\nduration_s = 2')
    quoted = f'"{expect}"' if "'" in expect else f"'{expect}'"  # TOML basic or literal
    text += f"[[checks]]\nexpect = {quoted}\n"
    assert _error(tmp_path, text).startswith(f"sim.toml: {expected}")


@pytest.mark.parametrize(
    ("expect", "expected"),
    [
        (  # the typo of issue 15: found when the file loads, not after the run
            "queries.faild == 0",
            "queries.faild: 'faild' is not a key of queries; expected one of sent, answered,"
            " hit, no_hit, no_answer, failed; did you mean queries.failed?",
        ),
        (
            "latency_ms.p999 < 300",
            "latency_ms.p999: 'p999' is not a key of latency_ms; expected one of p50, p95, p99,"
            " max; did you mean latency_ms.p99?",
        ),
        (
            "bureaus.FR.as_recipeint.queries.sent > 0",
            "bureaus.FR.as_recipeint.queries.sent: 'as_recipeint' is not a key of bureaus.FR;"
            " expected one of as_recipient,"
            " as_requester; did you mean bureaus.FR.as_recipient.queries.sent?",
        ),
        (
            "kinds.docment.requests > 0",
            "kinds.docment.requests: 'docment' is not a kind this scenario sends; expected one"
            " of document, person,"
            " vehicle, fetch; did you mean kinds.document.requests?",
        ),
        (  # the mix gives multi no weight and no timeline query goes to several bureaus
            "kinds.multi.queries.failed == 0",
            "kinds.multi.queries.failed: 'multi' is not a kind this scenario sends",
        ),
        (
            "messages.lost == 0",
            "messages.lost: this scenario posts no messages (messages.rate_per_s is 0",
        ),
        ("faults.cut.target == 0", "faults.cut.target: only a fault of the gateway has a target"),
        ("faults.cut.kind == 0", "faults.cut.kind: faults.cut.kind is text, not a number"),
        ("scenario == 0", "scenario: scenario is text, not a number"),
        ("duration_s < 60", "duration_s: duration_s is written after the checks run"),
        ("passed == 1", "passed: passed is written after the checks run"),
        ("queries > 0", "queries: queries is a table, not a number; name one of its values"),
        (
            "per_bureau.FR.as_recipient.queries.sent > 0",
            "per_bureau.FR.as_recipient.queries.sent: unknown report key 'per_bureau'",
        ),
    ],
)
def test_check_paths_the_report_cannot_hold_are_refused_with_a_suggestion(
    tmp_path: Path, expect: str, expected: str
) -> None:
    """A path the scenario's report cannot have is refused at load, naming file, key, path,
    why, and the path it most likely meant."""
    text = _events('at_s = 1\nid = "cut"\nfault = "down"\nbureaus = ["FR"]\nduration_s = 2')
    text += "[traffic.mix]\nmulti = 0\n"
    text += f'[[checks]]\nname = "typo"\nexpect = "{expect}"\n'
    assert _error(tmp_path, text).startswith(f"sim.toml: checks[0].expect: {expected}")


def test_per_bureau_paths_of_earlier_reports_name_their_new_place(tmp_path: Path) -> None:
    """bureaus.X.queries, .latency_ms and .sent (before issue 15) are refused, saying where
    each figure went."""
    cases = {
        "bureaus.FR.queries.no_answer == 0": (
            "did you mean bureaus.FR.as_recipient.queries.no_answer?"
        ),
        "bureaus.DE.latency_ms.p50 > 240": "did you mean bureaus.DE.as_recipient.latency_ms.p50?",
        "bureaus.IT.sent > 0": "did you mean bureaus.IT.as_requester.requests?",
    }
    for expect, suggestion in cases.items():
        message = _error(tmp_path, HEAD + f'[[checks]]\nexpect = "{expect}"\n')
        assert ": renamed: " in message, message
        assert message.endswith(suggestion), message


def test_checks_on_every_report_section_load(tmp_path: Path) -> None:
    """Checks may read each documented report section, by fault id, bureau, kind and query id."""
    text = PARTITION_HEAL + "".join(
        f'[[checks]]\nexpect = "{e}"\n'
        for e in (
            "latency_ms.p99 < 250 and requests > 0",
            "kinds.multi.queries.failed == 0 and kinds.fetch.latency_ms.p50 < 100",
            "faults.latency_1.others.failed == 0 and faults.latency_1.params.latency_ms == 80",
            "faults.cut.recovered_s < 5",
            "startup_s < 60 and shutdown_s < 30 and traffic_s > 0 and peak_rss_mib < 4096",
            "bureaus.IT.as_requester.requests >= 0 and bureaus.IT.as_requester.queries.sent >= 0",
            "planted.hit <= planted.queries and late_sends == 0",
        )
    )
    s = scenario.load(str(_write(tmp_path, text, "ok.toml")))
    assert len(s.checks) == 9


def test_from_dict_names_the_source_and_validates_like_load() -> None:
    """from_dict applies the same rules; without a path the message starts 'scenario:'."""
    s = scenario.from_dict({"bureaus": ["FR", "DE"]}, name="inline")
    assert s.name == "inline"
    assert s.path is None
    with pytest.raises(ScenarioError, match=re.escape("scenario: seed: expected an integer")):
        scenario.from_dict({"bureaus": ["FR", "DE"], "seed": 1.5})
    with pytest.raises(ScenarioError, match=re.escape("x.toml: traffic.mix: expected a table")):
        scenario.from_dict({"bureaus": ["FR", "DE"], "traffic": {"mix": 3}}, path=Path("x.toml"))


def test_resolve_finds_builtin_names_and_refuses_unknown_ones() -> None:
    """A bare name resolves under simulations/scenarios; an unknown one lists the built-in
    names."""
    assert scenario.resolve("quickstart") == scenario.SCENARIOS / "quickstart.toml"
    with pytest.raises(
        ScenarioError, match=r"no built-in scenario 'nope'; the built-in ones are .*quickstart"
    ):
        scenario.load("nope")


@pytest.mark.parametrize("argument", ["/x/missing.toml", "missing.toml", "sub/dir/scenario"])
def test_a_missing_scenario_path_is_file_not_found(argument: str) -> None:
    """An argument that looks like a path (a / or .toml) and is not there: file not found,
    not "no scenario known" (issue 15)."""
    with pytest.raises(ScenarioError) as info:
        scenario.load(argument)
    assert str(info.value) == f"{argument}: file not found"


def test_a_builtin_name_given_with_toml_says_so(tmp_path: Path) -> None:
    """quickstart.toml where no such file is: file not found, and the built-in name."""
    with pytest.raises(ScenarioError) as info:
        scenario.load("quickstart.toml")
    assert str(info.value) == (
        "quickstart.toml: file not found (the built-in scenario is named 'quickstart',"
        " without .toml)"
    )
    with pytest.raises(ScenarioError, match="not a file"):
        scenario.load(str(tmp_path) + "/")


def test_code_built_events_and_mix_validate_themselves() -> None:
    """Event, Mix and ExplicitQuery built in code check their own fields."""
    with pytest.raises(ScenarioError, match=r"latency_ms: required for a latency fault"):
        FaultEvent(at_s=1, id="x", fault="latency", bureaus=("FR",))
    with pytest.raises(ScenarioError, match=r"traffic\.mix\.multi: expected a number >= 0"):
        Mix(multi=-1)
    with pytest.raises(ScenarioError, match=r"query\.to: a bureau does not query itself"):
        ExplicitQuery(requester="FR", to=("FR",), kind="document")
    events = (
        FaultEvent(at_s=5, id="late", fault="down", bureaus=("DE",)),
        FaultEvent(at_s=1, id="early", fault="down", bureaus=("FR",)),
    )
    s = Scenario(name="x", bureaus=("FR", "DE"), events=events)
    assert [e.id for e in s.events] == ["early", "late"]


def test_every_toml_example_in_the_docs_loads() -> None:
    """Each ```toml example in docs/scenarios.md is a valid scenario."""
    docs = Path(__file__).resolve().parents[2] / "docs" / "scenarios.md"
    blocks = re.findall(r"```toml\n(.*?)```", docs.read_text(), re.S)
    assert len(blocks) >= 3
    for block in blocks:
        scenario.from_dict(tomllib.loads(block), name="doc")
