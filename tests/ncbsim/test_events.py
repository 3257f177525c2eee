"""The event schema (ncbsim.events) and the bus (ncbsim.eventbus): what an event may hold,
its JSON and protobuf forms, and a bus that never blocks: drop-oldest buffers, counted
drops, sequence numbers, emitters on many threads, and nothing built without a subscriber.
The gateway's and the node's emitters (gateway/observed.py, node/observed.py) are checked
here on audit rows, without gRPC."""

from __future__ import annotations

import asyncio
import threading

import grpc
import pytest

from ncbsim import events
from ncbsim.eventbus import EventBus
from ncbsim.gateway import observed as gateway_observed
from ncbsim.gateway.audit import AuditRecord
from ncbsim.gateway.copies import DELIVERED, EXPIRED, REJECTED, Settled
from ncbsim.node import observed as node_observed
from ncbsim.node.audit import NodeAuditRecord, audit_record


def test_make_checks_kind_keys_and_values() -> None:
    """An unknown kind, a key the kind does not list, prose, a long text or a bytes value
    is refused when the event is made; a view of codes and numbers passes."""
    ok = events.make("query.relayed", "gateway", 1.0, {"sender": "DE", "bytes": 812})
    assert ok.view == {"sender": "DE", "bytes": 812}
    bad_views: list[tuple[str, dict[str, object]]] = [
        ("query.nonsense", {}),
        ("query.relayed", {"term": "SMITH"}),
        ("query.relayed", {"outcome": "a sentence, with (brackets)!"}),
        ("query.relayed", {"outcome": "x" * (events.MAX_TEXT + 1)}),
        ("query.relayed", {"bytes": b"raw"}),
        ("query.relayed", {"bytes": [1, 2]}),
    ]
    for kind, view in bad_views:
        with pytest.raises(ValueError, match=r"kind|view"):
            events.make(kind, "gateway", 1.0, view)  # type: ignore[arg-type]


def test_every_kind_lists_distinct_keys() -> None:
    """No kind lists a view key twice (docs/events.md documents each once)."""
    for kind, keys in events.KINDS.items():
        assert len(keys) == len(set(keys)), kind


def test_json_and_proto_round_trip() -> None:
    """An event survives its JSON line and its Observe message unchanged (with dropped)."""
    event = events.make(
        "query.answered",
        "FR",
        1_700_000_000.123456,
        {"sender": "DE", "bytes": 812, "elapsed_ms": 1.25, "response_bytes": 600},
        message_id="ab" * 16,
        correlation_id="cd" * 16,
        trace_id="ef" * 16,
        seq=42,
    )
    assert events.from_json(event.to_json()) == event
    back = events.from_proto(event.to_proto())
    assert back == event
    flag = events.make("process.stopped", "gateway", 2.0, {"reason": "signal", "pid": 1})
    assert events.from_proto(flag.to_proto()) == flag


def test_from_json_refuses_other_schemas_and_non_events() -> None:
    """A line of another schema version, or not an event at all, is a ValueError."""
    line = events.make("process.started", "DE", 1.0, {"role": "node"}).to_dict()
    with pytest.raises(ValueError, match="schema"):
        events.from_dict({**line, "schema": events.SCHEMA_VERSION + 1})
    for text in ('["x"]', '{"schema": 1}'):
        with pytest.raises(ValueError, match="not an event"):
            events.from_json(text)


def test_no_subscriber_builds_nothing_but_counts_seq() -> None:
    """Without a subscriber emit never reads the clock or checks the view; the sequence
    still advances, so a later subscriber's first seq tells how many went unobserved."""
    reads: list[int] = []

    def clock() -> float:
        reads.append(1)
        return 1.0

    bus = EventBus("gateway", clock=clock)
    assert not bus.observed
    for _ in range(5):
        bus.emit("query.relayed", {"bytes": 1})
    assert reads == []
    assert bus.emitted == 0
    sub = bus.subscribe()
    bus.emit("query.relayed", {"bytes": 1}, trace_id="")
    assert [e.seq for e in sub.drain()] == [6]


