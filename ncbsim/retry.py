"""Gateway calls tried again on a passing failure, until a deadline.

A call that fails because the gateway is down or slow (UNAVAILABLE, DEADLINE_EXCEEDED) is
tried again after a back-off; a rate limit that says when to come back (RESOURCE_EXHAUSTED
with a retry hint) is tried again then, if that fits before the deadline. The mailer
(:mod:`ncbsim.mail`) makes every gateway call through :func:`retry`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
import structlog

from ncbsim.errors import RETRY_AFTER_KEY, is_queue_full

log = structlog.get_logger()

RETRY_FIRST_S = 0.1
RETRY_MAX_S = 1.0
"""A failed gateway call is tried again after 0.1 s, then doubling up to 1 s, which
matches the channel's own reconnect back-off (transport.py)."""
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

T = TypeVar("T")


def _retry_after_s(exc: grpc.aio.AioRpcError) -> float | None:
    for key, value in exc.trailing_metadata() or ():
        if key == RETRY_AFTER_KEY:
            try:
                return max(int(value), 0) / 1000
            except ValueError:
                return None
    return None


async def retry(
    make: Callable[[float], Awaitable[T]], deadline: float, what: str, *, clock: Callable[[], float]
) -> tuple[T, int]:
    """``make(timeout)``, tried again on a passing failure until ``deadline``.

    Retried: UNAVAILABLE and DEADLINE_EXCEEDED, and RESOURCE_EXHAUSTED with a
    retry hint (a rate limit: the gateway counted nothing) that fits before the
    deadline. A full queue is not retried: that back-pressure is the caller's.
    Returns the result and the number of attempts; raises the last failure.
    """
    delay = RETRY_FIRST_S
    attempt = 0
    while True:
        attempt += 1
        remaining = deadline - clock()
        try:
            return await make(max(remaining, 0.05)), attempt
        except grpc.aio.AioRpcError as exc:
            wait: float | None = None
            if exc.code() in _RETRYABLE:
                wait = delay
                delay = min(delay * 2, RETRY_MAX_S)
            elif exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and not is_queue_full(exc):
                wait = _retry_after_s(exc)
            if wait is None or clock() + wait >= deadline:
                raise
            log.info("gateway_retry", call=what, code=exc.code().name, attempt=attempt)
            await asyncio.sleep(wait)
