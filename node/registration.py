"""A node's registration with the gateway: its address, announced now and again.

The gateway routes to the address a bureau last registered (mTLS names the bureau), so
a node registers at start, then every interval, and again at once when the gateway comes
back after an outage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
import structlog

from ncbsim.v2 import gateway_pb2, gateway_pb2_grpc

log = structlog.get_logger()


async def register_loop(
    gateway: gateway_pb2_grpc.GatewayServiceStub,
    address: str,
    interval_s: float,
    registered: asyncio.Event,
    *,
    retry_s: float = 0.2,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Register with the gateway now and every ``interval_s`` seconds.

    While registering fails (the gateway is down or restarting), retry after
    ``retry_s``, doubling the wait each time up to ``interval_s``. Only changes are
    logged: the first failure after a success (or at start), and the first success after
    failures.
    """
    delay = retry_s
    failing = False
    while True:
        try:
            await gateway.Register(gateway_pb2.RegisterRequest(address=address), timeout=3)
        except grpc.aio.AioRpcError as exc:
            if not failing:
                failing = True
                log.warning("register_failed", code=exc.code().name, retry_s=delay)
            await sleep(delay)
            delay = min(delay * 2, interval_s)
            continue
        if failing or not registered.is_set():
            log.info("registered", address=address)
        failing = False
        delay = retry_s
        registered.set()
        await sleep(interval_s)
