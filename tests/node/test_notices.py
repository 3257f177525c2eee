"""Notices: GS's review rules, the registry, applying notices to records, GS's outbox."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from ncbsim import envelope, messages, pki
from ncbsim.directory import Directory
from ncbsim.errors import QueueFull
from ncbsim.identity import Identity
from ncbsim.node import datagen, notices
from ncbsim.node.audit import NodeAuditLog
from ncbsim.node.inbox import Inbox
from ncbsim.node.outbox import OutboxPoster
from ncbsim.node.postbox import Postbox
from ncbsim.node.store import RecordStore
from ncbsim.peers import Peers
from ncbsim.protocol import MAX_BATCH_BYTES
from ncbsim.v2 import bureau_pb2, directory_pb2, gateway_pb2, messages_pb2

RED = messages_pb2.NOTICE_COLOR_RED
YELLOW = messages_pb2.NOTICE_COLOR_YELLOW
PURPLE = messages_pb2.NOTICE_COLOR_PURPLE
PUBLISHED = messages_pb2.NOTICE_STATUS_PUBLISHED
REFUSED = messages_pb2.NOTICE_STATUS_REFUSED
WITHDRAWN = messages_pb2.NOTICE_STATUS_WITHDRAWN
BUREAUS = ["FR", "DE", "GS", "IT"]
SUBJECT = messages_pb2.NoticeSubject(
    surname="Okonkwo", given_names="Chidi", date_of_birth="1979-04-12", nationality="NG"
)


def _unavailable() -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata()
    )


@dataclass
class _Gateway:
    """Serves the PKI's directory; Post follows a script of replies, recording each call.

    Script entries: "down" (UNAVAILABLE), "full:N" (the N-th envelope QUEUE_FULL, the
    rest accepted), "ok" (all accepted), "dup" (all DUPLICATE), a grpc.StatusCode (the
    call fails with it). When the script is used up, every call is accepted.
    """

    pki: pki.PkiDir
    script: list[object] = field(default_factory=list)
    posts: list[list[bytes]] = field(default_factory=list)
    refuse: dict[str, grpc.StatusCode] = field(default_factory=dict)
    """A call holding a copy for one of these recipients fails with its code."""
    full: set[str] = field(default_factory=set)
    """Recipients whose queue is full: QUEUE_FULL, and a call all for them fails
    RESOURCE_EXHAUSTED with a retry-after (as the gateway does)."""

    async def GetDirectory(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.GetDirectoryRequest, timeout: float
    ) -> gateway_pb2.GetDirectoryResponse:
        entries = [
            directory_pb2.SignedDirectoryEntry.FromString(raw)
            for raw in self.pki.signed_entries(list(request.bureaus) or None)
        ]
        return gateway_pb2.GetDirectoryResponse(entries=entries)

    async def Post(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.PostRequest, timeout: float
    ) -> gateway_pb2.PostResponse:
        self.posts.append([e.SerializeToString() for e in request.envelopes])
        step = self.script.pop(0) if self.script else "ok"
        if step == "down":
            raise _unavailable()
        if isinstance(step, grpc.StatusCode):
            raise grpc.aio.AioRpcError(step, grpc.aio.Metadata(), grpc.aio.Metadata())
        recipients = {envelope.unverified_header(e).recipient for e in request.envelopes}
        for code in (self.refuse[r] for r in sorted(recipients) if r in self.refuse):
            raise grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata())
        if recipients <= self.full:  # as the gateway refuses it: QueueFull's trailers
            names = ", ".join(sorted(recipients))
            full = QueueFull(f"queue for {names} is full; retry later", 1000)
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(*full.trailing_metadata()),
                details=str(full),
            )
        full = int(str(step).split(":")[1]) if str(step).startswith("full:") else -1
        status = (
            gateway_pb2.POST_STATUS_DUPLICATE if step == "dup" else gateway_pb2.POST_STATUS_ACCEPTED
        )
        return gateway_pb2.PostResponse(
            results=[
                gateway_pb2.PostResult(
                    message_id=envelope.unverified_header(e).message_id,
                    status=gateway_pb2.POST_STATUS_QUEUE_FULL
                    if n == full or envelope.unverified_header(e).recipient in self.full
                    else status,
                )
                for n, e in enumerate(request.envelopes)
            ]
        )


@dataclass
class _Node:
    bureau: str
    postbox: Postbox
    inbox: Inbox
    audit: NodeAuditLog
    records: Path
    outbox: OutboxPoster | None

    def find(self, subject: messages_pb2.NoticeSubject = SUBJECT) -> list[str]:
        """Refs of the persons a query for ``subject`` hits in this bureau's records."""
        store = RecordStore(self.records)
        try:
            found = store.find_person(subject.surname, subject.given_names, subject.date_of_birth)
            return [m.ref for m in found]
        finally:
            store.close()


