"""Helpers several test folders share: query builders, one test's own PKI bureaus,
generated records, and the PIDs a run left. Import them as ``from support import ...``.

They live here, not in ``conftest.py``: with several ``conftest.py`` files (tests/,
tests/fuzz/, tests/load/), ``from conftest import ...`` gets whichever one pytest
imported last, not the one beside this file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ncbsim import envelope, mail, messages, pki, session
from ncbsim.client import BureauClient
from ncbsim.directory import Directory
from ncbsim.errors import DirectoryError, EnvelopeError, QueueFull, SessionRefused
from ncbsim.identity import Identity
from ncbsim.node import datagen
from ncbsim.node.audit import NodeAuditLog
from ncbsim.node.inbox import Inbox
from ncbsim.node.outbox import OutboxPoster
from ncbsim.node.postbox import Postbox
from ncbsim.node.records import NO_CONTROL, Document
from ncbsim.node.store import RecordStore
from ncbsim.peers import Peers
from ncbsim.serving import start_server
from ncbsim.simulations import scenario
from ncbsim.v2 import (
    bureau_pb2,
    directory_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    messages_pb2,
    query_pb2,
)
from ncbsim.workdir import Workdir

T = TypeVar("T")


def ncbsim_pids(workdir: Path) -> list[int]:
    """PIDs of the ncbsim processes whose command line names ``workdir``: what a run left."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"ncbsim" in cmdline and os.fsencode(str(workdir)) in cmdline:
            found.append(int(entry.name))
    return found


def with_bureaus(*codes: str) -> pytest.MarkDecorator:
    """Gives one test's ``pki_dir`` (tests/conftest.py) a PKI of ``codes`` instead of its
    module's ``pki_bureaus``: a direct parametrization overrides the fixture of that name."""
    return pytest.mark.parametrize("pki_bureaus", [list(codes)], ids=[",".join(codes)])


def document_query(number: str, issuer: str, *, response_key: bytes = b"") -> query_pb2.Query:
    """Step 1 for a travel document: its number and issuing country (alpha-2, or as typed)."""
    query = query_pb2.Query(document=query_pb2.DocumentQuery(number=number, issuer=issuer))
    if response_key:
        query.response_key = response_key
    return query


def query_for(doc: Document) -> query_pb2.Query:
    """Step 1 for a document a store holds, as a requester who knows it would ask."""
    return document_query(doc.number, doc.issuer)


def person_query(
    surname: str, *, given_names: str = "", date_of_birth: str = ""
) -> query_pb2.Query:
    """Step 1 for a person: surname, and given names and date of birth when known."""
    return query_pb2.Query(
        person=query_pb2.PersonQuery(
            surname=surname, given_names=given_names, date_of_birth=date_of_birth
        )
    )


def fetch_query(ref: str) -> query_pb2.Query:
    """Step 2: the record behind a reference a hit returned."""
    return query_pb2.Query(fetch=query_pb2.FetchQuery(ref=ref))


def generate_records(
    workdir: Path,
    bureau: str,
    *,
    seed: int,
    documents: int,
    persons: int,
    vehicles: int,
    workers: int | None = None,
) -> Path:
    """Generate ``bureau``'s records where a network under ``workdir`` keeps them (as
    ``ncbsim up`` lays them out); the database's path."""
    path = Workdir(Path(workdir)).bureau(bureau).records
    path.parent.mkdir(parents=True, exist_ok=True)
    datagen.generate(
        path,
        bureau,
        seed=seed,
        documents=documents,
        persons=persons,
        vehicles=vehicles,
        workers=workers,
    )
    return path


def uncontrolled_documents(store: RecordStore, n: int, *, sample: int, seed: int) -> list[Document]:
    """``n`` of ``sample`` documents drawn with ``seed`` that carry no owner control yet
    (so each test sets its own)."""
    docs = store.sample("document", sample, random.Random(seed))
    return [d for d in docs if store.control(d.ref) == NO_CONTROL][:n]


