"""Which address a node registers: the bound one, a given one, or ``auto``."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
import structlog

from ncbsim.errors import ConfigError
from ncbsim.node.advertise import address_source, auto_address, host_port
from ncbsim.node.config import NodeConfig
from ncbsim.node.registration import register_loop
from ncbsim.pki import PkiDir
from ncbsim.v2 import gateway_pb2
from ncbsim.workdir import BureauFiles


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.connect(("::1", 9))
    except OSError:
        return False
    return True


def test_without_advertise_the_bound_address_is_registered_as_it_is() -> None:
    """No advertise: the bound address, a wildcard included (today's behaviour)."""
    assert address_source(None, "127.0.0.1:7600", "0.0.0.0:7700") == "0.0.0.0:7700"
    assert address_source("127.0.0.1:9999", "127.0.0.1:7600", "0.0.0.0:7700") == "127.0.0.1:9999"


def test_auto_is_the_address_toward_the_gateway_with_the_bound_port() -> None:
    """Toward a loopback gateway the route leaves from 127.0.0.1; the port is the node's."""
    source = address_source("auto", "127.0.0.1:7600", "0.0.0.0:7712")
    assert callable(source)
    assert asyncio.run(source()) == "127.0.0.1:7712"
    assert asyncio.run(auto_address("localhost:7600", "[::]:7713")).endswith(":7713")


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_auto_brackets_an_ipv6_address() -> None:
    """Toward ``[::1]`` the address is IPv6, written in brackets as routes expect."""
    assert asyncio.run(auto_address("[::1]:7600", "[::]:7714")) == "[::1]:7714"


def test_auto_toward_a_name_that_does_not_resolve_is_an_os_error() -> None:
    """A gateway name that does not resolve (yet) fails in a way registration retries."""
    with pytest.raises(socket.gaierror):  # an OSError, which registration retries
        asyncio.run(auto_address("no-such-host.invalid:7600", "0.0.0.0:7700"))


def test_host_port_brackets_ipv6_only() -> None:
    """IPv4 as is, IPv6 in brackets."""
    assert host_port("10.1.2.3", 7700) == "10.1.2.3:7700"
    assert host_port("fd00::5", 7700) == "[fd00::5]:7700"


def test_node_config_takes_auto_and_still_refuses_a_bad_advertise(tmp_path: Path) -> None:
    """``auto`` is a valid advertise; anything else must still be HOST:PORT."""
    files = BureauFiles.beside(tmp_path / "records.sqlite")
    pki = PkiDir(tmp_path)
    config = NodeConfig(
        pki=pki, bureau="FR", files=files, gateway="gw:7600", listen="0.0.0.0:0", advertise="auto"
    )
    assert config.advertise == "auto"
    with pytest.raises(ConfigError):
        NodeConfig(pki=pki, bureau="FR", files=files, gateway="gw:7600", advertise="automatic")


class _Gateway:
    def __init__(self) -> None:
        self.addresses: list[str] = []

    async def Register(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.RegisterRequest, timeout: float
    ) -> gateway_pb2.RegisterResponse:
        self.addresses.append(request.address)
        return gateway_pb2.RegisterResponse()


class _StopError(Exception):
    pass


def test_registration_retries_while_the_address_cannot_be_found() -> None:
    """An address source that fails (the gateway's name does not resolve yet) is retried
    with back-off, logged once, and its address registered once it resolves."""
    gateway = _Gateway()
    answers: list[str | OSError] = [OSError("no name"), OSError("no name"), "10.0.0.7:7700"]
    waits: list[float] = []

    async def source() -> str:
        answer = answers.pop(0) if answers else "10.0.0.7:7700"
        if isinstance(answer, OSError):
            raise answer
        return answer

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 4:
            raise _StopError

    async def main() -> bool:
        registered = asyncio.Event()
        with pytest.raises(_StopError):
            await register_loop(gateway, source, 5.0, registered, retry_s=0.2, sleep=sleep)
        return registered.is_set()

    with structlog.testing.capture_logs() as logs:
        assert asyncio.run(main())
    assert waits == [0.2, 0.4, 5.0, 5.0]
    assert gateway.addresses == ["10.0.0.7:7700", "10.0.0.7:7700"]
    events = [(e["event"], e.get("code")) for e in logs]
    assert events == [("register_failed", "NO_ADDRESS"), ("registered", None)]
