"""A node's registration with the gateway: its address, announced now and again.

The gateway routes to the address a bureau last registered (mTLS names the bureau), so
a node registers at start, then every interval, and again at once when the gateway comes
back after an outage. The address is fixed, or found anew each time (``advertise: auto``,
ncbsim.node.advertise).
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
    address: str | Callable[[], Awaitable[str]],
    interval_s: float,
    registered: asyncio.Event,
    *,
    retry_s: float = 0.2,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Register with the gateway now and every ``interval_s`` seconds.

    While registering fails (the gateway is down or restarting, or for an ``address``
    source, its name does not resolve yet), retry after ``retry_s``, doubling the wait
    each time up to ``interval_s``. Only changes are logged: the first failure after a
    success (or at start), the first success after failures, and a new address.
    """
    delay = retry_s
    failing = False
    last = ""
    while True:
        try:
            current = address if isinstance(address, str) else await address()
            await gateway.Register(gateway_pb2.RegisterRequest(address=current), timeout=3)
        except (grpc.aio.AioRpcError, OSError) as exc:
            if not failing:
                failing = True
                if isinstance(exc, grpc.aio.AioRpcError):
                    log.warning("register_failed", code=exc.code().name, retry_s=delay)
                else:
                    log.warning(
                        "register_failed", code="NO_ADDRESS", reason=str(exc), retry_s=delay
                    )
            await sleep(delay)
            delay = min(delay * 2, interval_s)
            continue
        if failing or not registered.is_set() or current != last:
            log.info("registered", address=current)
        last = current
        failing = False
        delay = retry_s
        registered.set()
        await sleep(interval_s)
