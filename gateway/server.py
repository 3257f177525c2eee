"""The gateway's gRPC service assembled from its jobs, and the process that serves it.

Every call is checked against the caller's mTLS identity: the header's sender must
be the authenticated bureau. The gateway relays sealed envelopes untouched and
records only their metadata.

Requests arrive as raw bytes (:func:`add_to_server`) and each RPC parses its own, so an
oversized or undecodable request is answered with a clear status and audited like any
other refusal. Each sending bureau is held to its rate limit and daily quota
(:mod:`ncbsim.gateway.limits`) once its envelopes are admitted. docs/limits.md has the
details.

:class:`GatewayService` only hands each RPC to its job: admission rules
(:mod:`ncbsim.gateway.admission`), the query relay (:mod:`ncbsim.gateway.relay`), the
post path (:mod:`ncbsim.gateway.posts`: one-way envelopes stored durably by
:mod:`ncbsim.gateway.mailbox`, delivered by :mod:`ncbsim.gateway.delivery`; docs/delivery.md)
and the control plane (:mod:`ncbsim.gateway.control`), all over one
:class:`~ncbsim.gateway.parts.GatewayParts`. :func:`serve` opens the audit log and the
mailbox, starts the deliverer and the server, and stops them in order.

No reply leaves before its audit row is committed: an answer, a refusal, a Post's
acceptance. A crash of the gateway then cannot erase the trace of an envelope it
answered. docs/audit.md has the details.
"""

from __future__ import annotations

from typing import Any

import grpc
import structlog

from ncbsim import rpctrace
from ncbsim.eventbus import EventBus
from ncbsim.gateway import observed
from ncbsim.gateway.audit import AuditLog
from ncbsim.gateway.config import GatewayConfig
from ncbsim.gateway.control import ControlPlane
from ncbsim.gateway.delivery import Deliverer
from ncbsim.gateway.mailbox import Mailbox
from ncbsim.gateway.parts import GatewayParts
from ncbsim.gateway.posts import PostOffice
from ncbsim.gateway.relay import QueryRelay
from ncbsim.gateway.router import Router
from ncbsim.metrics import GatewayMetrics
from ncbsim.metrics import serve as serve_metrics
from ncbsim.serving import (
    add_raw_servicer,
    start_health_port,
    start_server,
    wait_for_shutdown,
    write_ready_file,
)
from ncbsim.v2 import gateway_pb2, gateway_pb2_grpc

log = structlog.get_logger()


class GatewayService(gateway_pb2_grpc.GatewayServiceServicer):  # type: ignore[misc]
    """The Gateway service. Register it with :func:`add_to_server`: every RPC takes raw bytes.

    Each RPC hands its raw request and context to its job; all share ``parts``.
    """

    def __init__(self, parts: GatewayParts) -> None:
        self._parts = parts
        self._queries = QueryRelay(self._parts)
        self._posts = PostOffice(self._parts)
        self._control_plane = ControlPlane(self._parts)

    async def Query(  # noqa: N802 - gRPC method name
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.QueryResponse | bytes:
        return await self._queries.query(request, context)

    async def MultiQuery(  # noqa: N802 - gRPC method name
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.MultiQueryResponse:
        return await self._queries.multi_query(request, context)

    async def Post(  # noqa: N802 - gRPC method name
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.PostResponse:
        return await self._posts.post(request, context)

    async def Receipts(  # noqa: N802 - gRPC method name
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.ReceiptsResponse:
        return await self._posts.receipts(request, context)

    async def GetDirectory(  # noqa: N802 - gRPC method name
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GetDirectoryResponse:
        return await self._control_plane.get_directory(request, context)

    async def Register(  # noqa: N802 - gRPC method name
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.RegisterResponse:
        return await self._control_plane.register(request, context)

    async def Routes(  # noqa: N802 - gRPC method name
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.RoutesResponse:
        return await self._control_plane.routes(request, context)


def add_to_server(service: GatewayService, server: Any) -> None:
    """Register ``service`` on ``server``; every Gateway RPC receives its request raw."""
    add_raw_servicer(
        server,
        gateway_pb2_grpc.add_GatewayServiceServicer_to_server,
        service,
        raw_responses=("Query",),  # a node's answer relayed as it came (gateway.relay)
    )


def _service(parts: GatewayParts) -> GatewayService:
    """The honest service; the classroom-mode one only if the config names a mode file."""
    if parts.config.classroom_attacks is None:
        return GatewayService(parts)
    from ncbsim.gateway.attacks import AttackGateway  # classroom mode: imported only then

    return AttackGateway(parts, parts.config.classroom_attacks)


async def serve(config: GatewayConfig) -> None:
    """Run the gateway until SIGINT or SIGTERM."""
    tls = config.pki.tls("gateway")
    metrics = GatewayMetrics()
    bus = EventBus("gateway")
    router = Router(tls, meter=metrics.metered)
    audit = AuditLog(config.files.audit)
    mailbox = await Mailbox.open(
        config.files.mailbox,
        max_queue=config.max_queue,
        max_queue_per_sender=config.max_queue_per_sender,
    )
    deliverer = Deliverer(
        mailbox,
        router,
        audit,
        batch=config.delivery_batch,
        retention_ms=config.mailbox_retention_ms,
        metrics=metrics,
        bus=bus,
    )
    metrics.watch_audit(audit)
    metrics.watch_events(bus)
    metrics.watch_mailbox(mailbox)
    parts = GatewayParts(
        config, router, audit, mailbox=mailbox, deliverer=deliverer, metrics=metrics, bus=bus
    )
    parts.users.refresh(force=True)  # audits, at start, any user entry that does not verify
    service = _service(parts)
    served = await start_server(
        tls,
        config.listen,
        [gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name],
        register=lambda server: add_to_server(service, server),
        # Traces outermost: metrics and events inside the handler see its span.
        interceptors=[*rpctrace.server_interceptors("gateway"), metrics.server_interceptor()],
        bus=bus,
        on_denied=parts.observe_denied,
    )
    endpoint = serve_metrics(metrics, config.metrics_listen, any_address=config.metrics_any_address)
    probe = None
    if config.health_listen is not None:  # plaintext, for the kubelet: health alone
        probe = await start_health_port(served.health, config.health_listen)
    log.info(
        "gateway_listening",
        address=served.address,
        audit=str(config.files.audit),
        max_envelope_bytes=config.max_envelope_bytes,
        rate_per_s=config.rate_per_s,
        burst=config.burst,
        daily_quota=config.daily_quota,
        overrides=sorted(config.bureau_limits),
        mailbox=str(config.files.mailbox),
        queued=mailbox.queued(),
        max_queue=config.max_queue,
        max_queue_per_sender=config.max_queue_per_sender,
        metrics=endpoint.address if endpoint else "",
        health=probe.address if probe else "",
        classroom_attacks=str(config.classroom_attacks or ""),
    )
    await deliverer.start()  # resumes every queued message: a worker per recipient
    await served.set_serving(True)
    write_ready_file(
        config.ready_file,
        role="gateway",
        address=served.address,
        metrics=endpoint.address if endpoint else "",
        health=probe.address if probe else "",
        classroom_attacks=config.classroom_attacks is not None,
    )
    observed.started(bus, served.address)
    try:
        await wait_for_shutdown()
    finally:
        log.info("gateway_stopping")
        observed.stopped(bus)
        await served.drain(grace=2)  # the probe port, too, says NOT_SERVING meanwhile
        if probe is not None:
            await probe.stop()
        if endpoint is not None:
            endpoint.close()
        await deliverer.stop()
        await router.close()
        await mailbox.close()
        audit.close()
