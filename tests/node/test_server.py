"""The bureau node's registration loop: capped back-off while the gateway is away, quiet logs."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import structlog

from ncbsim.node.registration import register_loop
from ncbsim.v2 import gateway_pb2


class _Gateway:
    """A gateway stub whose Register fails or succeeds following a script."""

    def __init__(self, script: str) -> None:
        self.script = list(script)  # "x": fail with UNAVAILABLE, "o": accept
        self.calls = 0

    async def Register(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.RegisterRequest, timeout: float
    ) -> gateway_pb2.RegisterResponse:
        self.calls += 1
        if self.script.pop(0) == "x":
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata()
            )
        return gateway_pb2.RegisterResponse()


class _StopError(Exception):
    """Ends the otherwise endless loop once the script is used up."""


def _run(script: str) -> tuple[list[float], list[str], bool]:
    """Run the loop against ``script``; returns the waits, the log events, and registered."""
    gateway = _Gateway(script)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if not gateway.script:
            raise _StopError

    async def main() -> bool:
        registered = asyncio.Event()
        with pytest.raises(_StopError):
            await register_loop(gateway, "127.0.0.1:9", 5.0, registered, retry_s=0.2, sleep=sleep)
        return registered.is_set()

    with structlog.testing.capture_logs() as logs:
        registered = asyncio.run(main())
    return waits, [entry["event"] for entry in logs], registered


def test_register_backs_off_exponentially_up_to_the_interval() -> None:
    """While the gateway is down the waits double from retry_s and stop at the interval."""
    waits, _, registered = _run("xxxxxxxo")
    assert waits == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    assert registered


def test_register_logs_only_changes_of_state() -> None:
    """One warning when registering starts failing, one line when it works again."""
    waits, events, _ = _run("xxxoooxxo")
    assert events == ["register_failed", "registered", "register_failed", "registered"]
    # After a success the back-off starts again from retry_s.
    assert waits == [0.2, 0.4, 0.8, 5.0, 5.0, 5.0, 0.2, 0.4, 5.0]


def test_register_repeats_at_the_interval_once_registered() -> None:
    """A registered node re-registers every interval, so a restarted gateway relearns it."""
    waits, events, registered = _run("ooo")
    assert waits == [5.0, 5.0, 5.0]
    assert events == ["registered"]
    assert registered
