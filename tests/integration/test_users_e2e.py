"""Users end to end on a running network: clients acting as a bureau's user, nodes
enforcing what only they see (docs/users.md).

Real processes: a gateway and the nodes of FR, DE, NG and GH, started once for the
module; users issued by their bureaus into the network's PKI while it runs
(``ncbsim.users.issue_user``, what ``ncbsim user add`` does); every query and post as a
user goes through the CLI in a subprocess, or through a BureauClient where a test needs
one client to outlive a revocation, over real mTLS with the user's own certificate.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from ncbsim import auditread, envelope
from ncbsim.client import BureauClient, Outcome, open_answer, seal_query
from ncbsim.node.hits import read_hits
from ncbsim.node.inbox import Inbox
from ncbsim.pki import PkiDir
from ncbsim.simulations import scenario as scenarios
from ncbsim.simulations.network import Network
from ncbsim.users import issue_user, revoke_user
from ncbsim.v2 import gateway_pb2, query_pb2
from ncbsim.workdir import find_gateway

pytestmark = pytest.mark.integration

SCENARIO = """
name = "users-e2e"
description = "FR's users query DE; GH and NG write to NG's partner user."
bureaus = ["FR", "DE", "NG", "GH"]
seed = 23

[records]
documents = 60
persons = 40
vehicles = 20
planted = 2
"""

CANARY = f"canary-{os.urandom(6).hex()}"
"""A diffusion's text: it must reach the user, and nobody else can read it."""

USERS = {
    "FR/cdg-border-12": "border",
    "FR/inv-7": "investigator",
    "FR/cdg-border-13": "border",
    "NG/ngo-x": "partner",
}


