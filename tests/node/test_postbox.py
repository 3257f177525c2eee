"""Bureau.Deliver in-process, with real identities, directory, inbox, records and audit log."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import Message

from ncbsim import auditread, envelope, messages, pki, receipts, rekey
from ncbsim.clock import Clock
from ncbsim.directory import Directory
from ncbsim.identity import Identity
from ncbsim.node import datagen, notices
from ncbsim.node.audit import NodeAuditLog
from ncbsim.node.inbox import Inbox
from ncbsim.node.postbox import Postbox
from ncbsim.node.store import RecordStore
from ncbsim.peers import Peers
from ncbsim.v2 import bureau_pb2, directory_pb2, gateway_pb2, messages_pb2

PROCESSED = bureau_pb2.DELIVER_STATUS_PROCESSED
DUPLICATE = bureau_pb2.DELIVER_STATUS_DUPLICATE
REJECTED = bureau_pb2.DELIVER_STATUS_REJECTED


class _AbortedError(Exception):
    def __init__(self, code: grpc.StatusCode, detail: str) -> None:
        super().__init__(f"{code.name}: {detail}")
        self.code = code


class _Context:
    """What Deliver reads of a gRPC context: the caller's mTLS DNS name, and abort."""

    def __init__(self, name: str = pki.GATEWAY_NAME) -> None:
        self.name = name

    def peer_identity_key(self) -> str:
        return "x509_subject_alternative_name"

    def peer_identities(self) -> list[bytes]:
        return [self.name.encode()]

    async def abort(
        self, code: grpc.StatusCode, detail: str, trailing_metadata: object = ()
    ) -> None:
        raise _AbortedError(code, detail)


class _DownGateway:
    """A gateway that cannot be reached: every directory fetch fails UNAVAILABLE."""

    async def GetDirectory(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.GetDirectoryRequest, timeout: float
    ) -> gateway_pb2.GetDirectoryResponse:
        raise grpc.aio.AioRpcError(
            grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata()
        )


@dataclass
class _BehindGateway:
    """A gateway that answers, from a directory that is behind: only ``entries``."""

    entries: list[bytes]
    asked: int = 0

    async def GetDirectory(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.GetDirectoryRequest, timeout: float
    ) -> gateway_pb2.GetDirectoryResponse:
        self.asked += 1
        return gateway_pb2.GetDirectoryResponse(
            entries=[directory_pb2.SignedDirectoryEntry.FromString(e) for e in self.entries]
        )


@dataclass
class _Node:
    bureau: str
    postbox: Postbox
    inbox: Inbox
    audit: NodeAuditLog
    audit_path: Path
    records: Path
    directory: Directory


@dataclass
class _Net:
    pki: pki.PkiDir
    tmp: Path
    nodes: list[_Node]

    def identity(self, bureau: str) -> Identity:
        return Identity.load(self.pki, bureau, now_ms=int(time.time() * 1000))

    def node(self, bureau: str, *, known: list[str] | None = None) -> _Node:
        """A postbox for ``bureau``; ``known``: the only senders its directory holds."""
        folder = self.tmp / bureau
        folder.mkdir(exist_ok=True)
        records = folder / "records.sqlite"
        if not records.exists():
            datagen.generate(records, bureau, seed=1, documents=5, persons=5, vehicles=5)
        directory = Directory.from_pki(self.pki)
        peers = Peers(directory, gateway=None)
        if known is not None:
            directory = Directory.pinned(self.pki)
            directory.add(self.pki.signed_entries(known))
            peers = Peers(directory, gateway=_DownGateway())
        inbox = Inbox(folder / "inbox.sqlite")
        audit_path = folder / "audit.sqlite"
        audit = NodeAuditLog(audit_path, batch_wait_s=0.0)
        postbox = Postbox(self.identity(bureau), peers, inbox, audit, records_path=records)
        node = _Node(bureau, postbox, inbox, audit, audit_path, records, directory)
        self.nodes.append(node)
        return node


@pytest.fixture(scope="module")
def pki_bureaus() -> list[str]:
    """The postboxes' network: three bureaus and the General Secretariat."""
    return ["FR", "DE", "GS", "IT"]


@pytest.fixture
def net(pki_dir: pki.PkiDir, tmp_path: Path) -> Iterator[_Net]:
    network = _Net(pki_dir, tmp_path, [])
    try:
        yield network
    finally:
        for node in network.nodes:
            node.inbox.close()
            node.audit.close()


