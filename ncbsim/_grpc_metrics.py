"""The grpc.aio interceptors behind :mod:`ncbsim.metrics`: every call's start, messages,
status and time, in the ``grpc_server_*`` and ``grpc_client_*`` families.

The server interceptor wraps each method handler, whatever its shape (unary, server
stream, client stream, bidi), and counts a call once it has ended with its status: an
abort with the aborted code, a cancelled call as ``Canceled``, an exception that escaped
the handler as ``Unknown`` (what gRPC then answers). The client interceptors do the same
for the unary-unary and unary-stream calls this party makes. ``grpc_type``,
``grpc_service`` and ``grpc_method`` are read from the method's full name
(``/ncbsim.v2.GatewayService/Query``) and the handler, never from the request.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from ncbsim.metrics import Metrics

_Labels = tuple[str, str, str]

GO_CODES: Mapping[grpc.StatusCode, str] = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}
"""The ``grpc_code`` label: each status as Go's ``codes.Code.String()`` writes it, as the
ecosystem's dashboards and alerts expect (``grpc_code!="OK"``)."""


def split_method(full: str | bytes) -> tuple[str, str]:
    """``/pkg.Service/Method`` -> ``("pkg.Service", "Method")``."""
    text = full.decode("ascii", "replace") if isinstance(full, bytes) else full
    service, _, method = text.lstrip("/").rpartition("/")
    return service or "unknown", method or "unknown"


def grpc_type(request_streaming: bool, response_streaming: bool) -> str:
    """The ``grpc_type`` label: unary, client_stream, server_stream or bidi_stream."""
    if request_streaming and response_streaming:
        return "bidi_stream"
    if request_streaming:
        return "client_stream"
    return "server_stream" if response_streaming else "unary"


def _server_code(exc: BaseException | None, context: grpc.aio.ServicerContext) -> str:
    """The status a handler ended with: the one it set (an abort sets it), else OK when
    it returned, CANCELLED when it was cancelled, UNKNOWN for an escaped exception."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return GO_CODES[code]
    if exc is None:
        return "OK"
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "Canceled"
    return "Unknown"


class Children:
    """The labelled children of one method's families on one side (server or client),
    looked up once: ``labels()`` takes a lock and hashes its values on every call, so the
    interceptors keep these instead (:meth:`ncbsim.metrics.Metrics.children`)."""

    __slots__ = ("_by_code", "_handled", "_labels", "received", "seconds", "sent", "started")

    def __init__(self, metrics: Metrics, side: str, labels: _Labels) -> None:
        family = metrics.server_families if side == "server" else metrics.client_families
        started, handled, seconds, received, sent = family
        self._labels = labels
        self._handled = handled
        self._by_code: dict[str, Any] = {}
        self.started = started.labels(*labels)
        self.seconds = seconds.labels(*labels)
        self.received = received.labels(*labels)
        self.sent = sent.labels(*labels)

    def handled(self, code: str) -> Any:
        """The ``*_handled_total`` child of ``code``."""
        child = self._by_code.get(code)
        if child is None:
            child = self._by_code[code] = self._handled.labels(*self._labels, code)
        return child


class _ServerCall:
    """One server call's start time and the children it counts in."""

    __slots__ = ("children", "started")

    def __init__(self, children: Children) -> None:
        self.children = children
        self.started = time.perf_counter()
        children.started.inc()

    def received(self) -> None:
        self.children.received.inc()

    def sent(self) -> None:
        self.children.sent.inc()

    def ended(self, code: str) -> None:
        self.children.handled(code).inc()
        self.children.seconds.observe(time.perf_counter() - self.started)


class _Writes:
    """A handler's context that counts the messages the handler writes with
    ``context.write`` (gRPC's health Watch streams so); everything else is the context's."""

    __slots__ = ("_call", "_context")

    def __init__(self, context: grpc.aio.ServicerContext, call: _ServerCall) -> None:
        self._context = context
        self._call = call

    async def write(self, message: Any) -> None:
        await self._context.write(message)
        self._call.sent()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


async def _counted(requests: AsyncIterator[Any], call: _ServerCall) -> AsyncIterator[Any]:
    async for request in requests:
        call.received()
        yield request


class ServerMetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Fills the ``grpc_server_*`` families of one party's :class:`~ncbsim.metrics.Metrics`.

    Each method's wrapped handler is made once and kept, as long as the server hands
    the same handler for it (it does: a method's handler is registered once).
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:  # no such method: gRPC answers UNIMPLEMENTED itself
            return None
        cached = self._wrapped.get(details.method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        service, method = split_method(details.method)
        kind = grpc_type(handler.request_streaming, handler.response_streaming)
        children = self._metrics.children("server", (kind, service, method))
        wrap = {
            "unary": self._unary_unary,
            "server_stream": self._unary_stream,
            "client_stream": self._stream_unary,
            "bidi_stream": self._stream_stream,
        }[kind]
        wrapped = wrap(handler, children)
        self._wrapped[details.method] = (handler, wrapped)
        return wrapped

    def _unary_unary(self, handler: Any, children: Children) -> grpc.RpcMethodHandler:
        inner = handler.unary_unary

        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            call = _ServerCall(children)
            call.received()
            response = await _finish(call, context, inner(request, context))
            call.sent()
            return response

        return grpc.unary_unary_rpc_method_handler(
            behavior, handler.request_deserializer, handler.response_serializer
        )

    def _unary_stream(self, handler: Any, children: Children) -> grpc.RpcMethodHandler:
        inner = handler.unary_stream

        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            call = _ServerCall(children)
            call.received()
            result = inner(request, _Writes(context, call))
            async for response in _stream(call, context, result):
                yield response

        return grpc.unary_stream_rpc_method_handler(
            behavior, handler.request_deserializer, handler.response_serializer
        )

    def _stream_unary(self, handler: Any, children: Children) -> grpc.RpcMethodHandler:
        inner = handler.stream_unary

        async def behavior(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
            call = _ServerCall(children)
            response = await _finish(call, context, inner(_counted(requests, call), context))
            call.sent()
            return response

        return grpc.stream_unary_rpc_method_handler(
            behavior, handler.request_deserializer, handler.response_serializer
        )

    def _stream_stream(self, handler: Any, children: Children) -> grpc.RpcMethodHandler:
        inner = handler.stream_stream

        async def behavior(
            requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            call = _ServerCall(children)
            result = inner(_counted(requests, call), _Writes(context, call))
            async for response in _stream(call, context, result):
                yield response

        return grpc.stream_stream_rpc_method_handler(
            behavior, handler.request_deserializer, handler.response_serializer
        )


async def _finish(call: _ServerCall, context: grpc.aio.ServicerContext, result: Any) -> Any:
    """Await a unary response (a handler may also be a plain function) and count its end."""
    try:
        response = await result if inspect.isawaitable(result) else result
    except BaseException as exc:
        call.ended(_server_code(exc, context))
        raise
    call.ended(_server_code(None, context))
    return response


async def _stream(
    call: _ServerCall, context: grpc.aio.ServicerContext, result: Any
) -> AsyncIterator[Any]:
    """Pass a handler's responses on, counting each, then count its end. A handler that
    writes with ``context.write`` instead of yielding is awaited (:class:`_Writes`
    counts those messages)."""
    try:
        if inspect.isasyncgen(result) or hasattr(result, "__aiter__"):
            async for response in result:
                call.sent()
                yield response
        elif inspect.isawaitable(result):
            await result
        else:
            for response in result:
                call.sent()
                yield response
    except BaseException as exc:
        call.ended(_server_code(exc, context))
        raise
    call.ended(_server_code(None, context))


# ------------------------------------------------------------------ client side


class _ClientCall:
    __slots__ = ("children", "started")

    def __init__(self, children: Children) -> None:
        self.children = children
        self.started = time.perf_counter()
        children.started.inc()
        children.sent.inc()

    def received(self) -> None:
        self.children.received.inc()

    def ended(self, code: grpc.StatusCode) -> None:
        self.children.handled(GO_CODES.get(code, "Unknown")).inc()
        self.children.seconds.observe(time.perf_counter() - self.started)


def _client_children(metrics: Metrics, method: str | bytes, kind: str) -> Children:
    return metrics.children("client", (kind, *split_method(method)))


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        call = _ClientCall(_client_children(self._metrics, client_call_details.method, "unary"))
        rpc = await continuation(client_call_details, request)
        try:
            await rpc  # the caller awaits the same call again: it gets the same outcome
        except grpc.aio.AioRpcError as exc:
            call.ended(exc.code())
        except asyncio.CancelledError:
            call.ended(grpc.StatusCode.CANCELLED)
            raise
        else:
            call.received()
            call.ended(grpc.StatusCode.OK)
        return rpc


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def intercept_unary_stream(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        call = _ClientCall(
            _client_children(self._metrics, client_call_details.method, "server_stream")
        )
        rpc = await continuation(client_call_details, request)
        return _responses(rpc, call)


async def _responses(rpc: Any, call: _ClientCall) -> AsyncIterator[Any]:
    """A unary-stream call's responses, counted; its end counted with its status."""
    try:
        async for response in rpc:
            call.received()
            yield response
    except grpc.aio.AioRpcError as exc:
        call.ended(exc.code())
        raise
    except (asyncio.CancelledError, GeneratorExit):
        call.ended(grpc.StatusCode.CANCELLED)
        raise
    call.ended(grpc.StatusCode.OK)


def client_interceptors(metrics: Metrics) -> list[grpc.aio.ClientInterceptor]:
    """The client interceptors of one party's channels."""
    return [_UnaryUnary(metrics), _UnaryStream(metrics)]


class _MeteredUnaryUnary:
    """A unary-unary method of a :class:`MeteredChannel`: each call is a coroutine that
    awaits the real call and counts it as :class:`_UnaryUnary` does."""

    __slots__ = ("_children", "_inner")

    def __init__(self, inner: Any, children: Children) -> None:
        self._inner = inner
        self._children = children

    def __call__(self, request: Any, **kwargs: Any) -> Awaitable[Any]:
        return self._call(request, kwargs)

    async def _call(self, request: Any, kwargs: dict[str, Any]) -> Any:
        call = _ClientCall(self._children)
        try:
            response = await self._inner(request, **kwargs)
        except grpc.aio.AioRpcError as exc:
            call.ended(exc.code())
            raise
        except asyncio.CancelledError:
            call.ended(grpc.StatusCode.CANCELLED)
            raise
        call.received()
        call.ended(grpc.StatusCode.OK)
        return response


class _MeteredUnaryStream:
    """A unary-stream method of a :class:`MeteredChannel`: its responses, counted."""

    __slots__ = ("_children", "_inner")

    def __init__(self, inner: Any, children: Children) -> None:
        self._inner = inner
        self._children = children

    def __call__(self, request: Any, **kwargs: Any) -> AsyncIterator[Any]:
        call = _ClientCall(self._children)
        return _responses(self._inner(request, **kwargs), call)


class MeteredChannel(grpc.aio.Channel):  # type: ignore[misc]
    """A channel whose unary-unary and unary-stream calls fill the ``grpc_client_*``
    families as the client interceptors do, with none of grpc.aio's interceptor
    machinery (an intercepted call costs a task and a wrapper call object of its own).

    A call of a stub made on it is a coroutine (or, streaming, an async iterator), not
    a grpc.aio call object: for callers that only await it. Everything else, streaming
    from the client included (not counted: ncbsim has no such RPC), is the channel's.
    """

    def __init__(self, channel: grpc.aio.Channel, metrics: Metrics) -> None:
        self._channel = channel
        self._metrics = metrics

    async def __aenter__(self) -> MeteredChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._channel.close()

    async def close(self, grace: float | None = None) -> None:
        await self._channel.close(grace)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._channel.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._channel.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self._channel.channel_ready()

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        inner = self._channel.unary_unary(method, *args, **kwargs)
        return _MeteredUnaryUnary(inner, _client_children(self._metrics, method, "unary"))

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        inner = self._channel.unary_stream(method, *args, **kwargs)
        return _MeteredUnaryStream(inner, _client_children(self._metrics, method, "server_stream"))

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._channel.stream_unary(method, *args, **kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._channel.stream_stream(method, *args, **kwargs)
