"""Users under a bureau on a running network of real processes (docs/users.md): issued
with `ncbsim user add` while it runs, they query through the gateway as themselves; the
gateway refuses what their bureau did not grant, a revoked user, a certificate a bureau
minted outside its namespace and an entry a bureau signed for another's user."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from support import query_for

from ncbsim import _crypto, bureau_ca, transport, users
from ncbsim.client import Outcome, open_answer, seal_query
from ncbsim.directory import Directory
from ncbsim.gateway.audit import read_all
from ncbsim.identity import Identity
from ncbsim.node.store import RecordStore
from ncbsim.pki import PkiDir, TlsFiles
from ncbsim.simulations.network import Network
from ncbsim.v2 import gateway_pb2, gateway_pb2_grpc, users_pb2
from ncbsim.workdir import Workdir

pytestmark = pytest.mark.integration


def _user(network: Network, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ncbsim", "user", *args, "--workdir", str(network.workdir)],
        capture_output=True,
        text=True,
        check=False,
    )


def _keys(pki: PkiDir, principal: str) -> Identity:
    folder = pki.party(principal)
    return Identity.from_keys(
        principal,
        _crypto.signing_key_from_pem((folder / "signing.key").read_bytes()),
        _crypto.x25519_from_pem((folder / "encryption.key").read_bytes()),
    )


def _query(network: Network, principal: str, to: str, tls: TlsFiles | None = None) -> object:
    """A format 1 document check of one of ``to``'s records, sent through the gateway as
    ``principal`` with its own keys and certificate: the Outcome, or the status code."""
    pki = PkiDir(network.workdir)
    store = RecordStore(Workdir(network.workdir).bureau(to).records)
    try:
        doc = store.sample("document", 1, random.Random(3))[0]
    finally:
        store.close()
    recipient = Directory.from_pki(pki).get(to)

    async def ask() -> object:
        sealed = seal_query(_keys(pki, principal), recipient, query_for(doc))
        channel = transport.gateway_channel(network.gateway.address, tls or pki.tls(principal))
        try:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            reply = await stub.Query(gateway_pb2.QueryRequest(envelope=sealed.envelope), timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        finally:
            await channel.close()
        return open_answer(sealed, reply.envelope, recipient).outcome

    return asyncio.run(ask())


def _gateway_rows(network: Network, peer: str) -> list[tuple[str, str, str]]:
    rows = read_all(Workdir(network.workdir).gateway.audit)
    return [(r.rpc, r.outcome, r.status) for r in rows if r.peer == peer]


def _eventually(check: object, timeout: float = 10.0) -> object:
    """Call ``check`` until it returns something else than UNAVAILABLE (a node still
    fetching a user it has never seen) or the timeout passes."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def test_a_user_added_while_the_network_runs_queries_as_itself(network: Network) -> None:
    """`user add` on a running network: the border officer's query reaches DE and DE's
    answer, sealed to the officer's response key, opens; the gateway audits it under
    FR/cdg-border-12."""
    added = _user(network, "add", "--bureau", "FR", "--name", "cdg-border-12", "--role", "border")
    assert added.returncode == 0, added.stderr
    assert "FR/cdg-border-12: border, serial 1" in added.stdout
    assert _eventually(lambda: _query(network, "FR/cdg-border-12", "DE")) == Outcome.HIT
    assert ("Query", "delivered", "OK") in _gateway_rows(network, "FR/cdg-border-12")


def test_a_partner_may_not_query(network: Network) -> None:
    """A partner agency (no query kinds) is PERMISSION_DENIED at the gateway and audited."""
    added = _user(network, "add", "--bureau", "FR", "--name", "douane-1", "--role", "partner")
    assert added.returncode == 0, added.stderr
    assert _query(network, "FR/douane-1", "DE") == grpc.StatusCode.PERMISSION_DENIED
    assert _gateway_rows(network, "FR/douane-1") == [("Query", "refused", "PERMISSION_DENIED")]


