"""A bureau node: a grpc.aio server over mTLS that answers sealed queries from its records.

Only the gateway may call it. It pins the root, verifies every directory entry it
uses, registers its address with the gateway, and keeps re-registering so that a
restarted gateway learns the route again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import grpc
import structlog
from google.protobuf.message import DecodeError

from ncbsim import envelope, padding, rpctrace, session, transport
from ncbsim.auditlog import AuditWriteError, ChainedLog
from ncbsim.clock import Clock
from ncbsim.countries import GENERAL_SECRETARIAT
from ncbsim.directory import Directory
from ncbsim.errors import DirectoryError, EnvelopeError, NcbsimError
from ncbsim.eventbus import EventBus
from ncbsim.identity import Identity
from ncbsim.metrics import NodeMetrics
from ncbsim.node import biometric_answer, observed, rights
from ncbsim.node._lifecycle import cancel, open_files, serve_metrics_until
from ncbsim.node.advertise import address_source
from ncbsim.node.answer import answer
from ncbsim.node.audit import audit_record
from ncbsim.node.config import NodeConfig
from ncbsim.node.hits import HitLog
from ncbsim.node.keys import KeyWatch, entry_stamp
from ncbsim.node.outbox import OutboxPoster
from ncbsim.node.postbox import Postbox
from ncbsim.node.proofs import ProofLog
from ncbsim.node.refusals import refuse
from ncbsim.node.registration import register_loop
from ncbsim.node.replay import ReplayCache
from ncbsim.node.sessions import NodeSessions, log_ids
from ncbsim.node.store import RecordStore
from ncbsim.node.user_revocations import UserRevocations
from ncbsim.peers import Peers
from ncbsim.pki import GATEWAY_NAME
from ncbsim.processes import stop_on_signals
from ncbsim.serving import abort, add_raw_servicer, start_server, write_ready_file
from ncbsim.v2 import bureau_pb2, bureau_pb2_grpc, gateway_pb2_grpc, query_pb2

log = structlog.get_logger()


class BureauService(bureau_pb2_grpc.BureauServiceServicer):  # type: ignore[misc]
    """Bureau.Handle: open the request, answer it, seal the response.

    The record lookup runs on the event loop, not in a thread. Every query kind has a
    small, bounded cost: document, vehicle and fetch are exact lookups in an index that
    covers them, and a person search reads the candidates born on one date through an
    index and scores their names in Python. Handing the lookup to a thread
    (``asyncio.to_thread`` or a dedicated executor) costs more CPU than the lookup itself,
    and would not keep the loop free: name scoring holds the GIL and ends well inside the
    switch interval. The database is read-only and small enough to stay in the page
    cache. The measurements are in docs/bench.md.

    No reply leaves before its audit row is committed (:meth:`ChainedLog.commit`, shared
    by concurrent handlers): a crash of the node cannot erase the trace of an answer it
    gave. If the row cannot be written the answer is held back (INTERNAL); a refusal
    still goes out, since it carries nothing.

    Each request that verified and opened is checked against the durable replay cache
    (ncbsim.node.replay, a short read on the loop) before it is answered, so an envelope is
    answered at most once, across restarts too. It is checked only after the signature,
    so a forged envelope cannot spend a sender's message id.

    Every time the checks and the sealing read (envelope validity, key grace periods,
    replay cache expiry, the answer's issue time) comes from ``clock``, so a node whose
    clock is skewed behaves like a bureau whose clock is wrong. Audit rows keep the
    wall-clock time, so the simulator's timelines line up.
    """

    def __init__(
        self,
        identity: Identity,
        peers: Peers,
        store: RecordStore,
        audit: ChainedLog,
        replay: ReplayCache,
        *,
        clock_skew_ms: int = envelope.CLOCK_SKEW_MS,
        hits: HitLog | None = None,
        proofs: ProofLog | None = None,
        clock: Clock | None = None,
        postbox: Postbox | None = None,
        metrics: NodeMetrics | None = None,
        bus: EventBus | None = None,
        suite: int = session.DEFAULT_SUITE,
        biometrics: biometric_answer.BiometricAnswerer | None = None,
    ) -> None:
        self._biometrics = biometrics
        self._metrics = metrics or NodeMetrics(identity.bureau)
        self._bus = bus if bus is not None else EventBus(identity.bureau)
        self._clock = clock or Clock()
        self._postbox = postbox
        self._hits = hits
        self._identity = identity
        self._peers = peers
        self._store = store
        self._audit = audit
        self._replay = replay
        self._clock_skew_ms = clock_skew_ms
        # Format 2 (query sessions, node/sessions.py): Handle routes version 2 there.
        self.sessions = NodeSessions(
            identity,
            peers,
            suite=suite,
            clock=self._clock,
            clock_skew_ms=clock_skew_ms,
            bus=self._bus,
            audited=self._audited,
            know_sender=self._know_sender,
            release=self._release,
            answer=self._answer,
            on_replay=self._metrics.replay,
            proofs=proofs,
        )

    async def _audited(  # noqa: PLR0917 - positional on purpose: called on every envelope
        self,
        request: envelope.Envelope | bytes,
        header: envelope.Header | None,
        started: float,
        status: grpc.StatusCode,
        reason: str = "",
        response: envelope.Envelope | None = None,
    ) -> None:
        """Commit the audit row of one handled envelope (metadata only).

        For a refusal (``reason`` set) a row that cannot be written is logged and the
        refusal goes out all the same; for an answer it raises AuditWriteError.
        """
        self._metrics.handled(header, reason)
        row = audit_record(
            header,
            request_bytes=len(request) if isinstance(request, bytes) else request.ByteSize(),
            response_bytes=response.ByteSize() if response is not None else 0,
            outcome="refused" if reason else "answered",
            reason=reason,
            status=status,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        try:
            await self._audit.commit(row)
        except AuditWriteError as exc:
            log.error("audit_not_written", reason=reason or "answered", error=str(exc))
            if not reason:
                raise
        observed.handled(self._bus, row)

    def use_identity(self, identity: Identity) -> None:
        """Answer under ``identity`` from now on (after ``ncbsim pki rotate``)."""
        self._identity = identity
        self.sessions.use_identity(identity)
        if self._postbox is not None:
            self._postbox.use_identity(identity)

    async def Deliver(  # noqa: N802 - gRPC method name
        self, raw: bytes, context: grpc.aio.ServicerContext
    ) -> bureau_pb2.DeliverResponse:
        """Process one-way envelopes the gateway stored for this bureau (ncbsim.node.postbox)."""
        if self._postbox is None:
            await abort(context, grpc.StatusCode.UNIMPLEMENTED, "this node takes no deliveries")
        return await self._postbox.deliver(raw, context)

    async def _know_sender(
        self,
        request: envelope.Envelope,
        header: envelope.Header,
        started: float,
        context: grpc.aio.ServicerContext,
    ) -> None:
        """Hold the sender's current entry: fetch it (rarely) for a sender not met yet, or
        one signing with a key the held entry does not name, since it may have rotated.

        DirectoryError if there is no valid entry. If the gateway cannot be asked, the
        envelope is refused UNAVAILABLE and audited: never answered unverified.
        """
        directory = self._peers.directory
        held = header.sender in directory
        if held and directory.get(header.sender).signs_with(header.sender_key_id):
            return
        with structlog.contextvars.bound_contextvars(**log_ids(header)):
            try:
                await self._peers.resolve([header.sender], refresh=held)
            except (grpc.aio.AioRpcError, TimeoutError) as exc:
                log.warning("directory_unavailable", sender=header.sender, error=str(exc))
                await self._audited(
                    request, header, started, grpc.StatusCode.UNAVAILABLE, "no_directory"
                )
                await abort(context, grpc.StatusCode.UNAVAILABLE, "sender's keys unavailable")

    async def Handle(  # noqa: N802 - gRPC method name
        self, raw: bytes, context: grpc.aio.ServicerContext
    ) -> bureau_pb2.HandleResponse:
        """Answer one envelope. It arrives as raw bytes (see :func:`serve`) and is parsed
        here, so a request that is not a HandleRequest holding an envelope is refused and
        audited like any other."""
        started = time.perf_counter()
        if not transport.peer_is(context, GATEWAY_NAME):
            log.warning("refused_caller", reason="not the gateway")
            await self._audited(
                raw, None, started, grpc.StatusCode.PERMISSION_DENIED, "not_gateway"
            )
            await abort(context, grpc.StatusCode.PERMISSION_DENIED, "only the gateway may call")
        try:
            request = bureau_pb2.HandleRequest.FromString(raw).envelope
            header = envelope.unverified_header(request)
        except (DecodeError, EnvelopeError):
            await self._audited(raw, None, started, grpc.StatusCode.INVALID_ARGUMENT, "undecodable")
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "envelope rejected")
        if header.version == session.VERSION:
            return await self.sessions.handle(request, header, started, context)
        directory = self._peers.directory
        try:
            await self._know_sender(request, header, started, context)
            now_ms = self._clock.now_ms()
            opened = envelope.open_request(
                request,
                recipient=self._identity,
                senders=self._peers.get,
                now_ms=now_ms,
                header=header,
                clock_skew_ms=self._clock_skew_ms,
            )
            query = query_pb2.Query.FromString(opened.plaintext)
        except (EnvelopeError, DirectoryError, DecodeError):
            # The caller learns nothing; the audit says whether the key was revoked.
            revoked = directory.sender_revoked(header.sender, header.sender_key_id)
            reason = "revoked" if revoked else "unverified"
            log.warning("envelope_rejected", sender=header.sender, reason=reason, **log_ids(header))
            await self._audited(request, header, started, grpc.StatusCode.INVALID_ARGUMENT, reason)
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "envelope rejected")
        observed.opened(self._bus, header, request)
        try:
            first = self._replay.first_time(
                opened.header.message_id,
                opened.header.sender,
                opened.header.expires_at_ms,
                now_ms=now_ms,
            )
        except NcbsimError:
            # Fail closed: without the cache we cannot promise to answer only once.
            log.exception("replay_cache_failed", sender=header.sender, **log_ids(header))
            await self._audited(request, header, started, grpc.StatusCode.INTERNAL, "internal")
            await abort(context, grpc.StatusCode.INTERNAL, "internal error")
        if not first:
            self._metrics.replay()
            log.warning("replayed_envelope", sender=header.sender, **log_ids(header))
            await self._audited(request, header, started, grpc.StatusCode.ALREADY_EXISTS, "replay")
            await abort(context, grpc.StatusCode.ALREADY_EXISTS, "envelope already processed")
        try:
            result = self._answer(query, opened.header.sender, header.message_hex)
        except Exception as exc:  # refused (a bad probe, a daily cap, rights), or a bug
            await refuse(self._audited, request, header, started, context, exc)
        try:
            sealed = envelope.seal_response(
                padding.padded(result, padding.RESPONSE_BYTES),
                sender=self._identity,
                request=opened.header,
                response_key=query.response_key,
                now_ms=self._clock.now_ms(),
            )
        except EnvelopeError:
            log.warning("bad_response_key", sender=header.sender, **log_ids(header))
            await self._audited(
                request, header, started, grpc.StatusCode.INVALID_ARGUMENT, "bad_response_key"
            )
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "envelope rejected")
        log.debug(
            "answered",
            sender=header.sender,
            query=query.WhichOneof("query"),
            result=result.WhichOneof("result"),
            message_id=header.message_hex,
            correlation_id=header.correlation_hex,
        )
        return await self._release(context, request, header, started, sealed)

    def _answer(self, query: query_pb2.Query, requester: str, message_id: str) -> query_pb2.Answer:
        """The answer to one opened query (node/answer.py), either format: RightsError if
        the requester is a user asking beyond its rights, no references if it is hit-only
        (node/rights.py)."""
        held = self._peers.get(requester).rights  # verified with the envelope just now
        rights.check_query(held, query)
        on_hit = self._hits.record if self._hits is not None else None
        if self._biometrics is not None and query.WhichOneof("query") in biometric_answer.KINDS:
            now_ms = self._clock.now_ms()
            result = self._biometrics.answer(
                query, requester=requester, message_id=message_id, on_hit=on_hit, now_ms=now_ms
            )
        else:
            result = answer(
                self._store, query, requester=requester, message_id=message_id, on_hit=on_hit
            )
        return rights.without_refs(result) if rights.hit_only(held) else result

    async def _release(
        self,
        context: grpc.aio.ServicerContext,
        request: envelope.Envelope,
        header: envelope.Header,
        started: float,
        sealed: envelope.Envelope,
    ) -> bureau_pb2.HandleResponse:
        """``sealed`` once its audit row is committed; INTERNAL if the row cannot be."""
        try:
            await self._audited(request, header, started, grpc.StatusCode.OK, response=sealed)
        except AuditWriteError:
            await abort(context, grpc.StatusCode.INTERNAL, "internal error")
        return bureau_pb2.HandleResponse(envelope=sealed)


async def run_node(
    config: NodeConfig,
    *,
    stop: asyncio.Event,
    clock: Clock | None = None,
    on_ready: Callable[[str, str], None] | None = None,
    directory: Directory | None = None,
    bus: EventBus | None = None,
    metrics: NodeMetrics | None = None,
) -> None:
    """Run a bureau node until ``stop`` is set, then shut it down cleanly.

    Starts the server, registers ``config.advertise`` (or the bound address) with the
    gateway, and once registered and serving calls ``on_ready`` with the bound address
    and that of its metrics endpoint ("" if ``config.metrics_listen`` is off).
    ``clock`` is the node's clock (default: one offset by ``config.clock_offset_ms``);
    whoever holds it may change its offset while the node runs. Every log line of the
    node names its bureau: it is bound in this task's context, so several nodes can run
    in one event loop (ncbsim.node.host). ``directory`` may be shared by the nodes of one host
    (all pinned to the same root): each entry is then verified once for all of them,
    not once per node. ``bus`` is the bureau's event stream (default: one of its own),
    served to the operator by ``Observe``. ``metrics`` is its registry (default: one of
    its own; a host passes it to serve all its nodes on one endpoint). Raises if the node
    cannot start (keys, databases, port); whatever was opened by then is closed again.
    """
    clock = clock if clock is not None else Clock(offset_ms=config.clock_offset_ms)
    bus = bus if bus is not None else EventBus(config.bureau)
    # Every line of this node names it, also when a host process serves many nodes.
    structlog.contextvars.bind_contextvars(bureau=config.bureau, role=f"node:{config.bureau}")
    async with contextlib.AsyncExitStack() as stack:
        loaded_from = entry_stamp(config.pki, config.bureau)  # before loading: see KeyWatch
        identity = Identity.load(config.pki, config.bureau, now_ms=clock.now_ms())
        replay, store, audit, hits, inbox, proofs = open_files(stack, config)
        biometrics = biometric_answer.BiometricAnswerer.open(
            store, config.files.caps, config.biometric_daily_cap
        )
        stack.callback(biometrics.close)
        tls = config.pki.tls(config.bureau)
        metrics = metrics if metrics is not None else NodeMetrics(config.bureau)
        metrics.watch_audit(audit)
        metrics.watch_events(bus)
        gateway_channel = transport.gateway_channel(
            config.gateway,
            tls,
            interceptors=[
                *rpctrace.client_interceptors(config.bureau),
                *metrics.client_interceptors(),
            ],
        )
        stack.push_async_callback(gateway_channel.close)
        gateway = gateway_pb2_grpc.GatewayServiceStub(gateway_channel)
        peers = Peers(directory if directory is not None else Directory.pinned(config.pki), gateway)
        # Only GS sends from its node (notices); its outbox is posted by a task of its own.
        outbox = (
            OutboxPoster(inbox, gateway, clock=clock)
            if config.bureau == GENERAL_SECRETARIAT
            else None
        )
        postbox = Postbox(
            identity,
            peers,
            inbox,
            audit,
            records_path=config.files.records,
            clock=clock,
            clock_skew_ms=config.clock_skew_ms,
            outbox=outbox,
            bus=bus,
        )
        service = BureauService(
            identity,
            peers,
            store,
            audit,
            replay,
            clock_skew_ms=config.clock_skew_ms,
            hits=hits,
            proofs=proofs,
            clock=clock,
            postbox=postbox,
            metrics=metrics,
            bus=bus,
            suite=config.pki.suite,
            biometrics=biometrics,
        )
        stack.push_async_callback(service.sessions.drain)
        service.sessions.revocations = UserRevocations(config.pki, peers.directory)
        served = await start_server(
            tls,
            config.listen,
            [bureau_pb2.DESCRIPTOR.services_by_name["BureauService"].full_name],
            # Raw requests: Handle parses each one, so garbage is refused and audited by it.
            register=lambda server: add_raw_servicer(
                server, bureau_pb2_grpc.add_BureauServiceServicer_to_server, service
            ),
            # Traces outermost: metrics and events inside the handler see its span.
            interceptors=[
                *rpctrace.server_interceptors(config.bureau),
                metrics.server_interceptor(),
            ],
            bus=bus,
            on_denied=observed.denied_hook(bus, audit),
        )
        stack.push_async_callback(served.drain, 2)  # NOT_SERVING first, then stop
        metrics_address = serve_metrics_until(
            stack, metrics, config.metrics_listen, any_address=config.metrics_any_address
        )
        log.info(
            "node_listening",
            address=served.address,
            advertise=config.advertise,
            clock_offset_ms=clock.offset_ms,
            records=store.counts(),
            audit=str(audit.path),
        )
        registered = asyncio.Event()
        tasks = [
            asyncio.create_task(
                register_loop(
                    gateway,
                    address_source(config.advertise, config.gateway, served.address),
                    config.register_interval_s,
                    registered,
                )
            ),
            asyncio.create_task(
                KeyWatch(
                    config.pki,
                    identity,
                    peers.directory,
                    service.use_identity,
                    loaded_from=loaded_from,
                    bus=bus,
                ).run(config.key_check_interval_s)
            ),
        ]
        tasks.append(asyncio.create_task(service.sessions.run()))
        if outbox is not None:
            tasks.append(asyncio.create_task(outbox.run()))
        stack.push_async_callback(cancel, tasks)
        stack.callback(log.info, "node_stopping")
        stack.callback(observed.stopped, bus)
        stopping = asyncio.create_task(stop.wait())
        ready = asyncio.create_task(registered.wait())
        try:
            await asyncio.wait({ready, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if registered.is_set() and not stop.is_set():
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await peers.load_all()
                await served.set_serving(True)
                observed.started(bus, served.address)
                if on_ready is not None:
                    on_ready(served.address, metrics_address)
            await stopping
        finally:
            await cancel([ready, stopping])


async def serve(config: NodeConfig) -> None:
    """Run a bureau node until SIGINT or SIGTERM; write the ready file once it serves."""
    stop = asyncio.Event()
    stop_on_signals(stop)
    await run_node(
        config,
        stop=stop,
        on_ready=lambda address, metrics: write_ready_file(
            config.ready_file, role="node", bureau=config.bureau, address=address, metrics=metrics
        ),
    )
