"""Bureau.Deliver in-process for copies addressed to a bureau's users: checked against the
user's entry and rights, kept sealed for the user, signed for by the bureau."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import Message

from ncbsim import auditread, envelope, messages, pki, receipts
from ncbsim.directory import Directory
from ncbsim.identity import Identity
from ncbsim.node import datagen
from ncbsim.node.audit import NodeAuditLog
from ncbsim.node.inbox import Inbox
from ncbsim.node.postbox import Postbox
from ncbsim.peers import Peers
from ncbsim.users import issue_user, revoke_user
from ncbsim.v2 import bureau_pb2, gateway_pb2, messages_pb2

PROCESSED = bureau_pb2.DELIVER_STATUS_PROCESSED
DUPLICATE = bureau_pb2.DELIVER_STATUS_DUPLICATE
REJECTED = bureau_pb2.DELIVER_STATUS_REJECTED


class _Context:
    """What Deliver reads of a gRPC context: the gateway's mTLS name, and abort."""

    def peer_identity_key(self) -> str:
        return "x509_subject_alternative_name"

    def peer_identities(self) -> list[bytes]:
        return [pki.GATEWAY_NAME.encode()]

    async def abort(
        self, code: grpc.StatusCode, detail: str, trailing_metadata: object = ()
    ) -> None:
        raise AssertionError(f"aborted {code.name}: {detail}")


class _Gateway:
    """A gateway that serves no entry for what it is asked: as for a revoked user."""

    async def GetDirectory(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.GetDirectoryRequest, timeout: float
    ) -> gateway_pb2.GetDirectoryResponse:
        return gateway_pb2.GetDirectoryResponse()


@dataclass
class _Node:
    postbox: Postbox
    inbox: Inbox
    audit: NodeAuditLog
    audit_path: Path
    directory: Directory


@pytest.fixture(scope="module")
def pki_bureaus() -> list[str]:
    return ["FR", "DE"]


def _now() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def de(pki_dir: pki.PkiDir, tmp_path: Path) -> Iterator[_Node]:
    """DE's postbox, with DE's partner user ngo-x and border user cdg-1 issued."""
    issue_user(pki_dir, "DE", "ngo-x", "partner", now_ms=_now())
    issue_user(pki_dir, "DE", "cdg-1", "border", now_ms=_now())
    issue_user(pki_dir, "FR", "inv-2", "investigator", now_ms=_now())
    records = tmp_path / "records.sqlite"
    datagen.generate(records, "DE", seed=1, documents=5, persons=5, vehicles=5)
    directory = Directory.from_pki(pki_dir)
    inbox = Inbox(tmp_path / "inbox.sqlite")
    audit = NodeAuditLog(tmp_path / "audit.sqlite", batch_wait_s=0.0)
    identity = Identity.load(pki_dir, "DE", now_ms=_now())
    postbox = Postbox(
        identity, Peers(directory, gateway=_Gateway()), inbox, audit, records_path=records
    )
    try:
        yield _Node(postbox, inbox, audit, tmp_path / "audit.sqlite", directory)
    finally:
        inbox.close()
        audit.close()


def _seal(
    pki_dir: pki.PkiDir, sender: str, recipient: str, kind: int, body: Message
) -> envelope.Envelope:
    return envelope.seal_message(
        messages.pack(body),
        sender=Identity.load(pki_dir, sender, now_ms=_now()),
        recipient=Directory.from_pki(pki_dir).get(recipient),
        kind=kind,
        post_id=b"p" * 16,
    )


def _deliver(node: _Node, *copies: envelope.Envelope) -> list[bureau_pb2.DeliverResult]:
    raw = bureau_pb2.DeliverRequest(envelopes=copies).SerializeToString()
    return list(asyncio.run(node.postbox.deliver(raw, _Context())).results)


def _reasons(node: _Node) -> list[tuple[str, str]]:
    node.audit.close()
    columns, rows = auditread.search(node.audit_path, auditread.Query())
    outcome, reason = columns.index("outcome"), columns.index("reason")
    return [(str(r[outcome]), str(r[reason])) for r in rows]


def test_a_copy_to_a_user_is_kept_sealed_and_signed_for_by_its_bureau(
    pki_dir: pki.PkiDir, de: _Node
) -> None:
    """FR/inv-2's diffusion to DE/ngo-x: PROCESSED with DE's receipt naming DE/ngo-x,
    kept as sealed bytes (no plaintext) and not among DE's own items; a redelivery is a
    DUPLICATE with the same receipt; only the user's key opens the kept copy."""
    body = messages_pb2.Diffusion(subject="s", text="secret-text-1")
    copy = _seal(pki_dir, "FR/inv-2", "DE/ngo-x", envelope.DIFFUSION, body)
    [first] = _deliver(de, copy)
    [again] = _deliver(de, copy)
    assert (first.status, again.status) == (PROCESSED, DUPLICATE)
    assert again.receipt == first.receipt
    receipt = receipts.verify(first.receipt, signer=de.directory.get("DE"), now_ms=_now())
    assert (receipt.sender, receipt.recipient) == ("FR/inv-2", "DE/ngo-x")
    assert de.inbox.items() == []
    [(kept, _)] = de.inbox.user_mail("DE/ngo-x")
    assert b"secret-text-1" not in kept
    user = Identity.load(pki_dir, "DE/ngo-x", now_ms=_now())
    opened = envelope.open_message(
        envelope.Envelope.FromString(kept), recipient=user, senders=de.directory.get
    )
    assert messages.unpack(opened.header.kind, opened.plaintext) == body
    assert _reasons(de) == [("processed", ""), ("duplicate", "")]


def test_a_copy_outside_the_users_receive_kinds_or_for_no_user_is_rejected(
    pki_dir: pki.PkiDir, de: _Node
) -> None:
    """A case message to DE's border user (diffusions only) is REJECTED 'rights'; a copy
    to a user DE's directory no longer holds (revoked) 'no_user'; one to FR's user
    delivered to DE 'wrong_recipient'. Nothing is kept."""
    message = messages_pb2.CaseMessage(thread="t", text="x")
    to_border = _seal(pki_dir, "FR", "DE/cdg-1", envelope.MESSAGE, message)
    to_other = _seal(pki_dir, "DE", "FR/inv-2", envelope.MESSAGE, message)
    to_revoked = _seal(pki_dir, "FR", "DE/ngo-x", envelope.MESSAGE, message)
    revoke_user(pki_dir, "DE", "ngo-x", now_ms=_now())
    de.directory.add_users([], [pki_dir.user_revocation_path("DE/ngo-x").read_bytes()])
    results = _deliver(de, to_border, to_other, to_revoked)
    assert [(r.status, r.detail) for r in results] == [
        (REJECTED, "rights"),
        (REJECTED, "wrong_recipient"),
        (REJECTED, "no_user"),
    ]
    assert de.inbox.user_mail("DE/cdg-1") == []
    assert de.inbox.user_mail("DE/ngo-x") == []
    assert _reasons(de) == [
        ("rejected", "rights"),
        ("rejected", "wrong_recipient"),
        ("rejected", "no_user"),
    ]