@dataclass
class _Net:
    pki: pki.PkiDir
    tmp: Path
    gateway: _Gateway
    nodes: dict[str, _Node] = field(default_factory=dict)

    def identity(self, bureau: str) -> Identity:
        return Identity.load(self.pki, bureau, now_ms=int(time.time() * 1000))

    def node(self, bureau: str) -> _Node:
        """The bureau's postbox (opened once; again after :meth:`close`)."""
        if bureau in self.nodes:
            return self.nodes[bureau]
        folder = self.tmp / bureau
        folder.mkdir(exist_ok=True)
        records = folder / "records.sqlite"
        if not records.exists():
            datagen.generate(records, bureau, seed=2, documents=5, persons=5, vehicles=5)
        inbox = Inbox(folder / "inbox.sqlite")
        audit = NodeAuditLog(folder / "audit.sqlite", batch_wait_s=0.0)
        peers = Peers(Directory.pinned(self.pki), self.gateway)
        peers.directory.add(self.pki.signed_entries())
        outbox = OutboxPoster(inbox, self.gateway, sleep=_no_sleep) if bureau == "GS" else None
        postbox = Postbox(
            self.identity(bureau), peers, inbox, audit, records_path=records, outbox=outbox
        )
        node = _Node(bureau, postbox, inbox, audit, records, outbox)
        self.nodes[bureau] = node
        return node

    def close(self, bureau: str) -> None:
        node = self.nodes.pop(bureau)
        node.inbox.close()
        node.audit.close()


async def _no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[_Net]:
    directory = pki.init(tmp_path / "pki", BUREAUS)
    network = _Net(directory, tmp_path, _Gateway(directory))
    try:
        yield network
    finally:
        for bureau in list(network.nodes):
            network.close(bureau)


class _Context:
    def peer_identity_key(self) -> str:
        return "x509_subject_alternative_name"

    def peer_identities(self) -> list[bytes]:
        return [pki.GATEWAY_NAME.encode()]

    async def abort(self, code: grpc.StatusCode, detail: str, trailing: object = ()) -> None:
        raise AssertionError(f"aborted {code.name}: {detail}")


def deliver(node: _Node, *copies: envelope.Envelope) -> list[bureau_pb2.DeliverResult]:
    raw = bureau_pb2.DeliverRequest(envelopes=copies).SerializeToString()
    return list(asyncio.run(node.postbox.deliver(raw, _Context())).results)


def request_notice(
    net: _Net, requester: str, request: messages_pb2.NoticeRequest
) -> bureau_pb2.DeliverResult:
    """Deliver ``request`` from ``requester`` to GS; GS's result."""
    copy = envelope.seal_message(
        messages.pack(request),
        sender=net.identity(requester),
        recipient=Directory.from_pki(net.pki).get("GS"),
        kind=envelope.NOTICE_REQUEST,
        post_id=b"r" * 16,
    )
    [result] = deliver(net.node("GS"), copy)
    return result


def publish(
    notice_id: bytes = b"n" * 16,
    color: int = RED,
    subject: messages_pb2.NoticeSubject = SUBJECT,
    summary: str = "armed robbery",
) -> messages_pb2.NoticeRequest:
    draft = messages_pb2.NoticeDraft(
        notice_id=notice_id,
        color=color,  # type: ignore[arg-type]
        subject=subject,
        summary=summary,
        text="details",
    )
    return messages_pb2.NoticeRequest(publish=draft)


def withdraw(notice_id: bytes = b"n" * 16, reason: str = "arrested") -> messages_pb2.NoticeRequest:
    return messages_pb2.NoticeRequest(
        withdraw=messages_pb2.NoticeWithdrawal(notice_id=notice_id, reason=reason)
    )


def outbox_copies(net: _Net) -> dict[str, envelope.Envelope]:
    """GS's pending copies by recipient, taken out of the outbox (as if posted)."""
    inbox = net.node("GS").inbox
    rows = inbox.outbox()
    inbox.remove_outbox([r.id for r in rows])
    return {r.recipient: envelope.Envelope.FromString(r.envelope) for r in rows}


