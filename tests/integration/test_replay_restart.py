"""Replay and time through real processes: a repeat is refused, also after a node restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from support import document_query

from ncbsim import auditread, envelope
from ncbsim.client import BureauClient, Outcome, open_answer, seal_query
from ncbsim.pki import PkiDir
from ncbsim.processes import alive
from ncbsim.simulations.network import Network
from ncbsim.v2 import gateway_pb2
from ncbsim.workdir import Workdir

pytestmark = pytest.mark.integration

QUERY = document_query("ZZ0000000", "DE")
RESTART_TIMEOUT_S = 30.0


def _client(network: Network) -> BureauClient:
    return BureauClient.open(PkiDir(network.workdir), "FR", network.gateway.address)


async def _seal(client: BureauClient, *, now_ms: int | None = None) -> envelope.SealedRequest:
    """FR's query to DE with a 2-minute lifetime, so it outlives a restart of DE's node."""
    await client.peers.resolve(["DE"])
    return seal_query(client.identity, client.peers.get("DE"), QUERY, ttl_ms=120_000, now_ms=now_ms)


async def _send(network: Network, request: envelope.Envelope) -> grpc.StatusCode:
    """Send ``request`` as is through the gateway; the status code it gets."""
    async with _client(network) as client:
        try:
            await client._stub.Query(gateway_pb2.QueryRequest(envelope=request), timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


async def _fresh_query(network: Network) -> Outcome:
    async with _client(network) as client:
        return (await client.query(QUERY, "DE", timeout=5)).outcome


def _restart_de(network: Network) -> subprocess.Popen[bytes]:
    """Stop DE's node by its pid (SIGTERM) and start it again as Network.start does."""
    workdir = network.workdir
    pid = network.node("DE").pid
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid), "DE's node did not stop on SIGTERM"
    ready = workdir / "run" / "node-DE.json"
    ready.unlink(missing_ok=True)
    log_path = workdir / "bureaus" / "DE" / "node.log"
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ncbsim",
                "--log-level",
                "debug",
                "node",
                "--dir",
                str(workdir),
                "--bureau",
                "DE",
                "--gateway",
                network.gateway.address,
                "--listen",
                "127.0.0.1:0",
                "--db",
                str(Workdir(workdir).bureau("DE").records),
                "--ready-file",
                str(ready),
            ],
            stdin=subprocess.DEVNULL,
            env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
            stdout=out,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + RESTART_TIMEOUT_S
        while not ready.exists():
            assert proc.poll() is None, f"restarted DE node exited with {proc.returncode}"
            assert time.monotonic() < deadline, "restarted DE node never became ready"
            time.sleep(0.05)
        while asyncio.run(_fresh_query(network)) not in (Outcome.HIT, Outcome.NO_HIT):
            assert time.monotonic() < deadline, "restarted DE node never answered"
            time.sleep(0.1)
    except BaseException:
        _stop(proc)
        raise
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _refusals(audit: Path, message_id: str, expected: int) -> list[dict[str, object]]:
    """The audit rows of ``message_id``, waiting (briefly) for ``expected`` of them."""
    deadline = time.monotonic() + 5
    while True:
        columns, rows = auditread.search(audit, auditread.Query(message_id=message_id))
        found = [dict(zip(columns, row, strict=True)) for row in rows]
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.mark.attack(
    "resend a genuine envelope through the gateway, also after the node restarts",
    adversary="replayer",
    expect="ALREADY_EXISTS + node audit reason replay",
)
def test_an_envelope_is_answered_once_even_across_a_node_restart(
    fresh_network: Network,
) -> None:
    """Sent twice: answered, then ALREADY_EXISTS; still ALREADY_EXISTS after DE restarts."""
    net = fresh_network

    async def first_two() -> tuple[envelope.SealedRequest, Outcome, grpc.StatusCode]:
        async with _client(net) as client:
            sealed = await _seal(client)
            wire = gateway_pb2.QueryRequest(envelope=sealed.envelope)
            response = (await client._stub.Query(wire, timeout=5)).envelope
            answer = open_answer(sealed, response, client.peers.get("DE"))
        return sealed, answer.outcome, await _send(net, sealed.envelope)

    sealed, outcome, again = asyncio.run(first_two())
    assert outcome in (Outcome.HIT, Outcome.NO_HIT)
    assert again == grpc.StatusCode.ALREADY_EXISTS
    assert asyncio.run(_fresh_query(net)) in (Outcome.HIT, Outcome.NO_HIT)

    restarted = _restart_de(net)
    try:
        assert net.node("DE").pid != restarted.pid
        assert asyncio.run(_send(net, sealed.envelope)) == grpc.StatusCode.ALREADY_EXISTS
        assert asyncio.run(_fresh_query(net)) in (Outcome.HIT, Outcome.NO_HIT)
    finally:
        _stop(restarted)

    rows = _refusals(net.workdir / "bureaus" / "DE" / "audit.sqlite", sealed.header.message_hex, 3)
    assert [(r["outcome"], r["reason"], r["status"]) for r in rows] == [
        ("answered", "", "OK"),
        ("refused", "replay", "ALREADY_EXISTS"),
        ("refused", "replay", "ALREADY_EXISTS"),
    ]
    assert all(r["sender"] == "FR" for r in rows)


@pytest.mark.attack(
    "send an expired or a pre-dated (beyond the skew) envelope",
    adversary="replayer",
    expect="INVALID_ARGUMENT + node audit reason unverified",
)
@pytest.mark.parametrize(
    ("label", "offset_ms"),
    [("expired", -10 * 60_000), ("from the future", envelope.CLOCK_SKEW_MS + 60_000)],
)
def test_expired_and_future_envelopes_are_refused_and_audited(
    network: Network, label: str, offset_ms: int
) -> None:
    """Issued 10 min ago (2 min TTL) or beyond the skew ahead: INVALID_ARGUMENT, audited."""
    net = network

    async def send() -> tuple[envelope.SealedRequest, grpc.StatusCode]:
        async with _client(net) as client:
            sealed = await _seal(client, now_ms=int(time.time() * 1000) + offset_ms)
        return sealed, await _send(net, sealed.envelope)

    sealed, code = asyncio.run(send())
    assert code == grpc.StatusCode.INVALID_ARGUMENT, label
    rows = _refusals(net.workdir / "bureaus" / "DE" / "audit.sqlite", sealed.header.message_hex, 1)
    assert [(r["outcome"], r["reason"]) for r in rows] == [("refused", "unverified")]
    assert asyncio.run(_fresh_query(net)) in (Outcome.HIT, Outcome.NO_HIT)
