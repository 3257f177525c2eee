"""Routes: which address each registered bureau's node listens on, and a channel to it.

Channels are opened once per bureau and reused, so no TLS handshake sits on the
query path. The channel only accepts a server holding that bureau's certificate,
so a registered address cannot impersonate another bureau.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
import structlog

from ncbsim import rpctrace, transport
from ncbsim.config import check_address
from ncbsim.errors import ConfigError, RoutingError
from ncbsim.pki import TlsFiles
from ncbsim.principal import bureau_of
from ncbsim.v2 import bureau_pb2_grpc

log = structlog.get_logger()

HANDLE = "/ncbsim.v2.BureauService/Handle"


@dataclass(slots=True)
class Route:
    """A registered bureau node."""

    bureau: str
    address: str
    channel: grpc.aio.Channel
    stub: bureau_pb2_grpc.BureauServiceStub
    handle_raw: Callable[..., Awaitable[bytes]] | None = None
    """Bureau.Handle taking a serialized HandleRequest and giving back the serialized
    HandleResponse, parsed by no one (gateway.relay relays a Query's bytes with it)."""


async def _warm(channel: grpc.aio.Channel) -> None:
    with contextlib.suppress(asyncio.TimeoutError, grpc.aio.UsageError):
        await asyncio.wait_for(channel.channel_ready(), timeout=5)


def check_route_address(address: str) -> None:
    """ConfigError unless ``address`` is an IP literal and a port from 1 to 65535."""
    check_address(address)
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"a node registers an IP:port address, not {address!r}") from None
    if not 1 <= int(port) <= 65535:
        raise ConfigError(f"not a usable port in {address!r}")


class Router:
    """Registered bureau nodes, keyed by bureau code."""

    def __init__(
        self,
        tls: TlsFiles,
        *,
        interceptors: transport.ClientInterceptors = (),
        meter: Callable[[grpc.aio.Channel], grpc.aio.Channel] | None = None,
    ) -> None:
        self._tls = tls
        # Metrics without an interceptor's cost (Metrics.metered): the stubs are only awaited.
        self._meter = meter
        # On every channel to a node: traces (outermost), then the caller's (metrics).
        self._interceptors = [*rpctrace.client_interceptors("gateway"), *interceptors]
        self._routes: dict[str, Route] = {}
        self._warming: set[asyncio.Task[None]] = set()

    async def register(self, bureau: str, address: str) -> bool:
        """Record ``bureau``'s node address; True if the route is new or changed.

        The address must be ``IP:port`` (``[v6]:port`` for IPv6): a name or a gRPC
        target such as ``unix:/path`` or ``dns:///host`` would let a bureau point the
        gateway's connections at whatever that resolves to. ConfigError otherwise
        (INVALID_ARGUMENT).
        """
        check_route_address(address)
        current = self._routes.get(bureau)
        if current is not None and current.address == address:
            return False
        channel = transport.bureau_channel(
            address, self._tls, bureau, interceptors=self._interceptors
        )
        metered = self._meter(channel) if self._meter is not None else channel
        stub = bureau_pb2_grpc.BureauServiceStub(metered)
        handle_raw = metered.unary_unary(HANDLE)  # no (de)serializers: bytes in and out
        self._routes[bureau] = Route(bureau, address, channel, stub, handle_raw)
        if current is not None:
            await current.channel.close()
        # Connect now, so the TLS handshake is not paid by the first query.
        task = asyncio.create_task(_warm(channel))
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)
        log.info("route_registered", bureau=bureau, address=address)
        return True

    def drop(self, bureau: str) -> bool:
        """Forget ``bureau``'s route at once and close its channel in the background
        (calls in flight on it end as CANCELLED); True if there was a route."""
        route = self._routes.pop(bureau, None)
        if route is None:
            return False
        task = asyncio.create_task(route.channel.close())
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)
        log.info("route_dropped", bureau=bureau)
        return True

    def get(self, bureau: str) -> Route:
        """The route to ``bureau`` (a user ``FR/x``'s is its bureau's) or RoutingError."""
        try:
            return self._routes[bureau_of(bureau)]
        except KeyError:
            raise RoutingError(f"bureau {bureau} has no registered node") from None

    def has_route(self, bureau: str) -> bool:
        """True if ``bureau`` (or a user's bureau) has registered a route."""
        return bureau_of(bureau) in self._routes

    def bureaus(self) -> list[str]:
        """Registered bureau codes, sorted."""
        return sorted(self._routes)

    async def close(self) -> None:
        """Close every channel."""
        for task in self._warming:
            task.cancel()
        for route in self._routes.values():
            await route.channel.close()
        self._routes.clear()