def sent_notice(net: _Net, copy: envelope.Envelope, to: str) -> messages_pb2.Notice:
    opened = envelope.open_message(
        copy, recipient=net.identity(to), senders=Directory.from_pki(net.pki).get
    )
    body = messages.unpack(envelope.NOTICE, opened.plaintext)
    assert isinstance(body, messages_pb2.Notice)
    return body


# ---------------------------------------------------------------- review rules


def _review(
    inbox: Inbox, request: messages_pb2.NoticeRequest, requester: str = "FR"
) -> notices.Decision:
    return notices.review(
        inbox,
        requester,
        request,
        now_ms=int(time.time() * 1000),
        requested_at_ms=1,
        bureaus=["DE", "FR", "IT"],
    )


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (publish(notice_id=b"short"), "the notice id must be 16 bytes"),
        (publish(color=42), "unknown notice colour"),
        (
            publish(subject=messages_pb2.NoticeSubject(date_of_birth="1979-04-12")),
            "a red notice needs the subject's surname",
        ),
        (
            publish(subject=messages_pb2.NoticeSubject(surname="X", date_of_birth="1979-02-30")),
            "a red notice needs a valid date of birth (YYYY-MM-DD)",
        ),
        (
            publish(subject=messages_pb2.NoticeSubject(surname="X", date_of_birth="2999-01-01")),
            "a red notice needs a valid date of birth (YYYY-MM-DD)",
        ),
        (
            publish(color=YELLOW, subject=messages_pb2.NoticeSubject(surname="X")),
            "a yellow notice needs a valid date of birth (YYYY-MM-DD)",
        ),
        (publish(summary="  "), "a red notice needs a summary of the charges"),
    ],
)
def test_gs_refuses_a_draft_that_breaks_a_rule(
    tmp_path: Path, request_: messages_pb2.NoticeRequest, reason: str
) -> None:
    """Each review rule refuses its case, to the requester only, with the reason."""
    inbox = Inbox(tmp_path / "inbox.sqlite")
    try:
        decision = _review(inbox, request_)
    finally:
        inbox.close()
    assert decision.notice.status == REFUSED
    assert decision.notice.reason == reason
    assert decision.recipients == ("FR",)


def test_gs_publishes_a_valid_draft_to_everyone_with_a_numbered_reference(tmp_path: Path) -> None:
    """A valid red notice is published to every bureau; references count per colour and
    year; a purple notice needs no identified person."""
    inbox = Inbox(tmp_path / "inbox.sqlite")
    year = dt.datetime.now(dt.UTC).year
    try:
        references = []
        for n, color in enumerate([RED, RED, PURPLE]):
            subject = SUBJECT if color == RED else messages_pb2.NoticeSubject()
            decision = _review(inbox, publish(bytes([n]) * 16, color, subject))
            assert decision.row is not None
            with inbox.transaction():
                inbox.put_notice(decision.row)
            assert (decision.notice.status, decision.recipients) == (PUBLISHED, ("DE", "FR", "IT"))
            references.append(decision.notice.reference)
        assert references == [f"RED/{year}/0001", f"RED/{year}/0002", f"PURPLE/{year}/0001"]
        # A subject without a surname makes no person record.
        assert [n.record_ref for n in inbox.notices()] == [
            notices.person_ref(b"\x00" * 16),
            notices.person_ref(b"\x01" * 16),
            "",
        ]
    finally:
        inbox.close()


def test_a_notice_id_in_use_is_refused_and_the_registry_unchanged(net: _Net) -> None:
    """Another bureau reusing a published notice's id is refused; the notice stays FR's."""
    assert request_notice(net, "FR", publish()).status == bureau_pb2.DELIVER_STATUS_PROCESSED
    outbox_copies(net)
    request_notice(net, "IT", publish(summary="something else"))
    copies = outbox_copies(net)
    assert list(copies) == ["IT"]
    refusal = sent_notice(net, copies["IT"], "IT")
    assert (refusal.status, refusal.reason) == (REFUSED, "this notice id is already used")
    [row] = net.node("GS").inbox.notices()
    assert (row.requested_by, row.status, row.summary) == ("FR", PUBLISHED, "armed robbery")


# ---------------------------------------------------------------- through GS and recipients


