"""The Observe RPC over real mTLS on loopback: the operator streams a party's events,
anyone else is refused (and the refusal hook runs), a stalled subscriber loses the oldest
events and is told how many."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest

from ncbsim import observe, transport
from ncbsim.eventbus import EventBus
from ncbsim.pki import GATEWAY_NAME, PkiDir
from ncbsim.serving import Served, start_server

pytestmark = pytest.mark.timeout(60)


Served3 = tuple[Served, EventBus, list[str], PkiDir]


@contextlib.asynccontextmanager
async def _served(module_pki: PkiDir) -> AsyncIterator[Served3]:
    bus = EventBus("gateway")
    denied: list[str] = []

    async def on_denied(context: grpc.aio.ServicerContext) -> None:
        denied.append(transport.peer_bureau(context) or "?")

    server = await start_server(
        module_pki.tls("gateway"),
        "127.0.0.1:0",
        [],
        register=lambda _server: None,
        bus=bus,
        on_denied=on_denied,
    )
    try:
        yield server, bus, denied, module_pki
    finally:
        await server.server.stop(0)


def _run(pki: PkiDir, body: Callable[[Served3], Awaitable[None]]) -> None:
    async def main() -> None:
        async with _served(pki) as served:
            await body(served)

    asyncio.run(main())


def _channel(pki: PkiDir, who: str, address: str) -> grpc.aio.Channel:
    return transport.secure_channel(address, pki.tls(who), peer_name=GATEWAY_NAME)


def test_operator_receives_events_in_order(module_pki: PkiDir) -> None:
    _run(module_pki, _operator_receives_events_in_order)


async def _operator_receives_events_in_order(served: Served3) -> None:
    server, bus, _, pki = served
    opened = asyncio.Event()
    async with _channel(pki, "operator", server.address) as channel:
        stream = observe.observe(channel, kinds=["query."], on_open=opened.set)
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.wait_for(opened.wait(), 10)
        bus.emit("process.started", {"role": "gateway"})  # not a query.*: filtered out
        for size in (100, 200, 300):
            bus.emit("query.relayed", {"sender": "DE", "recipient": "FR", "bytes": size})
        got = [await first, await stream.__anext__(), await stream.__anext__()]
        await stream.aclose()
    assert [e.view["bytes"] for e, _ in got] == [100, 200, 300]
    assert {e.party for e, _ in got} == {"gateway"}
    assert [e.seq for e, _ in got] == [2, 3, 4]  # seq counts every emitted event
    assert all(dropped == 0 for _, dropped in got)


def test_a_bureau_is_refused_and_the_refusal_is_reported(module_pki: PkiDir) -> None:
    _run(module_pki, _a_bureau_is_refused_and_the_refusal_is_reported)


async def _a_bureau_is_refused_and_the_refusal_is_reported(served: Served3) -> None:
    server, _, denied, pki = served
    async with _channel(pki, "DE", server.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in observe.observe(channel):
                pass
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert denied == ["DE"]


def test_a_stalled_subscriber_loses_the_oldest_and_is_told(module_pki: PkiDir) -> None:
    _run(module_pki, _a_stalled_subscriber_loses_the_oldest_and_is_told)


async def _a_stalled_subscriber_loses_the_oldest_and_is_told(served: Served3) -> None:
    server, bus, _, pki = served
    opened = asyncio.Event()
    async with _channel(pki, "operator", server.address) as channel:
        stream = observe.observe(channel, buffer=10, on_open=opened.set)
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.wait_for(opened.wait(), 10)
        # The server's stream task runs only when the loop lets it: emitting 1000 events
        # in one go, without yielding, is a subscriber that did not read them in time.
        for n in range(1000):
            bus.emit("query.opened", {"sender": "DE", "bytes": n})
        received = [await first]
        while received[-1][0].view["bytes"] != 999:
            received.append(await stream.__anext__())
        await stream.aclose()
    sizes = [e.view["bytes"] for e, _ in received]
    assert sizes == list(range(990, 1000))  # the newest ten: the oldest were dropped
    assert received[-1][1] == 990  # and it was told how many it missed
    seqs = [e.seq for e, _ in received]
    assert seqs[0] - 1 == received[-1][1]  # the seq gap says the same
