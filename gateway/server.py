"""The gateway's gRPC service: admit, route, fan out, audit.

Every call is checked against the caller's mTLS identity: the header's sender must
be the authenticated bureau. The gateway relays sealed envelopes untouched and
records only their metadata.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import structlog

from gateway.audit import AuditLog, AuditRecord
from gateway.router import Router
from ncbsim import envelope, transport
from ncbsim.config import GatewayConfig
from ncbsim.errors import EnvelopeError, IdentityError, NcbsimError, RoutingError, status_for
from ncbsim.pki import PkiDir
from ncbsim.serving import abort, start_server, wait_for_shutdown, write_ready_file
from ncbsim.v1 import directory_pb2, envelope_pb2, gateway_pb2, gateway_pb2_grpc

log = structlog.get_logger()

MAX_FANOUT = 256
_NO_ANSWER = {
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.CANCELLED,
}


def _kind_name(kind: int) -> str:
    try:
        return envelope_pb2.MessageKind.Name(kind).removeprefix("MESSAGE_KIND_").lower()
    except ValueError:
        return f"unknown({kind})"


def _header_or_none(request: envelope.Envelope) -> envelope.Header | None:
    """The header of a refused envelope, if it parses, for the audit trail."""
    try:
        return envelope.unverified_header(request)
    except EnvelopeError:
        return None


class DirectoryFiles:
    """Root-signed directory entries as the PKI wrote them, reloaded when files change."""

    def __init__(self, pki: PkiDir) -> None:
        self._pki = pki
        self._stamp: tuple[int, int] | None = None
        self._entries: dict[str, directory_pb2.SignedDirectoryEntry] = {}

    def entries(self, bureaus: list[str]) -> list[directory_pb2.SignedDirectoryEntry]:
        """Entries for ``bureaus`` (all when empty). Unknown codes are skipped."""
        self._reload()
        if not bureaus:
            return list(self._entries.values())
        return [self._entries[b] for b in bureaus if b in self._entries]

    def known(self, bureau: str) -> bool:
        """Whether the PKI has a directory entry for ``bureau``."""
        self._reload()
        return bureau in self._entries

    def _reload(self) -> None:
        folder = self._pki.directory
        stat = folder.stat()
        stamp = (stat.st_mtime_ns, len(list(folder.glob("*.entry"))))
        if stamp == self._stamp:
            return
        self._entries = {
            p.stem: directory_pb2.SignedDirectoryEntry.FromString(p.read_bytes())
            for p in sorted(folder.glob("*.entry"))
        }
        self._stamp = stamp


class GatewayService(gateway_pb2_grpc.GatewayServicer):  # type: ignore[misc]
    """The Gateway service."""

    def __init__(self, config: GatewayConfig, router: Router, audit: AuditLog) -> None:
        self._config = config
        self._router = router
        self._audit = audit
        self._directory = DirectoryFiles(config.pki)

    # ----------------------------------------------------------------- helpers

    def _audit_record(
        self,
        rpc: str,
        peer: str,
        request: envelope.Envelope,
        header: envelope.Header | None,
        *,
        outcome: str,
        status: grpc.StatusCode,
        started: float,
        response: envelope.Envelope | None = None,
    ) -> None:
        self._audit.record(
            AuditRecord(
                at_ms=int(time.time() * 1000),
                rpc=rpc,
                peer=peer,
                message_id=header.message_hex if header else "",
                correlation_id=header.correlation_hex if header else "",
                sender=header.sender if header else "",
                recipient=header.recipient if header else "",
                kind=_kind_name(header.kind) if header else "",
                issued_at_ms=header.issued_at_ms if header else 0,
                expires_at_ms=header.expires_at_ms if header else 0,
                request_bytes=request.ByteSize(),
                response_bytes=response.ByteSize() if response is not None else 0,
                outcome=outcome,
                status=status.name,
                elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
            )
        )

    def _admit(self, peer: str | None, request: envelope.Envelope) -> envelope.Header:
        """Check one envelope against the caller's identity; raise a domain error if refused."""
        if peer is None:
            raise IdentityError("a bureau certificate is required")
        header = envelope.unverified_header(request)
        if header.sender != peer:
            raise IdentityError("header sender does not match the authenticated bureau")
        if header.kind != envelope.QUERY_REQUEST:
            raise EnvelopeError
        if not self._directory.known(header.recipient):
            raise RoutingError(f"unknown bureau {header.recipient!r}")
        return header

    def _timeout(self, context: grpc.aio.ServicerContext, margin_ms: int) -> float:
        """The caller's remaining deadline (capped), less time to send our reply back.

        The margin is at least ``margin_ms`` and at least a tenth of the budget, so the
        merged reply reaches the caller before its own deadline even on a busy machine.
        """
        remaining = context.time_remaining()
        budget = self._config.default_deadline_ms / 1000
        if remaining is not None:
            budget = min(budget, remaining)
        margin = max(margin_ms / 1000, budget / 10)
        return max(budget - margin, 0.001)

    async def _forward(
        self, header: envelope.Header, request: envelope.Envelope, timeout: float
    ) -> envelope.Envelope:
        route = self._router.get(header.recipient)
        response: envelope.Envelope = await route.stub.Handle(request, timeout=timeout)
        return response

    # ----------------------------------------------------------------- RPCs

    async def Query(  # noqa: N802 - gRPC method name
        self, request: envelope.Envelope, context: grpc.aio.ServicerContext
    ) -> envelope.Envelope:
        started = time.perf_counter()
        peer = transport.peer_bureau(context)
        try:
            header = self._admit(peer, request)
        except NcbsimError as exc:
            code, detail = status_for(exc)
            self._audit_record(
                "Query",
                peer or "",
                request,
                _header_or_none(request),
                outcome="refused",
                status=code,
                started=started,
            )
            log.warning("refused", rpc="Query", peer=peer, status=code.name, reason=detail)
            await abort(context, code, detail)
        with structlog.contextvars.bound_contextvars(
            message_id=header.message_hex, correlation_id=header.correlation_hex
        ):
            try:
                response = await self._forward(header, request, self._timeout(context, 20))
            except RoutingError as exc:
                code = grpc.StatusCode.UNAVAILABLE
                self._audit_record(
                    "Query",
                    header.sender,
                    request,
                    header,
                    outcome="no_answer",
                    status=code,
                    started=started,
                )
                await abort(context, code, str(exc))
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                outcome = "no_answer" if code in _NO_ANSWER else "refused"
                self._audit_record(
                    "Query",
                    header.sender,
                    request,
                    header,
                    outcome=outcome,
                    status=code,
                    started=started,
                )
                log.info("relay_failed", recipient=header.recipient, status=code.name)
                detail = (
                    f"no answer from {header.recipient}" if outcome == "no_answer" else code.name
                )
                await abort(context, code, detail)
            self._audit_record(
                "Query",
                header.sender,
                request,
                header,
                outcome="delivered",
                status=grpc.StatusCode.OK,
                started=started,
                response=response,
            )
            log.debug("relayed", sender=header.sender, recipient=header.recipient)
            return response

    async def MultiQuery(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.MultiQueryRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.MultiQueryReply:
        started = time.perf_counter()
        peer = transport.peer_bureau(context)
        admitted: list[tuple[envelope.Envelope, envelope.Header]] = []
        try:
            if not request.envelopes or len(request.envelopes) > MAX_FANOUT:
                raise EnvelopeError
            for item in request.envelopes:
                admitted.append((item, self._admit(peer, item)))
            recipients = [h.recipient for _, h in admitted]
            if len(set(recipients)) != len(recipients):
                raise EnvelopeError
        except NcbsimError as exc:
            code, detail = status_for(exc)
            for item in request.envelopes:
                self._audit_record(
                    "MultiQuery",
                    peer or "",
                    item,
                    _header_or_none(item),
                    outcome="refused",
                    status=code,
                    started=started,
                )
            log.warning("refused", rpc="MultiQuery", peer=peer, status=code.name, reason=detail)
            await abort(context, code, detail)
        timeout = self._timeout(context, self._config.fanout_margin_ms)
        deliveries = await asyncio.gather(
            *(self._deliver(peer or "", item, header, timeout) for item, header in admitted)
        )
        return gateway_pb2.MultiQueryReply(deliveries=deliveries)

    async def _deliver(
        self, peer: str, request: envelope.Envelope, header: envelope.Header, timeout: float
    ) -> gateway_pb2.Delivery:
        started = time.perf_counter()
        delivery = gateway_pb2.Delivery(bureau=header.recipient)
        try:
            delivery.response.CopyFrom(await self._forward(header, request, timeout))
            delivery.status = gateway_pb2.DELIVERY_STATUS_DELIVERED
            code, outcome = grpc.StatusCode.OK, "delivered"
        except RoutingError:
            code, outcome = grpc.StatusCode.UNAVAILABLE, "no_answer"
            delivery.status = gateway_pb2.DELIVERY_STATUS_NO_ANSWER
            delivery.detail = "not registered"
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code in _NO_ANSWER:
                outcome, delivery.status = "no_answer", gateway_pb2.DELIVERY_STATUS_NO_ANSWER
            else:
                outcome, delivery.status = "refused", gateway_pb2.DELIVERY_STATUS_REFUSED
            delivery.detail = code.name
        delivery.elapsed_ms = int((time.perf_counter() - started) * 1000)
        with structlog.contextvars.bound_contextvars(
            message_id=header.message_hex, correlation_id=header.correlation_hex
        ):
            log.debug("relayed", rpc="MultiQuery", recipient=header.recipient, outcome=outcome)
        self._audit_record(
            "MultiQuery",
            peer,
            request,
            header,
            outcome=outcome,
            status=code,
            started=started,
            response=delivery.response if delivery.HasField("response") else None,
        )
        return delivery

    async def GetDirectory(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.DirectoryRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.Directory:
        return gateway_pb2.Directory(entries=self._directory.entries(list(request.bureaus)))

    async def Register(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.RegisterRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.RegisterReply:
        bureau = transport.peer_bureau(context)
        try:
            if bureau is None:
                raise IdentityError("only a bureau can register a node")
            if not self._directory.known(bureau):
                raise RoutingError(f"unknown bureau {bureau!r}")
            await self._router.register(bureau, request.address)
        except NcbsimError as exc:
            code, detail = status_for(exc)
            log.warning("register_refused", peer=bureau, status=code.name, reason=detail)
            await abort(context, code, detail)
        return gateway_pb2.RegisterReply()

    async def Routes(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.RoutesRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.RoutesReply:
        return gateway_pb2.RoutesReply(bureaus=self._router.bureaus())


async def serve(config: GatewayConfig) -> None:
    """Run the gateway until SIGINT or SIGTERM."""
    tls = config.pki.tls("gateway")
    router = Router(tls)
    audit = AuditLog(config.audit_path)
    service = GatewayService(config, router, audit)
    served = await start_server(
        tls,
        config.listen,
        [gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name],
        register=lambda server: gateway_pb2_grpc.add_GatewayServicer_to_server(service, server),
    )
    log.info("gateway_listening", address=served.address, audit=str(config.audit_path))
    await served.set_serving(True)
    write_ready_file(config.ready_file, role="gateway", address=served.address)
    try:
        await wait_for_shutdown()
    finally:
        log.info("gateway_stopping")
        await served.server.stop(grace=2)
        await router.close()
        audit.close()