def seal(
    net: _Net,
    sender: str,
    recipient: str,
    kind: int,
    body: Message,
    *,
    now_ms: int | None = None,
    ttl_ms: int = envelope.DEFAULT_MESSAGE_TTL_MS,
    post_id: bytes = b"p" * 16,
) -> envelope.Envelope:
    """One sealed copy of ``body`` from ``sender`` to ``recipient``."""
    return envelope.seal_message(
        messages.pack(body),
        sender=net.identity(sender),
        recipient=Directory.from_pki(net.pki).get(recipient),
        kind=kind,
        post_id=post_id,
        ttl_ms=ttl_ms,
        now_ms=now_ms,
    )


def deliver(
    node: _Node, *envelopes: envelope.Envelope, caller: str = pki.GATEWAY_NAME
) -> list[bureau_pb2.DeliverResult]:
    raw = bureau_pb2.DeliverRequest(envelopes=envelopes).SerializeToString()
    reply = asyncio.run(node.postbox.deliver(raw, _Context(caller)))
    return list(reply.results)


def audit_rows(node: _Node) -> list[tuple[str, str, str]]:
    """(kind, outcome, reason) of every audit row, oldest first."""
    node.audit.close()  # flushes every queued row
    columns, rows = auditread.search(node.audit_path, auditread.Query())
    kind, outcome, reason = (columns.index(c) for c in ("kind", "outcome", "reason"))
    return [(str(r[kind]), str(r[outcome]), str(r[reason])) for r in rows]


def diffusion(text: str = "look out") -> messages_pb2.Diffusion:
    return messages_pb2.Diffusion(subject="alert", text=text, distribution=["DE", "GS"])


@pytest.mark.attack(
    "the gateway delivers the same one-way copy to a node again",
    adversary="replayer",
    expect="processed once; the redelivery DUPLICATE with the original signed receipt",
)
def test_a_diffusion_is_processed_once_and_a_redelivery_is_a_duplicate(net: _Net) -> None:
    """First delivery: PROCESSED with a receipt; again: DUPLICATE with the same receipt,
    which verifies against DE's entry and names the envelope; the inbox holds one item."""
    de = net.node("DE")
    copy = seal(net, "FR", "DE", envelope.DIFFUSION, diffusion())
    [first] = deliver(de, copy)
    [again] = deliver(de, copy)
    assert (first.status, again.status) == (PROCESSED, DUPLICATE)
    assert again.receipt == first.receipt
    receipt = receipts.verify(
        again.receipt, signer=de.directory.get("DE"), now_ms=int(time.time() * 1000)
    )
    header = envelope.unverified_header(copy)
    assert (receipt.message_id, receipt.post_id) == (header.message_id, b"p" * 16)
    assert (receipt.sender, receipt.recipient) == ("FR", "DE")
    assert receipt.envelope_sha256 == envelope.envelope_digest(copy)
    [item] = de.inbox.items()
    assert isinstance(item.body, messages_pb2.Diffusion)
    assert (item.sender, item.body.text, item.body.padding) == ("FR", "look out", b"")
    assert de.inbox.duplicates_processed() == 0
    assert audit_rows(de) == [("diffusion", "processed", ""), ("diffusion", "duplicate", "")]


def test_a_receipt_from_another_key_does_not_verify(net: _Net) -> None:
    """Control: the receipt check can fail (a receipt checked against FR's key)."""
    de = net.node("DE")
    [first] = deliver(de, seal(net, "FR", "DE", envelope.DIFFUSION, diffusion()))
    fr = de.directory.get("FR")
    with pytest.raises(Exception, match="envelope rejected"):
        receipts.verify(first.receipt, signer=fr, now_ms=int(time.time() * 1000))


def test_one_envelope_twice_in_one_batch_is_processed_once(net: _Net) -> None:
    """Within one call the second copy of an envelope is already a duplicate."""
    de = net.node("DE")
    copy = seal(net, "FR", "DE", envelope.MESSAGE, messages_pb2.CaseMessage(text="hi"))
    results = deliver(de, copy, copy)
    assert [r.status for r in results] == [PROCESSED, DUPLICATE]
    assert de.inbox.count() == 1