def load_scenario(tmp_path: Path, text: str) -> scenario.Scenario:
    """The scenario that ``text`` describes, loaded from ``tmp_path/sim.toml``."""
    path = tmp_path / "sim.toml"
    path.write_text(text)
    return scenario.load(str(path))


class FakeGateway(gateway_pb2_grpc.GatewayServiceServicer):
    """Serves directory entries, stores posted envelopes by message id, fails on a script.

    ``script`` holds one action per Post call: ``accept`` (the default), ``unavailable``
    (refuse before storing), ``stall`` (hang past the caller's deadline),
    ``store_then_unavailable`` (store, then fail the reply, as a gateway that crashed
    after its commit), ``queue_full`` and ``rate_limited``.
    """

    def __init__(self, directory: pki.PkiDir, *, script: list[str] | None = None) -> None:
        self.pki = directory
        self.script = list(script or [])
        self.calls: list[list[bytes]] = []
        self.stored: dict[bytes, tuple[int, envelope.Envelope]] = {}
        self.posted: list[gateway_pb2.PostedMessage] = []
        self.page_size = 2
        self.directory_calls: list[list[str]] = []

    async def GetDirectory(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.GetDirectoryRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GetDirectoryResponse:
        self.directory_calls.append(list(request.bureaus))
        signed = self.pki.signed_entries(list(request.bureaus) or None)
        return gateway_pb2.GetDirectoryResponse(
            entries=[directory_pb2.SignedDirectoryEntry.FromString(s) for s in signed]
        )

    def _store(self, request: gateway_pb2.PostRequest) -> list[gateway_pb2.PostResult]:
        results = []
        for env in request.envelopes:
            header = envelope.Header.parse(env.header)
            status = gateway_pb2.POST_STATUS_DUPLICATE
            if header.message_id not in self.stored:
                status = gateway_pb2.POST_STATUS_ACCEPTED
                self.stored[header.message_id] = (len(self.stored) + 1, env)
            results.append(
                gateway_pb2.PostResult(
                    message_id=header.message_id,
                    recipient=header.recipient,
                    status=status,
                    sequence=self.stored[header.message_id][0],
                    accepted_at_ms=int(time.time() * 1000),
                )
            )
        return results

    async def Post(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.PostRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.PostResponse:
        self.calls.append([e.SerializeToString() for e in request.envelopes])
        action = self.script.pop(0) if self.script else "accept"
        if action == "unavailable":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "gateway restarting")
        if action == "stall":  # a gateway that hangs: the caller's deadline ends the call
            await asyncio.sleep(2)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "too late")
        if action == "store_then_unavailable":
            self._store(request)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset")
        if action == "queue_full":  # as the gateway refuses it: QueueFull's trailers
            full = QueueFull("queue for DE is full (3 messages waiting); retry later", 500)
            context.set_trailing_metadata(full.trailing_metadata())
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(full))
        if action == "rate_limited":
            context.set_trailing_metadata((("retry-after-ms", "30"),))
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "rate limit for FR: retry after 30 ms"
            )
        return gateway_pb2.PostResponse(results=self._store(request))

    async def Receipts(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.ReceiptsRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.ReceiptsResponse:
        rows = [m for m in self.posted if m.sequence > request.after_sequence]
        page = rows[: self.page_size]
        return gateway_pb2.ReceiptsResponse(messages=page, more=len(rows) > len(page))


class SessionsGateway(gateway_pb2_grpc.GatewayServiceServicer):
    """Serves a PKI folder's directory and answers Query and MultiQuery as each recipient
    bureau's node would in format 2: real :class:`~ncbsim.session.ServerSessions` (one per
    bureau) accept OPENs, open requests (each answered no-hit) and take CLOSEs; a session
    refusal is FAILED_PRECONDITION (a MultiQuery delivery REFUSED, detail the code name),
    anything else INVALID_ARGUMENT, as the real gateway relays them. ``asked`` lists the
    recipients of every request opened; ``kinds`` every envelope's kind, in order.
    ``forget()`` drops every session, as a node restart does; ``now_ms`` is the nodes'
    clock."""

    def __init__(
        self,
        directory: pki.PkiDir,
        *,
        now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.pki = directory
        self.now_ms = now_ms
        self.asked: list[str] = []
        self.kinds: list[str] = []
        self.multi_calls = 0
        self._nodes: dict[str, session.ServerSessions] = {}

    def forget(self) -> None:
        self._nodes.clear()

    def _node(self, bureau: str, now_ms: int) -> session.ServerSessions:
        if bureau not in self._nodes:
            me = Identity.load(self.pki, bureau, now_ms=now_ms)
            self._nodes[bureau] = session.ServerSessions(me, suite=self.pki.suite)
        return self._nodes[bureau]

    def handle(self, item: envelope.Envelope) -> envelope.Envelope:
        """The recipient's reply to ``item``: SessionRefused or EnvelopeError if refused."""
        now = self.now_ms()
        header = envelope.unverified_header(item)
        self.kinds.append(envelope.kind_name(header.kind))
        senders = Directory.from_pki(self.pki).get
        node = self._node(header.recipient, now)
        try:
            if header.kind == session.SESSION_OPEN:
                return node.accept(item, header, senders=senders, now_ms=now)
            sender = senders(header.sender)
        except DirectoryError:
            raise EnvelopeError from None
        if header.kind == session.SESSION_CLOSE:
            return node.close(item, header, sender=sender, now_ms=now)[0]
        opened, live, _covered = node.open_request(item, header, sender=sender, now_ms=now)
        self.asked.append(header.recipient)
        answer = query_pb2.Answer(hits=query_pb2.Hits())
        return live.seal_response(answer.SerializeToString(), request=opened.header, now_ms=now)

    async def GetDirectory(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.GetDirectoryRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GetDirectoryResponse:
        signed = self.pki.signed_entries(list(request.bureaus) or None)
        return gateway_pb2.GetDirectoryResponse(
            entries=[directory_pb2.SignedDirectoryEntry.FromString(s) for s in signed]
        )

    async def Query(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.QueryRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.QueryResponse:
        try:
            return gateway_pb2.QueryResponse(envelope=self.handle(request.envelope))
        except SessionRefused:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "FAILED_PRECONDITION")
        except EnvelopeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
        raise AssertionError("unreachable")  # pragma: no cover

    async def MultiQuery(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.MultiQueryRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.MultiQueryResponse:
        self.multi_calls += 1
        deliveries = []
        for item in request.envelopes:
            delivery = gateway_pb2.Delivery(bureau=envelope.unverified_header(item).recipient)
            try:
                delivery.response.CopyFrom(self.handle(item))
                delivery.status = gateway_pb2.DELIVERY_STATUS_DELIVERED
            except (SessionRefused, EnvelopeError) as exc:
                delivery.status = gateway_pb2.DELIVERY_STATUS_REFUSED
                refused = isinstance(exc, SessionRefused)
                delivery.detail = "FAILED_PRECONDITION" if refused else "INVALID_ARGUMENT"
            deliveries.append(delivery)
        return gateway_pb2.MultiQueryResponse(deliveries=deliveries)


@contextlib.asynccontextmanager
async def mailer_on(
    directory: pki.PkiDir, fake: FakeGateway, bureau: str = "FR"
) -> AsyncIterator[mail.Mailer]:
    """``fake`` served on an mTLS loopback socket, and a mailer of ``bureau`` connected to it."""
    served = await start_server(
        directory.tls("gateway"),
        "127.0.0.1:0",
        [],
        register=lambda s: gateway_pb2_grpc.add_GatewayServiceServicer_to_server(fake, s),
    )
    try:
        async with BureauClient.open(directory, bureau, served.address) as client:
            yield mail.Mailer(client)
    finally:
        await served.server.stop(0)


def run_mailer(
    directory: pki.PkiDir, fake: FakeGateway, use: Callable[[mail.Mailer], Awaitable[T]]
) -> T:
    """Run ``use`` with a mailer of FR connected to ``fake``, and return what it returns."""

    async def main() -> T:
        async with mailer_on(directory, fake) as mailer:
            return await use(mailer)

    return asyncio.run(main())


# ---------------------------------------------------------------- a notice network (tests/node)

NOTICE_BUREAUS = ["FR", "DE", "GS", "IT"]


NOTICE_SUBJECT = messages_pb2.NoticeSubject(
    surname="Okonkwo", given_names="Chidi", date_of_birth="1979-04-12", nationality="NG"
)


def unavailable() -> grpc.aio.AioRpcError:
    """The error a gateway that is down gives."""
    return grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata()
    )


@dataclass
class ScriptedGateway:
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
            raise unavailable()
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
class NoticeNode:
    bureau: str
    postbox: Postbox
    inbox: Inbox
    audit: NodeAuditLog
    records: Path
    outbox: OutboxPoster | None

    def find(self, subject: messages_pb2.NoticeSubject = NOTICE_SUBJECT) -> list[str]:
        """Refs of the persons a query for ``subject`` hits in this bureau's records."""
        store = RecordStore(self.records)
        try:
            found = store.find_person(subject.surname, subject.given_names, subject.date_of_birth)
            return [m.ref for m in found]
        finally:
            store.close()


@dataclass
class NoticeNet:
    pki: pki.PkiDir
    tmp: Path
    gateway: ScriptedGateway
    nodes: dict[str, NoticeNode] = field(default_factory=dict)

    def identity(self, bureau: str) -> Identity:
        return Identity.load(self.pki, bureau, now_ms=int(time.time() * 1000))

    def node(self, bureau: str) -> NoticeNode:
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
        outbox = OutboxPoster(inbox, self.gateway, sleep=no_sleep) if bureau == "GS" else None
        postbox = Postbox(
            self.identity(bureau), peers, inbox, audit, records_path=records, outbox=outbox
        )
        node = NoticeNode(bureau, postbox, inbox, audit, records, outbox)
        self.nodes[bureau] = node
        return node

    def close(self, bureau: str) -> None:
        node = self.nodes.pop(bureau)
        node.inbox.close()
        node.audit.close()


async def no_sleep(seconds: float) -> None:
    """A sleep that only yields to the event loop."""
    await asyncio.sleep(0)


class GatewayContext:
    def peer_identity_key(self) -> str:
        return "x509_subject_alternative_name"

    def peer_identities(self) -> list[bytes]:
        return [pki.GATEWAY_NAME.encode()]

    async def abort(self, code: grpc.StatusCode, detail: str, trailing: object = ()) -> None:
        raise AssertionError(f"aborted {code.name}: {detail}")


def deliver(node: NoticeNode, *copies: envelope.Envelope) -> list[bureau_pb2.DeliverResult]:
    raw = bureau_pb2.DeliverRequest(envelopes=copies).SerializeToString()
    return list(asyncio.run(node.postbox.deliver(raw, GatewayContext())).results)


def request_notice(
    net: NoticeNet, requester: str, request: messages_pb2.NoticeRequest
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
    color: int = messages_pb2.NOTICE_COLOR_RED,
    subject: messages_pb2.NoticeSubject = NOTICE_SUBJECT,
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


@contextlib.contextmanager
def notice_net(tmp_path: Path) -> Iterator[NoticeNet]:
    """A PKI of NOTICE_BUREAUS and a scripted gateway; every node opened is closed after."""
    # The network's folder is the helper's own: its PKI, and each node's files beside it.
    directory = pki.init(tmp_path / "pki", NOTICE_BUREAUS)
    network = NoticeNet(directory, tmp_path, ScriptedGateway(directory))
    try:
        yield network
    finally:
        for bureau in list(network.nodes):
            network.close(bureau)


def scrape_metrics(address: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """One /metrics page, parsed by prometheus_client: each sample name's (labels, value)."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def metric_total(address: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples at ``address`` whose labels include ``labels``."""
    found = scrape_metrics(address).get(name, [])
    return sum(v for have, v in found if all(have.get(k) == w for k, w in labels.items()))


def run_ncbsim(*args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m ncbsim ARGS`` as a user runs it: its exit code and captured text."""
    return subprocess.run(
        [sys.executable, "-m", "ncbsim", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