def test_a_revoked_user_is_refused_while_its_bureau_and_colleagues_pass(
    network: Network,
) -> None:
    """After `user revoke` the user is refused (revoked) without a restart; IT itself and
    IT's other user still get their answers."""
    for name in ("rome-inv-1", "rome-inv-2"):
        done = _user(network, "add", "--bureau", "IT", "--name", name, "--role", "investigator")
        assert done.returncode == 0, done.stderr
    assert _eventually(lambda: _query(network, "IT/rome-inv-1", "DE")) == Outcome.HIT
    revoked = _user(network, "revoke", "--bureau", "IT", "--name", "rome-inv-1")
    assert revoked.returncode == 0, revoked.stderr
    assert "IT and its other users are untouched" in revoked.stdout
    time.sleep(0.5)  # the gateway's directory refresh interval (250 ms)
    assert _query(network, "IT/rome-inv-1", "DE") == grpc.StatusCode.UNAUTHENTICATED
    assert _eventually(lambda: _query(network, "IT/rome-inv-2", "DE")) == Outcome.HIT
    listed = _user(network, "list", "--bureau", "IT")
    assert "revoked" in listed.stdout.splitlines()[0]
    assert "active" in listed.stdout.splitlines()[1]


def test_a_certificate_fr_mints_for_a_german_user_fails_the_handshake(network: Network) -> None:
    """FR's CA issuing a certificate for DE/mallory: the gateway's TLS handshake refuses it,
    so nothing of it reaches the gateway's audit trail."""
    pki = PkiDir(network.workdir)
    cert_path, key_path = pki.bureau_ca("FR")
    ca_key, ca_cert = bureau_ca.load_bureau_ca(cert_path.read_bytes(), key_path.read_bytes())
    chain, key = bureau_ca.issue_user_certificate(
        ca_key, ca_cert, "DE", "mallory", now=dt.datetime.now(dt.UTC)
    )
    forged = TlsFiles(root=pki.ca_cert.read_bytes(), cert=chain, key=key)

    async def call() -> grpc.StatusCode:
        channel = transport.gateway_channel(network.gateway.address, forged)
        try:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            await stub.Routes(gateway_pb2.RoutesRequest(), timeout=3)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        finally:
            await channel.close()
        return grpc.StatusCode.OK

    assert asyncio.run(call()) == grpc.StatusCode.UNAVAILABLE
    assert _gateway_rows(network, "DE/mallory") == []


def test_an_entry_fr_signs_for_a_german_user_is_refused_and_audited(
    network: Network, tmp_path: Path
) -> None:
    """An entry FR signs for DE/forged, filed under DE: the running gateway refuses it,
    audits user_entry_refused, and never serves it to DE's node."""
    pki = PkiDir(network.workdir)
    if not pki.user_entry_path("FR/cdg-border-12").exists():
        users.issue_user(pki, "FR", "cdg-border-12", "border", now_ms=int(time.time() * 1000))
    signed = pki.user_entry_path("FR/cdg-border-12").read_bytes()
    entry = users_pb2.UserEntry.FromString(users_pb2.SignedUserEntry.FromString(signed).entry)
    entry.bureau, entry.name = "DE", "forged"
    fr_key = _crypto.signing_key_from_pem((pki.party("FR") / "signing.key").read_bytes())
    body = entry.SerializeToString()
    forged = users_pb2.SignedUserEntry(
        entry=body, signature=_crypto.ed25519_sign(fr_key, users.ENTRY_CONTEXT + body)
    ).SerializeToString()
    pki.user_entry_path("DE/forged").parent.mkdir(parents=True, exist_ok=True)
    pki.user_entry_path("DE/forged").write_bytes(forged)

    async def directory() -> gateway_pb2.GetDirectoryResponse:
        channel = transport.gateway_channel(network.gateway.address, pki.tls("DE"))
        try:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            reply: gateway_pb2.GetDirectoryResponse = await stub.GetDirectory(
                gateway_pb2.GetDirectoryRequest(bureaus=["DE/forged", "FR/cdg-border-12"]),
                timeout=5,
            )
            return reply
        finally:
            await channel.close()

    try:
        reply = asyncio.run(directory())
        served = [users.entry_principal(u.SerializeToString()) for u in reply.users]
        assert served == ["FR/cdg-border-12"]

        def refused() -> list[tuple[str, str]]:
            return [
                (r.rpc, r.sender)
                for r in read_all(Workdir(network.workdir).gateway.audit)
                if r.outcome == "user_entry_refused"
            ]

        deadline = time.monotonic() + 10
        while not refused() and time.monotonic() < deadline:  # the row is queued, not awaited
            time.sleep(0.1)
        assert refused() == [("LoadUsers", "DE/forged")]
    finally:
        pki.user_entry_path("DE/forged").unlink()