@pytest.mark.attack(
    "the gateway flips a byte of a stored copy's sealed body before delivering it",
    adversary="malicious gateway",
    expect="REJECTED 'unverified', no receipt, nothing stored; node audit row",
)
def test_a_tampered_envelope_is_rejected_and_audited(net: _Net) -> None:
    """A flipped byte in the sealed body: REJECTED "unverified", nothing stored."""
    de = net.node("DE")
    copy = seal(net, "FR", "DE", envelope.DIFFUSION, diffusion())
    copy.sealed = bytes([copy.sealed[0] ^ 1]) + copy.sealed[1:]
    [result] = deliver(de, copy)
    assert (result.status, result.detail) == (REJECTED, "unverified")
    assert not result.HasField("receipt")
    assert de.inbox.count() == 0
    assert audit_rows(de) == [("diffusion", "rejected", "unverified")]


def test_an_expired_envelope_is_rejected(net: _Net) -> None:
    """An envelope past its expiry: REJECTED "expired", nothing stored."""
    de = net.node("DE")
    an_hour_ago = int(time.time() * 1000) - 3_600_000
    copy = seal(net, "FR", "DE", envelope.DIFFUSION, diffusion(), now_ms=an_hour_ago, ttl_ms=1000)
    [result] = deliver(de, copy)
    assert (result.status, result.detail) == (REJECTED, "expired")
    assert de.inbox.count() == 0


def test_a_processed_envelope_is_still_a_duplicate_after_it_expired(net: _Net) -> None:
    """A redelivery that arrives after expiry gets the stored receipt, not a rejection
    (the sender must learn that it was delivered)."""
    de = net.node("DE")
    soon = int(time.time() * 1000) - envelope.DEFAULT_MESSAGE_TTL_MS + 200
    copy = seal(net, "FR", "DE", envelope.DIFFUSION, diffusion(), now_ms=soon)
    [first] = deliver(de, copy)
    time.sleep(0.3)
    [again] = deliver(de, copy)
    assert (first.status, again.status) == (PROCESSED, DUPLICATE)


@pytest.mark.attack(
    "a different envelope delivered under a message id the sender already spent",
    adversary="replayer",
    expect="REJECTED 'replay'; the first copy stays the only one processed",
)
def test_a_different_envelope_under_a_spent_message_id_is_rejected(net: _Net) -> None:
    """Another envelope reusing a processed (sender, message_id): REJECTED "replay"."""
    de = net.node("DE")
    copy = seal(net, "FR", "DE", envelope.DIFFUSION, diffusion("one"))
    deliver(de, copy)
    other = envelope.seal_message(
        messages.pack(diffusion("two")),
        sender=net.identity("FR"),
        recipient=de.directory.get("DE"),
        kind=envelope.DIFFUSION,
        post_id=b"q" * 16,
        message_id=envelope.unverified_header(copy).message_id,
    )
    [result] = deliver(de, other)
    assert (result.status, result.detail) == (REJECTED, "replay")
    assert [i.body.text for i in de.inbox.items()] == ["one"]  # type: ignore[attr-defined]


@pytest.mark.attack(
    "a bureau signs and sends a NOTICE itself, to plant a wanted person in others' records",
    adversary="rogue bureau",
    expect="REJECTED 'not_gs'; no notice, no person record",
)
def test_a_notice_from_a_bureau_other_than_gs_is_rejected(net: _Net) -> None:
    """Only GS issues notices: a NOTICE signed by FR is REJECTED "not_gs", not applied."""
    de = net.node("DE")
    notice = messages_pb2.Notice(
        notice_id=b"n" * 16,
        color=messages_pb2.NOTICE_COLOR_RED,
        status=messages_pb2.NOTICE_STATUS_PUBLISHED,
        subject=messages_pb2.NoticeSubject(surname="Doe", date_of_birth="1980-01-02"),
    )
    [result] = deliver(de, seal(net, "FR", "DE", envelope.NOTICE, notice))
    assert (result.status, result.detail) == (REJECTED, "not_gs")
    assert de.inbox.notices() == []
    store = RecordStore(de.records)
    try:
        assert store.find_person("Doe", "", "1980-01-02") == []
    finally:
        store.close()


