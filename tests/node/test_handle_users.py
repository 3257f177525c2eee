"""Bureau.Handle in-process, format 1, for a bureau's users: each verified with its own
key through its bureau-signed entry, and held to the rights its bureau signed."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from support import fetch_query, person_query, query_for

from ncbsim import auditread, envelope, pki
from ncbsim.client import open_answer, seal_query
from ncbsim.directory import Directory
from ncbsim.errors import EnvelopeError
from ncbsim.identity import Identity
from ncbsim.node import datagen
from ncbsim.node.audit import NodeAuditLog
from ncbsim.node.replay import ReplayCache
from ncbsim.node.server import BureauService
from ncbsim.node.store import RecordStore
from ncbsim.peers import Peers
from ncbsim.users import issue_user
from ncbsim.v2 import bureau_pb2, query_pb2, records_pb2


class _AbortedError(Exception):
    def __init__(self, code: grpc.StatusCode, detail: str) -> None:
        super().__init__(f"{code.name}: {detail}")
        self.code = code


class _GatewayContext:
    """What Handle reads of a gRPC context: the gateway's mTLS identity, and abort."""

    def peer_identity_key(self) -> str:
        return "x509_subject_alternative_name"

    def peer_identities(self) -> list[bytes]:
        return [pki.GATEWAY_NAME.encode()]

    async def abort(
        self, code: grpc.StatusCode, detail: str, trailing_metadata: object = ()
    ) -> None:
        raise _AbortedError(code, detail)


@dataclass
class _Node:
    service: BureauService
    store: RecordStore
    audit: NodeAuditLog
    audit_path: Path
    directory: Directory
    pki: pki.PkiDir


@pytest.fixture(scope="module")
def pki_bureaus() -> list[str]:
    """DE's node; FR's users ask it."""
    return ["FR", "DE"]


@pytest.fixture
def node(pki_dir: pki.PkiDir, tmp_path: Path) -> Iterator[_Node]:
    db = tmp_path / "records.sqlite"
    datagen.generate(db, "DE", seed=1, documents=30, persons=10, vehicles=5)
    now = int(time.time() * 1000)
    issue_user(pki_dir, "FR", "cdg-border-12", "border", now_ms=now)
    issue_user(pki_dir, "FR", "inv-7", "investigator", now_ms=now)
    verified = Directory.from_pki(pki_dir)
    store = RecordStore(db)
    replay = ReplayCache(tmp_path / "replay.sqlite", clock_skew_ms=30_000)
    audit_path = tmp_path / "audit.sqlite"
    audit = NodeAuditLog(audit_path, batch_wait_s=3600.0)
    service = BureauService(
        Identity.load(pki_dir, "DE", now_ms=now),
        Peers(verified, gateway=None),
        store,
        audit,
        replay,
    )
    try:
        yield _Node(service, store, audit, audit_path, verified, pki_dir)
    finally:
        store.close()
        replay.close()
        audit.close()


def _ask(node: _Node, who: str, query: query_pb2.Query) -> query_pb2.Answer:
    """Seal ``query`` as ``who`` with its own keys, have DE handle it, open the answer."""
    identity = Identity.load(node.pki, who, now_ms=int(time.time() * 1000))
    sealed = seal_query(identity, node.directory.get("DE"), query)
    raw = bureau_pb2.HandleRequest(envelope=sealed.envelope).SerializeToString()
    response = asyncio.run(node.service.Handle(raw, _GatewayContext())).envelope
    answer = open_answer(sealed, response, node.directory.get("DE"))
    assert answer.response is not None, answer.detail
    return answer.response


def _audited(node: _Node) -> list[tuple[str, str]]:
    node.audit.close()  # flushes every queued row
    _, rows = auditread.search(node.audit_path, auditread.Query())
    return [(str(r[-3]), str(r[-4])) for r in rows]  # (status, reason)


def test_users_are_answered_within_their_rights(node: _Node) -> None:
    """FR's border officer gets a hit without a reference and is refused a person query
    (PERMISSION_DENIED, audited 'rights'); FR's investigator gets the reference and
    fetches the full record; each is verified with its own key."""
    (doc,) = node.store.sample("document", 1, random.Random(2))
    border = _ask(node, "FR/cdg-border-12", query_for(doc))
    assert [(m.ref, m.kind) for m in border.hits.matches] == [
        ("", records_pb2.RECORD_KIND_DOCUMENT)
    ]
    investigator = _ask(node, "FR/inv-7", query_for(doc))
    assert [m.ref for m in investigator.hits.matches] == [doc.ref]
    record = _ask(node, "FR/inv-7", fetch_query(doc.ref))
    assert record.record.document.number == doc.number
    with pytest.raises(_AbortedError) as refused:
        _ask(node, "FR/cdg-border-12", person_query("DOE", date_of_birth="1980-01-02"))
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(_AbortedError) as step_two:
        _ask(node, "FR/cdg-border-12", fetch_query(doc.ref))
    assert step_two.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert _audited(node) == [("OK", "")] * 3 + [("PERMISSION_DENIED", "rights")] * 2


def test_a_users_envelope_signed_with_another_key_is_rejected(node: _Node) -> None:
    """An envelope naming FR/cdg-border-12 but signed with FR/inv-7's key does not open:
    a user's sender name is bound to its own key through its bureau-signed entry."""
    (doc,) = node.store.sample("document", 1, random.Random(3))
    now = int(time.time() * 1000)
    impostor = Identity.load(node.pki, "FR/inv-7", now_ms=now)
    forged = Identity.from_keys("FR/cdg-border-12", impostor.signing_key, impostor.encryption_key)
    sealed = seal_query(forged, node.directory.get("DE"), query_for(doc))
    de = Identity.load(node.pki, "DE", now_ms=now)
    with pytest.raises(EnvelopeError):
        envelope.open_request(sealed.envelope, recipient=de, senders=node.directory.get)
    genuine = seal_query(
        Identity.load(node.pki, "FR/cdg-border-12", now_ms=now),
        node.directory.get("DE"),
        query_for(doc),
    )
    opened = envelope.open_request(genuine.envelope, recipient=de, senders=node.directory.get)
    assert opened.header.sender == "FR/cdg-border-12"
