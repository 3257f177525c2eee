"""Trace gRPC calls: client and server interceptors that carry W3C ``traceparent``.

A client interceptor starts a CLIENT span per call (a child of whatever span is current)
and sends its context as the ``traceparent`` metadata key, and nothing else of the trace:
no ``tracestate``, no baggage. A server interceptor reads ONLY ``traceparent`` from the
incoming metadata (never copying it anywhere) and runs the handler inside a SERVER span,
current while it runs, so every call the handler makes is that span's child. The gateway
therefore starts its own span and passes a fresh context on: the node sees the
gateway's CLIENT span as parent, never the caller's metadata. Health and reflection
calls (``grpc.*`` services) are not traced: probes would drown the query path.

Why interceptors of our own and not ``opentelemetry-instrumentation-grpc``: its grpc.aio
client interceptor calls ``add_done_callback`` on what the next interceptor returns, which
grpc.aio does not implement for a finished unary call (opentelemetry-python-contrib#3915:
NotImplementedError as soon as a second interceptor, such as the metrics one, answers),
its server interceptor extracts through the global propagator (tracestate and baggage
too), and it records the peer's IP address, port and exception texts as attributes. Here a
span holds only :data:`ncbsim.tracing.ATTRIBUTES`.

Interceptors exist only while :func:`ncbsim.tracing.setup` has configured an exporter:
:func:`client_interceptors` and :func:`server_interceptors` return none otherwise, so an
untraced process pays nothing per call.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ncbsim import tracing, transport
from ncbsim.pki import GATEWAY_NAME, OPERATOR_NAME, bureau_from_dns_name

__all__ = [
    "TRACEPARENT",
    "ClientTracing",
    "ServerTracing",
    "StreamClientTracing",
    "client_interceptors",
    "server_interceptors",
]

TRACEPARENT = "traceparent"
_W3C = TraceContextTextMapPropagator()
_UNTRACED_PREFIX = "/grpc."
"""Health (grpc.health.v1) and reflection (grpc.reflection.*) calls."""
_pending: set[asyncio.Task[None]] = set()


def _rpc_attributes(method: str, party: str) -> dict[str, str | int | bool]:
    """rpc.* and ncbsim.party of a call to ``method`` (``/pkg.Service/Method``)."""
    service, _, name = method.lstrip("/").rpartition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name, "ncbsim.party": party}


def _method_name(method: str | bytes) -> str:
    return method.decode() if isinstance(method, bytes) else method


def _size(message: object) -> int | None:
    if isinstance(message, bytes):
        return len(message)
    byte_size = getattr(message, "ByteSize", None)
    return int(byte_size()) if callable(byte_size) else None


def _end(span: trace.Span, code: grpc.StatusCode) -> None:
    """Record the call's status code (as gRPC numbers it) and end ``span``."""
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    span.set_status(StatusCode.OK if code == grpc.StatusCode.OK else StatusCode.ERROR)
    span.end()