def test_a_published_notice_reaches_every_bureau_and_becomes_searchable(net: _Net) -> None:
    """GS publishes FR's red notice: copies for every bureau but GS; GS's records and,
    once delivered, DE's records hit the subject, flagged wanted with the reference."""
    gs = net.node("GS")
    de = net.node("DE")
    assert de.find() == []
    assert gs.find() == []
    assert request_notice(net, "FR", publish()).status == bureau_pb2.DELIVER_STATUS_PROCESSED
    ref = notices.person_ref(b"n" * 16)
    assert gs.find() == [ref]
    [registry] = gs.inbox.notices()
    assert (registry.status_name, registry.requested_by) == ("published", "FR")
    copies = outbox_copies(net)
    assert sorted(copies) == ["DE", "FR", "IT"]
    [result] = deliver(de, copies["DE"])
    assert result.status == bureau_pb2.DELIVER_STATUS_PROCESSED
    assert de.find() == [ref]
    store = RecordStore(de.records)
    try:
        person = store.fetch(ref)
    finally:
        store.close()
    assert person is not None
    assert person.flag == "wanted"  # type: ignore[union-attr]
    assert person.summary == f"RED notice {registry.reference}: armed robbery"  # type: ignore[union-attr]
    [row] = de.inbox.notices()
    assert (row.reference, row.status_name, row.record_ref) == (
        registry.reference,
        "published",
        ref,
    )


def test_a_withdrawal_removes_the_subject_everywhere(net: _Net) -> None:
    """FR withdraws its notice: GS and DE mark it withdrawn and no longer hit the subject."""
    gs, de = net.node("GS"), net.node("DE")
    request_notice(net, "FR", publish())
    deliver(de, outbox_copies(net)["DE"])
    assert de.find() != []
    assert request_notice(net, "FR", withdraw()).status == bureau_pb2.DELIVER_STATUS_PROCESSED
    copies = outbox_copies(net)
    assert sorted(copies) == ["DE", "FR", "IT"]
    assert sent_notice(net, copies["DE"], "DE").status == WITHDRAWN
    deliver(de, copies["DE"])
    assert de.find() == []
    assert gs.find() == []
    assert [(n.status_name, n.reason) for n in de.inbox.notices()] == [("withdrawn", "arrested")]
    assert [n.status_name for n in gs.inbox.notices()] == ["withdrawn"]


@pytest.mark.attack(
    "a bureau asks GS to withdraw another bureau's notice",
    adversary="rogue bureau",
    expect="refused to that bureau alone, told only the id and the reason; the notice stays "
    "published",
)
def test_only_the_requester_may_withdraw(net: _Net) -> None:
    """IT's withdrawal of FR's notice is refused to IT alone; the notice stays published."""
    request_notice(net, "FR", publish())
    outbox_copies(net)
    request_notice(net, "IT", withdraw())
    copies = outbox_copies(net)
    assert list(copies) == ["IT"]
    answer = sent_notice(net, copies["IT"], "IT")
    # Only the id, REFUSED and the reason: nothing of FR's notice (subject, text).
    assert answer == messages_pb2.Notice(
        notice_id=b"n" * 16,
        status=REFUSED,
        requested_by="IT",
        reason="withdrawal refused: only the requesting bureau may withdraw it",
        requested_at_ms=answer.requested_at_ms,
        decided_at_ms=answer.decided_at_ms,
    )
    assert [n.status_name for n in net.node("GS").inbox.notices()] == ["published"]
    assert net.node("GS").find() != []


def test_the_requester_of_a_withdrawn_notice_is_told_its_state(net: _Net) -> None:
    """FR withdrawing its notice twice: the second is refused, and FR (its owner) gets
    the notice's current state with the reason."""
    request_notice(net, "FR", publish())
    request_notice(net, "FR", withdraw())
    outbox_copies(net)
    request_notice(net, "FR", withdraw())
    answer = sent_notice(net, outbox_copies(net)["FR"], "FR")
    assert (answer.status, answer.reason) == (
        WITHDRAWN,
        "withdrawal refused: the notice is withdrawn",
    )
    assert answer.subject == SUBJECT


