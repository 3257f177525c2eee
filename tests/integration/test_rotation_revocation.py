"""Revocation and rotation take effect on a running network, without restarting anything."""

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

from ncbsim import envelope, transport
from ncbsim.client import BureauClient, Outcome
from ncbsim.directory import Directory
from ncbsim.gateway.audit import read_all
from ncbsim.identity import Identity
from ncbsim.node.store import RecordStore
from ncbsim.pki import PkiDir
from ncbsim.simulations.network import Network
from ncbsim.v2 import bureau_pb2, bureau_pb2_grpc, gateway_pb2, gateway_pb2_grpc, query_pb2
from ncbsim.workdir import Workdir

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000


def _ncbsim(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ncbsim", *args], capture_output=True, text=True, check=True
    )
    return done.stdout


def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _document_query(network: Network, owner: str) -> query_pb2.Query:
    store = RecordStore(Workdir(network.workdir).bureau(owner).records)
    try:
        doc = store.sample("document", 1, random.Random(3))[0]
    finally:
        store.close()
    return query_for(doc)


def _ask(network: Network, as_: str, to: str) -> Outcome:
    """A real client's document check of one of ``to``'s records (a planted hit)."""

    async def ask() -> Outcome:
        client = BureauClient.open(PkiDir(network.workdir), as_, network.gateway.address)
        async with client:
            answer = await client.query(_document_query(network, to), to)
        return answer.outcome

    return asyncio.run(ask())


def _sealed(network: Network, sender: str, to: str) -> envelope.Envelope:
    """A request from ``sender`` sealed now, to ``to``'s current key, valid for two hours."""
    pki = PkiDir(network.workdir)
    me = Identity.load(pki, sender, now_ms=int(time.time() * 1000))
    peer = Directory.from_pki(pki).get(to)
    key, public = envelope.new_response_key()
    body = _document_query(network, to)
    body.response_key = public
    return envelope.seal_request(
        body.SerializeToString(), sender=me, recipient=peer, response_key=key, ttl_ms=2 * HOUR_MS
    ).envelope


def _via_gateway(network: Network, as_: str, request: envelope.Envelope) -> grpc.StatusCode:
    async def send() -> grpc.StatusCode:
        tls = PkiDir(network.workdir).tls(as_)
        channel = transport.gateway_channel(network.gateway.address, tls)
        try:
            wire = gateway_pb2.QueryRequest(envelope=request)
            await gateway_pb2_grpc.GatewayServiceStub(channel).Query(wire, timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        finally:
            await channel.close()
        return grpc.StatusCode.OK

    return asyncio.run(send())


def _to_node(network: Network, bureau: str, request: envelope.Envelope) -> grpc.StatusCode:
    """Deliver straight to ``bureau``'s node with the gateway's certificate, as a gateway
    that withholds the revocation list from its bureaus could."""

    async def send() -> grpc.StatusCode:
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

    return asyncio.run(send())


def _node_reasons(network: Network, bureau: str, message_id: str) -> list[tuple[str, str]]:
    path = network.workdir / "bureaus" / bureau / "audit.sqlite"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT status, reason FROM audit WHERE message_id = ?", (message_id,)
        ).fetchall()
    finally:
        conn.close()
    return [(str(s), str(r)) for s, r in rows]


@pytest.mark.attack(
    "a revoked bureau keeps using its certificate and keys",
    adversary="leaked key",
    expect="gateway: UNAUTHENTICATED + audit; bureaus: INVALID_ARGUMENT, audit reason revoked",
)
def test_revoked_bureau_is_refused_everywhere_without_restart(fresh_network: Network) -> None:
    """After `ncbsim pki revoke`, the running gateway refuses FR's certificate and DE's
    node refuses FR's signature, while everyone else carries on; `pki rotate` and a
    fresh certificate bring FR back."""
    network = fresh_network
    assert _ask(network, "FR", "DE") == Outcome.HIT
    held = _sealed(network, "FR", "DE")  # signed before the revocation
    held_id = envelope.unverified_header(held).message_hex

    out = _ncbsim("pki", "revoke", "--dir", str(network.workdir), "--bureau", "FR")
    assert "revoked FR" in out

    refused = _sealed(network, "FR", "DE")
    assert _until(lambda: _via_gateway(network, "FR", refused) == grpc.StatusCode.UNAUTHENTICATED)
    assert _until(
        lambda: any(
            r.outcome == "refused" and r.status == "UNAUTHENTICATED"
            for r in read_all(Workdir(network.workdir).gateway.audit)
            if r.peer == "FR"
        )
    )
    # The gateway is bypassed: DE's node itself refuses what FR's revoked key signed.
    assert _until(lambda: _to_node(network, "DE", held) == grpc.StatusCode.INVALID_ARGUMENT)
    assert _until(lambda: ("INVALID_ARGUMENT", "revoked") in _node_reasons(network, "DE", held_id))
    # Everyone else is unaffected, and nobody can reach FR any more.
    assert _ask(network, "DE", "IT") == Outcome.HIT
    assert _ask(network, "IT", "FR") == Outcome.FAILED

    out = _ncbsim("pki", "rotate", "--dir", str(network.workdir), "--bureau", "FR")
    assert "new TLS certificate" in out
    assert _until(lambda: _ask(network, "FR", "DE") == Outcome.HIT)


