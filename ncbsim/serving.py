"""What every ncbsim server shares: mTLS port, health and reflection, ready file, shutdown;
and, in a pod, a plaintext port answering health alone (:func:`start_health_port`)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ncbsim import observe, reflection, transport
from ncbsim.errors import ConfigError
from ncbsim.eventbus import EventBus
from ncbsim.pki import TlsFiles
from ncbsim.processes import stop_on_signals

_BIND_PROBLEMS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})


def listen_problem(listen: str) -> str | None:
    """Why ``listen`` (HOST:PORT) cannot be bound now, e.g. "address in use"; else None.

    A server checks this before gRPC binds: gRPC's core reports a failed bind on stderr
    itself (an ``add_port.cc`` line) before the server learns of it, so a caller that
    waited for that would print it twice, once as internal noise. Port 0 always binds.
    A host that does not resolve, or an address family the machine lacks, is left for
    gRPC to report. Another process may still take the port in between; gRPC's own
    error then stands.
    """
    host, _, port_text = listen.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        return None
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(
            host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError):
        return None
    for family, kind, proto, _, sockaddr in infos:
        try:
            probe = socket.socket(family, kind, proto)
        except OSError:
            continue
        with probe:
            # As gRPC binds: SO_REUSEADDR, so a port held only by closed connections
            # (TIME_WAIT) is free. A listening socket still makes bind fail.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(sockaddr)
            except OSError as exc:
                if exc.errno in _BIND_PROBLEMS:
                    return "address in use" if exc.errno == errno.EADDRINUSE else exc.strerror
    return None


@dataclass(slots=True)
class Served:
    """A started server, its bound address, its health servicer and the services it
    reports health for (the program's own, by full name)."""

    server: grpc.aio.Server
    address: str
    health: health.aio.HealthServicer
    services: tuple[str, ...]

    async def set_serving(self, serving: bool) -> None:
        """Mark the server ("") and each of its services SERVING or NOT_SERVING."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *self.services):
            await self.health.set(name, status)

    async def drain(self, grace: float) -> None:
        """Shut down: every health status NOT_SERVING for good (a Watch sees it), then
        stop accepting calls; calls under way get ``grace`` seconds to finish."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start_server(
    tls: TlsFiles,
    listen: str,
    service_names: Sequence[str],
    *,
    register: object,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    bus: EventBus | None = None,
    on_denied: observe.DeniedHook | None = None,
) -> Served:
    """Start an mTLS grpc.aio server with health and reflection on ``listen``.

    ``register`` is called with the server to add the program's own servicers, whose
    full names are ``service_names``. Health reports "" and each of them, NOT_SERVING
    until :meth:`Served.set_serving`; any other name is NOT_FOUND. Reflection answers
    in v1 and v1alpha (:mod:`ncbsim.reflection`). ``interceptors`` wrap every call
    (metrics, traces). With a ``bus``, the server also streams its events to the
    operator (:mod:`ncbsim.observe`); ``on_denied`` audits anyone else who asks.
    """
    problem = listen_problem(listen)
    if problem is not None:
        raise ConfigError(f"cannot listen on {listen}: {problem}")
    server = grpc.aio.server(options=transport.server_options(), interceptors=interceptors)
    if not callable(register):
        raise TypeError("register must be callable")
    register(server)
    if bus is not None:
        observe.add_to_server(server, bus, on_denied=on_denied)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *service_names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    extra = [observe.SERVICE_NAME] if bus is not None else []
    reflection.enable(server, [*service_names, *extra, health.SERVICE_NAME])
    host = listen.rpartition(":")[0]
    try:
        port = server.add_secure_port(listen, transport.server_credentials(tls))
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen on {listen}") from exc
    await server.start()
    return Served(
        server=server,
        address=f"{host}:{port}",
        health=health_servicer,
        services=tuple(service_names),
    )


