"""A scenario's timeline (simulations/scenario/events.py, timeline.py): events, faults, checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from scenario_support import scenario_error as _error
from scenario_support import write_scenario as _write

from ncbsim.simulations import scenario
from ncbsim.simulations.scenario import (
    ExplicitQuery,
    FaultEvent,
    Mix,
    Scenario,
    ScenarioError,
)

HEAD = 'bureaus = ["FR", "DE", "IT"]\n'


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
            " hit, no_hit, no_answer, failed, refused; did you mean queries.failed?",
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
