"""Which address a node registers with the gateway (``advertise`` of NodeConfig).

- None: the bound address, as it is. A node bound to ``0.0.0.0:PORT`` then registers
  ``0.0.0.0:PORT``, which a gateway on the same machine reaches (Linux connects 0.0.0.0
  to the local host) and one elsewhere cannot: that is today's behaviour, kept, since a
  wildcard says nothing about which of the machine's addresses others can reach.
- ``HOST:PORT``: that, as it is (the simulator's fault proxy).
- ``auto`` (what pods use: a pod cannot learn its IP from the manifest under podman
  4.3.1): the local address of the interface that routes to the gateway, found as the
  kernel would pick it to send there (a UDP socket ``connect`` to the gateway's resolved
  address, then ``getsockname``; connecting a UDP socket sends no packet), with the
  bound port. IPv6 is bracketed (``[fd00::5]:7700``), as the gateway's routes expect.

The gateway's name is resolved when the node registers, not once at start, so a pod that
starts before the gateway's name resolves keeps retrying (ncbsim.node.registration).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from ncbsim.node.config import ADVERTISE_AUTO

__all__ = ["AddressSource", "address_source", "auto_address", "host_port", "local_address_toward"]

AddressSource = Callable[[], Awaitable[str]]
"""Gives the address to register, each time the node registers."""


def host_port(host: str, port: int) -> str:
    """``host:port``, an IPv6 host in brackets (``[::1]:7700``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def local_address_toward(sockaddr: tuple[Any, ...], family: int) -> str:
    """The local IP the kernel would send from to reach ``sockaddr`` (no packet is sent).

    OSError when no route leads there (``Network is unreachable``).
    """
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(sockaddr)
        local: str = probe.getsockname()[0]
    return local.partition("%")[0]  # an IPv6 link-local address's zone is not for others


async def auto_address(gateway: str, bound: str) -> str:
    """``advertise: auto``: this machine's address toward ``gateway`` (HOST:PORT, a name
    is resolved), with the port of ``bound``. OSError if it does not resolve or no route
    leads to it."""
    host, port = _split(gateway)
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:  # pragma: no cover - getaddrinfo raises rather than answer nothing
        raise OSError(f"{host} resolves to no address")
    family, _, _, _, sockaddr = infos[0]
    return host_port(local_address_toward(sockaddr, family), _split(bound)[1])


def address_source(advertise: str | None, gateway: str, bound: str) -> str | AddressSource:
    """What the node registers: ``bound`` or ``advertise`` as they are, or for ``auto`` a
    source that finds the address each time it is asked (:func:`auto_address`)."""
    if advertise is None:
        return bound
    if advertise != ADVERTISE_AUTO:
        return advertise

    async def source() -> str:
        return await auto_address(gateway, bound)

    return source
