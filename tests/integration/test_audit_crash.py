"""A crash erases no audit row of an answer already given: the gateway and the nodes commit
an envelope's audit row before its answer leaves them (docs/audit.md)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from support import document_query

from ncbsim import auditread, envelope
from ncbsim.client import BureauClient, seal_query
from ncbsim.gateway.audit import read_all
from ncbsim.pki import PkiDir
from ncbsim.simulations.network import Network
from ncbsim.v2 import gateway_pb2, query_pb2
from ncbsim.workdir import Workdir

pytestmark = pytest.mark.integration

QUERIES = 48
"""Single-bureau queries in flight at once when the crash comes."""
MULTI = 8
"""Multi-bureau queries in flight besides them, each to every recipient."""
KILL_AT = QUERIES // 2
"""Answers that arrive before the crash: many, with as many still in flight."""


def _query(i: int) -> query_pb2.Query:
    return document_query(f"ZZ{i:07d}", "DE")


async def _answers_then_crash(
    network: Network, to: list[str], kill: Callable[[], None]
) -> set[str]:
    """Send QUERIES queries from FR (and MULTI multi-bureau ones if ``to`` has several
    bureaus) all at once, sealed beforehand; call ``kill`` the instant the KILL_AT-th
    answer arrives, while the others are in flight. The message ids of every answer FR
    got (one read after the kill still left before it)."""
    async with BureauClient.open(PkiDir(network.workdir), "FR", network.gateway.address) as client:
        await client.peers.resolve(to)

        def seal(i: int, bureau: str) -> envelope.SealedRequest:
            return seal_query(client.identity, client.peers.get(bureau), _query(i))

        async def single(i: int) -> set[str]:
            sealed = seal(i, to[i % len(to)])
            await client.stub.Query(gateway_pb2.QueryRequest(envelope=sealed.envelope), timeout=10)
            return {sealed.header.message_hex}

        async def multi(i: int) -> set[str]:
            sealed = {bureau: seal(i, bureau) for bureau in to}
            request = gateway_pb2.MultiQueryRequest(envelopes=[s.envelope for s in sealed.values()])
            reply = await client.stub.MultiQuery(request, timeout=10)
            return {
                sealed[d.bureau].header.message_hex
                for d in reply.deliveries
                if d.status == gateway_pb2.DELIVERY_STATUS_DELIVERED
            }

        calls = [single(i) for i in range(QUERIES)]
        calls += [multi(QUERIES + i) for i in range(MULTI if len(to) > 1 else 0)]
        tasks = [asyncio.ensure_future(call) for call in calls]
        pending, answers, killed = set(tasks), 0, False
        while pending and not killed:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            answers += sum(len(t.result()) for t in done if not t.exception())
            if answers >= KILL_AT:
                kill()  # at once: no await between the answer and the crash
                killed = True
        await asyncio.wait(tasks)
    assert killed, f"only {answers} answers came back: the crash never happened"
    answered: set[str] = set()
    for task in tasks:
        if not task.exception():  # after the crash: UNAVAILABLE
            answered |= task.result()
    assert answered, "no query was answered before the crash"
    return answered


def _node_rows(path: Path) -> dict[str, set[str]]:
    """message_id -> the outcomes a node's audit log holds for it."""
    columns, rows = auditread.search(path, auditread.Query())
    mid, outcome = columns.index("message_id"), columns.index("outcome")
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row[mid], set()).add(row[outcome])
    return found


def test_a_gateway_killed_right_after_an_answer_has_audited_every_answer(
    fresh_network: Network,
) -> None:
    """SIGKILLed the instant an answer reaches its client, with queries and multi-bureau
    queries in flight, the gateway's audit holds every envelope answered before the
    crash as delivered, and its chain verifies."""
    network = fresh_network
    pid = network.gateway.pid

    def kill() -> None:
        os.kill(pid, signal.SIGKILL)

    answered = asyncio.run(_answers_then_crash(network, ["DE", "IT", "NL"], kill))
    network.kill_gateway()  # reap it
    delivered = {
        r.message_id
        for r in read_all(Workdir(network.workdir).gateway.audit)
        if r.outcome == "delivered" and r.rpc in ("Query", "MultiQuery")
    }
    missing = sorted(answered - delivered)
    assert not missing, f"{len(missing)} of {len(answered)} answered envelopes not audited"
    verdict = auditread.verify(Workdir(network.workdir).gateway.audit)
    assert verdict.intact, verdict.describe()


def test_a_node_killed_right_after_an_answer_has_audited_every_answer(
    fresh_network: Network,
) -> None:
    """SIGKILLed the instant one of its answers reaches the asking bureau, a node's audit
    still holds every envelope it answered, and its chain verifies."""
    network = fresh_network
    host = next(h for h in network.hosts if h.bureaus == ["DE"])

    def kill() -> None:
        os.kill(host.pid, signal.SIGKILL)

    answered = asyncio.run(_answers_then_crash(network, ["DE"], kill))
    network.kill_host(host)  # reap it
    path = network.workdir / "bureaus" / "DE" / "audit.sqlite"
    rows = _node_rows(path)
    missing = sorted(m for m in answered if "answered" not in rows.get(m, set()))
    assert not missing, f"{len(missing)} of {len(answered)} answered envelopes not audited"
    verdict = auditread.verify(path)
    assert verdict.intact, verdict.describe()