@dataclass(slots=True)
class HealthPort:
    """A running plaintext port that answers ``grpc.health.v1.Health`` and nothing else."""

    server: grpc.aio.Server
    address: str

    async def stop(self, grace: float = 0) -> None:
        """Stop answering and free the port."""
        await self.server.stop(grace)


async def start_health_port(servicer: health.aio.HealthServicer, listen: str) -> HealthPort:
    """Serve ``servicer`` alone, without TLS, on ``listen`` (HOST:PORT, port 0: any).

    For the kubelet's gRPC probe, which speaks no TLS and holds no client certificate. It
    shares the statuses of the mTLS server's own servicer (``Served.health``, or a host's),
    so both ports say the same; no program service is registered on it, so a call to one
    is UNIMPLEMENTED, and it offers no reflection. Health tells only whether a party
    serves, which a pod's NetworkPolicy may show to whoever probes it.
    """
    problem = listen_problem(listen)
    if problem is not None:
        raise ConfigError(f"cannot serve health on {listen}: {problem}")
    server = grpc.aio.server(options=transport.server_options())
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    try:
        port = server.add_insecure_port(listen)
    except RuntimeError as exc:
        raise ConfigError(f"cannot serve health on {listen}") from exc
    await server.start()
    return HealthPort(server, f"{listen.rpartition(':')[0]}:{port}")


class _Captured:
    """Stands in for a server to record what a generated ``add_*Servicer_to_server`` adds."""

    def __init__(self) -> None:
        self.service = ""
        self.handlers: Mapping[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Any]) -> None:
        self.service, self.handlers = service, handlers


def _bytes_or(serialize: Callable[[Any], bytes] | None) -> Callable[[Any], bytes]:
    """A response serializer that passes bytes (a response already serialized) through."""

    def serializer(response: Any) -> bytes:
        if isinstance(response, bytes) or serialize is None:
            return bytes(response)
        return serialize(response)

    return serializer


def add_raw_servicer(
    server: grpc.aio.Server,
    add_to_server: Callable[[Any, Any], None],
    servicer: object,
    *,
    raw_responses: Collection[str] = (),
) -> list[str]:
    """Register ``servicer`` so that each of its RPCs receives the request as raw bytes.

    ``add_to_server`` is the generated ``add_XServicer_to_server``: it stays the source of
    the service's name, its methods and their response serializers. Only the request
    deserializer is dropped, so a request that is not a valid protobuf reaches the
    handler, which parses it and answers INVALID_ARGUMENT (and audits it) instead of
    gRPC answering UNKNOWN with the parser's exception text. The handler still parses
    each request exactly once. A method named in ``raw_responses`` may also return its
    response already serialized (bytes), say one relayed as it came. Returns the method
    names.
    """
    captured = _Captured()
    add_to_server(servicer, captured)
    if not captured.handlers:
        raise TypeError(f"{add_to_server!r} registered no methods")
    raw = {
        name: handler._replace(request_deserializer=None)
        for name, handler in captured.handlers.items()
    }
    for name in raw_responses:
        raw[name] = raw[name]._replace(response_serializer=_bytes_or(raw[name].response_serializer))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(captured.service, raw),))
    server.add_registered_method_handlers(captured.service, raw)
    return list(raw)


async def abort(
    context: grpc.aio.ServicerContext,
    code: grpc.StatusCode,
    detail: str,
    trailing_metadata: tuple[tuple[str, str], ...] = (),
) -> NoReturn:
    """End the RPC with ``code``, a client-safe ``detail`` and optional trailers; never returns."""
    await context.abort(code, detail, trailing_metadata)
    raise AssertionError("context.abort returned")  # pragma: no cover - grpc always raises


def write_ready_file(path: Path | None, **fields: object) -> None:
    """Atomically write a JSON ready file (pid, address, role...) for whoever started us."""
    if path is None:
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), **fields}))
    tmp.replace(path)


async def wait_for_shutdown() -> None:
    """Return on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    stop_on_signals(stop)
    await stop.wait()
