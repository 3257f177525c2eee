"""One-way messages in the simulator: the scenario keys, the plan, the accounting, and a
real run through a gateway crash and a recipient crash (tests/scenarios/messages.toml)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ncbsim import envelope
from ncbsim.node.inbox import Inbox
from ncbsim.simulations import messaging, scenario
from ncbsim.simulations import paths as report_paths
from ncbsim.simulations.messaging import CopyRecord, Messenger, PlannedPost, PostRecord
from ncbsim.simulations.scenario import GATEWAY, ScenarioError
from ncbsim.v2 import messages_pb2
from ncbsim.workdir import Workdir

if TYPE_CHECKING:
    from conftest import SimulationRun

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "messages.toml"
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


def _load(tmp_path: Path, text: str) -> scenario.Scenario:
    path = tmp_path / "sim.toml"
    path.write_text(text)
    return scenario.load(str(path))


# ---------------------------------------------------------------- the schema


def test_messages_table_defaults_to_no_stream_and_reads_every_key(tmp_path: Path) -> None:
    """Without [messages] nothing is streamed; every key is read and typed when given."""
    assert _load(tmp_path, HEAD).messages == scenario.Messages()
    assert scenario.Messages().rate_per_s == 0.0
    loaded = _load(
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
    loaded = _load(
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
    diffusion = loaded.events[1].diffusion
    assert diffusion is not None
    assert diffusion.to == ("ALL",)
    assert diffusion.ttl_s is None
    assert loaded.events[1].id == "diffusion_1"
    note = loaded.event("note").message
    assert note is not None
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
    loaded = _load(
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
    loaded = _load(tmp_path, HEAD + NOTICE)
    paths = [p for p in report_paths.check_paths(loaded) if p.startswith("messages.")]
    assert "messages.notices.red.holders" in paths
    assert "messages.notice_copies.delivered" in paths
    assert "messages.latency_ms.p99" in paths
    checks = "".join(f'[[checks]]\nexpect = "{p} >= 0"\n' for p in sorted(paths))
    assert len(_load(tmp_path, HEAD + NOTICE + checks).checks) == len(paths)


@pytest.mark.parametrize("name", ["red-notice", "gateway-crash", "epervier"])
def test_builtin_message_scenarios_load_and_post(name: str) -> None:
    """The built-in scenarios of issue 6 load, post messages and check them."""
    loaded = scenario.load(name)
    assert any(e.kind in scenario.MESSAGE_EVENTS for e in loaded.events)
    assert any("messages." in c.expect for c in loaded.checks)
    if name == "gateway-crash":
        assert loaded.messages.rate_per_s > 0
        assert [e.id for e in loaded.events if e.target == GATEWAY] == [
            "gateway_down",
            "gateway_back",
        ]
    if name == "red-notice":
        assert "GS" in loaded.bureaus
        assert {e.kind for e in loaded.events} >= {"notice", "withdraw", "query"}


# ---------------------------------------------------------------- the plan


def test_plan_is_seeded_poisson_with_unique_probes(tmp_path: Path) -> None:
    """The stream is drawn from the seed: the same scenario gives the same posts, at about
    the rate, each text of text_bytes with its own probe, never sent to its sender."""
    loaded = _load(
        tmp_path,
        HEAD + '[messages]\nrate_per_s = 10\ntext_bytes = 80\ndiffusion_to = ["DE", "IT"]\n'
        '[[events]]\nat_s = 5\nid = "note"\nmessage = {from = "FR", to = ["DE"]}\n',
    )
    first, second = messaging.plan(loaded, {}), messaging.plan(loaded, {})
    assert [(p.at_s, p.sender, p.to, p.text) for p in first.posts] == [
        (p.at_s, p.sender, p.to, p.text) for p in second.posts
    ]
    stream = [p for p in first.posts if p.label != "note"]
    assert 120 <= len(stream) <= 280  # 200 expected over 20 s at 10/s
    assert all(len(p.text) == 80 and p.probe in p.text for p in stream)
    assert len({p.probe for p in first.posts}) == len(first.posts)
    assert all(p.sender not in p.to for p in first.posts)
    assert {p.kind for p in stream} == {"diffusion", "message"}
    assert all(set(p.to) <= {"DE", "IT"} for p in stream if p.kind == "diffusion")
    assert [p.at_s for p in first.posts] == sorted(p.at_s for p in first.posts)
    assert any(p.label == "note" and p.to == ("DE",) for p in first.posts)


def test_subject_query_searches_the_notice_subject_without_accents() -> None:
    """A notice query asks for the subject as a border post types it."""
    subject = messages_pb2.NoticeSubject(
        surname="Müller", given_names="Zoë Anne", date_of_birth="1980-02-03"
    )
    query = messaging.subject_query(subject).person
    assert (query.surname, query.given_names, query.date_of_birth) == (
        "MULLER",
        "ZOE ANNE",
        "1980-02-03",
    )


# ---------------------------------------------------------------- the accounting


class _Receipts:
    """Stands in for a Mailer's receipts: the gateway's state of each copy."""

    def __init__(self, states: dict[bytes, str]) -> None:
        self.states = states

    async def receipts(self, after: int = 0, *, timeout_s: float = 10.0) -> list[Any]:
        return [
            type("Row", (), {"message_id": mid, "state": state})()
            for mid, state in self.states.items()
        ]


def _deliver(
    workdir: Path,
    code: str,
    sender: str,
    mid: bytes,
    post_id: bytes,
    at: int,
    kind: int = envelope.MESSAGE,
) -> None:
    """Write a processed copy into ``code``'s inbox file, as its postbox would."""
    body = (
        messages_pb2.Notice(notice_id=b"n" * 16)
        if kind == envelope.NOTICE
        else messages_pb2.CaseMessage(text="x")
    ).SerializeToString()
    inbox = Inbox(Workdir(workdir).bureau(code).inbox)
    try:
        with inbox.transaction():
            inbox.add(
                sender=sender,
                message_id=mid,
                post_id=post_id,
                kind=kind,
                issued_at_ms=at,
                processed_at_ms=at,
                body=body,
                envelope_sha256=b"\0" * 32,
                receipt=messages_pb2.SignedReceipt(),
            )
    finally:
        inbox.close()


