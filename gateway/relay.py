"""The query relay: Query and MultiQuery, forwarded to the recipients' nodes and audited.

Each sealed envelope is admitted (:mod:`ncbsim.gateway.admission`), metered, forwarded
untouched to its recipient's node over the router's channel, and its audit row
committed before the answer goes back. A MultiQuery fans out to up to
:data:`~ncbsim.protocol.MAX_ENVELOPES_PER_CALL` distinct recipients at once and merges
one ``Delivery`` per recipient.

The relay does no file system work of its own, binds no logging context and writes no
log line for an envelope that was delivered (the debug line is filtered out at
``info``); each envelope costs one envelope and one header parse, the admission checks,
one rate-limit check and one audit row. If the row cannot be written the answer is held
back (UNAVAILABLE).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from functools import partial

import grpc
import structlog
from google.protobuf.message import DecodeError

from ncbsim import envelope, tracing, transport
from ncbsim.auditlog import AuditWriteError
from ncbsim.errors import PUSHBACK_KEY, RETRY_AFTER_KEY, NcbsimError, RoutingError
from ncbsim.gateway import observed
from ncbsim.gateway.admission import (
    admit_queries,
    admit_query,
    header_or_none,
    limit_for,
    parse,
)
from ncbsim.gateway.limits import check_size, wrapped_size
from ncbsim.gateway.parts import GatewayParts, audit_row
from ncbsim.serving import abort
from ncbsim.v2 import bureau_pb2, gateway_pb2

log = structlog.get_logger()

FANOUT_SHARE = 0.2
"""The least share of a MultiQuery's deadline kept for sending the merged reply back."""
_NO_ANSWER = {
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.CANCELLED,
}


def reply_timeout(
    remaining: float | None, default_deadline_ms: int, margin_ms: int, *, share: float = 0.1
) -> float:
    """The caller's remaining deadline (capped at the default), less time to send our
    reply back, in seconds.

    The margin is at least ``margin_ms`` and at least ``share`` of the budget, so the
    reply reaches the caller before its own deadline even on a busy machine.
    """
    budget = default_deadline_ms / 1000
    if remaining is not None:
        budget = min(budget, remaining)
    margin = max(margin_ms / 1000, budget * share)
    return max(budget - margin, 0.001)


_RETRY_KEYS = frozenset({RETRY_AFTER_KEY, PUSHBACK_KEY})
_MAX_DETAIL = 200


def _refusal(exc: grpc.aio.AioRpcError) -> tuple[str, tuple[tuple[str, str], ...]]:
    """What a node's refusal tells its requester, passed on as it came: the detail (the
    node writes it for the requester and names no query term; printable and bounded
    here, or dropped) and the retry trailers. Nothing the gateway learns from it is new:
    the node sent it to the gateway in the clear."""
    detail = exc.details() or ""
    if len(detail) > _MAX_DETAIL or not detail.isprintable():
        detail = ""
    trailers = tuple(
        (str(key), str(value))
        for key, value in exc.trailing_metadata() or ()
        if key in _RETRY_KEYS and isinstance(value, str)
    )
    return detail, trailers


@dataclass(frozen=True, slots=True)
class _Relayed:
    """What became of one admitted envelope."""

    response: envelope.Envelope | None
    code: grpc.StatusCode
    outcome: str  # "delivered", "no_answer" or "refused"
    registered: bool
    detail: str = ""  # why an answer was held back, if it was
    trailers: tuple[tuple[str, str], ...] = ()
    """A refusing node's retry trailers (a daily cap's ``retry-after-ms``), passed on."""
    raw: bytes | None = None
    """The node's answer as it came (a serialized HandleResponse, which is also a
    QueryResponse), when it was relayed unparsed; ``response`` is then None."""


def _answer(raw: bytes) -> tuple[int, envelope.Envelope | None]:
    """The size of the envelope a node's serialized HandleResponse holds, and the envelope
    itself only if it had to be parsed: a response that is exactly one envelope in
    field 1 (as a node sends it) is relayed as it came, unparsed. DecodeError if it is
    not a HandleResponse."""
    size = wrapped_size(raw)
    if size is not None:
        return size, None
    response = bureau_pb2.HandleResponse.FromString(raw).envelope
    return response.ByteSize(), response


def _handle_request(request: bytes, item: envelope.Envelope, size: int) -> bytes:
    """The HandleRequest to relay ``item`` in: the Query's own bytes when they are exactly
    that envelope in field 1 (a QueryRequest and a HandleRequest are then the same bytes),
    else the envelope alone, serialized again (never any other field of the request)."""
    if wrapped_size(request) == size:
        return request
    return bureau_pb2.HandleRequest(envelope=item).SerializeToString()


