"""End to end: a gateway and four bureau nodes as separate processes, over mTLS on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support import document_query

from ncbsim import envelope, transport
from ncbsim.client import ALL, BureauClient, Outcome
from ncbsim.gateway.audit import read_all
from ncbsim.identity import Identity
from ncbsim.node.store import RecordStore
from ncbsim.pki import PkiDir
from ncbsim.processes import alive
from ncbsim.simulations.network import Network
from ncbsim.v2 import bureau_pb2, bureau_pb2_grpc, gateway_pb2, gateway_pb2_grpc, query_pb2
from ncbsim.workdir import Workdir

pytestmark = pytest.mark.integration


def _client(network: Network, bureau: str) -> BureauClient:
    return BureauClient.open(PkiDir(network.workdir), bureau, network.gateway.address)


def _document(network: Network, owner: str, seed: int = 1):  # type: ignore[no-untyped-def]
    store = RecordStore(Workdir(network.workdir).bureau(owner).records)
    try:
        return store.sample("document", 1, random.Random(seed))[0]
    finally:
        store.close()


def _doc_query(number: str, issuer: str) -> query_pb2.Query:
    return document_query(number, issuer)


async def _ask(network: Network, as_: str, query: query_pb2.Query, to: str):  # type: ignore[no-untyped-def]
    async with _client(network, as_) as client:
        return await client.query(query, to)


def test_document_hit_then_step2_fetch(network: Network) -> None:
    """A document DE holds is a hit for FR, and step 2 returns the full record."""
    doc = _document(network, "DE")

    async def scenario():  # type: ignore[no-untyped-def]
        async with _client(network, "FR") as client:
            hit = await client.query(_doc_query(doc.number, "DE"), "DE")
            fetch = query_pb2.Query(fetch=query_pb2.FetchQuery(ref=hit.matches[0].ref))
            return hit, await client.query(fetch, "DE")

    hit, fetched = asyncio.run(scenario())
    assert hit.outcome == Outcome.HIT
    assert [m.ref for m in hit.matches] == [doc.ref]
    assert fetched.outcome == Outcome.RECORD
    record = fetched.response.record.document
    assert (record.number, record.status, record.mrz) == (doc.number, doc.status, doc.mrz)


def test_unknown_document_is_no_hit(network: Network) -> None:
    """A number DE does not hold is answered as no-hit, not as an error."""
    answer = asyncio.run(_ask(network, "FR", _doc_query("ZZ0000000", "DE"), "DE"))
    assert answer.outcome == Outcome.NO_HIT


def test_fetch_of_unknown_reference_is_not_found(network: Network) -> None:
    """Step 2 for a reference the bureau never issued answers not-found."""
    fetch = query_pb2.Query(fetch=query_pb2.FetchQuery(ref="NOSUCHREFERENCE00000"))
    answer = asyncio.run(_ask(network, "IT", fetch, "NL"))
    assert answer.outcome == Outcome.NOT_FOUND


@pytest.mark.attack(
    "the gateway tells a hit from a no-hit, or a record from 'no such reference', by size",
    adversary="malicious gateway",
    expect="every request and every answer it relays has the same size (bodies are padded)",
)
def test_answers_of_every_kind_look_alike_to_the_gateway(network: Network) -> None:
    """The gateway's audit shows one request size and one answer size for a hit, a no-hit,
    a fetched record and a fetch of an unknown reference, and for short and long queries."""
    doc = _document(network, "DE")  # unrestricted (see test_document_hit_then_step2_fetch)

    async def scenario() -> list[str]:
        async with _client(network, "FR") as client:
            hit = await client.query(_doc_query(doc.number, "DE"), "DE")
            answers = [
                hit,
                await client.query(_doc_query("ZZ0000000", "DE"), "DE"),
                await client.query(
                    query_pb2.Query(fetch=query_pb2.FetchQuery(ref=hit.matches[0].ref)),
                    "DE",
                ),
                await client.query(
                    query_pb2.Query(fetch=query_pb2.FetchQuery(ref="NOSUCHREFERENCE00000")),
                    "DE",
                ),
                await client.query(
                    query_pb2.Query(
                        person=query_pb2.PersonQuery(
                            surname="X" * 64, given_names="Y" * 64, date_of_birth="1970-01-01"
                        )
                    ),
                    "DE",
                ),
            ]
        outcomes = [a.outcome for a in answers]
        assert outcomes == [
            Outcome.HIT,
            Outcome.NO_HIT,
            Outcome.RECORD,
            Outcome.NOT_FOUND,
            Outcome.NO_HIT,
        ]
        return [a.message_id for a in answers]

    ids = set(asyncio.run(scenario()))
    deadline = time.monotonic() + 5
    rows = []
    while time.monotonic() < deadline:
        rows = [r for r in read_all(Workdir(network.workdir).gateway.audit) if r.message_id in ids]
        if len(rows) == len(ids):
            break
        time.sleep(0.05)
    assert len(rows) == len(ids)
    assert len({r.request_bytes for r in rows}) == 1
    assert len({r.response_bytes for r in rows}) == 1


def test_multi_bureau_query_lists_every_bureau(network: Network) -> None:
    """A query to ALL reports each other bureau: the owner hits, the rest do not."""
    doc = _document(network, "IT", seed=3)

    async def scenario():  # type: ignore[no-untyped-def]
        async with _client(network, "FR") as client:
            return await client.multi_query(_doc_query(doc.number, "IT"), [ALL])

    answers = {a.bureau: a.outcome for a in asyncio.run(scenario())}
    assert answers == {"DE": Outcome.NO_HIT, "IT": Outcome.HIT, "NL": Outcome.NO_HIT}


@pytest.mark.attack(
    "a bureau sends an envelope whose header names another bureau as sender",
    adversary="rogue bureau",
    expect="PERMISSION_DENIED + gateway audit row (refused)",
)
def test_sender_spoofing_is_refused_and_audited(network: Network) -> None:
    """FR, authenticated by its certificate, cannot send an envelope whose header says DE."""
    pki = PkiDir(network.workdir)
    now = int(time.time() * 1000)
    fr = Identity.load(pki, "FR", now_ms=now)
    forged = Identity.from_keys("DE", fr.signing_key, fr.encryption_key)  # claims to be DE
    it = Identity.load(pki, "IT", now_ms=now).as_peer()
    key, public = envelope.new_response_key()
    body = _doc_query("X", "IT")
    body.response_key = public
    sealed = envelope.seal_request(
        body.SerializeToString(), sender=forged, recipient=it, response_key=key
    )

    async def send() -> grpc.StatusCode:
        channel = transport.gateway_channel(network.gateway.address, pki.tls("FR"))
        try:
            request = gateway_pb2.QueryRequest(envelope=sealed.envelope)
            await gateway_pb2_grpc.GatewayServiceStub(channel).Query(request, timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        finally:
            await channel.close()
        return grpc.StatusCode.OK

    assert asyncio.run(send()) == grpc.StatusCode.PERMISSION_DENIED
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        rows = [
            r
            for r in read_all(Workdir(network.workdir).gateway.audit)
            if r.message_id == sealed.header.message_hex
        ]
        if rows:
            break
        time.sleep(0.05)
    assert [(r.peer, r.sender, r.outcome, r.status) for r in rows] == [
        ("FR", "DE", "refused", "PERMISSION_DENIED")
    ]


@pytest.mark.attack(
    "a bureau's certificate calls another bureau's node directly",
    adversary="rogue bureau",
    expect="PERMISSION_DENIED",
)
def test_node_refuses_callers_other_than_the_gateway(network: Network) -> None:
    """A bureau certificate is not enough to call another bureau's node directly."""
    pki = PkiDir(network.workdir)
    node = network.node("DE")

    async def call() -> grpc.StatusCode:
        channel = transport.bureau_channel(node.address, pki.tls("FR"), "DE")
        try:
            await bureau_pb2_grpc.BureauServiceStub(channel).Handle(
                bureau_pb2.HandleRequest(), timeout=5
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        finally:
            await channel.close()
        return grpc.StatusCode.OK

    assert asyncio.run(call()) == grpc.StatusCode.PERMISSION_DENIED


def test_every_server_reports_serving_on_the_health_service(network: Network) -> None:
    """Gateway and nodes answer the standard gRPC health check over mTLS."""
    pki = PkiDir(network.workdir)

    async def check(address: str, name: str) -> int:
        channel = transport.secure_channel(address, pki.tls("operator"), peer_name=name)
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        finally:
            await channel.close()
        return int(reply.status)

    assert asyncio.run(check(network.gateway.address, "gateway.ncbsim")) == 1
    assert asyncio.run(check(network.node("NL").address, "nl.bureau.ncbsim")) == 1


def test_canary_never_reaches_the_gateways_files(network: Network) -> None:
    """A unique string inside a query is answered, yet appears nowhere in gateway logs or audit."""
    canary = f"Canary{os.urandom(8).hex()}"
    query = query_pb2.Query(
        person=query_pb2.PersonQuery(surname=canary, given_names="Ann", date_of_birth="1970-01-01")
    )
    answer = asyncio.run(_ask(network, "NL", query, "FR"))
    assert answer.outcome == Outcome.NO_HIT
    deadline = time.monotonic() + 5  # wait for the audit writer to flush this envelope
    while time.monotonic() < deadline and not any(
        r.message_id == answer.message_id for r in read_all(Workdir(network.workdir).gateway.audit)
    ):
        time.sleep(0.05)
    files = [p for p in Workdir(network.workdir).gateway.root.rglob("*") if p.is_file()]
    assert any(p.name.startswith("audit.sqlite") for p in files)
    assert any(p.name == "gateway.log" and p.stat().st_size > 0 for p in files)
    for path in files:
        assert canary.encode() not in path.read_bytes(), path
    # The gateway did relay that envelope: it audited the metadata, never the content.
    assert any(
        r.message_id == answer.message_id for r in read_all(Workdir(network.workdir).gateway.audit)
    )


def test_query_command_prints_json(network: Network) -> None:
    """`ncbsim query ... --json --fetch` reports the hit and the fetched record."""
    doc = _document(network, "NL", seed=5)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ncbsim",
            "query",
            "--workdir",
            str(network.workdir),
            "--as",
            "DE",
            "--to",
            "NL",
            "document",
            "--number",
            doc.number,
            "--issuer",
            "NL",
            "--json",  # the documented form puts output options after the kind
            "--fetch",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["answers"][0]["outcome"] == "hit"
    assert data["fetched"][0]["record"]["document"]["number"] == doc.number


def test_killed_and_hung_bureaus_are_no_answer_within_the_deadline(
    fresh_network: Network,
) -> None:
    """One node killed, one frozen: a multi-bureau query still returns in time, listing both."""
    net = fresh_network
    killed, hung = net.node("NL"), net.node("IT")
    os.kill(killed.pid, signal.SIGKILL)
    os.kill(hung.pid, signal.SIGSTOP)  # accepts connections, never answers
    try:
        deadline = time.monotonic() + 5
        while alive(killed.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        doc = _document(net, "DE", seed=9)

        async def scenario():  # type: ignore[no-untyped-def]
            async with _client(net, "FR") as client:
                await client.peers.load_all()
                started = time.perf_counter()
                answers = await client.multi_query(_doc_query(doc.number, "DE"), [ALL], timeout=3)
                return answers, time.perf_counter() - started

        answers, elapsed = asyncio.run(scenario())
    finally:
        os.kill(hung.pid, signal.SIGCONT)
    outcomes = {a.bureau: a.outcome for a in answers}
    assert outcomes == {"DE": Outcome.HIT, "IT": Outcome.NO_ANSWER, "NL": Outcome.NO_ANSWER}
    assert elapsed < 3.0  # the merged reply beat the caller's deadline


def test_logs_bind_message_ids_and_hold_no_key_material(network: Network) -> None:
    """Gateway and node log JSON lines carrying the message id; no private key ever appears."""
    answer = asyncio.run(_ask(network, "DE", _doc_query("ZZ1111111", "FR"), "FR"))
    assert answer.outcome == Outcome.NO_HIT
    logs = [Path(p.log) for p in network.procs]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [json.loads(line) for path in logs for line in path.read_text().splitlines()]
        tagged = {
            (e.get("role"), e["event"]) for e in lines if e.get("message_id") == answer.message_id
        }
        if {("gateway", "relayed"), ("node:FR", "answered")} <= tagged:
            break
        time.sleep(0.05)
    assert {("gateway", "relayed"), ("node:FR", "answered")} <= tagged
    assert all("correlation_id" in e for e in lines if e.get("message_id"))
    key_texts = [
        (network.workdir / "bureaus" / b / name).read_bytes().split(b"\n")[1]
        for b in ("FR", "DE")
        for name in ("signing.key", "encryption.key", "tls.key")
    ]
    for path in logs:
        data = path.read_bytes()
        assert b"PRIVATE KEY" not in data
        assert not any(k in data for k in key_texts)


def test_reflection_lists_the_services(network: Network) -> None:
    """The gateway exposes server reflection, so grpcurl-style tools can discover it."""
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    pki = PkiDir(network.workdir)

    async def list_services() -> set[str]:
        channel = transport.gateway_channel(network.gateway.address, pki.tls("operator"))
        try:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            async for reply in stub.ServerReflectionInfo(iter([request]), timeout=5):
                return {s.name for s in reply.list_services_response.service}
        finally:
            await channel.close()
        return set()

    assert {"ncbsim.v2.GatewayService", "grpc.health.v1.Health"} <= asyncio.run(list_services())


def test_workdir_names_every_file_a_running_network_writes(network: Network) -> None:
    """Each file Workdir names for a network of one host per bureau exists while it runs,
    and every file of a bureau's or the gateway's folder is one Workdir names (keys,
    certificates, a log's head and SQLite's side files aside)."""
    files = Workdir(network.workdir)
    pki_files = {"tls.crt", "tls.key", "signing.key", "encryption.key", "ca.crt", "ca.key"}
    for code in (p.bureau for p in network.procs if p.bureau is not None):
        bureau = files.bureau(code)
        # The small scenario gives each bureau a host of its own: its log is in its folder.
        named = {
            bureau.records,
            bureau.audit,
            bureau.replay,
            bureau.hits,
            bureau.inbox,
            bureau.proofs,
            bureau.caps,
            bureau.log,
        }
        for path in named:
            assert path.is_file(), path
        on_disk = {
            p
            for p in bureau.root.iterdir()
            if p.is_file() and p.name not in pki_files and not p.name.endswith(_SIDE_FILES)
        }
        assert on_disk == named, code
    gateway = files.gateway
    for path in (gateway.audit, gateway.mailbox, gateway.log):
        assert path.is_file(), path
    on_disk = {
        p
        for p in gateway.root.iterdir()
        if p.is_file() and p.name not in pki_files and not p.name.endswith(_SIDE_FILES)
    }
    assert on_disk == {gateway.audit, gateway.mailbox, gateway.log}
    for host in network.hosts:
        assert files.host_spec(host.index).is_file()
        assert files.host_ready(host.index).is_file()
        assert Path(host.log) == files.bureau(host.bureaus[0]).log
    for path in (files.manifest, files.stamp, files.gateway_ready, files.pki.ca_cert):
        assert path.is_file(), path
    assert Path(network.gateway.log) == gateway.log


_SIDE_FILES = (".head", "-wal", "-shm", "-journal")