def test_drain_accounts_each_copy_once_and_finds_what_went_wrong(tmp_path: Path) -> None:
    """Delivered copies are found in the inboxes, expired ones at the gateway, a copy to a
    bureau still down is pending; one neither anywhere is lost; a post processed under two
    message ids is a duplicate, and a later post processed first is out of order."""
    loaded = _load(tmp_path, HEAD + "[messages]\ndrain_s = 0.5\n")
    down: set[str] = {"IT"}
    events: list[dict[str, Any]] = []
    messenger = Messenger(
        loaded,
        tmp_path,
        messaging.MessagePlan(),
        now_s=lambda: 1.0,
        event=lambda name, **fields: events.append({"event": name, **fields}),
        down=lambda: down,
    )
    ids = [bytes([i]) * 16 for i in range(6)]
    posts = [
        PostRecord(PlannedPost(f"m{i}", 0, "message", "FR", ("DE",), 60), i, 0.0, 1000)
        for i in range(4)
    ]
    posts[0].copies = [CopyRecord("DE", ids[0], True, "accepted", 1)]  # delivered, 2nd
    posts[1].copies = [CopyRecord("DE", ids[1], True, "accepted", 2)]  # delivered, 1st
    posts[2].copies = [
        CopyRecord("DE", ids[2], True, "accepted", 3),  # expired at the gateway
        CopyRecord("IT", ids[3], True, "accepted", 4),  # IT is down: pending
        CopyRecord("GS", ids[4], True, "accepted", 5),  # nowhere: lost
    ]
    posts[3].copies = [CopyRecord("DE", ids[5], False, "queue_full")]  # never accepted
    for index, record in enumerate(posts):
        record.post_id = bytes([100 + index]) * 16
    messenger.records = posts
    _deliver(tmp_path, "DE", "FR", ids[1], posts[1].post_id, 1500)
    _deliver(tmp_path, "DE", "FR", ids[0], posts[0].post_id, 1700)
    _deliver(tmp_path, "DE", "FR", b"\x77" * 16, posts[0].post_id, 1800)  # a re-sealed copy
    messenger.mailers = {"FR": _Receipts({ids[2]: "expired", ids[3]: "queued"})}  # type: ignore[dict-item]

    asyncio.run(messenger.drain())
    report = messenger.report()

    assert report["sent"] == 4
    assert report["recipients"] == 6
    assert (report["accepted"], report["not_accepted"]) == (5, 1)
    assert (report["delivered"], report["expired"], report["pending"], report["lost"]) == (
        2,
        1,
        1,
        1,
    )
    assert report["duplicates_processed"] == 1
    assert report["out_of_order"] == 1
    assert report["latency_ms"]["max"] == 700.0
    assert events[-1]["event"] == "drain"
    assert events[-1]["lost"] == 1


