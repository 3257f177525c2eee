"""The gateway's gRPC service: admit, route, fan out, audit.

Every call is checked against the caller's mTLS identity: the header's sender must
be the authenticated bureau. The gateway relays sealed envelopes untouched and
records only their metadata.

Requests arrive as raw bytes (:func:`add_to_server`) and each RPC parses its own, so an
oversized or undecodable request is answered with a clear status and audited like any
other refusal. Each sending bureau is held to its rate limit and daily quota
(:mod:`gateway.limits`) once its envelopes are admitted. docs/limits.md has the details.

One-way envelopes (diffusions, notices, case messages) take another path: ``Post``
admits them, stores them durably (:mod:`gateway.mailbox`) and answers only after the
commit; :mod:`gateway.delivery` delivers them; ``Receipts`` tells the sender their fate.
docs/delivery.md has the details.

The relay path does no file system work of its own, binds no logging context and
writes no log line for an envelope that was delivered (the debug line is filtered out at
``info``); each envelope costs one envelope and one header parse, the admission checks,
one rate-limit check and one audit row.

No reply leaves before its audit row is committed (:meth:`ChainedLog.commit`, group
commit: concurrent handlers share one transaction): an answer, a refusal, a Post's
acceptance. A crash of the gateway then cannot erase the trace of an envelope it
answered. If the row cannot be written the answer is held back (UNAVAILABLE); a refusal
still goes out, since it carries nothing. docs/audit.md has the details.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import grpc
import structlog
from google.protobuf.message import DecodeError, Message

from ncbsim import envelope, transport
from ncbsim.auditlog import AuditWriteError
from ncbsim.countries import GENERAL_SECRETARIAT
from ncbsim.errors import (
    ConfigError,
    DirectoryError,
    EnvelopeError,
    IdentityError,
    NcbsimError,
    PkiError,
    QueueFull,
    RevokedError,
    RoutingError,
    status_for,
)
from ncbsim.gateway.audit import AuditLog, AuditRecord
from ncbsim.gateway.config import CONTROL_DAILY_QUOTA, GatewayConfig
from ncbsim.gateway.delivery import Deliverer
from ncbsim.gateway.directory_files import DirectoryFiles
from ncbsim.gateway.limits import BureauLimit, LimitExceeded, RateLimiter, check_size, wrapped_size
from ncbsim.gateway.mailbox import (
    ACCEPTED,
    DELIVERED,
    DUPLICATE,
    EXPIRED,
    QUEUE_FULL,
    QUEUED,
    REJECTED,
    Acceptance,
    Incoming,
    Mailbox,
    run_to_end,
)
from ncbsim.gateway.router import Router
from ncbsim.pki import check_bureau_code
from ncbsim.serving import (
    abort,
    add_raw_servicer,
    start_server,
    wait_for_shutdown,
    write_ready_file,
)
from ncbsim.v2 import bureau_pb2, gateway_pb2, gateway_pb2_grpc, messages_pb2

log = structlog.get_logger()

MAX_FANOUT = 256
RECEIPTS_PAGE = 500
"""Gateway.Receipts lists at most this many messages a call (also its default)."""
MAX_SEQUENCE = 2**63 - 1
"""The largest sequence SQLite can hold: an ``after_sequence`` above it lists nothing."""
QUEUE_FULL_RETRY_MS = 1_000
"""The retry hint sent with a Post refused because every recipient's queue is full."""
_POST_STATUS = {
    ACCEPTED: gateway_pb2.POST_STATUS_ACCEPTED,
    DUPLICATE: gateway_pb2.POST_STATUS_DUPLICATE,
    QUEUE_FULL: gateway_pb2.POST_STATUS_QUEUE_FULL,
}
_MESSAGE_STATE = {
    QUEUED: gateway_pb2.MESSAGE_STATE_QUEUED,
    DELIVERED: gateway_pb2.MESSAGE_STATE_DELIVERED,
    EXPIRED: gateway_pb2.MESSAGE_STATE_EXPIRED,
    REJECTED: gateway_pb2.MESSAGE_STATE_REJECTED,
}
_NO_ANSWER = {
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.CANCELLED,
}


def _is_code(value: str) -> bool:
    try:
        check_bureau_code(value)
    except PkiError:
        return False
    return True


def _header_or_none(request: envelope.Envelope | None) -> envelope.Header | None:
    """The header of a refused envelope, if it parses, for the audit trail."""
    if request is None:
        return None
    try:
        return envelope.unverified_header(request)
    except EnvelopeError:
        return None


