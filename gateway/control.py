"""The control plane: GetDirectory, Register and Routes, metered in a bucket of their own.

A control request is parsed and held to the envelope size limit like any other, and
metered in the gateway's control bucket (:func:`control_request`; :func:`bureau_request`
for Register, which only a bureau may call, and ``Receipts``, which a bureau's users may
call too), so a bureau's queries never cost it its route or its keys. GetDirectory serves
the root-signed entries (revoked ones left out), the revocation list, the users the
bureaus signed (verified) and their revocations; Register records the caller's node
address (IP:port only) and wakes delivery to it; Routes lists the bureaus with a
registered node.
"""

from __future__ import annotations

import time
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from ncbsim import transport
from ncbsim.errors import ConfigError, EnvelopeError, IdentityError, NcbsimError, RoutingError
from ncbsim.gateway.admission import parse
from ncbsim.gateway.parts import GatewayParts
from ncbsim.principal import is_user
from ncbsim.v2 import gateway_pb2

_Message = TypeVar("_Message", bound=Message)


async def control_request(
    parts: GatewayParts,
    rpc: str,
    raw: bytes,
    message: type[_Message],
    context: grpc.aio.ServicerContext,
) -> tuple[_Message, str | None]:
    """Parse a directory or routing request, metered in its own bucket (so queries
    never cost a bureau its route or keys), or refuse and audit it."""
    started = time.perf_counter()
    peer = transport.peer_principal(context)
    try:
        parts.check_credentials(peer, context)
        parsed = parse(raw, message, max_bytes=parts.max_bytes)
        if peer is not None:
            parts.control_limiter.take(peer)
        return parsed, peer
    except NcbsimError as exc:
        error = ConfigError("malformed request") if isinstance(exc, EnvelopeError) else exc
        await parts.refuse(context, rpc, peer, error, started=started, refused=[(len(raw), None)])


async def bureau_request(
    parts: GatewayParts,
    rpc: str,
    raw: bytes,
    message: type[_Message],
    context: grpc.aio.ServicerContext,
    *,
    only: str,
    users_too: bool = False,
) -> tuple[_Message, str]:
    """:func:`control_request` for an RPC only a bureau (or, ``users_too``, a bureau's
    user) may call: anyone else is refused (IdentityError ``only a bureau can {only}``)
    and audited."""
    started = time.perf_counter()
    parsed, peer = await control_request(parts, rpc, raw, message, context)
    if peer is None or (is_user(peer) and not users_too):
        error = IdentityError(f"only a bureau can {only}")
        await parts.refuse(context, rpc, None, error, started=started, refused=[(len(raw), None)])
    return parsed, peer


class ControlPlane:
    """Gateway.GetDirectory, Gateway.Register and Gateway.Routes over one gateway's parts."""

    def __init__(self, parts: GatewayParts) -> None:
        self._parts = parts

    async def get_directory(
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GetDirectoryResponse:
        """The entries asked for (all when none) and the revocation list, if any; the
        users asked for (all when none; each verified against its bureau) and every
        user revocation."""
        directory = self._parts.directory
        parsed, _ = await control_request(
            self._parts, "GetDirectory", request, gateway_pb2.GetDirectoryRequest, context
        )
        asked = list(parsed.bureaus)
        bureaus = [a for a in asked if not is_user(a)]
        reply = gateway_pb2.GetDirectoryResponse(
            entries=directory.entries(bureaus) if bureaus or not asked else [],
            users=self._parts.users.signed(asked),
            user_revocations=self._parts.users.revocations(),
        )
        revocations = directory.revocation_list()
        if revocations is not None:
            reply.revocations.CopyFrom(revocations)
        return reply

    async def register(
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.RegisterResponse:
        """Record the caller's node address, then deliver what waits for it at once."""
        parts = self._parts
        started = time.perf_counter()
        parsed, bureau = await bureau_request(
            parts, "Register", request, gateway_pb2.RegisterRequest, context, only="register a node"
        )
        try:
            if not parts.directory.known(bureau):
                raise RoutingError(f"unknown bureau {bureau!r}")
            await parts.router.register(bureau, parsed.address)
        except NcbsimError as exc:
            refused = [(len(request), None)]
            await parts.refuse(context, "Register", bureau, exc, started=started, refused=refused)
        if parts.deliverer is not None:  # its node is (back) up: deliver what waits now
            parts.deliverer.kick(bureau)
        return gateway_pb2.RegisterResponse()

    async def routes(
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.RoutesResponse:
        """The bureaus with a registered node."""
        await control_request(self._parts, "Routes", request, gateway_pb2.RoutesRequest, context)
        return gateway_pb2.RoutesResponse(bureaus=self._parts.router.bureaus())
