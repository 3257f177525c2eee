"""Query sessions (envelope format 2) through real processes: one handshake per pair, a
restart or a rotation opens a new session transparently, a replay and a client of the
wrong suite are refused, a revoked bureau's sessions end, and close says goodbye."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from support import query_for

from ncbsim import envelope, padding, transport
from ncbsim.client import BureauClient, Outcome
from ncbsim.gateway.audit import read_all
from ncbsim.node.store import RecordStore
from ncbsim.pki import PkiDir
from ncbsim.simulations.network import Network
from ncbsim.v2 import bureau_pb2, bureau_pb2_grpc, gateway_pb2, query_pb2
from ncbsim.workdir import Workdir

pytestmark = pytest.mark.integration

ANSWERED = (Outcome.HIT, Outcome.NO_HIT)


def _query(network: Network, owner: str, seed: int = 3) -> query_pb2.Query:
    """A document check of one of ``owner``'s records (a hit)."""
    store = RecordStore(Workdir(network.workdir).bureau(owner).records)
    try:
        doc = store.sample("document", 1, random.Random(seed))[0]
    finally:
        store.close()
    return query_for(doc)


def _client(network: Network, bureau: str) -> BureauClient:
    return BureauClient.open(PkiDir(network.workdir), bureau, network.gateway.address)


def _rows(network: Network, bureau: str, sender: str) -> list[tuple[str, str, str]]:
    """(kind, status, reason) of every envelope ``bureau``'s node took from ``sender``."""
    path = Workdir(network.workdir).bureau(bureau).audit
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT kind, status, reason FROM audit WHERE sender = ? ORDER BY seq", (sender,)
        ).fetchall()
    finally:
        conn.close()
    return [(str(k), str(s), str(r)) for k, s, r in rows]


def _body(network: Network) -> bytes:
    """A query as a session request carries it (padded, no response key)."""
    return padding.padded(_query(network, "DE"), padding.REQUEST_BYTES)


def _kinds(network: Network, bureau: str, sender: str) -> list[str]:
    return [kind for kind, _status, _reason in _rows(network, bureau, sender)]


def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _logged(network: Network, bureau: str, event: str, **fields: str) -> bool:
    lines = Path(network.node(bureau).log).read_text().splitlines()
    for line in lines:
        if line.startswith("{"):
            item = json.loads(line)
            if item.get("event") == event and all(item.get(k) == v for k, v in fields.items()):
                return True
    return False


def _ncbsim(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ncbsim", *args], capture_output=True, text=True, check=True
    )
    return done.stdout


async def _to_node(network: Network, bureau: str, request: envelope.Envelope) -> grpc.StatusCode:
    """Deliver straight to ``bureau``'s node with the gateway's certificate (a gateway
    replaying what it relayed)."""
    tls = PkiDir(network.workdir).tls("gateway")
    channel = transport.bureau_channel(network.node(bureau).address, tls, bureau)
    try:
        wire = bureau_pb2.HandleRequest(envelope=request)
        await bureau_pb2_grpc.BureauServiceStub(channel).Handle(wire, timeout=5)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    finally:
        await channel.close()
    return grpc.StatusCode.OK


def test_queries_to_one_bureau_share_one_handshake(network: Network) -> None:
    """FR's queries to DE, one after another and twenty at once, run in one session: DE's
    audit shows one session_open, then every query_request; closing the client sends
    SESSION_CLOSE, which DE answers."""

    async def scenario() -> list[Outcome]:
        async with _client(network, "FR") as client:
            outcomes = [(await client.query(_query(network, "DE"), "DE")).outcome]
            many = await asyncio.gather(
                *(client.query(_query(network, "DE", seed), "DE") for seed in range(20))
            )
            outcomes += [a.outcome for a in many]
            assert client.sessions.handshakes == 1
            assert client.sessions.live("DE") is not None
        return outcomes

    # Twenty first queries at once, on a client of its own: they share one handshake too.
    async def first_together() -> int:
        async with _client(network, "IT") as client:
            answers = await asyncio.gather(
                *(client.query(_query(network, "DE", seed), "DE") for seed in range(20))
            )
            assert all(a.outcome in ANSWERED for a in answers), [a.detail for a in answers]
            return client.sessions.handshakes

    outcomes = asyncio.run(scenario())
    assert set(outcomes) <= set(ANSWERED), outcomes
    kinds = _kinds(network, "DE", "FR")
    assert kinds == ["session_open", *["query_request"] * 21, "session_close"]
    assert {status for _kind, status, _reason in _rows(network, "DE", "FR")} == {"OK"}
    assert asyncio.run(first_together()) == 1
    assert _kinds(network, "DE", "IT").count("session_open") == 1


