"""Reading scenario files (simulations/scenario/loader.py): defaults, names, key errors."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from scenario_support import scenario_error as _error
from scenario_support import write_scenario as _write

from ncbsim.countries import INTERPOL_MEMBERS
from ncbsim.errors import ConfigError
from ncbsim.simulations import scenario
from ncbsim.simulations.scenario import (
    EngineSettings,
    ExplicitQuery,
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
    assert s.traffic.mix.weights() == {
        "document": 5,
        "person": 3,
        "vehicle": 2,
        "multi": 0.2,
        "fingerprint": 0,
        "face": 0,
    }
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


def test_every_toml_example_in_the_docs_loads() -> None:
    """Each ```toml example in docs/scenarios.md is a valid scenario."""
    docs = Path(__file__).resolve().parents[2] / "docs" / "scenarios.md"
    blocks = re.findall(r"```toml\n(.*?)```", docs.read_text(), re.S)
    assert len(blocks) >= 3
    for block in blocks:
        scenario.from_dict(tomllib.loads(block), name="doc")


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