class _GsReceipts:
    """Stands in for GS's Mailer: the notice copies GS posted, as Gateway.Receipts lists them."""

    def __init__(self, rows: list[tuple[int, bytes, bytes, str, int, str]]) -> None:
        self.rows = rows  # (sequence, message_id, post_id, recipient, kind, state)

    async def receipts(self, after: int = 0, *, timeout_s: float = 10.0) -> list[Any]:
        fields = ("sequence", "message_id", "post_id", "recipient", "kind", "state")
        rows = [row for row in self.rows if row[0] > after]
        return [type("Row", (), dict(zip(fields, row, strict=True)))() for row in rows]


def test_drain_accounts_gs_notice_copies_in_totals_and_apart(tmp_path: Path) -> None:
    """GS's notice copies, read from GS's receipts, are settled like the run's own (delivered
    from the inbox, expired at the gateway, pending to a bureau down, else lost), counted in
    the totals and in notice_copies, and the drain waits while GS's outbox is not empty."""
    loaded = _load(tmp_path, HEAD + "[messages]\ndrain_s = 0.5\n")
    messenger = Messenger(
        loaded,
        tmp_path,
        messaging.MessagePlan(),
        now_s=lambda: 1.0,
        event=lambda name, **fields: None,
        down=lambda: {"IT"},
    )
    request = PostRecord(PlannedPost("red", 0, "notice", "FR", ("GS",), 60), 0, 0.0, 1000)
    request.post_id = b"\x01" * 16
    request.copies = [CopyRecord("GS", b"\x02" * 16, True, "accepted", 1)]
    messenger.records = [request]
    _deliver(tmp_path, "GS", "FR", b"\x02" * 16, request.post_id, 1200)
    publish, withdraw = b"\x10" * 16, b"\x20" * 16
    gs_rows = [
        (1, b"\x11" * 16, publish, "FR", envelope.NOTICE, "delivered"),
        (2, b"\x12" * 16, publish, "DE", envelope.NOTICE, "expired"),
        (3, b"\x13" * 16, publish, "IT", envelope.NOTICE, "queued"),  # IT is down: pending
        (4, b"\x21" * 16, withdraw, "DE", envelope.NOTICE, "queued"),  # nowhere: lost
        (5, b"\x31" * 16, b"\x30" * 16, "DE", envelope.MESSAGE, "delivered"),  # not a notice
    ]
    _deliver(tmp_path, "FR", "GS", b"\x11" * 16, publish, 1300, envelope.NOTICE)
    gs = Inbox(Workdir(tmp_path).bureau("GS").inbox)
    try:
        with gs.transaction():
            gs.add_outbox([("FR", b"\x40" * 16, 2**62, b"sealed")])  # never accepted
    finally:
        gs.close()
    fr = _Receipts({})
    gs_mailer = _GsReceipts(gs_rows)
    messenger.mailers = {"FR": fr, "GS": gs_mailer}  # type: ignore[dict-item]

    asyncio.run(messenger.drain())
    report = messenger.report()

    assert report["notice_copies"] == {
        "recipients": 4,
        "delivered": 1,
        "expired": 1,
        "rejected": 0,
        "pending": 1,
        "lost": 1,
    }
    assert (report["sent"], report["recipients"], report["accepted"]) == (3, 5, 5)
    assert (report["delivered"], report["expired"], report["pending"], report["lost"]) == (
        2,
        1,
        1,
        1,
    )
    assert report["latency_ms"]["max"] == 200.0  # the run's own copy only
    assert messenger.drain_s >= 0.5  # it waited for GS's outbox until drain_s


