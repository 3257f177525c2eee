"""A network of the post-quantum hybrid suite (`pki init --suite hybrid`): its sessions
run over X-Wing, and a bureau whose client opens a classic session is refused."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import query_for

from ncbsim import session
from ncbsim.client import BureauClient, Outcome
from ncbsim.gateway.audit import read_all
from ncbsim.identity import Identity
from ncbsim.node.store import RecordStore
from ncbsim.pki import PkiDir
from ncbsim.simulations import scenario as scenarios
from ncbsim.simulations.network import Network
from ncbsim.v2 import query_pb2
from ncbsim.workdir import Workdir

pytestmark = pytest.mark.integration

SMALL = Path(__file__).parents[1] / "scenarios" / "small.toml"
ANSWERED = (Outcome.HIT, Outcome.NO_HIT)


@pytest.fixture(scope="module")
def hybrid_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """The small network with a PKI of the hybrid suite; always stopped."""
    net = Network.start(
        tmp_path_factory.mktemp("hybrid") / "net", scenarios.load(str(SMALL)), suite="hybrid"
    )
    try:
        yield net
    finally:
        net.stop()


def _query(network: Network, owner: str) -> query_pb2.Query:
    store = RecordStore(Workdir(network.workdir).bureau(owner).records)
    try:
        return query_for(store.sample("document", 1, random.Random(3))[0])
    finally:
        store.close()


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


def test_a_hybrid_network_answers_and_refuses_a_classic_client(
    hybrid_network: Network,
) -> None:
    """FR's query runs in a hybrid session; IT's client, set to the classic suite, has
    its SESSION_OPEN refused (INVALID_ARGUMENT, audited unverified) and gets no answer."""
    network = hybrid_network
    pki = PkiDir(network.workdir)
    assert pki.suite == session.SUITES["hybrid"]

    async def scenario() -> None:
        async with BureauClient.open(pki, "FR", network.gateway.address) as client:
            answer = await client.query(_query(network, "DE"), "DE")
            assert answer.outcome in ANSWERED, answer.detail
            live = client.sessions.live("DE")
            assert live is not None
            assert live.suite == session.SUITES["hybrid"]
        identity = Identity.load(pki, "IT", now_ms=int(time.time() * 1000))
        wrong = BureauClient(pki, identity, network.gateway.address, suite=session.DEFAULT_SUITE)
        async with wrong:
            refused = await wrong.query(_query(network, "DE"), "DE")
            assert refused.outcome == Outcome.FAILED
            assert "INVALID_ARGUMENT" in refused.detail
            assert wrong.sessions.handshakes == 0

    asyncio.run(scenario())
    assert [k for k, _s, _r in _rows(network, "DE", "FR")] == [
        "session_open",
        "query_request",
        "session_close",
    ]
    assert _rows(network, "DE", "IT") == [("session_open", "INVALID_ARGUMENT", "unverified")]
    relayed = {r.kind for r in read_all(Workdir(network.workdir).gateway.audit) if r.sender == "FR"}
    assert relayed == {"session_open", "query_request", "session_close"}
