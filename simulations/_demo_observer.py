"""What each party saw, for ``ncbsim demo``: gathered from the running network.

:class:`Observer` sends as the asking bureau through the gateway's real RPCs, parses
headers as the gateway does, opens requests as the answering node does, reads the audit
logs and record databases, and follows every party's event stream as the operator
(``Observe``). :mod:`ncbsim.simulations._demo_views` draws what it gathered.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf.message import DecodeError

from ncbsim import auditread, envelope, transport
from ncbsim.client import (
    PEER_MAX_AGE_S,
    Answer,
    Outcome,
    emit_returned,
    emit_sealed,
    failure_detail,
    failure_outcome,
    open_answer,
    open_deliveries,
    seal_query,
)
from ncbsim.directory import Directory, Peer
from ncbsim.errors import DirectoryError, EnvelopeError
from ncbsim.eventbus import EventBus
from ncbsim.events import Event
from ncbsim.identity import Identity
from ncbsim.node.records import Document, Person, Vehicle
from ncbsim.node.store import RecordStore
from ncbsim.peers import Peers, RevocationFile
from ncbsim.pki import PkiDir
from ncbsim.simulations import manifest
from ncbsim.simulations.observe_net import NetworkObserver
from ncbsim.v2 import gateway_pb2, gateway_pb2_grpc, query_pb2
from ncbsim.workdir import Workdir

AUDIT_WAIT_S = 3.0
"""How long to wait for an audit row (both audit writers batch for about 50 ms), and for
an event of the gateway's stream."""
STREAM_WAIT_S = 10.0
"""How long to wait for every party's event stream to attach."""

Row = dict[str, str]
"""An audit row: column name to value, as text."""


# ---------------------------------------------------------------- gathering


@dataclass(slots=True)
class Sender:
    """One bureau's side of the gateway: its identity, its own mTLS channel, and the
    directory entries it verified (fetched through that channel, as its client would)."""

    identity: Identity
    channel: grpc.aio.Channel
    stub: gateway_pb2_grpc.GatewayServiceStub
    peers: Peers

    @classmethod
    def open(cls, pki: PkiDir, code: str, gateway: str) -> Sender:
        """Act as ``code``: its keys and certificate from the work directory's PKI."""
        identity = Identity.load(pki, code, now_ms=int(time.time() * 1000))
        channel = transport.gateway_channel(gateway, pki.tls(code))
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        directory = Directory.pinned(pki)
        peers = Peers(
            directory,
            stub,
            revocations=RevocationFile(pki, directory),
            max_age_s=PEER_MAX_AGE_S,
        )
        return cls(identity, channel, stub, peers)


@dataclass(slots=True)
class Exchange:
    """One envelope sent through the gateway's Query RPC, and what each party saw of it."""

    sealed: envelope.SealedRequest
    answer: Answer
    opened: query_pb2.Query | None
    gateway_row: Row | None
    error: grpc.aio.AioRpcError | None = None
    gateway_event: Event | None = None
    """What the gateway's own event stream said of the envelope (``query.relayed`` or
    ``query.refused``), as the operator's ``Observe`` subscription received it."""


def same_query(a: query_pb2.Query | None, b: query_pb2.Query) -> bool:
    """Whether ``a`` (as a node opened it) asks what ``b`` (as sealed) asked."""
    which = b.WhichOneof("query")
    return (
        a is not None
        and which is not None
        and a.WhichOneof("query") == which
        and (getattr(a, which) == getattr(b, which))
    )