def traceparent_of(span: trace.Span) -> str | None:
    """The ``traceparent`` value that makes ``span`` the parent of the receiver's span."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get(TRACEPARENT)


def _with_traceparent(details: grpc.aio.ClientCallDetails, span: trace.Span) -> Any:
    """``details`` with this span's traceparent added to the caller's metadata."""
    value = traceparent_of(span)
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    if value is not None:
        metadata.add(TRACEPARENT, value)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _ClientBase:
    def __init__(self, tracer: trace.Tracer, party: str) -> None:
        self._tracer = tracer
        self._party = party

    def _start(self, details: grpc.aio.ClientCallDetails, request: object) -> trace.Span | None:
        method = _method_name(details.method)
        if method.startswith(_UNTRACED_PREFIX):
            return None
        attributes = _rpc_attributes(method, self._party)
        size = _size(request)
        if size is not None:
            attributes["ncbsim.request_bytes"] = size
        return self._tracer.start_span(
            method.lstrip("/"), kind=SpanKind.CLIENT, attributes=attributes
        )


class ClientTracing(_ClientBase, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """A CLIENT span around each unary call; its context goes out as ``traceparent``."""

    async def intercept_unary_unary(
        self,
        continuation: Callable[..., Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        span = self._start(client_call_details, request)
        if span is None:
            return await continuation(client_call_details, request)
        try:
            call = await continuation(_with_traceparent(client_call_details, span), request)
            code = await call.code()  # waits for the end of the call; never raises
            if code == grpc.StatusCode.OK:
                size = _size(await call)
                if size is not None:
                    span.set_attribute("ncbsim.response_bytes", size)
        except asyncio.CancelledError:
            _end(span, grpc.StatusCode.CANCELLED)
            raise
        except BaseException:
            _end(span, grpc.StatusCode.UNKNOWN)
            raise
        _end(span, code)
        return call


class StreamClientTracing(_ClientBase, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """A CLIENT span around each server-streaming call, ended when the stream ends."""

    async def intercept_unary_stream(
        self,
        continuation: Callable[..., Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        span = self._start(client_call_details, request)
        if span is None:
            return await continuation(client_call_details, request)
        try:
            call = await continuation(_with_traceparent(client_call_details, span), request)
        except BaseException:
            _end(span, grpc.StatusCode.UNKNOWN)
            raise
        task = asyncio.get_running_loop().create_task(_end_when_done(span, call))
        _pending.add(task)
        task.add_done_callback(_pending.discard)
        return call


async def _end_when_done(span: trace.Span, call: Any) -> None:
    try:
        code = await call.code()
    except asyncio.CancelledError:
        code = grpc.StatusCode.CANCELLED
    _end(span, code)


def _peer(context: grpc.aio.ServicerContext) -> str:
    """The authenticated peer as a code: a bureau, ``gateway``, ``operator`` or ""."""
    for name in transport.peer_names(context):
        code = bureau_from_dns_name(name)
        if code is not None:
            return code
        if name == GATEWAY_NAME:
            return "gateway"
        if name == OPERATOR_NAME:
            return "operator"
    return ""


def _parent(metadata: Any) -> Context:
    """The remote parent named by ``traceparent`` alone; an empty context without one."""
    for key, value in metadata or ():
        if key == TRACEPARENT and isinstance(value, str):
            return _W3C.extract({TRACEPARENT: value}, context=Context())
    return Context()


class ServerTracing(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """A SERVER span around each unary and server-streaming handler, current while it runs."""

    def __init__(self, tracer: trace.Tracer, party: str) -> None:
        self._tracer = tracer
        self._party = party

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = _method_name(handler_call_details.method)
        if handler is None or method.startswith(_UNTRACED_PREFIX):
            return handler
        if handler.request_streaming:
            return handler  # ncbsim has no client-streaming RPC
        parent = _parent(handler_call_details.invocation_metadata)
        attributes = _rpc_attributes(method, self._party)
        name = method.lstrip("/")
        if handler.response_streaming and handler.unary_stream is not None:
            return handler._replace(
                unary_stream=self._streaming(handler.unary_stream, name, parent, attributes)
            )
        if handler.unary_unary is not None:
            return handler._replace(
                unary_unary=self._unary(handler.unary_unary, name, parent, attributes)
            )
        return handler

    def _open(
        self, name: str, parent: Context, attributes: dict[str, Any], request: object, ctx: Any
    ) -> trace.Span:
        span = self._tracer.start_span(
            name, context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        span.set_attribute("ncbsim.peer", _peer(ctx))
        size = _size(request)
        if size is not None:
            span.set_attribute("ncbsim.request_bytes", size)
        return span

    def _unary(
        self, behavior: Callable[..., Any], name: str, parent: Context, attributes: dict[str, Any]
    ) -> Callable[..., Awaitable[Any]]:
        async def traced(request: Any, context: grpc.aio.ServicerContext) -> Any:
            span = self._open(name, parent, attributes, request, context)
            with trace.use_span(span, end_on_exit=False):
                try:
                    response = behavior(request, context)
                    if inspect.isawaitable(response):
                        response = await response
                except BaseException:
                    _end(span, _code(context, grpc.StatusCode.UNKNOWN))
                    raise
            size = _size(response)
            if size is not None:
                span.set_attribute("ncbsim.response_bytes", size)
            _end(span, _code(context, grpc.StatusCode.OK))
            return response

        return traced

    def _streaming(
        self, behavior: Callable[..., Any], name: str, parent: Context, attributes: dict[str, Any]
    ) -> Callable[..., AsyncIterator[Any]]:
        async def traced(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            span = self._open(name, parent, attributes, request, context)
            with trace.use_span(span, end_on_exit=False):
                try:
                    result = behavior(request, context)
                    if hasattr(result, "__aiter__"):
                        async for item in result:
                            yield item
                    elif inspect.isawaitable(result):
                        await result
                except BaseException:
                    _end(span, _code(context, grpc.StatusCode.UNKNOWN))
                    raise
            _end(span, _code(context, grpc.StatusCode.OK))

        return traced


def _code(context: grpc.aio.ServicerContext, default: grpc.StatusCode) -> grpc.StatusCode:
    """The status the handler set (``abort`` sets it too), else ``default``."""
    try:
        code = context.code()
    except (AttributeError, NotImplementedError):
        return default
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):  # some grpc versions keep the number
        return next((c for c in grpc.StatusCode if c.value[0] == code), default)
    return default


def client_interceptors(party: str) -> list[grpc.aio.ClientInterceptor]:
    """The tracing interceptors of a channel used by ``party``; none without tracing."""
    tracer = tracing.active_tracer()
    if tracer is None:
        return []
    return [ClientTracing(tracer, party), StreamClientTracing(tracer, party)]


def server_interceptors(party: str) -> list[grpc.aio.ServerInterceptor]:
    """The tracing interceptor of ``party``'s server; none without tracing."""
    tracer = tracing.active_tracer()
    return [] if tracer is None else [ServerTracing(tracer, party)]