def test_a_notice_request_to_a_bureau_other_than_gs_is_rejected(net: _Net) -> None:
    """Only GS reviews notice requests: one delivered to DE is REJECTED "not_gs"."""
    de = net.node("DE")
    request = messages_pb2.NoticeRequest(
        publish=messages_pb2.NoticeDraft(notice_id=b"n" * 16, color=messages_pb2.NOTICE_COLOR_BLUE)
    )
    [result] = deliver(de, seal(net, "FR", "DE", envelope.NOTICE_REQUEST, request))
    assert (result.status, result.detail) == (REJECTED, "not_gs")


@pytest.mark.attack(
    "the gateway delivers a copy addressed to IT to DE's node",
    adversary="malicious gateway",
    expect="REJECTED 'wrong_recipient'",
)
def test_an_envelope_for_another_bureau_is_rejected(net: _Net) -> None:
    """A copy addressed to IT, delivered to DE: REJECTED "wrong_recipient"."""
    de = net.node("DE")
    [result] = deliver(de, seal(net, "FR", "IT", envelope.DIFFUSION, diffusion()))
    assert (result.status, result.detail) == (REJECTED, "wrong_recipient")


@pytest.mark.attack(
    "a bureau calls another node's Bureau.Deliver directly, with its own certificate",
    adversary="rogue bureau",
    expect="PERMISSION_DENIED + node audit entry 'not_gateway'; nothing stored",
)
def test_only_the_gateway_may_deliver(net: _Net) -> None:
    """A caller whose certificate is not the gateway's: PERMISSION_DENIED, audited."""
    de = net.node("DE")
    copy = seal(net, "FR", "DE", envelope.DIFFUSION, diffusion())
    with pytest.raises(_AbortedError) as refused:
        deliver(de, copy, caller=pki.bureau_dns_name("FR"))
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert de.inbox.count() == 0
    assert audit_rows(de) == [("", "refused", "not_gateway")]


@pytest.mark.attack(
    "bytes that are not a DeliverRequest, sent to a node's Bureau.Deliver",
    adversary="malicious gateway",
    expect="INVALID_ARGUMENT + node audit entry 'undecodable'",
)
def test_garbage_is_invalid_argument(net: _Net) -> None:
    """A request that is not a DeliverRequest: INVALID_ARGUMENT, audited "undecodable"."""
    de = net.node("DE")
    with pytest.raises(_AbortedError) as refused:
        asyncio.run(de.postbox.deliver(b"\xff\xff\xff", _Context()))
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert audit_rows(de) == [("", "refused", "undecodable")]


def test_the_batch_stops_where_a_sender_cannot_be_looked_up(net: _Net) -> None:
    """A sender DE has not met while the gateway is down: the results so far are
    returned, and that envelope and the rest are left for a later delivery."""
    de = net.node("DE", known=["FR", "DE", "GS"])
    first = seal(net, "FR", "DE", envelope.DIFFUSION, diffusion("1"))
    unknown = seal(net, "IT", "DE", envelope.DIFFUSION, diffusion("2"))
    last = seal(net, "FR", "DE", envelope.DIFFUSION, diffusion("3"))
    results = deliver(de, first, unknown, last)
    assert [r.status for r in results] == [PROCESSED]
    assert [i.body.text for i in de.inbox.items()] == ["1"]  # type: ignore[attr-defined]