def test_senders_include_gs_when_notices_are_requested(tmp_path: Path) -> None:
    """A run that requests a notice opens a client as GS too, to read GS's notice copies."""
    loaded = _load(tmp_path, HEAD + NOTICE)
    posts = messaging.MessagePlan(
        posts=[PlannedPost("red", 1, "notice", "FR", ("GS",), 60, notice="red")]
    )
    messenger = Messenger(
        loaded, tmp_path, posts, now_s=lambda: 0.0, event=lambda *a, **k: None, down=set
    )
    assert messenger.senders() == ["FR", "GS"]


# ---------------------------------------------------------------- a real run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, simulate: Any) -> SimulationRun:
    """Run tests/scenarios/messages.toml once with the real CLI; its report and files."""
    result = simulate(SCENARIO, tmp_path_factory.mktemp("messages"), 180)
    print(json.dumps(result.report.get("messages"), indent=1))  # the figures, for the log
    return result


@pytest.mark.integration
def test_nothing_lost_or_processed_twice_through_gateway_and_recipient_crashes(
    run: SimulationRun,
) -> None:
    """After a SIGKILL of the gateway and of a recipient, every accepted copy was delivered
    exactly once or expired: none lost, none processed twice, none out of order."""
    m = run.report["messages"]
    assert m["recipients"] > 50, m
    assert m["accepted"] == m["recipients"], m
    assert m["lost"] == 0, m
    assert m["pending"] == 0, m
    assert m["duplicates_processed"] == 0, m
    assert m["delivered"] + m["expired"] == m["recipients"], m
    assert m["expired"] >= 1, m  # the 1 s message to IT while it was down
    assert m["out_of_order"] == 0, m


@pytest.mark.integration
def test_the_gateway_really_crashed_mid_stream_and_posts_waited_for_it(
    run: SimulationRun,
) -> None:
    """The gateway was SIGKILLed and restarted, posts were sent while it was down, and those
    were stored once it was back (retried with the same envelopes)."""
    timeline = run.timeline()
    faults = [e for e in timeline if e["event"] in ("fault", "heal")]
    assert {"event": "fault", "id": "gateway_crash", "kind": "kill", "target": "gateway"} in [
        {k: e[k] for k in ("event", "id", "kind", "target") if k in e} for e in faults
    ]
    assert any(e["event"] == "heal" and e["id"] == "gateway_crash" for e in faults)
    crash = run.report["faults"]["gateway_crash"]
    assert crash["target"] == "gateway"
    assert crash["end_s"] is not None
    down = [e for e in timeline if e["event"] == "post" and 2.0 <= e["t_s"] < 3.5]
    assert down, "no post was sent while the gateway was down"
    assert all(e["stored"] == e["copies"] for e in timeline if e["event"] == "post")
    assert any(e["attempts"] > 1 for e in down), down


@pytest.mark.integration
def test_messages_run_exits_zero_and_leaves_no_process(run: SimulationRun) -> None:
    """Every check passes (built-in message checks included), exit 0, nothing left running."""
    assert run.returncode == 0, run.output
    names = {c["name"]: c["passed"] for c in run.report["checks"]}
    assert names["messages: nothing lost, nothing processed twice"]
    assert names["gateway files hold no message text"]
    assert all(names.values()), run.report["checks"]
    assert run.left_running() == []
