"""The load users' sync sessions (load/user_sessions.py) against nodes that answer in
format 2: the first sessions opened in one MultiQuery, a session the node forgot dropped
and reopened, a rekey that closes the session it replaces, and goodbyes on stop.

The gateway is tests/support.py's in-process ``SessionsGateway`` (real
:class:`~ncbsim.session.ServerSessions` per bureau) on a real mTLS loopback socket, served
from an event loop in a thread of its own; the sessions call it with the ordinary sync
stub, as a locust user does (without gevent: nothing here imports locust).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pytest
from support import SessionsGateway, document_query

from ncbsim import padding, pki, session, transport
from ncbsim.client import Outcome, open_session_answer
from ncbsim.clock import Clock
from ncbsim.directory import Directory, Peer
from ncbsim.identity import Identity
from ncbsim.load.user_sessions import UserSessions, refused
from ncbsim.serving import start_server
from ncbsim.v2 import gateway_pb2, gateway_pb2_grpc

BODY = padding.padded(document_query("X1234567", "FR"), padding.REQUEST_BYTES)


@pytest.fixture(scope="module")
def pki_bureaus() -> list[str]:
    return ["FR", "DE", "IT", "NL"]


@contextmanager
def _gateway(directory: pki.PkiDir, clock: Clock) -> Iterator[tuple[SessionsGateway, str]]:
    """The fake gateway, served on a loop in its own thread, and its address."""
    fake = SessionsGateway(directory, now_ms=clock.now_ms)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        served = asyncio.run_coroutine_threadsafe(
            start_server(
                directory.tls("gateway"),
                "127.0.0.1:0",
                [],
                register=lambda s: gateway_pb2_grpc.add_GatewayServiceServicer_to_server(fake, s),
            ),
            loop,
        ).result(timeout=60)
        try:
            yield fake, served.address
        finally:
            asyncio.run_coroutine_threadsafe(served.server.stop(0), loop).result(timeout=60)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=60)
        loop.close()


@contextmanager
def _as_de(
    directory: pki.PkiDir,
) -> Iterator[tuple[UserSessions, SessionsGateway, Clock, dict[str, Peer]]]:
    """DE's sessions over a sync mTLS channel to the fake gateway, and DE's peers."""
    clock = Clock()
    with _gateway(directory, clock) as (fake, address):
        tls = directory.tls("DE")
        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls.root, private_key=tls.key, certificate_chain=tls.cert
        )
        options = [
            *transport.channel_options(),
            ("grpc.ssl_target_name_override", pki.GATEWAY_NAME),
        ]
        channel = grpc.secure_channel(address, credentials, options=options)
        try:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            identity = Identity.load(directory, "DE", now_ms=clock.now_ms())
            sessions = UserSessions(
                identity, stub, suite=directory.suite, timeout_s=30, now_ms=clock.now_ms
            )
            known = Directory.from_pki(directory)
            peers = {b: known.get(b) for b in ("FR", "IT", "NL")}
            yield sessions, fake, clock, peers
        finally:
            channel.close()


def _ask(sessions: UserSessions, peer: Peer) -> Outcome:
    """One query to ``peer`` in its session, as the locust user sends it."""
    live = sessions.get(peer.bureau)
    assert live is not None
    request = live.seal_request(BODY, now_ms=sessions.now_ms())
    reply = sessions.stub.Query(
        gateway_pb2.QueryRequest(envelope=request.envelope), timeout=sessions.timeout_s
    )
    return open_session_answer(request, reply.envelope, 0.0, sessions.now_ms()).outcome


def test_first_sessions_open_in_one_multi_query_and_carry_queries(
    module_pki: pki.PkiDir,
) -> None:
    """The three sessions a user starts with are one MultiQuery of OPENs; queries then run
    in them, and on stop each is closed with a SESSION_CLOSE its node answers."""
    with _as_de(module_pki) as (sessions, fake, _clock, peers):
        assert sessions.needed(list(peers.values())) == list(peers.values())
        size, failed = sessions.open(list(peers.values()))
        assert (failed, fake.multi_calls, sessions.handshakes) == ({}, 1, 3)
        assert size > 0
        assert sessions.needed(list(peers.values())) == []
        assert [_ask(sessions, peers["IT"]) for _ in range(3)] == [Outcome.NO_HIT] * 3
        live = sessions.get("IT")
        assert live is not None
        sessions.close_all()
        assert len(sessions) == 0
        assert live.erased
    assert fake.kinds == [
        *["session_open"] * 3,
        *["query_request"] * 3,
        *["session_close"] * 3,
    ]


def test_a_session_the_node_forgot_is_refused_then_dropped_and_reopened(
    module_pki: pki.PkiDir,
) -> None:
    """After a node restart its request is FAILED_PRECONDITION; the dropped session sends
    no goodbye, and the one opened in its place (a single Query) answers."""
    with _as_de(module_pki) as (sessions, fake, _clock, peers):
        fr = peers["FR"]
        assert sessions.open([fr])[1] == {}
        fake.forget()
        with pytest.raises(grpc.RpcError) as caught:
            _ask(sessions, fr)
        assert refused(caught.value)
        old = sessions.get("FR")
        sessions.drop("FR")
        assert old is not None
        assert old.erased
        assert sessions.needed([fr]) == [fr]
        assert sessions.open([fr])[1] == {}
        assert _ask(sessions, fr) == Outcome.NO_HIT
        assert fake.multi_calls == 0
    assert fake.kinds == ["session_open", "query_request", "session_open", "query_request"]


def test_a_rekey_opens_the_next_session_and_closes_the_one_it_replaces(
    module_pki: pki.PkiDir,
) -> None:
    """A session 50 s old is due for rekey: the new one is opened, the old one said goodbye
    to and erased, and the next query runs in the new one."""
    with _as_de(module_pki) as (sessions, fake, clock, peers):
        nl = peers["NL"]
        sessions.open([nl])
        old = sessions.get("NL")
        assert old is not None
        clock.offset_ms += session.REKEY_AFTER_MS
        assert sessions.needed([nl]) == [nl]
        assert sessions.open([nl])[1] == {}
        assert old.erased
        assert sessions.get("NL") is not old
        assert _ask(sessions, nl) == Outcome.NO_HIT
    assert fake.kinds == ["session_open", "session_open", "session_close", "query_request"]


def test_a_refused_open_fails_each_bureau_with_its_reason(module_pki: pki.PkiDir) -> None:
    """OPENs of a suite the network does not run are refused: in a MultiQuery each bureau
    fails alone, named with the delivery's status; alone, the Query's gRPC error is
    raised. No session is held either way."""
    with _as_de(module_pki) as (sessions, _fake, _clock, peers):
        other = {session.SUITES["classic"], session.SUITES["hybrid"]} - {module_pki.suite}
        sessions.suite = other.pop()
        _size, failed = sessions.open([peers["FR"], peers["IT"]])
        assert failed == {
            b: f"{b}: session not opened: REFUSED INVALID_ARGUMENT" for b in ("FR", "IT")
        }
        with pytest.raises(grpc.RpcError) as caught:
            sessions.open([peers["NL"]])
        assert not refused(caught.value)
        assert len(sessions) == 0
        assert sessions.handshakes == 0