class Observer:
    """Acts as bureau ``asker`` towards the gateway, and reads what every party saw.

    It seals and sends through the gateway's real RPCs, opens requests as the answering
    node does (its identity from the work directory's PKI), and reads the gateway's and
    the nodes' audit logs and the bureaus' record databases. Given ``buses`` (a bureau's
    code to its client's bus, party ``client:<code>``), it emits the client's events of
    every query it sends, on the bus of the bureau that sends it, as
    :class:`ncbsim.client.BureauClient` does.
    """

    def __init__(
        self,
        workdir: Path,
        asker: str,
        gateway: str,
        *,
        timeout_s: float,
        buses: Callable[[str], EventBus] | None = None,
    ) -> None:
        self.workdir = workdir
        self.asker = asker
        self.buses = buses
        self.timeout_s = timeout_s
        self.pki = PkiDir(workdir)
        self.gateway = gateway
        own = Sender.open(self.pki, asker, gateway)
        self.identity, self.channel, self.stub, self.peers = (
            own.identity,
            own.channel,
            own.stub,
            own.peers,
        )
        self._senders = {asker: own}
        self._stores: dict[str, RecordStore] = {}
        self.stream = NetworkObserver(workdir, kinds=["query.", "attack."])
        self._seen: dict[tuple[str, str], Event] = {}
        self._attacks: dict[str, Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._fed = False

    def bus(self, code: str) -> EventBus | None:
        """The bus of bureau ``code``'s client events (None: none are emitted)."""
        return self.buses(code) if self.buses is not None else None

    async def start_stream(self, timeout_s: float = STREAM_WAIT_S) -> bool:
        """Subscribe, as the operator, to every party's event stream (ncbsim.observe),
        and wait until each is attached; False if one was not in time."""
        self._tasks = [
            asyncio.create_task(self.stream.run()),
            asyncio.create_task(self._collect()),
        ]
        parties = {"gateway", *(p.bureau for p in manifest.read(self.workdir).procs if p.bureau)}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            sources = self.stream.sources
            if all(party in sources and sources[party].connected for party in parties):
                return True
            await asyncio.sleep(0.05)
        return False

    async def _collect(self) -> None:
        while True:
            for event in await self.stream.next_batch(timeout=1.0):
                self._keep(event)

    def _keep(self, event: Event) -> None:
        if event.kind == "attack.applied":  # kept apart: the query's own stays
            self._attacks[event.message_id] = event
        else:
            self._seen[(event.party, event.message_id)] = event

    def fed(self) -> None:
        """Say that events will come through :meth:`note` (a stream followed elsewhere):
        the waits for an event then wait for it, as with :meth:`start_stream`."""
        self._fed = True

    def note(self, event: Event) -> None:
        """Keep ``event``, received from a stream followed elsewhere (the classroom
        follows the network once for all its askers, and passes each event on)."""
        self._fed = True
        self._keep(event)

    @property
    def streaming(self) -> bool:
        """Whether events are being gathered (:meth:`start_stream`, or :meth:`note`)."""
        return bool(self._tasks) or self._fed

    async def gateway_event(self, message_hex: str) -> Event | None:
        """The gateway's event for a message id, or None if none came in time."""
        return await self._event(lambda: self._seen.get(("gateway", message_hex)))

    async def attack_event(self, message_hex: str) -> Event | None:
        """The ``attack.applied`` event of a classroom-mode gateway for a message id, or
        None if none came in time (or the stream is not started)."""
        return await self._event(lambda: self._attacks.get(message_hex))

    async def _event(self, found: Callable[[], Event | None]) -> Event | None:
        deadline = time.monotonic() + AUDIT_WAIT_S
        while (event := found()) is None:
            if time.monotonic() > deadline or not self.streaming:
                return None
            await asyncio.sleep(0.02)
        return event

    async def close(self) -> None:
        """Close the channel, the event streams and the record stores."""
        for task in reversed(self._tasks):  # the reader first, then the streams
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sender in self._senders.values():
            await sender.channel.close()
        for store in self._stores.values():
            store.close()

    def store(self, code: str) -> RecordStore:
        """``code``'s records database, read-only."""
        if code not in self._stores:
            self._stores[code] = RecordStore(Workdir(self.workdir).bureau(code).records)
        return self._stores[code]

    def pick(self, code: str, sql: str) -> list[tuple[str, ...]]:
        """Rows of ``code``'s records database (read-only), to find records worth asking."""
        uri = Workdir(self.workdir).bureau(code).records.resolve().as_uri() + "?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            return [tuple(str(x) for x in row) for row in conn.execute(sql).fetchall()]

    def record(self, code: str, ref: str) -> Document | Person | Vehicle | None:
        """The record behind ``ref`` in ``code``'s database."""
        return self.store(code).fetch(ref) if ref else None

    def open_as(self, code: str, sent: envelope.Envelope) -> query_pb2.Query | None:
        """Open ``sent`` as ``code``'s node does: its identity, verified sender keys."""
        identity = Identity.load(self.pki, code, now_ms=int(time.time() * 1000))
        try:
            opened = envelope.open_request(sent, recipient=identity, senders=self.peers.get)
            return query_pb2.Query.FromString(opened.plaintext)
        except (EnvelopeError, DecodeError):
            return None

    async def gateway_row(self, message_hex: str) -> Row | None:
        """The gateway's audit row for a message id, or None if none appeared in time."""
        return await self._audit_row(Workdir(self.workdir).gateway.audit, message_hex)

    async def node_row(self, code: str, message_hex: str) -> Row | None:
        """``code``'s node's audit row for a message id (outcome, reason, status ...)."""
        return await self._audit_row(Workdir(self.workdir).bureau(code).audit, message_hex)

    async def node_rows(self, code: str, message_hex: str, count: int) -> list[Row]:
        """``code``'s node's audit rows for a message id, oldest first, once there are
        ``count`` of them (or what there is after the wait)."""
        path = Workdir(self.workdir).bureau(code).audit
        return await self._audit_rows(path, auditread.Query(message_id=message_hex), count)

    async def _audit_row(self, path: Path, message_hex: str) -> Row | None:
        rows = await self._audit_rows(path, auditread.Query(message_id=message_hex), 1)
        return rows[-1] if rows else None

    async def gateway_rows(
        self, query: auditread.Query, *, at_least: int = 1, wait_s: float = AUDIT_WAIT_S
    ) -> list[Row]:
        """The gateway's audit rows matching ``query``, oldest first, once there are
        ``at_least`` of them (or those there are after ``wait_s``)."""
        return await self._audit_rows(Workdir(self.workdir).gateway.audit, query, at_least, wait_s)

    async def _audit_rows(
        self, path: Path, query: auditread.Query, at_least: int, wait_s: float = AUDIT_WAIT_S
    ) -> list[Row]:
        deadline = time.monotonic() + wait_s
        found: list[Row] = []
        while True:
            if path.exists():
                columns, rows = auditread.search(path, query)
                found = [{c: str(x) for c, x in zip(columns, row, strict=True)} for row in rows]
                if len(found) >= at_least:
                    return found
            if time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.05)

    def sender(self, code: str) -> Sender:
        """Act as bureau ``code`` (the asker itself, or another), on a channel of its own."""
        if code not in self._senders:
            self._senders[code] = Sender.open(self.pki, code, self.gateway)
        return self._senders[code]

    async def fresh_entry(self, code: str, *, asker: str | None = None) -> Peer | DirectoryError:
        """``code``'s directory entry fetched afresh through the gateway and verified as a
        client that never met ``code`` does (a new directory pinned to the root): the
        peer, or the DirectoryError that refused it. Nothing cached is used or changed."""
        sender = self.sender(asker or self.identity.bureau)
        directory = Directory.pinned(self.pki)
        request = gateway_pb2.GetDirectoryRequest(bureaus=[code])
        reply = await sender.stub.GetDirectory(request, timeout=self.timeout_s)
        refused = DirectoryError(f"the gateway served no entry for {code}")
        for entry in reply.entries:
            try:
                for peer in directory.add([entry.SerializeToString()]):
                    if peer.bureau == code:
                        return peer
            except DirectoryError as exc:
                refused = exc
        return refused

    # ------------------------------------------------------------ sending

    async def exchange(
        self,
        query: query_pb2.Query,
        to: str,
        *,
        tamper: bool = False,
        asker: str | None = None,
        claim: str | None = None,
        timeout_s: float | None = None,
    ) -> Exchange:
        """Seal ``query`` to ``to``, send it through the gateway's Query RPC, open the answer.

        ``tamper`` flips one bit of the ciphertext after sealing and signing. ``asker``
        sends as another bureau (on its own channel); ``claim`` seals with the sender's
        keys a header naming ``claim`` as the sender (a spoof the gateway must refuse).
        """
        me = self.sender(asker or self.identity.bureau)
        timeout_s = timeout_s or self.timeout_s
        await me.peers.resolve([to], timeout=self.timeout_s)
        identity = me.identity
        if claim is not None:
            identity = Identity.from_keys(claim, identity.signing_key, identity.encryption_key)
        sealed = seal_query(identity, me.peers.get(to), query)
        if tamper:
            body = bytearray(sealed.envelope.sealed)
            body[len(body) // 2] ^= 0x01
            sealed.envelope.sealed = bytes(body)
        mid = sealed.header.message_hex
        started = time.perf_counter()
        error: grpc.aio.AioRpcError | None = None
        bus = self.bus(me.identity.bureau)
        emit_sealed(bus, [sealed])
        try:
            wire = gateway_pb2.QueryRequest(envelope=sealed.envelope)
            response = (await me.stub.Query(wire, timeout=timeout_s)).envelope
            elapsed = (time.perf_counter() - started) * 1000
            answer = open_answer(sealed, response, me.peers.get(to), elapsed)
            emit_returned(bus, sealed, answer, "OK", response)
        except grpc.aio.AioRpcError as exc:
            error = exc
            elapsed = (time.perf_counter() - started) * 1000
            answer = Answer(
                to, failure_outcome(exc.code()), None, failure_detail(exc), elapsed, mid
            )
            emit_returned(bus, sealed, answer, exc.code().name)
        with contextlib.suppress(DirectoryError, grpc.aio.AioRpcError):  # to open it as `to`
            await self.peers.resolve([sealed.header.sender], timeout=self.timeout_s)
        opened = self.open_as(to, sealed.envelope)
        row = await self.gateway_row(mid)
        return Exchange(sealed, answer, opened, row, error, await self.gateway_event(mid))

    async def multi(
        self, query: query_pb2.Query, to: list[str], *, deadline_s: float
    ) -> tuple[dict[str, envelope.SealedRequest], list[Answer]]:
        """One query to several bureaus through MultiQuery, as one merged reply (like
        :meth:`ncbsim.client.BureauClient.multi_query`, keeping the envelopes to show)."""
        await self.peers.resolve(to, timeout=self.timeout_s)
        correlation = os.urandom(envelope.MESSAGE_ID_LEN)
        sealed = {r: seal_query(self.identity, self.peers.get(r), query, correlation) for r in to}
        request = gateway_pb2.MultiQueryRequest(envelopes=[s.envelope for s in sealed.values()])
        started = time.perf_counter()
        bus = self.bus(self.identity.bureau)
        emit_sealed(bus, list(sealed.values()))
        try:
            reply = await self.stub.MultiQuery(request, timeout=deadline_s)
        except grpc.aio.AioRpcError as exc:
            outcome = failure_outcome(exc.code())
            failed = [Answer(r, outcome, None, failure_detail(exc)) for r in to]
            for answer in failed:
                emit_returned(bus, sealed[answer.bureau], answer, exc.code().name)
            return sealed, failed
        elapsed = (time.perf_counter() - started) * 1000
        answers = open_deliveries(sealed, reply.deliveries, self.peers.get, elapsed)
        deliveries = {d.bureau: d for d in reply.deliveries}
        for r, answer in answers.items():
            status = gateway_pb2.DeliveryStatus.Name(deliveries[r].status)
            status = status.removeprefix("DELIVERY_STATUS_")
            emit_returned(bus, sealed[r], answer, status, deliveries[r].response)
        missing = Answer("", Outcome.NO_ANSWER, None, "missing from reply")
        merged = [answers.get(r, missing) for r in to]
        return sealed, [
            Answer(r, a.outcome, a.response, a.detail, elapsed, sealed[r].header.message_hex)
            for r, a in zip(to, merged, strict=True)
        ]