def _logged(network: Network, bureau: str, event: str) -> bool:
    lines = Path(network.node(bureau).log).read_text().splitlines()
    return any(json.loads(x).get("event") == event for x in lines if x.startswith("{"))


@pytest.mark.attack(
    "an envelope sealed to a bureau's rotated-out key arrives after the grace period",
    adversary="leaked key",
    expect="INVALID_ARGUMENT (envelope rejected); within the grace period: answered",
)
def test_rotation_keeps_old_keys_for_the_grace_period_only(fresh_network: Network) -> None:
    """DE rotates with a 4 s grace. Once its node has reloaded (new keys), a request
    sealed to the old key is still answered; after the grace it is refused, and the old
    private keys are deleted from disk."""
    network = fresh_network
    early = _sealed(network, "FR", "DE")
    late = _sealed(network, "FR", "DE")
    old_key = envelope.unverified_header(early).recipient_key_id
    previous = network.workdir / "bureaus" / "DE" / "previous"

    _ncbsim("pki", "rotate", "--dir", str(network.workdir), "--bureau", "DE", "--grace", "4s")
    rotated_at = time.monotonic()
    assert _until(lambda: _logged(network, "DE", "identity_reloaded"))
    assert Directory.from_pki(PkiDir(network.workdir)).get("DE").encryption_key_id != old_key
    assert _via_gateway(network, "FR", early) == grpc.StatusCode.OK  # under the previous key
    early_id = envelope.unverified_header(early).message_hex
    assert _until(lambda: ("OK", "") in _node_reasons(network, "DE", early_id))
    assert (previous / "encryption.key").exists()
    assert _ask(network, "FR", "DE") == Outcome.HIT  # a new client seals to the new key

    time.sleep(max(0.0, rotated_at + 4.5 - time.monotonic()))
    assert _via_gateway(network, "FR", late) == grpc.StatusCode.INVALID_ARGUMENT
    late_id = envelope.unverified_header(late).message_hex
    assert _until(
        lambda: ("INVALID_ARGUMENT", "unverified") in _node_reasons(network, "DE", late_id)
    )
    assert _until(lambda: not previous.exists())
    # The node logged its reloads with key ids, and no key material.
    log_path = Path(network.node("DE").log)
    # The node logs the deletion just after it: wait for the line, not only the folder.
    assert _until(lambda: "previous_keys_deleted" in log_path.read_text())
    log_text = log_path.read_text()
    pem = (network.workdir / "bureaus" / "DE" / "signing.key").read_text()
    assert "".join(pem.strip().splitlines()[1:-1]) not in log_text


def test_a_running_client_follows_rotations_and_revocations(fresh_network: Network) -> None:
    """One BureauClient, open throughout, follows the PKI folder's revocation list: a
    rotation lists the replaced entry as superseded, so the client fetches the new entry
    before its next query. DE's answers, signed with its new key, open (1 h grace); NL's
    query is sealed to its new key (no grace); IT, once revoked, is refused at once."""
    network = fresh_network
    workdir = str(network.workdir)

    async def scenario() -> None:
        client = BureauClient.open(PkiDir(network.workdir), "FR", network.gateway.address)
        async with client:
            before = {b: (await client.query(_document_query(network, b), b)).outcome
                      for b in ("DE", "NL", "IT")}  # fmt: skip
            assert Outcome.FAILED not in before.values()

            _ncbsim("pki", "rotate", "--dir", workdir, "--bureau", "DE", "--grace", "1h")
            assert _until(lambda: _logged(network, "DE", "identity_reloaded"))
            answer = await client.query(_document_query(network, "DE"), "DE")
            assert answer.outcome == before["DE"], answer.detail

            _ncbsim("pki", "rotate", "--dir", workdir, "--bureau", "NL", "--grace", "0")
            assert _until(lambda: _logged(network, "NL", "identity_reloaded"))
            answer = await client.query(_document_query(network, "NL"), "NL")
            assert answer.outcome == before["NL"], answer.detail

            _ncbsim("pki", "revoke", "--dir", workdir, "--bureau", "IT")
            answer = await client.query(_document_query(network, "IT"), "IT")
            assert answer.outcome == Outcome.FAILED
            assert "revoked" in answer.detail or "no verified directory entry" in answer.detail

    asyncio.run(scenario())