def test_a_request_whose_notice_would_be_too_large_is_refused(tmp_path: Path) -> None:
    """A draft packing just under 32 KiB, whose Notice would pad to 64 KiB, or a withdrawal
    with a reason that long, is refused "too large" to the requester without echoing it;
    the longest text a Mailer sends (8000 Cyrillic characters) is published."""
    inbox = Inbox(tmp_path / "inbox.sqlite")
    try:
        crafted = publish()
        crafted.publish.text = ""
        crafted.publish.text = "x" * (32 * 1024 - crafted.ByteSize() - 8)
        assert len(messages.pack(crafted)) == 32 * 1024  # the gateway would take it
        decision = _review(inbox, crafted)
        honest = publish()
        honest.publish.text = "Ж" * messages.MAX_TEXT_CHARS
        published = _review(inbox, honest)
        assert published.row is not None
        with inbox.transaction():
            inbox.put_notice(published.row)
        withdrawal = _review(inbox, withdraw(reason="x" * (32 * 1024)))
    finally:
        inbox.close()
    assert published.notice.status == PUBLISHED
    for refused in (decision, withdrawal):
        assert (refused.notice.status, refused.notice.reason) == (REFUSED, notices.TOO_LARGE)
        assert (refused.recipients, refused.row) == (("FR",), None)
        assert refused.notice.text == ""
        assert refused.notice.notice_id == b"n" * 16
        assert len(messages.pack(refused.notice)) <= notices.MAX_NOTICE_BYTES


def test_applying_a_notice_again_is_a_no_op_and_it_never_moves_back(net: _Net) -> None:
    """The same published notice applied twice leaves one person record; a publication
    arriving after the withdrawal is ignored."""
    de = net.node("DE")
    notice = messages_pb2.Notice(
        notice_id=b"n" * 16, color=YELLOW, status=PUBLISHED, subject=SUBJECT, reference="Y/1"
    )
    for _ in range(2):
        with de.inbox.transaction():
            assert notices.apply_notice(de.inbox, de.records, notice, now_ms=1)
    ref = notices.person_ref(b"n" * 16)
    with sqlite3.connect(de.records) as conn:
        rows = conn.execute("SELECT flag FROM persons WHERE ref = ?", (ref,)).fetchall()
    assert rows == [("missing",)]
    withdrawn = messages_pb2.Notice(notice_id=b"n" * 16, color=YELLOW, status=WITHDRAWN)
    with de.inbox.transaction():
        assert notices.apply_notice(de.inbox, de.records, withdrawn, now_ms=2)
        assert not notices.apply_notice(de.inbox, de.records, notice, now_ms=3)
    assert de.find() == []
    assert [n.status_name for n in de.inbox.notices()] == ["withdrawn"]


# ---------------------------------------------------------------- GS's outbox


def test_the_outbox_survives_a_restart_and_posts_the_same_bytes_until_accepted(net: _Net) -> None:
    """GS decides, then 'crashes' before posting: reopened, its poster posts the copies;
    through a gateway outage and a full queue it resends the very same envelopes until
    each is accepted, then the outbox is empty."""
    request_notice(net, "FR", publish())
    before = [r.envelope for r in net.node("GS").inbox.outbox()]
    assert len(before) == 3
    net.close("GS")
    gs = net.node("GS")  # the restarted node finds the decision's copies waiting
    assert gs.inbox.outbox_size() == 3
    net.gateway.script = ["down", "down", "full:1", "dup"]
    assert gs.outbox is not None

    async def post() -> None:
        task = asyncio.create_task(gs.outbox.run())  # type: ignore[union-attr]
        try:
            for _ in range(200):
                await asyncio.sleep(0)
                if gs.inbox.outbox_size() == 0:
                    return
        finally:
            task.cancel()

    asyncio.run(post())
    assert gs.inbox.outbox_size() == 0
    posts = net.gateway.posts
    assert posts[:3] == [before, before, before]
    assert posts[3] == [before[1]]  # only the one the full queue refused, same bytes
    assert len(posts) == 4


def test_the_poster_drops_expired_and_size_refused_copies(net: _Net) -> None:
    """A copy the gateway refuses for its size (RESOURCE_EXHAUSTED, no retry-after) is
    dropped alone (its batch is retried one by one); an expired copy is dropped without
    being posted."""
    gs = net.node("GS")
    with gs.inbox.transaction():
        gs.inbox.add_outbox([("DE", b"1" * 16, 1, b"")])  # expired long ago
    request_notice(net, "FR", publish())
    live = [r.envelope for r in gs.inbox.outbox()][1:]
    size = grpc.StatusCode.RESOURCE_EXHAUSTED
    net.gateway.script = [size, "ok", size]
    assert gs.outbox is not None
    assert asyncio.run(gs.outbox.post_pending()) is True
    assert net.gateway.posts == [live, [live[0]], [live[1]], [live[2]]]
    assert gs.inbox.outbox_size() == 0