def _id_hex(value: bytes) -> str:
    """An id of a refused envelope as hex, if it has the protocol's length (else empty)."""
    return value.hex() if len(value) == envelope.MESSAGE_ID_LEN else ""


_Message = TypeVar("_Message", bound=Message)
_Trailers = tuple[tuple[str, str], ...]


def _status(exc: NcbsimError) -> tuple[grpc.StatusCode, str, _Trailers]:
    """Status, client-safe detail and trailing metadata for a refusal."""
    code, detail = status_for(exc)
    return code, detail, exc.trailing_metadata() if isinstance(exc, LimitExceeded) else ()


@dataclass(frozen=True, slots=True)
class _Relayed:
    """What became of one admitted envelope."""

    response: envelope.Envelope | None
    code: grpc.StatusCode
    outcome: str  # "delivered", "no_answer" or "refused"
    registered: bool
    detail: str = ""  # why an answer was held back, if it was


FANOUT_SHARE = 0.2
"""The least share of a MultiQuery's deadline kept for sending the merged reply back."""


class GatewayService(gateway_pb2_grpc.GatewayServiceServicer):  # type: ignore[misc]
    """The Gateway service. Register it with :func:`add_to_server`: every RPC takes raw bytes."""

    def __init__(
        self,
        config: GatewayConfig,
        router: Router,
        audit: AuditLog,
        *,
        limiter: RateLimiter | None = None,
        mailbox: Mailbox | None = None,
        deliverer: Deliverer | None = None,
    ) -> None:
        self._config = config
        self._router = router
        self._audit = audit
        self._mailbox = mailbox
        self._deliverer = deliverer
        self._directory = DirectoryFiles(config.pki, refresh_s=config.directory_refresh_ms / 1000)
        default = BureauLimit(
            rate_per_s=config.rate_per_s, burst=config.burst, daily_quota=config.daily_quota
        )
        self._limiter = limiter or RateLimiter(default, config.bureau_limits)
        self._control_limiter = RateLimiter(
            BureauLimit(
                rate_per_s=config.control_rate_per_s,
                burst=config.control_burst,
                daily_quota=CONTROL_DAILY_QUOTA,
            )
        )
        self._max_bytes = config.max_envelope_bytes
        self._revoked_seen = self._directory.revoked

    # ----------------------------------------------------------------- helpers

    def _audit_row(
        self,
        rpc: str,
        peer: str,
        request_bytes: int,
        header: envelope.Header | None,
        *,
        outcome: str,
        status: grpc.StatusCode,
        started: float,
        response: envelope.Envelope | None = None,
    ) -> AuditRecord:
        """The audit row of one envelope (or of a request with no envelope to show)."""
        elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        parties: tuple[str, str, str, str, str, int, int] = ("", "", "", "", "", 0, 0)
        if header is not None:
            ids = header.message_hex, header.correlation_hex
            sender, recipient = header.sender, header.recipient
            if outcome == "refused":  # maybe never admitted: copy only well-formed values
                ids = _id_hex(header.message_id), _id_hex(header.correlation_id)
                sender = sender if _is_code(sender) else ""
                recipient = recipient if _is_code(recipient) else ""
            parties = (
                *ids,
                sender,
                recipient,
                envelope.kind_name(header.kind),
                header.issued_at_ms,
                header.expires_at_ms,
            )
        return AuditRecord(
            int(time.time() * 1000),
            rpc,
            peer,
            *parties,
            request_bytes,
            response.ByteSize() if response is not None else 0,
            outcome,
            status.name,
            elapsed_ms,
        )

    async def _audit_refused(self, rows: Sequence[AuditRecord]) -> None:
        """Commit the rows of a refusal before it is sent; a refusal carries nothing, so
        it still goes out if they cannot be written (the failure is logged)."""
        try:
            await self._audit.commit(*rows)
        except AuditWriteError as exc:
            log.error("audit_not_written", rows=len(rows), error=str(exc))

    async def _refuse(
        self,
        context: grpc.aio.ServicerContext,
        rpc: str,
        peer: str | None,
        exc: NcbsimError,
        *,
        started: float,
        refused: Sequence[tuple[int, envelope.Header | None]],
    ) -> NoReturn:
        """Audit each refused (size, header), log once, and end the RPC with exc's status."""
        code, detail, trailers = _status(exc)
        await self._audit_refused(
            [
                self._audit_row(
                    rpc, peer or "", size, header, outcome="refused", status=code, started=started
                )
                for size, header in refused
            ]
        )
        log.warning("refused", rpc=rpc, peer=peer, status=code.name, reason=detail)
        await abort(context, code, detail, trailers)

    def _check_credentials(self, peer: str | None, context: grpc.aio.ServicerContext) -> None:
        """RevokedError if the root revoked the certificate ``peer`` calls with.

        The revocation list is looked at within ``directory_refresh_ms``, and a newly
        revoked bureau's route is dropped at once. The certificate itself is read only
        for a bureau with a revoked certificate (that copies the whole auth context), so
        a re-issued certificate is let in again and no one else pays for the check.
        """
        self._directory.refresh()
        revoked = self._directory.revoked
        if revoked is not self._revoked_seen:
            for bureau, certs in revoked.certs.items():
                if certs != self._revoked_seen.certs.get(bureau):
                    self._router.drop(bureau)
            self._revoked_seen = revoked
        if peer is not None and peer in revoked.certs:
            fingerprint = transport.peer_certificate_sha256(context)
            if fingerprint is None or revoked.cert_revoked(peer, fingerprint):
                raise RevokedError(f"the certificate of {peer} is revoked")

    @staticmethod
    def _parse(raw: bytes, message: type[_Message], *, max_bytes: int | None) -> _Message:
        """One request parsed from its raw bytes: LimitExceeded if too large, else
        EnvelopeError if it is not a protobuf of that type."""
        if max_bytes is not None:
            check_size(len(raw), max_bytes)
        try:
            return message.FromString(raw)
        except DecodeError:
            raise EnvelopeError from None

    def _admit(self, peer: str | None, request: envelope.Envelope) -> envelope.Header:
        """Check one envelope against the caller's identity; raise a domain error if refused."""
        if peer is None:
            raise IdentityError("a bureau certificate is required")
        header = envelope.unverified_header(request)
        if header.sender != peer:  # peer is a valid code, so this also bounds the sender
            raise IdentityError("header sender does not match the authenticated bureau")
        if (
            header.version != envelope.VERSION
            or len(header.message_id) != envelope.MESSAGE_ID_LEN
            or len(header.correlation_id) != envelope.MESSAGE_ID_LEN
            or header.kind != envelope.QUERY_REQUEST
            or not _is_code(header.recipient)
        ):
            raise EnvelopeError
        if not self._directory.known(header.recipient):
            raise RoutingError(f"unknown bureau {header.recipient!r}")
        return header

    def _timeout(
        self, context: grpc.aio.ServicerContext, margin_ms: int, *, share: float = 0.1
    ) -> float:
        """The caller's remaining deadline (capped), less time to send our reply back.

        The margin is at least ``margin_ms`` and at least ``share`` of the budget, so the
        reply reaches the caller before its own deadline even on a busy machine.
        """
        remaining = context.time_remaining()
        budget = self._config.default_deadline_ms / 1000
        if remaining is not None:
            budget = min(budget, remaining)
        margin = max(margin_ms / 1000, budget * share)
        return max(budget - margin, 0.001)

    async def _relay(
        self,
        rpc: str,
        peer: str,
        request: envelope.Envelope,
        request_bytes: int,
        header: envelope.Header,
        *,
        timeout: float,
        started: float,
    ) -> _Relayed:
        """Forward one admitted envelope to its recipient's node, audit it, classify it.

        No route, a deadline, an unreachable or cancelled node are ``no_answer``; any
        other status from the node is ``refused``. Query and MultiQuery both relay here.
        Returns once the audit row is committed; if it cannot be, the answer is held
        back (``no_answer``, UNAVAILABLE).
        """
        response: envelope.Envelope | None = None
        registered = True
        try:
            route = self._router.get(header.recipient)
            handled = await route.stub.Handle(
                bureau_pb2.HandleRequest(envelope=request), timeout=timeout
            )
            response = handled.envelope
            code, outcome = grpc.StatusCode.OK, "delivered"
        except RoutingError:
            registered = False
            code, outcome = grpc.StatusCode.UNAVAILABLE, "no_answer"
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            outcome = "no_answer" if code in _NO_ANSWER else "refused"
        row = self._audit_row(
            rpc,
            peer,
            request_bytes,
            header,
            outcome=outcome,
            status=code,
            started=started,
            response=response,
        )
        try:
            await self._audit.commit(row)
        except AuditWriteError as exc:
            log.error("answer_held_back", reason="audit not written", error=str(exc))
            detail = "the gateway could not audit the answer"
            return _Relayed(None, grpc.StatusCode.UNAVAILABLE, "no_answer", registered, detail)
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
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.QueryResponse:
        started = time.perf_counter()
        peer = transport.peer_bureau(context)
        size = len(request)  # then the envelope's size, as MultiQuery's rows record it
        try:
            self._check_credentials(peer, context)
            if size > self._max_bytes:  # only then can the envelope be over it
                # Refused unparsed: a request of up to 4 MiB is not decoded to be refused.
                # Its envelope's size is read from its framing; a request that is not just
                # one envelope is held to the limit itself.
                size = wrapped_size(request) or size
                check_size(size, self._max_bytes)
            item = self._parse(request, gateway_pb2.QueryRequest, max_bytes=None).envelope
            size = item.ByteSize()
            check_size(size, self._max_bytes)
        except NcbsimError as exc:  # refused unread: the row has no ids or parties
            await self._refuse(context, "Query", peer, exc, started=started, refused=[(size, None)])
        try:
            if peer is not None:  # metered before admission: refusals count too
                self._limiter.take(peer)
            header = self._admit(peer, item)
        except NcbsimError as exc:
            refused = [(size, _header_or_none(item))]
            await self._refuse(context, "Query", peer, exc, started=started, refused=refused)
        relayed = await self._relay(
            "Query",
            header.sender,
            item,
            size,
            header,
            timeout=self._timeout(context, self._config.query_margin_ms),
            started=started,
        )
        if relayed.response is None:
            if relayed.detail:
                detail = relayed.detail
            elif not relayed.registered:
                detail = f"bureau {header.recipient} has no registered node"
            elif relayed.outcome == "no_answer":
                detail = f"no answer from {header.recipient}"
            else:
                detail = relayed.code.name
            await abort(context, relayed.code, detail)
        return gateway_pb2.QueryResponse(envelope=relayed.response)

    async def MultiQuery(  # noqa: N802 - gRPC method name
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.MultiQueryResponse:
        started = time.perf_counter()
        peer = transport.peer_bureau(context)
        items: Sequence[envelope.Envelope] = ()
        admitted: list[tuple[envelope.Envelope, envelope.Header]] = []
        try:
            self._check_credentials(peer, context)
            items = self._parse(request, gateway_pb2.MultiQueryRequest, max_bytes=None).envelopes
            if not items or len(items) > MAX_FANOUT:
                raise EnvelopeError
            if len(request) > self._max_bytes:  # only then can one envelope be over it
                for item in items:
                    check_size(item.ByteSize(), self._max_bytes)
            if peer is not None:  # metered before admission: refusals count too
                self._limiter.take(peer, len(items))
            for item in items:
                admitted.append((item, self._admit(peer, item)))
            recipients = [h.recipient for _, h in admitted]
            if len(set(recipients)) != len(recipients):
                raise EnvelopeError
        except NcbsimError as exc:
            # One row per envelope; a single row for a request too odd to list (so an
            # oversized fan-out cannot make the gateway write thousands of rows).
            refused = [(i.ByteSize(), _header_or_none(i)) for i in items]
            if not 0 < len(items) <= MAX_FANOUT:
                refused = [(len(request), None)]
            await self._refuse(context, "MultiQuery", peer, exc, started=started, refused=refused)
        # A fan-out's reply is the one that must not miss the caller's deadline: if it does,
        # the caller loses every bureau's answer, not just the late one's. So it keeps a
        # fifth of the budget (400 ms of a 2 s deadline) to send the merged reply back.
        timeout = self._timeout(context, self._config.fanout_margin_ms, share=FANOUT_SHARE)
        deliveries = await asyncio.gather(
            *(self._deliver(peer or "", item, header, timeout) for item, header in admitted)
        )
        return gateway_pb2.MultiQueryResponse(deliveries=deliveries)

    async def _deliver(
        self, peer: str, request: envelope.Envelope, header: envelope.Header, timeout: float
    ) -> gateway_pb2.Delivery:
        started = time.perf_counter()
        relayed = await self._relay(
            "MultiQuery",
            peer,
            request,
            request.ByteSize(),
            header,
            timeout=timeout,
            started=started,
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
            if relayed.detail:
                delivery.detail = relayed.detail
        else:
            delivery.status = gateway_pb2.DELIVERY_STATUS_REFUSED
            delivery.detail = relayed.code.name
        return delivery

    async def _control(
        self,
        rpc: str,
        raw: bytes,
        message: type[_Message],
        context: grpc.aio.ServicerContext,
    ) -> tuple[_Message, str | None]:
        """Parse a directory or routing request, metered in its own bucket (so queries
        never cost a bureau its route or keys), or refuse and audit it."""
        started = time.perf_counter()
        peer = transport.peer_bureau(context)
        try:
            self._check_credentials(peer, context)
            parsed = self._parse(raw, message, max_bytes=self._max_bytes)
            if peer is not None:
                self._control_limiter.take(peer)
            return parsed, peer
        except NcbsimError as exc:
            error = ConfigError("malformed request") if isinstance(exc, EnvelopeError) else exc
            await self._refuse(
                context, rpc, peer, error, started=started, refused=[(len(raw), None)]
            )

    async def GetDirectory(  # noqa: N802 - gRPC method name
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GetDirectoryResponse:
        parsed, _ = await self._control(
            "GetDirectory", request, gateway_pb2.GetDirectoryRequest, context
        )
        reply = gateway_pb2.GetDirectoryResponse(
            entries=self._directory.entries(list(parsed.bureaus))
        )
        revocations = self._directory.revocation_list()
        if revocations is not None:
            reply.revocations.CopyFrom(revocations)
        return reply

    async def Register(  # noqa: N802 - gRPC method name
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.RegisterResponse:
        started = time.perf_counter()
        parsed, bureau = await self._control(
            "Register", request, gateway_pb2.RegisterRequest, context
        )
        try:
            if bureau is None:
                raise IdentityError("only a bureau can register a node")
            if not self._directory.known(bureau):
                raise RoutingError(f"unknown bureau {bureau!r}")
            await self._router.register(bureau, parsed.address)
        except NcbsimError as exc:
            refused = [(len(request), None)]
            await self._refuse(context, "Register", bureau, exc, started=started, refused=refused)
        if self._deliverer is not None:  # its node is (back) up: deliver what waits now
            self._deliverer.kick(bureau)
        return gateway_pb2.RegisterResponse()

    async def Routes(  # noqa: N802 - gRPC method name
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.RoutesResponse:
        await self._control("Routes", request, gateway_pb2.RoutesRequest, context)
        return gateway_pb2.RoutesResponse(bureaus=self._router.bureaus())

    # ----------------------------------------------------------------- one-way messages

    def _admit_post(
        self, peer: str | None, request: envelope.Envelope, now_ms: int
    ) -> envelope.Header:
        """Check one envelope of a Post against the caller and the one-way rules."""
        if peer is None:
            raise IdentityError("a bureau certificate is required")
        header = envelope.unverified_header(request)
        if header.sender != peer:
            raise IdentityError("header sender does not match the authenticated bureau")
        if (
            header.version != envelope.VERSION
            or len(header.message_id) != envelope.MESSAGE_ID_LEN
            or len(header.correlation_id) != envelope.MESSAGE_ID_LEN
            or header.kind not in envelope.ONE_WAY_KINDS
            or not _is_code(header.recipient)
        ):
            raise EnvelopeError
        if header.recipient == header.sender:
            raise ConfigError("a bureau cannot post to itself")
        if header.kind == envelope.NOTICE and peer != GENERAL_SECRETARIAT:
            raise IdentityError(f"only {GENERAL_SECRETARIAT} may post notices")
        if header.kind == envelope.NOTICE_REQUEST and header.recipient != GENERAL_SECRETARIAT:
            raise ConfigError(f"a notice request goes to {GENERAL_SECRETARIAT} only")
        if header.expires_at_ms <= now_ms:
            raise ConfigError("the envelope expired before it was posted")
        if header.expires_at_ms - header.issued_at_ms > envelope.MAX_TTL_MS:
            raise ConfigError(f"time to live over {envelope.MAX_TTL_MS // 3_600_000} h")
        # Future-dated copies would outlive the TTL bound in the store: every stored copy
        # expires within MAX_TTL_MS (plus the clock skew allowed) of its acceptance.
        if header.issued_at_ms > now_ms + envelope.CLOCK_SKEW_MS:
            raise ConfigError("the envelope is issued in the future")
        if header.expires_at_ms > now_ms + envelope.MAX_TTL_MS + envelope.CLOCK_SKEW_MS:
            raise ConfigError(
                f"the envelope expires more than {envelope.MAX_TTL_MS // 3_600_000} h from now"
            )
        if not self._directory.known(header.recipient):
            raise RoutingError(f"unknown bureau {header.recipient!r}")
        if self._directory.send_only(header.recipient):
            raise DirectoryError(f"{header.recipient} only sends: it runs no node to deliver to")
        return header

    def _admit_posts(
        self, peer: str | None, items: Sequence[envelope.Envelope], request_bytes: int
    ) -> list[Incoming]:
        """Size, meter and admit every envelope of a Post, or raise for the whole call."""
        if not items or len(items) > MAX_FANOUT:
            raise EnvelopeError
        if request_bytes > self._max_bytes:  # only then can one envelope be over it
            for item in items:
                check_size(item.ByteSize(), self._max_bytes)
        if peer is not None:  # metered before admission: refusals count too
            self._limiter.take(peer, len(items))
        now_ms = int(time.time() * 1000)
        admitted = []
        for item in items:
            header = self._admit_post(peer, item, now_ms)
            data = item.SerializeToString()
            admitted.append(Incoming(header, data, envelope.envelope_digest(item)))
        return admitted

    def _mailbox_or_refuse(self) -> Mailbox:
        if self._mailbox is None:
            raise ConfigError("this gateway stores no messages")
        return self._mailbox

    async def _store(
        self, mailbox: Mailbox, admitted: Sequence[Incoming], started: float
    ) -> list[Acceptance]:
        """Store the admitted copies, wake the recipients' workers, and commit each copy's
        audit row (AuditWriteError if they cannot be written: the copies are stored then)."""
        accepted = await mailbox.accept(admitted)
        rows = []
        for incoming, result in zip(admitted, accepted, strict=True):
            full = result.status == QUEUE_FULL
            rows.append(
                self._audit_row(
                    "Post",
                    incoming.header.sender,
                    len(incoming.data),
                    incoming.header,
                    outcome=result.status,
                    status=grpc.StatusCode.RESOURCE_EXHAUSTED if full else grpc.StatusCode.OK,
                    started=started,
                )
            )
            if result.status == ACCEPTED and self._deliverer is not None:
                self._deliverer.wake(incoming.header.recipient)
        await self._audit.commit(*rows)
        return accepted

    async def Post(  # noqa: N802 - gRPC method name
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.PostResponse:
        """Store each one-way envelope durably, then answer accepted, duplicate or queue_full."""
        started = time.perf_counter()
        peer = transport.peer_bureau(context)
        items: Sequence[envelope.Envelope] = ()
        try:
            self._check_credentials(peer, context)
            items = self._parse(request, gateway_pb2.PostRequest, max_bytes=None).envelopes
            admitted = self._admit_posts(peer, items, len(request))
            mailbox = self._mailbox_or_refuse()
        except NcbsimError as exc:
            # One row per envelope; a single row for a request too odd to list.
            refused = [(i.ByteSize(), _header_or_none(i)) for i in items]
            if not 0 < len(items) <= MAX_FANOUT:
                refused = [(len(request), None)]
            await self._refuse(context, "Post", peer, exc, started=started, refused=refused)
        refused_admitted = [(len(i.data), i.header) for i in admitted]
        try:
            accepted = await run_to_end(self._store(mailbox, admitted, started))
        except NcbsimError as exc:  # a message id reused by another envelope: nothing stored
            await self._refuse(
                context, "Post", peer, exc, started=started, refused=refused_admitted
            )
        except AuditWriteError as exc:
            # The copies are stored (and will be delivered) but their rows are not written:
            # no receipt leaves without its row, as no answer does. Not "refused": they are
            # stored. The sender's retry of the same envelopes gets their receipts, as
            # duplicates, and those rows are the copies' audit trail.
            log.error(
                "audit_not_written", rpc="Post", peer=peer, rows=len(admitted), error=str(exc)
            )
            detail = (
                "the gateway could not audit them; the copies it stored stay stored, "
                "so resend the same envelopes for their receipts"
            )
            await abort(context, grpc.StatusCode.UNAVAILABLE, detail)
        except Exception:  # never UNKNOWN: the disk, a closed mailbox, a bug
            await self._audit_refused(
                [
                    self._audit_row(
                        "Post",
                        incoming.header.sender,
                        len(incoming.data),
                        incoming.header,
                        outcome="refused",
                        status=grpc.StatusCode.UNAVAILABLE,
                        started=started,
                    )
                    for incoming in admitted
                ]
            )
            log.exception("post_not_stored", peer=peer, envelopes=len(admitted))
            await abort(context, grpc.StatusCode.UNAVAILABLE, "the gateway could not store them")
        reply = gateway_pb2.PostResponse()
        for incoming, result in zip(admitted, accepted, strict=True):
            reply.results.add(
                message_id=incoming.header.message_id,
                recipient=incoming.header.recipient,
                status=_POST_STATUS[result.status],
                sequence=result.sequence,
                accepted_at_ms=result.accepted_at_ms,
                detail=result.detail,
            )
        if all(r.status == QUEUE_FULL for r in accepted):
            recipients = sorted({i.header.recipient for i in admitted})
            details = list(dict.fromkeys(r.detail for r in accepted))  # which bound, in order
            full_error = QueueFull(f"{'; '.join(details)}; retry later", QUEUE_FULL_RETRY_MS)
            log.warning("queue_full", rpc="Post", peer=peer, recipients=recipients)
            await abort(context, *_status(full_error))
        return reply

    async def Receipts(  # noqa: N802 - gRPC method name
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.ReceiptsResponse:
        """The caller's own posted copies after ``after_sequence``, by sequence, one page."""
        started = time.perf_counter()
        parsed, bureau = await self._control(
            "Receipts", request, gateway_pb2.ReceiptsRequest, context
        )
        try:
            if bureau is None:
                raise IdentityError("only a bureau can list its receipts")
            mailbox = self._mailbox_or_refuse()
        except NcbsimError as exc:
            refused = [(len(request), None)]
            await self._refuse(context, "Receipts", bureau, exc, started=started, refused=refused)
        limit = min(parsed.limit or RECEIPTS_PAGE, RECEIPTS_PAGE)
        after = min(parsed.after_sequence, MAX_SEQUENCE)  # nothing is stored above SQLite's max
        try:
            rows = await mailbox.posted(bureau, after, limit + 1)
        except Exception:  # never UNKNOWN: the disk, a closed mailbox, a bug
            refusal = self._audit_row(
                "Receipts",
                bureau,
                len(request),
                None,
                outcome="refused",
                status=grpc.StatusCode.UNAVAILABLE,
                started=started,
            )
            await self._audit_refused([refusal])
            log.exception("receipts_not_read", peer=bureau)
            await abort(context, grpc.StatusCode.UNAVAILABLE, "the gateway could not read them")
        reply = gateway_pb2.ReceiptsResponse(more=len(rows) > limit)
        for row in rows[:limit]:
            message = reply.messages.add(
                sequence=row.sequence,
                message_id=row.message_id,
                post_id=row.post_id,
                recipient=row.recipient,
                kind=row.kind,
                state=_MESSAGE_STATE[row.state],
                accepted_at_ms=row.accepted_at_ms,
                expires_at_ms=row.expires_at_ms,
                settled_at_ms=row.settled_at_ms,
                attempts=row.attempts,
                detail=row.detail,
            )
            if row.receipt is not None:
                message.receipt.CopyFrom(messages_pb2.SignedReceipt.FromString(row.receipt))
        return reply


def add_to_server(service: GatewayService, server: Any) -> None:
    """Register ``service`` on ``server``; every Gateway RPC receives its request raw."""
    add_raw_servicer(server, gateway_pb2_grpc.add_GatewayServiceServicer_to_server, service)


async def serve(config: GatewayConfig) -> None:
    """Run the gateway until SIGINT or SIGTERM."""
    tls = config.pki.tls("gateway")
    router = Router(tls)
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
    )
    service = GatewayService(config, router, audit, mailbox=mailbox, deliverer=deliverer)
    served = await start_server(
        tls,
        config.listen,
        [gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name],
        register=lambda server: add_to_server(service, server),
    )
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
    )
    await deliverer.start()  # resumes every queued message: a worker per recipient
    await served.set_serving(True)
    write_ready_file(config.ready_file, role="gateway", address=served.address)
    try:
        await wait_for_shutdown()
    finally:
        log.info("gateway_stopping")
        await served.drain(grace=2)
        await deliverer.stop()
        await router.close()
        await mailbox.close()
        audit.close()
