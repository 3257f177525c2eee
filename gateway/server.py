"""The gateway's gRPC service: admit, route, fan out, audit.

Every call is checked against the caller's mTLS identity: the header's sender must
be the authenticated bureau. The gateway relays sealed envelopes untouched and
records only their metadata.

The relay path does no file system work, binds no logging context and writes no log
line for an envelope that was delivered (the debug line is filtered out at ``info``);
each envelope costs one header parse, the admission checks and one audit record.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog
from google.protobuf.message import DecodeError

from gateway.audit import AuditLog, AuditRecord
from gateway.router import Router
from ncbsim import envelope, transport
from ncbsim.config import GatewayConfig
from ncbsim.errors import (
    EnvelopeError,
    IdentityError,
    NcbsimError,
    PkiError,
    RoutingError,
    status_for,
)
from ncbsim.pki import PkiDir, check_bureau_code
from ncbsim.serving import abort, start_server, wait_for_shutdown, write_ready_file
from ncbsim.v1 import directory_pb2, envelope_pb2, gateway_pb2, gateway_pb2_grpc

log = structlog.get_logger()

MAX_FANOUT = 256
_NO_ANSWER = {
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.CANCELLED,
}
_KIND_NAMES = {
    value.number: value.name.removeprefix("MESSAGE_KIND_").lower()
    for value in envelope_pb2.MessageKind.DESCRIPTOR.values
}


def _kind_name(kind: int) -> str:
    return _KIND_NAMES.get(kind) or f"unknown({kind})"


def _is_code(value: str) -> bool:
    try:
        check_bureau_code(value)
    except PkiError:
        return False
    return True


def _header_or_none(request: envelope.Envelope) -> envelope.Header | None:
    """The header of a refused envelope, if it parses, for the audit trail."""
    try:
        return envelope.unverified_header(request)
    except EnvelopeError:
        return None


_Stamp = tuple[tuple[str, int, int, int], ...]


class DirectoryFiles:
    """Root-signed directory entries as the PKI wrote them, reloaded when files change.

    Admission asks :meth:`known` about every envelope, so the folder is looked at no
    more than once per ``refresh_s`` (one ``scandir`` and a ``stat`` per entry; files are
    read only when one changed), and at once when asked about a bureau it does not hold,
    so a bureau added while the gateway runs is routable straight away. A changed or
    removed entry therefore takes effect within ``refresh_s``: that is the bound on how
    long a revoked bureau can still be routed. Each file is keyed by (name, inode,
    mtime_ns, size), so an entry replaced (``pki`` writes them with ``os.replace``) or
    rewritten in place is seen even when its size is unchanged. :meth:`entries`, which
    serves GetDirectory, always looks at the folder.
    """

    def __init__(
        self,
        pki: PkiDir,
        *,
        refresh_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pki = pki
        self._refresh_s = refresh_s
        self._clock = clock
        self._checked_at = float("-inf")
        self._stamp: _Stamp | None = None
        self._entries: dict[str, directory_pb2.SignedDirectoryEntry] = {}

    def entries(self, bureaus: list[str]) -> list[directory_pb2.SignedDirectoryEntry]:
        """Entries for ``bureaus`` (all when empty). Unknown codes are skipped."""
        self._reload()
        if not bureaus:
            return list(self._entries.values())
        return [self._entries[b] for b in bureaus if b in self._entries]

    def known(self, bureau: str) -> bool:
        """Whether the PKI has a directory entry for ``bureau``."""
        if self._clock() - self._checked_at >= self._refresh_s or bureau not in self._entries:
            self._reload()
        return bureau in self._entries

    def _reload(self) -> None:
        self._checked_at = self._clock()
        folder = self._pki.directory
        stamps: list[tuple[str, int, int, int]] = []
        with os.scandir(folder) as listing:
            for item in listing:
                if not item.name.endswith(".entry"):
                    continue
                try:
                    stat = item.stat()
                except FileNotFoundError:  # removed since the listing
                    continue
                stamps.append((item.name, stat.st_ino, stat.st_mtime_ns, stat.st_size))
        stamp = tuple(sorted(stamps))
        if stamp == self._stamp:
            return
        entries: dict[str, directory_pb2.SignedDirectoryEntry] = {}
        for name, *_ in stamp:
            path = folder / name
            try:
                entries[Path(name).stem] = directory_pb2.SignedDirectoryEntry.FromString(
                    path.read_bytes()
                )
            except (FileNotFoundError, DecodeError):
                # Gone or not an entry: skip it. Bureaus verify every entry they use anyway.
                log.warning("directory_entry_unreadable", file=name)
        self._entries = entries
        self._stamp = stamp


@dataclass(frozen=True, slots=True)
class _Relayed:
    """What became of one admitted envelope."""

    response: envelope.Envelope | None
    code: grpc.StatusCode
    outcome: str  # "delivered", "no_answer" or "refused"
    registered: bool


class GatewayService(gateway_pb2_grpc.GatewayServicer):  # type: ignore[misc]
    """The Gateway service."""

    def __init__(self, config: GatewayConfig, router: Router, audit: AuditLog) -> None:
        self._config = config
        self._router = router
        self._audit = audit
        self._directory = DirectoryFiles(config.pki, refresh_s=config.directory_refresh_ms / 1000)

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
        elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        parties: tuple[str, str, str, str, str, int, int] = ("", "", "", "", "", 0, 0)
        if header is not None:
            sender, recipient = header.sender, header.recipient
            if outcome == "refused":  # maybe never admitted: copy only well-formed codes
                sender = sender if _is_code(sender) else ""
                recipient = recipient if _is_code(recipient) else ""
            parties = (
                header.message_hex,
                header.correlation_hex,
                sender,
                recipient,
                _kind_name(header.kind),
                header.issued_at_ms,
                header.expires_at_ms,
            )
        self._audit.record(
            AuditRecord(
                int(time.time() * 1000),
                rpc,
                peer,
                *parties,
                request.ByteSize(),
                response.ByteSize() if response is not None else 0,
                outcome,
                status.name,
                elapsed_ms,
            )
        )

    def _admit(self, peer: str | None, request: envelope.Envelope) -> envelope.Header:
        """Check one envelope against the caller's identity; raise a domain error if refused."""
        if peer is None:
            raise IdentityError("a bureau certificate is required")
        header = envelope.unverified_header(request)
        if header.sender != peer:  # peer is a valid code, so this also bounds the sender
            raise IdentityError("header sender does not match the authenticated bureau")
        if header.kind != envelope.QUERY_REQUEST or not _is_code(header.recipient):
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

    async def _relay(
        self,
        rpc: str,
        peer: str,
        request: envelope.Envelope,
        header: envelope.Header,
        *,
        timeout: float,
        started: float,
    ) -> _Relayed:
        """Forward one admitted envelope to its recipient's node, audit it, classify it.

        No route, a deadline, an unreachable or cancelled node are ``no_answer``; any
        other status from the node is ``refused``. Query and MultiQuery both relay here.
        """
        response: envelope.Envelope | None = None
        registered = True
        try:
            route = self._router.get(header.recipient)
            response = await route.stub.Handle(request, timeout=timeout)
            code, outcome = grpc.StatusCode.OK, "delivered"
        except RoutingError:
            registered = False
            code, outcome = grpc.StatusCode.UNAVAILABLE, "no_answer"
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            outcome = "no_answer" if code in _NO_ANSWER else "refused"
        self._audit_record(
            rpc,
            peer,
            request,
            header,
            outcome=outcome,
            status=code,
            started=started,
            response=response,
        )
        if response is None:
            log.info(
                "relay_failed",
                rpc=rpc,
                recipient=header.recipient,
                status=code.name,
                registered=registered,
                message_id=header.message_hex,
                correlation_id=header.correlation_hex,
            )
        else:
            log.debug(
                "relayed",
                rpc=rpc,
                sender=header.sender,
                recipient=header.recipient,
                message_id=header.message_hex,
                correlation_id=header.correlation_hex,
            )
        return _Relayed(response, code, outcome, registered)

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
        relayed = await self._relay(
            "Query",
            header.sender,
            request,
            header,
            timeout=self._timeout(context, self._config.query_margin_ms),
            started=started,
        )
        if relayed.response is None:
            if not relayed.registered:
                detail = f"bureau {header.recipient} has no registered node"
            elif relayed.outcome == "no_answer":
                detail = f"no answer from {header.recipient}"
            else:
                detail = relayed.code.name
            await abort(context, relayed.code, detail)
        return relayed.response

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
        relayed = await self._relay(
            "MultiQuery", peer, request, header, timeout=timeout, started=started
        )
        delivery = gateway_pb2.Delivery(
            bureau=header.recipient, elapsed_ms=int((time.perf_counter() - started) * 1000)
        )
        if relayed.response is not None:
            delivery.status = gateway_pb2.DELIVERY_STATUS_DELIVERED
            delivery.response.CopyFrom(relayed.response)
        elif relayed.outcome == "no_answer":
            delivery.status = gateway_pb2.DELIVERY_STATUS_NO_ANSWER
            delivery.detail = relayed.code.name if relayed.registered else "not registered"
        else:
            delivery.status = gateway_pb2.DELIVERY_STATUS_REFUSED
            delivery.detail = relayed.code.name
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
