"""The ``[messages]`` table and the message events of a scenario file: their keys, values,
timeline rules and report paths, and the built-in scenarios that post."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import load_scenario

from ncbsim.simulations import paths as report_paths
from ncbsim.simulations import scenario
from ncbsim.simulations.scenario import GATEWAY, ScenarioError

HEAD = 'bureaus = ["FR", "DE", "IT", "GS"]\n[traffic]\nduration_s = 20\n'
NOTICE = (
    '[[events]]\nat_s = 1\nid = "red"\nnotice = {from = "FR", summary = "robbery", subject ='
    ' {surname = "Marchetti", date_of_birth = "1979-04-12"}}\n'
)


def _error(tmp_path: Path, text: str) -> str:
    """The ScenarioError message for ``text``, with the file named 'sim.toml'."""
    path = tmp_path / "sim.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        scenario.load(str(path))
    return "sim.toml: " + str(info.value).removeprefix(f"{path}: ")


def test_messages_table_defaults_to_no_stream_and_reads_every_key(tmp_path: Path) -> None:
    """Without [messages] nothing is streamed; every key is read and typed when given."""
    assert load_scenario(tmp_path, HEAD).messages == scenario.Messages()
    assert scenario.Messages().rate_per_s == 0.0
    loaded = load_scenario(
        tmp_path,
        HEAD
        + '[messages]\nrate_per_s = 4\ndiffusion_to = ["DE", "IT"]\nttl_s = 60\ntext_bytes = 50\n'
        'senders = ["FR"]\ndrain_s = 5\npost_timeout_s = 9\n[messages.mix]\ndiffusion = 2\n'
        "message = 0\n",
    ).messages
    assert loaded.rate_per_s == 4.0
    assert isinstance(loaded.rate_per_s, float)
    assert loaded.diffusion_to == ("DE", "IT")
    assert (loaded.ttl_s, loaded.text_bytes, loaded.senders) == (60.0, 50, ("FR",))
    assert (loaded.drain_s, loaded.post_timeout_s) == (5.0, 9.0)
    assert loaded.mix.weights() == {"diffusion": 2.0, "message": 0.0}


def test_post_notice_and_gateway_events_load(tmp_path: Path) -> None:
    """Diffusion, message, notice, withdraw and gateway-fault events load with defaults."""
    loaded = load_scenario(
        tmp_path,
        HEAD + NOTICE + '[[events]]\nat_s = 2\ndiffusion = {from = "DE"}\n'
        '[[events]]\nat_s = 3\nid = "note"\nmessage = {from = "DE", to = ["FR"], ttl_s = 5}\n'
        '[[events]]\nat_s = 4\nwithdraw = {notice = "red"}\n'
        '[[events]]\nat_s = 5\nid = "gw"\nfault = "kill"\ntarget = "gateway"\n'
        '[[events]]\nat_s = 6\nfault = "restart"\ntarget = "gateway"\n'
        '[[events]]\nat_s = 7\nquery = {from = "IT", to = ["DE"], kind = "person",'
        ' notice = "red"}\nexpect = "hit"\n',
    )
    kinds = [e.kind for e in loaded.events]
    assert kinds == ["notice", "diffusion", "message", "withdraw", "fault", "fault", "query"]
    red = loaded.event("red").notice
    assert red is not None
    assert red.color == "red"
    assert red.subject is not None
    assert red.subject["surname"] == "Marchetti"
    diffusion = loaded.events[1].post
    assert diffusion.kind == "diffusion"
    assert diffusion.to == ("ALL",)
    assert diffusion.ttl_s is None
    assert loaded.events[1].id == "diffusion_1"
    note = loaded.event("note").post
    assert note.kind == "message"
    assert note.to == ("FR",)
    assert note.ttl_s == 5.0
    gateway_kill = loaded.event("gw")
    assert gateway_kill.target == GATEWAY
    assert gateway_kill.bureaus == ()
    assert gateway_kill.targets == (GATEWAY,)
    query = loaded.events[-1].query
    assert query is not None
    assert query.notice == "red"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            HEAD + "[messages]\nrate = 1\n",
            "messages.rate: unknown key; expected one of rate_per_s,",
        ),
        (HEAD + "[messages.mix]\nnotice = 1\n", "messages.mix.notice: unknown key"),
        (
            HEAD + '[[events]]\nat_s = 1\ndiffusion = {from = "FR", text = "x"}\n',
            "events[0].diffusion.text: unknown key; expected one of from, to, subject,"
            " text_bytes, ttl_s",
        ),
        (
            HEAD + '[[events]]\nat_s = 1\nnotice = {from = "FR", colour = "red"}\n',
            "events[0].notice.colour: unknown key",
        ),
        (
            HEAD + '[[events]]\nat_s = 1\nnotice = {from = "FR", subject = {name = "X"}}\n',
            "events[0].notice.subject.name: unknown key; expected one of surname,",
        ),
        (
            HEAD + NOTICE + '[[events]]\nat_s = 2\nwithdraw = {notice = "red", why = "x"}\n',
            "events[1].withdraw.why: unknown key",
        ),
        (
            HEAD + '[[events]]\nat_s = 1\ndiffusion = {from = "FR"}\nbureaus = ["DE"]\n',
            "events[0].bureaus: not a key of a diffusion event",
        ),
        (
            HEAD + '[[events]]\nat_s = 1\nquery = {from = "FR", to = ["DE"], kind = "person"}\n'
            'target = "gateway"\n',
            "events[0].target: not a key of a query event",
        ),
    ],
    ids=["messages", "mix", "diffusion", "notice", "subject", "withdraw", "bureaus", "target"],
)
def test_unknown_message_keys_are_errors(tmp_path: Path, text: str, expected: str) -> None:
    """A typo in a messages key or a post event is an error naming the full key."""
    assert _error(tmp_path, text).startswith(f"sim.toml: {expected}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HEAD + "[messages]\nrate_per_s = -1\n", "messages.rate_per_s: expected a number >= 0"),
        (HEAD + "[messages]\nrate_per_s = true\n", "messages.rate_per_s: expected a number"),
        (
            HEAD + "[messages]\nttl_s = 86401\n",
            "messages.ttl_s: expected a number > 0 and <= 86400, got 86401",
        ),
        (HEAD + "[messages]\ntext_bytes = 1.5\n", "messages.text_bytes: expected an integer"),
        (
            HEAD + "[messages]\ntext_bytes = 8001\n",
            "messages.text_bytes: expected an integer >= 1 and <= 8000, got 8001",
        ),
        (HEAD + "[messages]\ndrain_s = 0\n", "messages.drain_s: expected a number > 0, got 0"),
        (
            HEAD + "[messages.mix]\ndiffusion = 0\nmessage = 0\n",
            "messages.mix: expected at least one weight > 0",
        ),
        (
            HEAD + '[messages]\ndiffusion_to = "ALL"\n',
            'messages.diffusion_to: expected a list such as ["DE"]',
        ),
        (
            HEAD + '[messages]\ndiffusion_to = ["ALL", "DE"]\n',
            'messages.diffusion_to: "ALL" stands alone',
        ),
        (
            HEAD + '[messages]\nsenders = ["FR", "ES"]\n',
            "messages.senders: 'ES' is not one of the scenario's bureaus",
        ),
        (
            HEAD + '[[events]]\nat_s = 1\ndiffusion = {from = "FR", to = ["FR"]}\n',
            "events[0].diffusion.to: a bureau does not send to itself ('FR')",
        ),
        (
            HEAD + '[[events]]\nat_s = 1\nmessage = {from = "FR", to = ["ALL"]}\n',
            "events[0].message.to: a case message goes to named bureaus, not ALL",
        ),
        (
            HEAD + '[[events]]\nat_s = 1\nmessage = {from = "FR"}\n',
            "events[0].message.to: required",
        ),
        (
            HEAD + '[[events]]\nat_s = 1\ndiffusion = {from = "ES"}\n',
            "events[0].diffusion.from: 'ES' is not one of the scenario's bureaus",
        ),
        (
            HEAD + '[[events]]\nat_s = 1\nmessage = {from = "FR", to = ["DE"], ttl_s = 0}\n',
            "events[0].message.ttl_s: expected a number > 0 and <= 86400, got 0",
        ),
        (
            'bureaus = ["FR", "DE"]\n[[events]]\nat_s = 1\nnotice = {from = "FR"}\n',
            "events[0].notice: a notice is reviewed by the General Secretariat: add 'GS'",
        ),
        (
            HEAD + '[[events]]\nat_s = 1\nnotice = {from = "FR", color = "pink"}\n',
            "events[0].notice.color: expected one of 'red', 'yellow',",
        ),
        (
            HEAD + '[[events]]\nat_s = 1\nnotice = {from = "FR", subject = {surname = "X"}}\n',
            "events[0].notice.subject.date_of_birth: required: a date YYYY-MM-DD, got ''",
        ),
        (
            HEAD + '[[events]]\nat_s = 1\nnotice = {from = "FR", summary = "x", subject ='
            ' {date_of_birth = "1980-01-01"}}\n',
            "events[0].notice.subject.surname: required",
        ),
        (
            HEAD + '[[events]]\nat_s = 1\nnotice = {from = "FR", subject = {surname = "X",'
            ' date_of_birth = "1980-01-01"}}\n',
            "events[0].notice.summary: a red notice needs a summary (the charges)",
        ),
        (HEAD + '[[events]]\nat_s = 1\nnotice = {color = "red"}\n', "events[0].notice.from:"),
    ],
)
def test_bad_message_values_are_errors(tmp_path: Path, text: str, expected: str) -> None:
    """Types, ranges and bureaus of message keys are checked like every other key."""
    assert _error(tmp_path, text).startswith(f"sim.toml: {expected}")


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        (
            '[[events]]\nat_s = 2\nwithdraw = {notice = "blue"}\n',
            "events[0].withdraw.notice: 'blue' is not a notice event id; expected one of none",
        ),
        (
            NOTICE + '[[events]]\nat_s = 1\nwithdraw = {notice = "red"}\n',
            "events[1].at_s: must come after the notice 'red' (at_s 1), got 1",
        ),
        (
            NOTICE + '[[events]]\nat_s = 2\nwithdraw = {notice = "red"}\n'
            '[[events]]\nat_s = 3\nid = "again"\nwithdraw = {notice = "red"}\n',
            "events[2].withdraw.notice: 'red' is already withdrawn by 'withdraw_1'",
        ),
        (
            NOTICE + '[[events]]\nat_s = 2\nquery = {from = "IT", to = ["DE"], kind = "person",'
            ' notice = "blue"}\n',
            "events[1].query.notice: 'blue' is not a notice event id; expected one of red",
        ),
        (
            NOTICE + '[[events]]\nat_s = 2\nquery = {from = "IT", to = ["DE"], kind = "document",'
            ' notice = "red"}\n',
            "events[1].query.kind: a query for a notice's subject is a person search",
        ),
        (
            '[[events]]\nat_s = 1\nfault = "latency"\ntarget = "gateway"\nlatency_ms = 5\n',
            "events[0].target: only process faults (kill, pause, restart, resume) hit the"
            " gateway, not latency",
        ),
        (
            '[[events]]\nat_s = 1\nfault = "kill"\ntarget = "gateway"\nbureaus = ["FR"]\n',
            "events[0].bureaus: a fault of the gateway names no bureaus",
        ),
        (
            '[[events]]\nat_s = 1\nfault = "kill"\ntarget = "ship"\n',
            "events[0].target: expected one of 'bureaus', 'gateway', got 'ship'",
        ),
        (
            '[[events]]\nat_s = 1\nfault = "restart"\ntarget = "gateway"\n',
            "events[0].bureaus: restart of gateway, which no earlier kill without duration_s holds",
        ),
        (
            '[[events]]\nat_s = 1\nid = "a"\nfault = "kill"\ntarget = "gateway"\n'
            '[[events]]\nat_s = 2\nfault = "pause"\ntarget = "gateway"\n',
            "events[1].bureaus: gateway is already killed by 'a'",
        ),
        (
            '[[events]]\nat_s = 1\nfault = "kill"\nbureaus = ["FR"]\n'
            '[[events]]\nat_s = 2\nfault = "restart"\ntarget = "gateway"\n',
            "events[1].bureaus: restart of gateway, which no earlier kill",
        ),
    ],
)
def test_timeline_rules_for_notices_and_the_gateway(
    tmp_path: Path, events: str, expected: str
) -> None:
    """Withdrawals and notice queries name a notice; gateway faults are process faults that
    hold and release the gateway like a bureau."""
    assert _error(tmp_path, HEAD + events).startswith(f"sim.toml: {expected}")


def test_gateway_kill_with_duration_and_a_bureau_kill_coexist(tmp_path: Path) -> None:
    """Killing the gateway does not hold any bureau, and a bureau kill does not hold it."""
    loaded = load_scenario(
        tmp_path,
        HEAD + '[[events]]\nat_s = 1\nfault = "kill"\ntarget = "gateway"\nduration_s = 2\n'
        '[[events]]\nat_s = 2\nfault = "kill"\nbureaus = ["FR"]\n'
        '[[events]]\nat_s = 4\nfault = "kill"\ntarget = "gateway"\n',
    )
    assert [e.targets for e in loaded.events] == [(GATEWAY,), ("FR",), (GATEWAY,)]


@pytest.mark.parametrize(
    ("expect", "expected"),
    [
        ("messages.lots == 0", "messages.lots: 'lots' is not a key of messages"),
        (
            "messages.latency_ms.p95 < 9",
            "messages.latency_ms.p95: 'p95' is not a key of messages.latency_ms; expected one of"
            " p50, p99, max",
        ),
        (
            "messages.notices.blue.holders > 0",
            "'blue' is not a notice event id; expected one of red",
        ),
        ("messages.notices.red.held > 0", "'held' is not a key of messages.notices.red"),
        ("messages.notice_copies.sent > 0", "'sent' is not a key of messages.notice_copies"),
        ("messages.notices.red.holdres > 0", "did you mean messages.notices.red.holders?"),
    ],
)
def test_message_report_paths_are_checked_at_load(
    tmp_path: Path, expect: str, expected: str
) -> None:
    """A check naming a messages figure that no run reports is refused at load."""
    text = HEAD + NOTICE + f'[[checks]]\nexpect = "{expect}"\n'
    assert expected in _error(tmp_path, text)


def test_every_message_report_path_loads(tmp_path: Path) -> None:
    """Every messages path of the schema is accepted in a check of a scenario that posts."""
    loaded = load_scenario(tmp_path, HEAD + NOTICE)
    paths = [p for p in report_paths.check_paths(loaded) if p.startswith("messages.")]
    assert "messages.notices.red.holders" in paths
    assert "messages.notice_copies.delivered" in paths
    assert "messages.latency_ms.p99" in paths
    checks = "".join(f'[[checks]]\nexpect = "{p} >= 0"\n' for p in sorted(paths))
    assert len(load_scenario(tmp_path, HEAD + NOTICE + checks).checks) == len(paths)


@pytest.mark.parametrize("name", ["red-notice", "gateway-crash", "epervier"])
def test_builtin_message_scenarios_load_and_post(name: str) -> None:
    """The built-in scenarios of issue 6 load, post messages and check them."""
    loaded = scenario.load(name)
    assert any(e.kind in scenario.MESSAGE_EVENTS for e in loaded.events)
    assert any("messages." in c.expect for c in loaded.checks)
    if name == "gateway-crash":
        assert loaded.messages.rate_per_s > 0
        assert [e.id for e in loaded.faults() if e.target == GATEWAY] == [
            "gateway_down",
            "gateway_back",
        ]
    if name == "red-notice":
        assert "GS" in loaded.bureaus
        assert {e.kind for e in loaded.events} >= {"notice", "withdraw", "query"}