@pytest.mark.parametrize("code", [grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT])
def test_a_transient_refusal_holds_back_one_recipient_until_it_passes(
    net: _Net, code: grpc.StatusCode
) -> None:
    """A gateway refusing DE's copies (its directory behind: NOT_FOUND; INVALID_ARGUMENT)
    keeps them in the outbox, while the other copies are posted; once the gateway takes
    them, the same bytes are accepted."""
    gs = net.node("GS")
    request_notice(net, "FR", publish())
    request_notice(net, "FR", withdraw())
    de_copies = [r.envelope for r in gs.inbox.outbox() if r.recipient == "DE"]
    net.gateway.refuse["DE"] = code
    assert gs.outbox is not None
    assert asyncio.run(gs.outbox.post_pending()) is False
    assert [r.envelope for r in gs.inbox.outbox()] == de_copies
    del net.gateway.refuse["DE"]
    assert asyncio.run(gs.outbox.post_pending()) is True
    assert net.gateway.posts[-1] == de_copies


def test_a_full_queue_holds_back_only_its_recipient(net: _Net) -> None:
    """DE's queue is full: DE's copies stay (in order) and every other copy is posted,
    even when DE's copies come first; posting again once DE has room empties the outbox."""
    gs = net.node("GS")
    gs.outbox = OutboxPoster(gs.inbox, net.gateway, sleep=_no_sleep, batch=2)
    request_notice(net, "FR", publish())
    request_notice(net, "FR", withdraw())
    de_copies = [r.envelope for r in gs.inbox.outbox() if r.recipient == "DE"]
    others = {r.envelope for r in gs.inbox.outbox() if r.recipient != "DE"}
    net.gateway.full.add("DE")
    assert asyncio.run(gs.outbox.post_pending()) is False
    assert [r.envelope for r in gs.inbox.outbox()] == de_copies
    assert others <= {e for post in net.gateway.posts for e in post}
    net.gateway.full.clear()
    assert asyncio.run(gs.outbox.post_pending()) is True
    assert net.gateway.posts[-1] == de_copies


def test_posts_are_batched_by_bytes_under_grpc_message_limit(net: _Net) -> None:
    """256 copies of about 20 KiB (over 4 MiB together) go in Posts of at most
    MAX_BATCH_BYTES of envelopes each, all of them accepted."""
    gs = net.node("GS")
    copy = envelope.seal_message(
        b"x" * 20_000,
        sender=net.identity("GS"),
        recipient=Directory.from_pki(net.pki).get("DE"),
        kind=envelope.NOTICE,
        post_id=b"p" * 16,
    )
    header = envelope.unverified_header(copy)
    data = copy.SerializeToString()
    with gs.inbox.transaction():
        gs.inbox.add_outbox([("DE", header.message_id, header.expires_at_ms, data)] * 256)
    assert gs.outbox is not None
    assert asyncio.run(gs.outbox.post_pending()) is True
    sizes = [sum(len(e) for e in post) for post in net.gateway.posts]
    print("post sizes", sizes)
    assert sum(len(post) for post in net.gateway.posts) == 256
    assert all(size <= MAX_BATCH_BYTES for size in sizes)
    assert len(sizes) == 2


def test_the_poster_task_survives_errors_and_keeps_posting(
    net: _Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run() outlives a gateway outage and an inbox that fails while it handles it: it
    logs, backs off and posts once both work again."""
    gs = net.node("GS")
    request_notice(net, "FR", publish())
    real_outbox = gs.inbox.outbox
    failures = [sqlite3.OperationalError("disk I/O error")]

    def flaky_outbox(*args: object, **kwargs: object) -> list[object]:
        if failures:
            raise failures.pop()
        return real_outbox(*args, **kwargs)  # type: ignore[arg-type]

    def broken_size() -> int:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(gs.inbox, "outbox", flaky_outbox)
    monkeypatch.setattr(gs.inbox, "outbox_size", broken_size)
    net.gateway.script = ["down"]
    assert gs.outbox is not None

    async def post() -> bool:
        task = asyncio.create_task(gs.outbox.run())  # type: ignore[union-attr]
        try:
            for _ in range(200):
                await asyncio.sleep(0)
                if task.done() or not real_outbox():
                    break
            return task.done()
        finally:
            task.cancel()

    assert asyncio.run(post()) is False  # still running
    assert real_outbox() == []
    assert len(net.gateway.posts) == 2  # the outage, then the accepted post