def _ncbsim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ncbsim", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _wait(what: str, check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """The four-bureau network, with FR's and NG's users issued; always stopped."""
    base = tmp_path_factory.mktemp("users")
    scenario = base / "users.toml"
    scenario.write_text(SCENARIO)
    network = Network.start(base / "net", scenarios.load(str(scenario)))
    try:
        now = int(time.time() * 1000)
        pki = PkiDir(network.workdir)
        for user, role in USERS.items():
            bureau, name = user.split("/")
            issue_user(pki, bureau, name, role, now_ms=now)
        yield network
    finally:
        network.stop()


@pytest.fixture(scope="module")
def document(net: Network) -> dict[str, Any]:
    """One of DE's documents, flagged for hit notification."""
    listed = _ncbsim(
        "record", "list", "--workdir", str(net.workdir), "--as", "DE", "--kind", "document",
        "--limit", "1", "--json",
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    doc: dict[str, Any] = json.loads(listed.stdout.splitlines()[0])
    flagged = _ncbsim(
        "record", "restrict", "--workdir", str(net.workdir), "--as", "DE", "--ref", doc["ref"],
        "--notify",
    )  # fmt: skip
    assert flagged.returncode == 0, flagged.stderr
    return doc


def _query(net: Network, who: str, *kind: str) -> tuple[int, dict[str, Any]]:
    result = _ncbsim(
        "query", "--workdir", str(net.workdir), "--as", who, "--to", "DE", "--json", *kind
    )
    assert result.stdout, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return result.returncode, data


def _doc_args(doc: dict[str, Any]) -> list[str]:
    return ["document", "--number", doc["number"], "--issuer", doc["issuer"]]


def _audit_rows(net: Network, bureau: str, sender: str) -> list[dict[str, Any]]:
    path = net.workdir / "bureaus" / bureau / "audit.sqlite"
    names, rows = auditread.search(path, auditread.Query(sender=sender))
    return [dict(zip(names, row, strict=True)) for row in rows]


def test_a_border_user_gets_a_hit_without_reference_and_no_person_query(
    net: Network, document: dict[str, Any]
) -> None:
    """FR/cdg-border-12 (hit-only) is told DE holds the document, with no reference to
    fetch; its person query is refused PERMISSION_DENIED and audited 'rights' at DE."""
    status, data = _query(net, "FR/cdg-border-12", *_doc_args(document))
    assert status == 0, data
    (answer,) = data["answers"]
    assert answer["outcome"] == "hit"
    assert [m["ref"] for m in answer["matches"]] == [""]
    status, data = _query(
        net, "FR/cdg-border-12", "person", "--surname", "DOE", "--dob", "1980-01-02"
    )
    (refused,) = data["answers"]
    assert status == 1
    assert refused["outcome"] == "failed"
    assert "PERMISSION_DENIED" in refused["detail"]
    rows = _audit_rows(net, "DE", "FR/cdg-border-12")
    assert any(r.get("reason") == "rights" for r in rows), rows


def test_an_investigator_fetches_and_the_owner_sees_which_user(
    net: Network, document: dict[str, Any]
) -> None:
    """FR/inv-7 gets the reference and the full record; DE's hit log names FR/inv-7,
    and ``ncbsim hits --requester FR`` finds it among FR's."""
    status, data = _query(net, "FR/inv-7", *_doc_args(document), "--fetch")
    assert status == 0, data
    (answer,) = data["answers"]
    assert [m["ref"] for m in answer["matches"]] == [document["ref"]]
    (fetched,) = data["fetched"]
    assert fetched["outcome"] == "record"
    hits_file = net.workdir / "bureaus" / "DE" / "hits.sqlite"
    _wait("DE's hit log", lambda: len(read_hits(hits_file, requester="FR/inv-7")) >= 2)
    listed = _ncbsim(
        "hits", "--workdir", str(net.workdir), "--as", "DE", "--requester", "fr", "--json"
    )
    assert listed.returncode == 0, listed.stderr
    requesters = {json.loads(line)["requester"] for line in listed.stdout.splitlines()}
    assert "FR/inv-7" in requesters
    assert requesters <= {"FR", *(u for u in USERS if u.startswith("FR/"))}


def test_format_one_answers_a_user_too(net: Network, document: dict[str, Any]) -> None:
    """A format-1 envelope sealed and signed with FR/inv-7's own keys, over its own mTLS
    channel, is answered with the reference (and is refused for the border user's person
    query)."""

    async def run() -> tuple[str, grpc.StatusCode | None]:
        pki = PkiDir(net.workdir)
        gateway = find_gateway(net.workdir, "FR")
        async with BureauClient.open(pki, "FR/inv-7", gateway) as client:
            (de,) = await client.peers.resolve(["DE"])
            query = query_pb2.Query(
                document=query_pb2.DocumentQuery(
                    number=document["number"], issuer=document["issuer"]
                )
            )
            sealed = seal_query(client.identity, de, query)
            reply = await client.stub.Query(
                gateway_pb2.QueryRequest(envelope=sealed.envelope), timeout=10
            )
            answer = open_answer(sealed, reply.envelope, de)
            refs = ",".join(m.ref for m in answer.matches)
        async with BureauClient.open(pki, "FR/cdg-border-12", gateway) as border:
            (de,) = await border.peers.resolve(["DE"])
            person = query_pb2.Query(
                person=query_pb2.PersonQuery(surname="DOE", date_of_birth="1980-01-02")
            )
            sealed = seal_query(border.identity, de, person)
            try:
                await border.stub.Query(
                    gateway_pb2.QueryRequest(envelope=sealed.envelope), timeout=10
                )
            except grpc.aio.AioRpcError as exc:
                return refs, exc.code()
        return refs, None

    refs, refused = asyncio.run(run())
    assert refs == document["ref"]
    assert refused == grpc.StatusCode.PERMISSION_DENIED


def test_a_diffusion_to_a_partner_user_is_kept_sealed_for_it(net: Network) -> None:
    """GH's diffusion to NG/ngo-x is delivered to NG's node, kept sealed (NG's own inbox
    does not list it, its stored bytes hold no plaintext), opened by ``inbox --as
    NG/ngo-x``; GH's receipt is NG's signature for NG/ngo-x."""
    sent = _ncbsim(
        "diffuse", "--workdir", str(net.workdir), "--as", "GH", "--to", "ng/ngo-x",
        "--subject", "lookout", "--text", CANARY, "--json",
    )  # fmt: skip
    assert sent.returncode == 0, sent.stdout + sent.stderr
    inbox_path = net.workdir / "bureaus" / "NG" / "inbox.sqlite"

    def kept() -> list[tuple[bytes, int]]:
        if not inbox_path.is_file():
            return []
        inbox = Inbox.read(inbox_path)
        try:
            return inbox.user_mail("NG/ngo-x")
        finally:
            inbox.close()

    _wait("NG's node to keep the copy", lambda: bool(kept()))
    assert all(CANARY.encode() not in sealed for sealed, _ in kept())
    opened = _ncbsim("inbox", "--workdir", str(net.workdir), "--as", "NG/ngo-x", "--json")
    assert opened.returncode == 0, opened.stderr
    items = json.loads(opened.stdout)["items"]
    assert [(i["sender"], i["kind"], i["body"]["text"]) for i in items] == [
        ("GH", "diffusion", CANARY)
    ]
    own = _ncbsim("inbox", "--workdir", str(net.workdir), "--as", "NG", "--json")
    assert CANARY not in own.stdout

    def copies() -> list[tuple[str, str, bool]]:
        listed = _ncbsim("receipts", "--workdir", str(net.workdir), "--as", "GH", "--json")
        assert listed.returncode == 0, listed.stdout + listed.stderr
        rows = json.loads(listed.stdout)["copies"]
        return [(c["recipient"], c["state"], c["receipt_verified"]) for c in rows]

    _wait("the gateway to settle GH's copy", lambda: copies()[0][1] != "queued")
    assert copies() == [("NG/ngo-x", "delivered", True)]
    sealed, _ = kept()[0]
    assert envelope.unverified_header(envelope.Envelope.FromString(sealed)).sender == "GH"


def test_a_revoked_user_is_refused_while_its_bureau_and_colleagues_query(
    net: Network, document: dict[str, Any]
) -> None:
    """Once FR revokes FR/cdg-border-13, its next query (from a client opened before the
    revocation, its session live) is refused; FR and FR/inv-7 still get answers."""
    pki = PkiDir(net.workdir)
    gateway = find_gateway(net.workdir, "FR")
    query = query_pb2.Query(
        document=query_pb2.DocumentQuery(number=document["number"], issuer=document["issuer"])
    )

    async def run() -> tuple[Outcome, Outcome, str]:
        async with BureauClient.open(pki, "FR/cdg-border-13", gateway) as doomed:
            before = await doomed.query(query, "DE", timeout=10)
            revoke_user(pki, "FR", "cdg-border-13", now_ms=int(time.time() * 1000))
            deadline = time.monotonic() + 30
            after = await doomed.query(query, "DE", timeout=10)
            while after.outcome == Outcome.HIT and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                after = await doomed.query(query, "DE", timeout=10)
        return before.outcome, after.outcome, after.detail

    before, after, detail = asyncio.run(run())
    assert before == Outcome.HIT
    assert after == Outcome.FAILED, detail
    for who in ("FR", "FR/inv-7"):
        status, data = _query(net, who, *_doc_args(document))
        assert status == 0, data
        assert data["answers"][0]["outcome"] == "hit"
    refused = _ncbsim(
        "query", "--workdir", str(net.workdir), "--as", "FR/cdg-border-13", "--to", "DE",
        *_doc_args(document),
    )  # fmt: skip
    assert refused.returncode == 2
    assert "revoked" in refused.stderr