def test_a_multi_query_opens_the_missing_sessions_in_one_call(network: Network) -> None:
    """NL's query to ALL opens its three sessions in one MultiQuery of OPEN envelopes; a
    second one opens none."""

    async def scenario() -> None:
        async with _client(network, "NL") as client:
            first = await client.multi_query(_query(network, "FR"), ["ALL"])
            assert {a.bureau for a in first} == {"FR", "DE", "IT"}
            assert all(a.outcome in ANSWERED for a in first), [a.detail for a in first]
            assert client.sessions.handshakes == 3
            again = await client.multi_query(_query(network, "IT"), ["ALL"])
            assert all(a.outcome in ANSWERED for a in again), [a.detail for a in again]
            assert client.sessions.handshakes == 3

    asyncio.run(scenario())
    opens = [
        r
        for r in read_all(Workdir(network.workdir).gateway.audit)
        if r.sender == "NL" and r.kind == "session_open"
    ]
    assert sorted(r.recipient for r in opens) == ["DE", "FR", "IT"]
    assert {r.rpc for r in opens} == {"MultiQuery"}
    for bureau in ("FR", "DE", "IT"):
        assert _kinds(network, bureau, "NL")[:3] == [
            "session_open",
            "query_request",
            "query_request",
        ]


@pytest.mark.attack(
    "replay a format-2 request within its session, and after the node restarted",
    adversary="replayer",
    expect="ALREADY_EXISTS + audit 'replay' (seq taken); after a restart FAILED_PRECONDITION "
    "session_unknown",
)
def test_a_restarted_node_forces_a_new_session_and_refuses_old_requests(
    fresh_network: Network,
) -> None:
    """A request of FR's session, answered once, is refused when sent again; after DE's
    node restarts it is ``session unknown``, and FR's next query opens a new session
    without the caller noticing."""
    network = fresh_network

    async def scenario() -> None:
        async with _client(network, "FR") as client:
            assert (await client.query(_query(network, "DE"), "DE")).outcome in ANSWERED
            live = client.sessions.live("DE")
            assert live is not None
            now_ms = int(time.time() * 1000)
            old = live.seal_request(_body(network), now_ms=now_ms, ttl_ms=120_000).envelope
            assert await _to_node(network, "DE", old) == grpc.StatusCode.OK
            assert await _to_node(network, "DE", old) == grpc.StatusCode.ALREADY_EXISTS
            host = network.host_of("DE")
            network.kill_host(host)
            await asyncio.to_thread(network.restart_host, host)
            code = await _to_node(network, "DE", old)
            assert code == grpc.StatusCode.FAILED_PRECONDITION
            answer = await client.query(_query(network, "DE"), "DE")
            assert answer.outcome in ANSWERED, answer.detail
            assert client.sessions.handshakes == 2

    asyncio.run(scenario())
    rows = _rows(network, "DE", "FR")
    assert ("query_request", "ALREADY_EXISTS", "replay") in rows
    assert ("query_request", "FAILED_PRECONDITION", "session_unknown") in rows
    assert [k for k, _s, _r in rows].count("session_open") == 2


def test_rotation_and_revocation_end_sessions(fresh_network: Network) -> None:
    """DE's rotation ends every session its node holds (FR's next query opens a new
    one); IT's revocation ends IT's sessions at DE's node, which then refuses what IT
    seals in its old session, and IT's queries fail."""
    network = fresh_network
    workdir = str(network.workdir)

    async def scenario() -> None:
        async with _client(network, "FR") as fr, _client(network, "IT") as it:
            assert (await fr.query(_query(network, "DE"), "DE")).outcome in ANSWERED
            assert (await it.query(_query(network, "DE"), "DE")).outcome in ANSWERED

            _ncbsim("pki", "rotate", "--dir", workdir, "--bureau", "DE", "--grace", "1h")
            assert _until(lambda: _logged(network, "DE", "sessions_ended", reason="rotated"))
            answer = await fr.query(_query(network, "DE"), "DE")
            assert answer.outcome in ANSWERED, answer.detail
            assert fr.sessions.handshakes == 2

            assert (await it.query(_query(network, "DE"), "DE")).outcome in ANSWERED
            live = it.sessions.live("DE")
            assert live is not None
            _ncbsim("pki", "revoke", "--dir", workdir, "--bureau", "IT")
            assert _until(
                lambda: _logged(network, "DE", "sessions_ended", reason="revoked", sender="IT")
            )
            held = live.seal_request(_body(network), now_ms=_now()).envelope
            assert await _to_node(network, "DE", held) == grpc.StatusCode.INVALID_ARGUMENT
            answer = await it.query(_query(network, "DE"), "DE")
            assert answer.outcome == Outcome.FAILED, answer.detail

    asyncio.run(scenario())
    assert ("query_request", "INVALID_ARGUMENT", "revoked") in _rows(network, "DE", "IT")


def _now() -> int:
    return int(time.time() * 1000)


def test_a_query_still_works_in_format_1(network: Network) -> None:
    """Format 1 (seal_query/open_answer, the load users' and the demo's) is still
    relayed and answered next to the sessions."""
    from ncbsim.client import open_answer, seal_query

    async def scenario() -> Outcome:
        async with _client(network, "DE") as client:
            await client.peers.resolve(["NL"])
            peer = client.peers.get("NL")
            sealed = seal_query(client.identity, peer, _query(network, "NL"))
            reply = await client.stub.Query(
                gateway_pb2.QueryRequest(envelope=sealed.envelope), timeout=5
            )
            return open_answer(sealed, reply.envelope, peer).outcome

    assert asyncio.run(scenario()) == Outcome.HIT
    assert "query_request" in _kinds(network, "NL", "DE")