def test_a_full_buffer_drops_the_oldest_and_counts_them() -> None:
    """A subscriber that does not read keeps the newest ``buffer`` events; ``dropped``
    counts the rest; another subscriber of the same bus loses nothing."""
    bus = EventBus("FR")
    small, large = bus.subscribe(buffer=3), bus.subscribe(buffer=100)
    for _ in range(10):
        bus.emit("query.opened", {"sender": "DE", "bytes": 1}, trace_id="")
    assert [e.seq for e in small.drain()] == [8, 9, 10]
    assert small.dropped == 7
    assert [e.seq for e in large.drain()] == list(range(1, 11))
    assert large.dropped == 0


def test_kind_prefixes_filter() -> None:
    """A subscription to ``post.`` sees posts only; its seq numbers show the gaps."""
    bus = EventBus("gateway")
    posts = bus.subscribe(kinds=["post."])
    bus.emit("query.relayed", {"bytes": 1}, trace_id="")
    bus.emit("post.accepted", {"bytes": 1}, trace_id="")
    assert [(e.kind, e.seq) for e in posts.drain()] == [("post.accepted", 2)]


def test_a_bad_view_fails_only_when_observed() -> None:
    """A call site with a key its kind lacks raises once someone subscribes (so a test
    with a subscriber catches it), and costs nothing otherwise."""
    bus = EventBus("gateway")
    bus.emit("query.relayed", {"query": "SMITH"})
    bus.subscribe()
    with pytest.raises(ValueError, match="query"):
        bus.emit("query.relayed", {"query": "SMITH"})


def test_emitters_on_many_threads() -> None:
    """Emitters on 4 threads: every seq is unique and consecutive; a big buffer loses
    nothing, a small one holds ``buffer`` events and counts every other as dropped."""
    bus = EventBus("gateway")
    big, small = bus.subscribe(buffer=65536), bus.subscribe(buffer=50)
    per_thread, threads = 2000, 4

    def work() -> None:
        for _ in range(per_thread):
            bus.emit("query.relayed", {"bytes": 1}, trace_id="")

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    total = per_thread * threads
    seqs = sorted(e.seq for e in big.drain())
    assert seqs == list(range(1, total + 1))
    held = small.drain()
    assert len(held) == 50
    assert small.dropped == total - 50
    assert [e.seq for e in held] == sorted(e.seq for e in held)


def test_async_reader_wakes_for_events_from_another_thread() -> None:
    """``next_batch`` returns the events a writer thread emitted, and returns at once
    when the subscription is closed."""

    async def main() -> tuple[list[int], list[int]]:
        bus = EventBus("gateway")
        sub = bus.subscribe(loop=asyncio.get_running_loop())
        thread = threading.Thread(
            target=lambda: [bus.emit("post.delivered", {"bytes": 1}, trace_id="") for _ in range(3)]
        )
        thread.start()
        got: list[int] = []
        while len(got) < 3:
            got += [e.seq for e in await sub.next_batch(timeout=30)]
        thread.join()
        sub.close()
        after_close = [e.seq for e in await sub.next_batch(timeout=30)]
        return got, after_close

    got, after_close = asyncio.run(main())
    assert got == [1, 2, 3]
    assert after_close == []


def _row(rpc: str, outcome: str, status: str = "OK") -> AuditRecord:
    return AuditRecord(
        1,
        rpc,
        "DE",
        "aa" * 16,
        "bb" * 16,
        "DE",
        "FR",
        "query",
        0,
        0,
        900,
        700,
        outcome,
        status,
        2.5,
    )


