"""A bureau node: a grpc.aio server over mTLS that answers sealed queries from its records.

Only the gateway may call it. It pins the root, verifies every directory entry it
uses, registers its address with the gateway, and keeps re-registering so that a
restarted gateway learns the route again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc
import structlog
from google.protobuf.message import DecodeError

from ncbsim import envelope, transport
from ncbsim.config import NodeConfig
from ncbsim.directory import Directory
from ncbsim.errors import DirectoryError, EnvelopeError
from ncbsim.identity import Identity
from ncbsim.peers import Peers
from ncbsim.pki import GATEWAY_NAME
from ncbsim.serving import abort, start_server, wait_for_shutdown, write_ready_file
from ncbsim.v1 import bureau_pb2, bureau_pb2_grpc, gateway_pb2, gateway_pb2_grpc, query_pb2
from node.answer import answer
from node.store import RecordStore

log = structlog.get_logger()


class BureauService(bureau_pb2_grpc.BureauServicer):  # type: ignore[misc]
    """Bureau.Handle: open the request, answer it, seal the response."""

    def __init__(self, identity: Identity, peers: Peers, store: RecordStore) -> None:
        self._identity = identity
        self._peers = peers
        self._store = store

    async def Handle(  # noqa: N802 - gRPC method name
        self, request: envelope.Envelope, context: grpc.aio.ServicerContext
    ) -> envelope.Envelope:
        if not transport.peer_is(context, GATEWAY_NAME):
            log.warning("refused_caller", reason="not the gateway")
            await abort(context, grpc.StatusCode.PERMISSION_DENIED, "only the gateway may call")
        try:
            header = envelope.unverified_header(request)
        except EnvelopeError:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "envelope rejected")
        with structlog.contextvars.bound_contextvars(
            message_id=header.message_hex, correlation_id=header.correlation_hex
        ):
            try:
                await self._peers.resolve([header.sender])
                opened = envelope.open_request(
                    request, recipient=self._identity, senders=self._peers.get
                )
                query = query_pb2.QueryRequest.FromString(opened.plaintext)
            except (EnvelopeError, DirectoryError, DecodeError):
                log.warning("envelope_rejected", sender=header.sender)
                await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "envelope rejected")
            try:
                result = await asyncio.to_thread(answer, self._store, query)
            except Exception:
                log.exception("handle_failed", sender=header.sender)
                await abort(context, grpc.StatusCode.INTERNAL, "internal error")
            try:
                sealed = envelope.seal_response(
                    result.SerializeToString(),
                    sender=self._identity,
                    request=opened.header,
                    response_key=query.response_key,
                )
            except EnvelopeError:
                log.warning("bad_response_key", sender=header.sender)
                await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "envelope rejected")
            log.debug(
                "answered",
                sender=header.sender,
                query=query.WhichOneof("query"),
                result=result.WhichOneof("result"),
            )
            return sealed


async def _register_loop(
    gateway: gateway_pb2_grpc.GatewayStub,
    address: str,
    interval_s: float,
    registered: asyncio.Event,
) -> None:
    """Register with the gateway now and every ``interval_s`` seconds."""
    while True:
        try:
            await gateway.Register(gateway_pb2.RegisterRequest(address=address), timeout=3)
            if not registered.is_set():
                log.info("registered", address=address)
                registered.set()
        except grpc.aio.AioRpcError as exc:
            log.warning("register_failed", code=exc.code().name)
        await asyncio.sleep(interval_s if registered.is_set() else 0.2)


async def serve(config: NodeConfig) -> None:
    """Run a bureau node until SIGINT or SIGTERM."""
    now_ms = int(time.time() * 1000)
    identity = Identity.load(config.pki, config.bureau, now_ms=now_ms)
    store = RecordStore(config.db_path)
    tls = config.pki.tls(config.bureau)
    gateway_channel = transport.gateway_channel(config.gateway, tls)
    gateway = gateway_pb2_grpc.GatewayStub(gateway_channel)
    peers = Peers(Directory(config.pki.root_public_key()), gateway)
    service = BureauService(identity, peers, store)
    served = await start_server(
        tls,
        config.listen,
        [bureau_pb2.DESCRIPTOR.services_by_name["Bureau"].full_name],
        register=lambda server: bureau_pb2_grpc.add_BureauServicer_to_server(service, server),
    )
    structlog.contextvars.bind_contextvars(bureau=config.bureau)
    log.info("node_listening", address=served.address, records=store.counts())
    registered = asyncio.Event()
    register = asyncio.create_task(
        _register_loop(gateway, served.address, config.register_interval_s, registered)
    )
    shutdown = asyncio.create_task(wait_for_shutdown())
    try:
        ready = asyncio.create_task(registered.wait())
        await asyncio.wait({ready, shutdown}, return_when=asyncio.FIRST_COMPLETED)
        if registered.is_set():
            with contextlib.suppress(grpc.aio.AioRpcError):
                await peers.load_all()
            await served.set_serving(True)
            write_ready_file(
                config.ready_file, role="node", bureau=config.bureau, address=served.address
            )
        await shutdown
    finally:
        log.info("node_stopping")
        register.cancel()
        await served.server.stop(grace=2)
        await gateway_channel.close()
        store.close()
