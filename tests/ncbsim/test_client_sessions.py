"""The client's session pool (ncbsim.client_sessions) against nodes that answer in
format 2: one handshake per peer shared by concurrent callers, the missing sessions of a
multi-bureau query opened in one call, a session the node forgot replaced transparently,
a rekey and a changed directory entry, and goodbyes on close.

The gateway is an in-process servicer on a real mTLS loopback socket whose bureaus hold
real :class:`~ncbsim.session.ServerSessions` (tests/support.py: ``SessionsGateway``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from support import SessionsGateway, document_query

from ncbsim import pki, rekey, session
from ncbsim.client import BureauClient, Outcome
from ncbsim.clock import Clock
from ncbsim.serving import start_server
from ncbsim.v2 import gateway_pb2_grpc

T = TypeVar("T")
QUERY = document_query("X1234567", "FR")


@pytest.fixture(scope="module")
def pki_bureaus() -> list[str]:
    return ["FR", "DE", "IT", "NL"]


def _as_de(
    directory: pki.PkiDir,
    use: Callable[[BureauClient, SessionsGateway, Clock], Awaitable[T]],
) -> T:
    """Run ``use`` with DE's client (on ``clock``) and the gateway its nodes share."""
    clock = Clock()

    async def main() -> T:
        fake = SessionsGateway(directory, now_ms=clock.now_ms)
        served = await start_server(
            directory.tls("gateway"),
            "127.0.0.1:0",
            [],
            register=lambda s: gateway_pb2_grpc.add_GatewayServiceServicer_to_server(fake, s),
        )
        try:
            client = BureauClient.open(directory, "DE", served.address, clock=clock)
            async with client:
                return await use(client, fake, clock)
        finally:
            await served.server.stop(0)

    return asyncio.run(main())


def test_concurrent_first_queries_share_one_handshake(module_pki: pki.PkiDir) -> None:
    """Twenty queries to IT at once open one session, and all twenty run in it; closing
    the client sends its SESSION_CLOSE, which IT answers."""

    async def use(client: BureauClient, fake: SessionsGateway, _: Clock) -> list[str]:
        answers = await asyncio.gather(*(client.query(QUERY, "IT") for _ in range(20)))
        assert {a.outcome for a in answers} == {Outcome.NO_HIT}, [a.detail for a in answers]
        assert client.sessions.handshakes == 1
        await client.close()
        assert len(client.sessions) == 0
        return fake.kinds

    kinds = _as_de(module_pki, use)
    assert kinds == ["session_open", *["query_request"] * 20, "session_close"]


def test_a_multi_query_opens_missing_sessions_in_one_call(module_pki: pki.PkiDir) -> None:
    """A query to FR, IT and NL opens the three sessions in one MultiQuery, then asks in
    one more; the next query to them is one call. A session already held is not opened
    again."""

    async def use(client: BureauClient, fake: SessionsGateway, _: Clock) -> list[str]:
        assert (await client.query(QUERY, "IT")).outcome == Outcome.NO_HIT
        answers = await client.multi_query(QUERY, ["FR", "IT", "NL"])
        assert [a.outcome for a in answers] == [Outcome.NO_HIT] * 3
        assert fake.multi_calls == 2
        await client.multi_query(QUERY, ["FR", "IT", "NL"])
        assert fake.multi_calls == 3
        assert client.sessions.handshakes == 3
        return fake.kinds

    kinds = _as_de(module_pki, use)
    assert kinds[:2] == ["session_open", "query_request"]
    assert kinds[2:4] == ["session_open"] * 2  # FR and NL, in one MultiQuery
    assert kinds[4:10] == ["query_request"] * 6


def test_a_session_the_node_forgot_is_replaced_and_the_query_retried(
    module_pki: pki.PkiDir,
) -> None:
    """After the node loses its sessions (a restart), the next query is refused
    FAILED_PRECONDITION once, then answered in a new session, one query and one multi."""

    async def use(client: BureauClient, fake: SessionsGateway, _: Clock) -> list[str]:
        assert (await client.multi_query(QUERY, ["IT", "NL"]))[0].outcome == Outcome.NO_HIT
        fake.forget()
        answer = await client.query(QUERY, "IT")
        assert answer.outcome == Outcome.NO_HIT, answer.detail
        answers = await client.multi_query(QUERY, ["IT", "NL"])
        assert [a.outcome for a in answers] == [Outcome.NO_HIT] * 2, answers
        assert client.sessions.handshakes == 4
        return fake.kinds

    kinds = _as_de(module_pki, use)
    assert kinds[4:7] == ["query_request", "session_open", "query_request"]  # IT, refused first
    assert kinds[7:] == [
        "query_request",  # IT, in its new session
        "query_request",  # NL, refused: NL forgot too
        "session_open",
        "query_request",
        "session_close",
        "session_close",
    ]


def test_a_session_due_for_rekey_is_replaced_in_the_background(module_pki: pki.PkiDir) -> None:
    """50 s into a session the next query still runs in it while a new one opens; the
    query after runs in the new one, and the old one is closed."""

    async def use(client: BureauClient, fake: SessionsGateway, clock: Clock) -> list[str]:
        assert (await client.query(QUERY, "NL")).outcome == Outcome.NO_HIT
        first = client.sessions.live("NL")
        clock.offset_ms += session.REKEY_AFTER_MS + 1_000
        assert (await client.query(QUERY, "NL")).outcome == Outcome.NO_HIT
        for _ in range(200):  # the new session lands in the background
            if client.sessions.live("NL") is not first:
                break
            await asyncio.sleep(0.01)
        assert client.sessions.live("NL") is not first
        assert (await client.query(QUERY, "NL")).outcome == Outcome.NO_HIT
        assert client.sessions.handshakes == 2
        return fake.kinds

    kinds = _as_de(module_pki, use)
    assert kinds.count("session_open") == 2
    assert kinds.count("session_close") == 2  # the old one once idle, the new one on close


def test_a_peer_whose_entry_changed_gets_a_new_session(pki_dir: pki.PkiDir) -> None:
    """After IT's keys rotate (its node restarted with them), DE's client, once it holds
    IT's new entry, leaves the old session and opens one under the new keys."""

    async def use(client: BureauClient, fake: SessionsGateway, _: Clock) -> list[str]:
        assert (await client.query(QUERY, "IT")).outcome == Outcome.NO_HIT
        old = client.sessions.live("IT")
        rekey.rotate(pki_dir, "IT", grace_ms=3_600_000)
        fake.forget()
        await client.peers.resolve(["IT"], refresh=True)
        assert (await client.query(QUERY, "IT")).outcome == Outcome.NO_HIT
        live = client.sessions.live("IT")
        assert live is not None
        assert old is not None
        assert live.peer_encryption_key_id != old.peer_encryption_key_id
        assert live.peer_encryption_key_id == client.peers.get("IT").encryption_key_id
        assert client.sessions.handshakes == 2
        return fake.kinds

    kinds = _as_de(pki_dir, use)
    assert kinds.count("session_open") == 2
    assert kinds.count("query_request") == 2  # no refusal: the change was seen first
