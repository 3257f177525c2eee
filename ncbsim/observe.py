"""The ``Observe`` RPC: a party's event stream over gRPC, for the operator only.

Every ncbsim server (the gateway, each node) serves ``ObserverService`` next to its own
service (:func:`ncbsim.serving.start_server` adds it when given a bus). The caller must
present the operator's certificate (SAN ``operator.ncbsim``), as for the operator's other
calls; anyone else is refused with PERMISSION_DENIED, and the program's ``on_denied``
hook audits the attempt. Each call is one :class:`~ncbsim.eventbus.Subscription`: a
subscriber that stops reading loses the oldest held events, never slows the emitter,
and every event it does receive carries its dropped count so far.

:func:`observe` is the client side, used by ``ncbsim watch`` and the tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import grpc
import structlog

from ncbsim import transport
from ncbsim.eventbus import DEFAULT_BUFFER, MAX_BUFFER, EventBus
from ncbsim.events import Event, from_proto
from ncbsim.pki import OPERATOR_NAME
from ncbsim.v2 import observe_pb2, observe_pb2_grpc

log = structlog.get_logger()

SERVICE_NAME = observe_pb2.DESCRIPTOR.services_by_name["ObserverService"].full_name

DeniedHook = Callable[[grpc.aio.ServicerContext], Awaitable[None]]
"""Called with the context of a refused caller before the refusal is sent (to audit it)."""

BATCH = 512
"""The most events one stream message carries."""
LINGER_S = 0.05
"""How long the stream waits after an event for others to send with it."""

_IDLE_S = 1.0
"""How often a waiting stream checks that its caller is still there."""


class ObserverService(observe_pb2_grpc.ObserverServiceServicer):  # type: ignore[misc]
    """Streams one bus's events to the operator."""

    def __init__(self, bus: EventBus, *, on_denied: DeniedHook | None = None) -> None:
        self.bus = bus
        self._on_denied = on_denied

    async def Observe(  # noqa: N802 - gRPC method name
        self, request: observe_pb2.ObserveRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[observe_pb2.ObserveResponse]:
        """Stream events from now on until the caller cancels or the server stops."""
        if not transport.peer_is(context, OPERATOR_NAME):
            if self._on_denied is not None:
                await self._on_denied(context)
            log.warning("observe_refused", party=self.bus.party)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "only the operator may observe")
        buffer = request.buffer or DEFAULT_BUFFER
        if buffer > MAX_BUFFER:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"buffer must be at most {MAX_BUFFER}"
            )
        kinds = [k for k in request.kinds if k]
        sub = self.bus.subscribe(buffer=buffer, kinds=kinds, loop=asyncio.get_running_loop())
        log.info("observer_attached", party=self.bus.party, kinds=kinds, buffer=buffer)
        try:
            await context.send_initial_metadata(())  # attached: the caller may go on
            while not context.done():
                events = await sub.next_batch(timeout=_IDLE_S)
                if events and len(events) < BATCH:
                    # Linger so that one message carries what a busy party emits in the
                    # meantime: a write per event would cost the party more than the
                    # events themselves. 50 ms is well under what a person or a
                    # twice-a-second view notices.
                    await asyncio.sleep(LINGER_S)
                    events += sub.drain()
                for start in range(0, len(events), BATCH):
                    yield observe_pb2.ObserveResponse(
                        events=[e.to_proto() for e in events[start : start + BATCH]],
                        dropped=sub.dropped,
                    )
        finally:
            sub.close()
            log.info("observer_detached", party=self.bus.party, dropped=sub.dropped)


def add_to_server(
    server: grpc.aio.Server, bus: EventBus, *, on_denied: DeniedHook | None = None
) -> None:
    """Serve ``bus`` as ``ncbsim.v2.ObserverService`` on ``server``."""
    observe_pb2_grpc.add_ObserverServiceServicer_to_server(
        ObserverService(bus, on_denied=on_denied), server
    )


async def observe(
    channel: grpc.aio.Channel,
    *,
    kinds: Sequence[str] = (),
    buffer: int = 0,
    timeout: float | None = None,
    on_open: Callable[[], None] | None = None,
) -> AsyncIterator[tuple[Event, int]]:
    """Subscribe over ``channel`` (an operator mTLS channel to a gateway or a node).

    Yields (event, dropped so far) until the server ends the stream; raises
    ``grpc.aio.AioRpcError`` as the call does (PERMISSION_DENIED for a non-operator).
    ``on_open`` is called once the server has attached the subscription: events
    emitted from then on reach this stream.
    """
    stub = observe_pb2_grpc.ObserverServiceStub(channel)
    call = stub.Observe(
        observe_pb2.ObserveRequest(kinds=list(kinds), buffer=buffer), timeout=timeout
    )
    try:
        await call.initial_metadata()
        if on_open is not None:
            on_open()
        # read() rather than ``async for``: the call's own iterator is an async generator
        # that, left suspended, hangs the loop's shutdown (shutdown_asyncgens).
        while (msg := await call.read()) is not grpc.aio.EOF:
            assert isinstance(msg, observe_pb2.ObserveResponse)
            for one in msg.events:
                yield from_proto(one), msg.dropped
    finally:
        call.cancel()