class QueryRelay:
    """Gateway.Query and Gateway.MultiQuery over one gateway's parts."""

    def __init__(self, parts: GatewayParts) -> None:
        self._parts = parts

    def _timeout(self, context: grpc.aio.ServicerContext, margin_ms: int, share: float) -> float:
        deadline_ms = self._parts.config.default_deadline_ms
        return reply_timeout(context.time_remaining(), deadline_ms, margin_ms, share=share)

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
        wire: bytes | None = None,
    ) -> _Relayed:
        """Forward one admitted envelope to its recipient's node, audit it, classify it.

        No route, a deadline, an unreachable or cancelled node are ``no_answer``; any
        other status from the node is ``refused``. Query and MultiQuery both relay here.
        With ``wire`` (the serialized HandleRequest: a Query's), the request and the
        answer are relayed as bytes, neither parsed nor serialized again (:func:`_answer`).
        Returns once the audit row is committed; if it cannot be, the answer is held
        back (``no_answer``, UNAVAILABLE).
        """
        response: envelope.Envelope | None = None
        raw: bytes | None = None
        response_bytes = 0
        registered = True
        relay_started = time.perf_counter()
        refusal = ""
        trailers: tuple[tuple[str, str], ...] = ()
        try:
            route = self._parts.router.get(header.recipient)
            if wire is not None and route.handle_raw is not None:
                raw = await route.handle_raw(wire, timeout=timeout)
                response_bytes, response = _answer(raw)
                if response is not None:
                    raw = None
            else:
                handled = await route.stub.Handle(
                    bureau_pb2.HandleRequest(envelope=request), timeout=timeout
                )
                response = handled.envelope
                response_bytes = response.ByteSize()
            code, outcome = grpc.StatusCode.OK, "delivered"
        except RoutingError:
            registered = False
            code, outcome = grpc.StatusCode.UNAVAILABLE, "no_answer"
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            outcome = "no_answer" if code in _NO_ANSWER else "refused"
            if outcome == "refused":
                refusal, trailers = _refusal(exc)
        except DecodeError:  # what grpc says of an answer its deserializer cannot read
            raw, response_bytes = None, 0
            code, outcome = grpc.StatusCode.INTERNAL, "refused"
        self._parts.metrics.relay(header, outcome, time.perf_counter() - relay_started)
        row = audit_row(
            rpc,
            peer,
            request_bytes,
            header,
            outcome=outcome,
            status=code,
            started=started,
            response_bytes=response_bytes,
        )
        try:
            await self._parts.audit.commit(row)
        except AuditWriteError as exc:
            log.error("answer_held_back", reason="audit not written", error=str(exc))
            detail = "the gateway could not audit the answer"
            held = row._replace(outcome="no_answer", status="UNAVAILABLE", response_bytes=0)
            observed.relayed(self._parts.bus, held)
            return _Relayed(None, grpc.StatusCode.UNAVAILABLE, "no_answer", registered, detail)
        observed.relayed(self._parts.bus, row)
        if response is None and raw is None:
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
        return _Relayed(response, code, outcome, registered, refusal, trailers, raw)

    async def query(
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.QueryResponse | bytes:
        """Relay one envelope and answer with the recipient's, or end with why not.

        The request is parsed once (for its header); the envelope goes to the node in the
        request's own bytes and the answer comes back as the node's bytes, when each is
        exactly one envelope (a QueryRequest and a HandleRequest, a HandleResponse and a
        QueryResponse, are the same bytes then)."""
        parts = self._parts
        started = time.perf_counter()
        peer = transport.peer_principal(context)
        size = len(request)  # then the envelope's size, as MultiQuery's rows record it
        try:
            parts.check_credentials(peer, context)
            if size > parts.max_bytes:  # only then can the envelope be over it
                # Refused unparsed: a request of up to 4 MiB is not decoded to be refused.
                # Its envelope's size is read from its framing; a request that is not just
                # one envelope is held to the limit itself.
                size = wrapped_size(request) or size
                check_size(size, parts.max_bytes)
            item = parse(request, gateway_pb2.QueryRequest, max_bytes=None).envelope
            size = item.ByteSize()
            check_size(size, parts.max_bytes)
        except NcbsimError as exc:  # refused unread: the row has no ids or parties
            await parts.refuse(context, "Query", peer, exc, started=started, refused=[(size, None)])
        try:
            if peer is not None:  # metered before admission: refusals count too
                parts.limiter.take(peer, limit=limit_for(peer, parts.users))
            header = admit_query(peer, item, parts.directory, parts.users)
        except NcbsimError as exc:
            refused = [(size, header_or_none(item))]
            await parts.refuse(context, "Query", peer, exc, started=started, refused=refused)
        tracing.note(kind=envelope.kind_name(header.kind), recipients=1)
        relayed = await self._relay(
            "Query",
            header.sender,
            item,
            size,
            header,
            timeout=self._timeout(context, parts.config.query_margin_ms, 0.1),
            started=started,
            wire=_handle_request(request, item, size),
        )
        if relayed.raw is not None:
            return relayed.raw
        if relayed.response is None:
            if relayed.detail:
                detail = relayed.detail
            elif not relayed.registered:
                detail = f"bureau {header.recipient} has no registered node"
            elif relayed.outcome == "no_answer":
                detail = f"no answer from {header.recipient}"
            else:
                detail = relayed.code.name
            await abort(context, relayed.code, detail, relayed.trailers)
        return gateway_pb2.QueryResponse(envelope=relayed.response)

    async def multi_query(
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.MultiQueryResponse:
        """Relay every envelope at once and merge one Delivery per recipient."""
        parts = self._parts
        admit = partial(
            admit_queries,
            max_bytes=parts.max_bytes,
            limiter=parts.limiter,
            directory=parts.directory,
            users=parts.users,
        )
        peer, admitted = await parts.admit_call(
            context, "MultiQuery", request, gateway_pb2.MultiQueryRequest, admit
        )
        tracing.note(recipients=len(admitted))  # and one CLIENT span per recipient
        # A fan-out's reply is the one that must not miss the caller's deadline: if it does,
        # the caller loses every bureau's answer, not just the late one's. So it keeps a
        # fifth of the budget (400 ms of a 2 s deadline) to send the merged reply back.
        timeout = self._timeout(context, parts.config.fanout_margin_ms, FANOUT_SHARE)
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
