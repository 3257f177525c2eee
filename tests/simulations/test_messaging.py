"""One-way messages in the simulator: the Messenger's accounting of every copy, and a real
run through a gateway crash and a recipient crash (tests/scenarios/messages.toml)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from support import load_scenario

from ncbsim import envelope
from ncbsim.node.inbox import Inbox
from ncbsim.simulations.message_plan import MessagePlan, PlannedPost
from ncbsim.simulations.message_report import CopyRecord, PostRecord
from ncbsim.simulations.messaging import Messenger
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
    loaded = load_scenario(tmp_path, HEAD + "[messages]\ndrain_s = 0.5\n")
    down: set[str] = {"IT"}
    messenger = Messenger(
        loaded,
        tmp_path,
        MessagePlan(),
        now_s=lambda: 1.0,
        event=lambda *args, **fields: None,  # the drain's end is the engine's phase event
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
    loaded = load_scenario(tmp_path, HEAD + "[messages]\ndrain_s = 0.5\n")
    messenger = Messenger(
        loaded,
        tmp_path,
        MessagePlan(),
        now_s=lambda: 1.0,
        event=lambda *args, **fields: None,
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
    loaded = load_scenario(tmp_path, HEAD + NOTICE)
    posts = MessagePlan(posts=[PlannedPost("red", 1, "notice", "FR", ("GS",), 60, notice="red")])
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
    faults = [
        (e.kind, e.correlation_id, e.view["fault"], e.view["target"])
        for _, e in timeline
        if e.kind.startswith("fault.")
    ]
    assert ("fault.applied", "gateway_crash", "kill", "gateway") in faults
    assert ("fault.healed", "gateway_crash", "kill", "gateway") in faults
    crash = run.report["faults"]["gateway_crash"]
    assert crash["target"] == "gateway"
    assert crash["end_s"] is not None
    # A post's sealed and returned events are one after the other on its sender's bus.
    sent_at = {(e.party, e.seq): t for t, e in timeline if e.kind == "post.sealed"}
    returned = [(sent_at[e.party, e.seq - 1], e) for _, e in timeline if e.kind == "post.returned"]
    down = [e for sent_s, e in returned if 2.0 <= sent_s < 3.5]
    assert down, "no post was sent while the gateway was down"
    assert all(e.view["stored"] == e.view["recipients"] for _, e in returned)
    assert any(int(e.view["attempts"]) > 1 for e in down), down


@pytest.mark.integration
def test_messages_run_exits_zero_and_leaves_no_process(run: SimulationRun) -> None:
    """Every check passes (built-in message checks included), exit 0, nothing left running."""
    assert run.returncode == 0, run.output
    names = {c["name"]: c["passed"] for c in run.report["checks"]}
    assert names["messages: nothing lost, nothing processed twice"]
    assert names["gateway files hold no message text"]
    assert all(names.values()), run.report["checks"]
    assert run.left_running() == []