def test_a_crash_between_the_records_write_and_the_commit_leaves_one_of_each(
    net: _Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A published notice whose inbox write fails after the records write: nothing is
    answered; delivered again, it is processed, with one person row and one inbox row."""
    de = net.node("DE")
    notice = messages_pb2.Notice(
        notice_id=b"n" * 16,
        color=messages_pb2.NOTICE_COLOR_RED,
        status=messages_pb2.NOTICE_STATUS_PUBLISHED,
        requested_by="FR",
        reference="RED/2026/0001",
        subject=messages_pb2.NoticeSubject(surname="Doe", date_of_birth="1980-01-02"),
        summary="fraud",
    )
    copy = seal(net, "GS", "DE", envelope.NOTICE, notice)
    real_add = de.inbox.add

    def crash(**_: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(de.inbox, "add", crash)
    assert deliver(de, copy) == []  # stopped: nothing answered, the gateway retries
    monkeypatch.setattr(de.inbox, "add", real_add)
    [result] = deliver(de, copy)
    assert result.status == PROCESSED
    ref = notices.person_ref(b"n" * 16)
    with sqlite3.connect(de.records) as conn:
        assert conn.execute("SELECT count(*) FROM persons WHERE ref = ?", (ref,)).fetchone() == (1,)
    assert de.inbox.count() == 1
    assert de.inbox.duplicates_processed() == 0


def _behind(net: _Net, de: _Node, entries: list[bytes]) -> _BehindGateway:
    """Give DE's postbox a reachable gateway whose directory serves only ``entries``."""
    gateway = _BehindGateway(entries)
    de.postbox._peers._gateway = gateway  # type: ignore[assignment]
    return gateway


def test_a_sender_missing_from_a_directory_behind_stops_the_batch(net: _Net) -> None:
    """The gateway answers but does not know IT yet: DE stops before IT's copy (to be
    delivered again) instead of rejecting it for good; the copy before is processed."""
    de = net.node("DE", known=["FR", "DE", "GS"])
    gateway = _behind(net, de, net.pki.signed_entries(["FR", "DE", "GS"]))
    first = seal(net, "FR", "DE", envelope.DIFFUSION, diffusion("1"))
    unknown = seal(net, "IT", "DE", envelope.DIFFUSION, diffusion("2"))
    results = deliver(de, first, unknown)
    assert [r.status for r in results] == [PROCESSED]
    assert gateway.asked == 1
    assert [i.body.text for i in de.inbox.items()] == ["1"]  # type: ignore[attr-defined]
    _behind(net, de, net.pki.signed_entries())  # the directory caught up
    de.postbox._peers._missed.clear()  # past Peers' back-off after the miss
    assert [r.status for r in deliver(de, unknown)] == [PROCESSED]


def test_a_sender_key_the_directory_does_not_name_yet_stops_the_batch(net: _Net) -> None:
    """FR rotated its keys; DE and the gateway still hold FR's old entry: FR's new copy
    stops the batch rather than being rejected unverified."""
    de = net.node("DE", known=["FR", "DE", "GS"])
    old = net.pki.signed_entries(["FR", "DE", "GS"])
    rekey.rotate(net.pki, "FR", grace_ms=3_600_000)
    _behind(net, de, old)
    copy = seal(net, "FR", "DE", envelope.DIFFUSION, diffusion("new key"))
    assert deliver(de, copy) == []
    assert de.inbox.count() == 0


def test_a_copy_to_a_key_rotated_out_past_its_grace_is_rejected_unverified(net: _Net) -> None:
    """The documented limit: DE rotated with a 1 h grace; a copy sealed to its old key and
    delivered 2 h later (within its 24 h TTL) cannot be opened: REJECTED unverified."""
    copy = seal(net, "FR", "DE", envelope.DIFFUSION, diffusion())
    rekey.rotate(net.pki, "DE", grace_ms=3_600_000)
    de = net.node("DE")
    de.postbox = Postbox(
        net.identity("DE"),
        de.postbox._peers,
        de.inbox,
        de.audit,
        records_path=de.records,
        clock=Clock(offset_ms=2 * 3_600_000),
    )
    [result] = deliver(de, copy)
    assert (result.status, result.detail) == (REJECTED, "unverified")


def test_content_that_raises_is_rejected_unprocessable_and_the_batch_goes_on(
    net: _Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notice whose processing raises ValueError is REJECTED unprocessable (not retried
    until its TTL); the next copy in the batch is processed."""
    de = net.node("DE")
    notice = messages_pb2.Notice(
        notice_id=b"n" * 16,
        color=messages_pb2.NOTICE_COLOR_RED,
        status=messages_pb2.NOTICE_STATUS_PUBLISHED,
        requested_by="FR",
        subject=messages_pb2.NoticeSubject(surname="Doe", date_of_birth="1980-01-02"),
    )

    def bad_content(*_: object, **__: object) -> bool:
        raise ValueError("cannot use this notice")

    monkeypatch.setattr(notices, "apply_notice", bad_content)
    bad = seal(net, "GS", "DE", envelope.NOTICE, notice)
    after = seal(net, "FR", "DE", envelope.DIFFUSION, diffusion("after"))
    results = deliver(de, bad, after)
    assert [(r.status, r.detail) for r in results] == [
        (REJECTED, "unprocessable"),
        (PROCESSED, ""),
    ]
    assert [i.kind for i in de.inbox.items()] == [envelope.DIFFUSION]
    assert audit_rows(de) == [
        ("notice", "rejected", "unprocessable"),
        ("diffusion", "processed", ""),
    ]
