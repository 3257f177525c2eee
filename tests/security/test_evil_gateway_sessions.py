"""A malicious gateway attacks format 2 sessions (docs/protocol.md §15) at live nodes:
it replays a session request, replays one after the node restarted, and withholds the
checkpoints that make queries provable. Real ``ncbsim node`` processes over mTLS; the
gateway's side is :mod:`session_wire` (the gateway's certificate and FR's genuine
envelopes). Each refusal is checked in the node's audit log, as an operator would."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from evil_net import EvilNet
from session_wire import GatewayLine, gateway_line, node_address

from ncbsim import auditread, envelope, session
from ncbsim.simulations.network import Network
from ncbsim.v2 import query_pb2

pytestmark = pytest.mark.integration

QUERY = query_pb2.Query(vehicle=query_pb2.VehicleQuery(plate="ZZ-000-ZZ")).SerializeToString()
OK = grpc.StatusCode.OK


def _rows(audit: Path, message_id: bytes, count: int = 1) -> list[dict[str, Any]]:
    """The node's audit rows for one message id, waiting for its writer to flush them."""
    deadline = time.monotonic() + 15
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if audit.exists():
            columns, found = auditread.search(audit, auditread.Query(message_id=message_id.hex()))
            rows = [dict(zip(columns, row, strict=True)) for row in found]
            if len(rows) >= count:
                return rows
        time.sleep(0.05)
    return rows


def _outcomes(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(r["outcome"], r["reason"], r["status"]) for r in rows]


def _answered(
    line: GatewayLine, held: session.ClientSession, request: session.SessionRequest
) -> None:
    """The node answers ``request`` and FR opens the answer."""
    reply = line.handle(request.envelope)
    assert reply.code == OK, reply
    assert reply.envelope is not None
    assert held.open_response(request, reply.envelope, now_ms=int(time.time() * 1000))


def _now() -> int:
    return int(time.time() * 1000)


@pytest.mark.attack(
    "the gateway forwards a format 2 session request to the node a second time",
    adversary="malicious gateway",
    expect="answered once; the replay ALREADY_EXISTS 'envelope already processed' + audit "
    "'replay' (its seq was taken in the session)",
)
def test_replayed_session_request_is_refused_and_audited(net: EvilNet) -> None:
    with gateway_line(net.workdir, node_address(net.workdir, "DE"), to="DE") as line:
        held = line.open()
        request = held.seal_request(QUERY, now_ms=_now())
        _answered(line, held, request)
        again = line.handle(request.envelope)
        assert (again.code, again.detail) == (
            grpc.StatusCode.ALREADY_EXISTS,
            "envelope already processed",
        )
        later = held.seal_request(QUERY, now_ms=_now())
        _answered(line, held, later)  # the session goes on
    audit = net.workdir / "bureaus" / "DE" / "audit.sqlite"
    assert _outcomes(_rows(audit, request.header.message_id, count=2)) == [
        ("answered", "", "OK"),
        ("refused", "replay", "ALREADY_EXISTS"),
    ]


@pytest.mark.attack(
    "the gateway withholds every checkpoint of a session so that FR's queries stay "
    "unprovable: it strips them from FR's requests, or drops the requests carrying one",
    adversary="malicious gateway",
    expect="the node answers no request 128 or more past the first uncovered seq: "
    "FAILED_PRECONDITION 'checkpoint required' + audit 'checkpoint_required'",
)
@pytest.mark.parametrize("how", ["strip", "drop"])
def test_withheld_checkpoints_are_refused_past_the_bound(net: EvilNet, how: str) -> None:
    with gateway_line(net.workdir, node_address(net.workdir, "DE"), to="DE") as line:
        held = line.open()
        withheld = 0
        while True:
            request = held.seal_request(QUERY, now_ms=_now())
            if request.envelope.checkpoint:
                withheld += 1
                if how == "drop":
                    continue
            bare = envelope.Envelope()
            bare.CopyFrom(request.envelope)
            bare.checkpoint = b""
            reply = line.handle(bare)
            if request.seq < 1 + session.MAX_UNCOVERED:
                assert reply.code == OK, (request.seq, reply)
                continue
            assert (reply.code, reply.detail) == (
                grpc.StatusCode.FAILED_PRECONDITION,
                "checkpoint required",
            )
            break
        assert withheld  # FR did attach checkpoints; the gateway kept them from DE
        fresh = line.open()  # FR's next session is served
        _answered(line, fresh, fresh.seal_request(QUERY, now_ms=_now()))
    audit = net.workdir / "bureaus" / "DE" / "audit.sqlite"
    assert _outcomes(_rows(audit, request.header.message_id)) == [
        ("refused", "checkpoint_required", "FAILED_PRECONDITION")
    ]


@pytest.mark.attack(
    "the gateway replays format 2 session requests (one answered, one never delivered) to a "
    "node that restarted since",
    adversary="malicious gateway",
    expect="FAILED_PRECONDITION 'session unknown' + audit 'session_unknown': sessions are "
    "never stored; a new session is served",
)
def test_session_request_replayed_after_a_node_restart_is_refused(
    fresh_network: Network,
) -> None:
    network = fresh_network
    address = network.node("DE").address
    with gateway_line(network.workdir, address, to="DE") as line:
        held = line.open()
        answered = held.seal_request(QUERY, now_ms=_now())
        _answered(line, held, answered)
        unseen = held.seal_request(QUERY, now_ms=_now())
        host = network.host_of("DE")
        network.kill_host(host)
        network.restart_host(host)
        for request in (answered, unseen):
            reply = line.handle(request.envelope)
            assert (reply.code, reply.detail) == (
                grpc.StatusCode.FAILED_PRECONDITION,
                "session unknown",
            )
        fresh = line.open()
        _answered(line, fresh, fresh.seal_request(QUERY, now_ms=_now()))
    audit = network.workdir / "bureaus" / "DE" / "audit.sqlite"
    assert _outcomes(_rows(audit, answered.header.message_id, count=2)) == [
        ("answered", "", "OK"),
        ("refused", "session_unknown", "FAILED_PRECONDITION"),
    ]
    assert _outcomes(_rows(audit, unseen.header.message_id)) == [
        ("refused", "session_unknown", "FAILED_PRECONDITION")
    ]