def test_gateway_events_come_from_its_audit_rows() -> None:
    """The gateway's emitters carry the row's ids, parties, sizes and outcome; a refusal
    its reason code; a call with no envelope is call.refused."""
    bus = EventBus("gateway")
    sub = bus.subscribe()
    gateway_observed.relayed(bus, _row("Query", "delivered"))
    gateway_observed.refused(bus, _row("MultiQuery", "refused", "PERMISSION_DENIED"), "spoofed")
    gateway_observed.refused(bus, _row("Post", "refused", "INVALID_ARGUMENT"), "bad_envelope")
    register = _row("Register", "refused", "NOT_FOUND")._replace(message_id="", correlation_id="")
    gateway_observed.refused(bus, register, "unknown_recipient")
    gateway_observed.accepted(bus, _row("Post", "duplicate"), 17)
    got = [(e.kind, dict(e.view), e.message_id) for e in sub.drain()]
    assert got[0] == (
        "query.relayed",
        {
            "bytes": 900,
            "sender": "DE",
            "recipient": "FR",
            "kind": "query",
            "response_bytes": 700,
            "outcome": "delivered",
            "status": "OK",
            "elapsed_ms": 2.5,
        },
        "aa" * 16,
    )
    assert got[1][0] == "query.refused"
    assert got[1][1]["reason"] == "spoofed"
    assert got[1][1]["rpc"] == "MultiQuery"
    assert got[2][0] == "post.refused"
    assert got[2][1]["reason"] == "bad_envelope"
    assert got[3] == (
        "call.refused",
        {"rpc": "Register", "reason": "unknown_recipient", "status": "NOT_FOUND", "peer": "DE"},
        "",
    )
    assert got[4][0] == "post.accepted"
    assert got[4][1]["sequence"] == 17


@pytest.mark.parametrize(
    ("state", "detail", "kind", "key"),
    [
        (DELIVERED, "", "post.delivered", "lag_ms"),
        (EXPIRED, "ttl passed before delivery", "post.expired", "age_ms"),
        (REJECTED, "unverified", "post.rejected", "reason"),
        (REJECTED, "a long sentence a node should never have sent", "post.rejected", "reason"),
    ],
)
def test_settled_copies(state: str, detail: str, kind: str, key: str) -> None:
    """A settled copy is delivered, expired or rejected; a rejection's reason is the
    node's code, and anything that is not a code becomes ``rejected``."""
    bus = EventBus("gateway")
    sub = bus.subscribe()
    copy = Settled(3, "DE", b"\x01" * 16, b"\x02" * 16, "FR", 3, 0, 0, 500, state, 80, detail, 2, 1)
    gateway_observed.settled(bus, copy)
    (event,) = sub.drain()
    assert event.kind == kind
    assert key in event.view
    assert event.message_id == "01" * 16
    assert event.correlation_id == "02" * 16
    if kind == "post.rejected":
        assert event.view["reason"] == (detail if detail == "unverified" else "rejected")
    else:
        assert event.view["attempts"] == 2


def test_node_events_come_from_its_audit_rows() -> None:
    """A node's answered row is query.answered; a refused one query.refused with the
    node's reason (replay); Deliver rows are post.delivered, post.rejected, post.refused."""
    bus = EventBus("FR")
    sub = bus.subscribe()

    def row(outcome: str, reason: str = "") -> NodeAuditRecord:
        return audit_record(
            None,
            request_bytes=900,
            response_bytes=0,
            outcome=outcome,
            reason=reason,
            status=grpc.StatusCode.OK,
            elapsed_ms=1.0,
        )

    node_observed.handled(bus, row("answered"))
    node_observed.handled(bus, row("refused", "replay"))
    node_observed.delivered(bus, row("processed"))
    node_observed.delivered(bus, row("rejected", "unverified"))
    node_observed.delivered(bus, row("refused", "not_gateway"))
    got = [(e.kind, e.view.get("reason", e.view.get("outcome"))) for e in sub.drain()]
    assert got == [
        ("query.answered", None),
        ("query.refused", "replay"),
        ("post.delivered", "processed"),
        ("post.rejected", "unverified"),
        ("post.refused", "not_gateway"),
    ]
