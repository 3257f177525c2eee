"""What every server checks before gRPC binds its port."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator

import pytest

from ncbsim.serving import listen_problem


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 with a listening socket on it, closed after the test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_listening_port_is_in_use(busy_port: int) -> None:
    """A port another process listens on is reported as in use, not left to gRPC."""
    assert listen_problem(f"127.0.0.1:{busy_port}") == "address in use"


def test_port_zero_and_a_free_port_have_no_problem() -> None:
    """Port 0 (any free port) and a port nobody holds pass the check."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    assert listen_problem("127.0.0.1:0") is None
    assert listen_problem(f"127.0.0.1:{free}") is None


def test_an_address_the_machine_does_not_have_is_reported() -> None:
    """An address of no interface here is refused with the system's reason."""
    assert listen_problem("192.0.2.1:7600") == os.strerror(errno.EADDRNOTAVAIL)
