"""A compromised gateway: the network's real gateway program, misbehaving on purpose.

It is the real :class:`ncbsim.gateway.server.GatewayService`, started the way ``ncbsim gateway``
starts it, with the gateway's own mTLS certificate from the PKI directory: the nodes
and bureaus talk to it exactly as they talk to the honest gateway. Only the RPCs are
wrapped. What it does is read from a JSON *mode file* on every call, so one running
network serves every attack::

    python tests/security/evil_gateway.py --dir PKI --listen 127.0.0.1:0 \\
        --audit PATH --ready-file PATH --mode-file PATH --events PATH --capture PATH

Mode file: ``{"mode": NAME, "variant": V, "target": "DE", "to": "NL", "source": "IT",
"as": "ES", "swap": {"bureau": "DE", "key": "encryption", "how": "altered",
"source": "NL"}}``. Only envelopes addressed to ``target`` are attacked; every other
call is served honestly. Modes:

``honest``
    the real gateway, unchanged (it still records what it relays, see below).
``swap-key``
    GetDirectory serves ``swap.bureau``'s entry with a substituted key (``swap.key``:
    ``encryption`` or ``signing``), ``swap.how``: ``altered`` (entry bytes changed
    under the root's original signature), ``fake-root`` (re-signed by a root this
    process generated), ``relabel`` (``swap.source``'s valid entry with its bureau code
    changed), ``substitute`` (``swap.source``'s valid entry, unchanged) or ``stale``
    (``swap.entry``, hex: an older root-signed entry it kept). ``swap`` applies in
    every mode, and so does ``"withhold_revocations": true`` (GetDirectory replies
    without the root's revocation list); queries are relayed honestly.
``alter-request`` / ``alter-response``
    flip one bit of the sealed body, the header (a byte of the correlation id) or the
    signature (``variant``: ``body``, ``header``, ``signature``) on the way to the
    node, or on the node's answer on the way back.
``replay-response``
    answer with a response captured earlier instead of forwarding: ``same`` (the last
    one the target sent this caller) or ``other`` (the last one it sent ``source``).
``replay-request``
    forward the same request twice; the caller gets the first answer.
``reroute``
    forward the query to ``to``'s node: ``forward`` unchanged, or ``rewrite`` with the
    header's recipient rewritten to ``to``.
``forge``
    answer itself with a fabricated "no hit": ``unsigned``, ``own-key`` (signed with
    this process's Ed25519 key under the target's key id) or ``splice`` (a genuine
    earlier response of the target, its correlation id rewritten to the new query); or
    ``reflect`` the query back as its own answer.
``forge-request``
    send the target, instead of the caller's query, a query it made up as bureau
    ``as``, signed with its own key (combine with ``swap`` on ``as`` to offer the node
    a substituted signing key), or with ``"leaked": true`` with ``as``'s own keys, as
    stolen by an accomplice (read from the PKI directory to stand for the leak).
``mix-deliveries`` (MultiQuery)
    ``omit`` the target from the merged reply, or ``swap`` its answer with another
    bureau's, each delivery still labelled with its own bureau.
``hide-route``
    Routes leaves the target out, so a query to ALL never includes it.
``drop``
    ``hang`` (forward, discard the answer, hold the call past the caller's deadline),
    ``silent`` (hold the call without forwarding) or ``unavailable`` (UNAVAILABLE).

It records metadata only (ids, parties, key ids, what it did) as JSON lines in
``--events``, and every response it relays, as the opaque envelope bytes an attacker
would capture, in ``--capture``. It writes no plaintext, and it can open nothing
unless a requester sealed a query to its own key (it tries, and records only whether
it could: the suite checks that this never happens).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any, cast

import grpc
import structlog
from evil_forgery import Forger
from evil_modes import _NO_ANSWER, Mode, _meta, _parsed, _Result, _tamper
from google.protobuf.message import DecodeError

from ncbsim import _crypto, envelope, transport
from ncbsim import log as logsetup
from ncbsim.errors import EnvelopeError, RoutingError
from ncbsim.gateway import server as gateway_server
from ncbsim.gateway.audit import AuditLog
from ncbsim.gateway.config import GatewayConfig
from ncbsim.gateway.parts import GatewayParts
from ncbsim.gateway.router import Router
from ncbsim.gateway.server import GatewayService
from ncbsim.pki import PkiDir
from ncbsim.serving import abort, start_server, wait_for_shutdown, write_ready_file
from ncbsim.v2 import (
    bureau_pb2,
    directory_pb2,
    envelope_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
)
from ncbsim.workdir import GatewayFiles

log = structlog.get_logger()


class EvilGateway(Forger, GatewayService):
    """The real gateway service with every RPC wrapped by an attack."""

    def __init__(
        self,
        config: GatewayConfig,
        router: Router,
        audit: AuditLog,
        *,
        mode_file: Path | None,
        events: Path | None,
        capture: Path | None,
    ) -> None:
        super().__init__(GatewayParts(config, router, audit))
        self._pki_dir = config.pki
        self._evil_router = router
        self._mode_file = mode_file
        self._events = events
        self._capture_file = capture
        self._default_s = config.default_deadline_ms / 1000
        # The attacker's own key material: it has no other bureau's private keys.
        self.signing = _crypto.ed25519_generate()
        self.encryption = _crypto.x25519_generate()
        self.fake_root = _crypto.ecdsa_generate()
        self.signing_id = _crypto.key_id(bytes(self.signing.verify_key))
        self.encryption_id = _crypto.key_id(_crypto.x25519_public_bytes(self.encryption))
        self._captured: dict[tuple[str, str], list[envelope.Envelope]] = {}

    # ------------------------------------------------------------ bookkeeping

    def _event(self, **fields: object) -> None:
        """One JSON line of metadata about what was done (never a payload)."""
        log.info("evil", **fields)
        if self._events is None:
            return
        with self._events.open("a") as out:
            out.write(json.dumps({"at_ms": int(time.time() * 1000), **fields}) + "\n")

    def _capture(self, header: envelope.Header, response: envelope.Envelope) -> None:
        """Keep a relayed response, as an attacker on the path would, for replays."""
        self._captured.setdefault((header.sender, header.recipient), []).append(response)
        if self._capture_file is not None:
            with self._capture_file.open("a") as out:
                record = {
                    "requester": header.sender,
                    "bureau": header.recipient,
                    "request": header.message_hex,
                    "response": response.SerializeToString().hex(),
                }
                out.write(json.dumps(record) + "\n")

    def _sealed_to_attacker(self, header: envelope.Header, item: envelope.Envelope) -> bool:
        """Whether a requester sealed a query to our key; if so, see if we can open it."""
        if header.recipient_key_id != self.encryption_id:
            return False
        try:
            _crypto.hpke_open(
                self.encryption, info=envelope.REQUEST_INFO, aad=item.header, sealed=item.sealed
            )
            opened = True
        except _crypto.CryptoFailure:
            opened = False
        self._event(action="sealed-to-attacker", message_id=header.message_hex, opened=opened)
        return True

    async def GetDirectory(  # noqa: N802 - gRPC method name
        self, request: object, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GetDirectoryResponse:
        reply: gateway_pb2.GetDirectoryResponse = await super().GetDirectory(
            cast(Any, request), context
        )
        asked = _parsed(request, gateway_pb2.GetDirectoryRequest)
        mode = Mode.read(self._mode_file)
        swap = mode.swap
        swapped = ""
        withheld = False
        if mode.withhold_revocations and "revocations" in reply.DESCRIPTOR.fields_by_name:
            withheld = reply.HasField("revocations")
            reply.ClearField("revocations")
            # ...and serve the revoked entries the honest gateway leaves out, straight
            # from the PKI folder: they are still root-signed and in date.
            served = {
                directory_pb2.DirectoryEntry.FromString(e.entry).bureau for e in reply.entries
            }
            pkidir = self._pki_dir
            for code in list(asked.bureaus) if asked is not None and asked.bureaus else []:
                path = pkidir.directory / f"{code}.entry"
                if code not in served and path.exists():
                    reply.entries.append(
                        directory_pb2.SignedDirectoryEntry.FromString(path.read_bytes())
                    )
        if swap:
            for item in reply.entries:
                try:
                    bureau = directory_pb2.DirectoryEntry.FromString(item.entry).bureau
                except DecodeError:
                    continue
                if bureau == swap["bureau"]:
                    item.CopyFrom(self._swapped(swap))
                    swapped = bureau
        self._event(
            rpc="GetDirectory",
            peer=transport.peer_bureau(context) or "",
            asked=list(asked.bureaus) if asked is not None else [],
            swapped=swapped,
            how=swap.get("how", "") if swapped else "",
            withheld_revocations=withheld,
        )
        return reply

    # ------------------------------------------------------------ queries

    async def _forward(self, bureau: str, item: envelope.Envelope, timeout: float) -> _Result:
        try:
            route = self._evil_router.get(bureau)
        except RoutingError:
            return None, grpc.StatusCode.UNAVAILABLE, f"bureau {bureau} has no registered node"
        try:
            handled: bureau_pb2.HandleResponse = await route.stub.Handle(
                bureau_pb2.HandleRequest(envelope=item), timeout=timeout
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            return None, code, f"no answer from {bureau}" if code in _NO_ANSWER else code.name
        return handled.envelope, grpc.StatusCode.OK, ""

    async def _attack(
        self, mode: Mode, header: envelope.Header, item: envelope.Envelope, timeout: float
    ) -> _Result:
        """Do to one envelope addressed to ``mode.target`` what ``mode`` says."""
        name, variant = mode.name, mode.variant
        ids = {"mode": name, "variant": variant, "message_id": header.message_hex}
        if name == "alter-request":
            self._event(action="altered-request", **ids)
            return await self._forward(header.recipient, _tamper(item, variant), timeout)
        if name == "alter-response":
            response, code, detail = await self._forward(header.recipient, item, timeout)
            self._event(action="altered-response", status=code.name, **ids)
            return (_tamper(response, variant) if response else None), code, detail
        if name == "replay-response":
            owner = header.sender if variant == "same" else mode.source
            earlier = self._captured.get((owner, header.recipient))
            if not earlier:
                return None, grpc.StatusCode.FAILED_PRECONDITION, "nothing captured to replay"
            self._event(action="replayed-response", captured_for=owner, **ids)
            return earlier[-1], grpc.StatusCode.OK, ""
        if name == "replay-request":
            first = await self._forward(header.recipient, item, timeout)
            _, again, detail = await self._forward(header.recipient, item, timeout)
            self._event(action="replayed-request", first=first[1].name, second=again.name, **ids)
            return first
        if name == "reroute":
            sent = item
            if variant == "rewrite":
                fields = envelope_pb2.Header.FromString(item.header)
                fields.recipient = mode.to
                sent = envelope.Envelope(
                    header=fields.SerializeToString(), sealed=item.sealed, signature=item.signature
                )
            result = await self._forward(mode.to, sent, timeout)
            self._event(action="rerouted", to=mode.to, status=result[1].name, **ids)
            return result
        if name == "forge":
            forged = item if variant == "reflect" else self._forged_response(header, variant)
            if forged is None:
                return None, grpc.StatusCode.FAILED_PRECONDITION, "nothing captured to splice"
            self._event(action="forged-response", **ids)
            return forged, grpc.StatusCode.OK, ""
        if name == "forge-request":
            sealed = self._forged_request(mode, header.recipient)
            result = await self._forward(header.recipient, sealed.envelope, timeout)
            self._event(
                action="forged-request",
                forged_as=mode.as_,
                forged_message_id=sealed.header.message_hex,
                status=result[1].name,
                **ids,
            )
            return result
        if name == "drop":
            self._event(action="dropped", **ids)
            if variant == "unavailable":
                return None, grpc.StatusCode.UNAVAILABLE, f"no answer from {header.recipient}"
            if variant == "hang":
                await self._forward(header.recipient, item, timeout)
            await asyncio.sleep(timeout + 5)  # past the caller's deadline
            return None, grpc.StatusCode.DEADLINE_EXCEEDED, f"no answer from {header.recipient}"
        # swap-key and anything unknown: relay honestly (a swap acts in GetDirectory).
        result = await self._forward(header.recipient, item, timeout)
        if result[0] is not None:
            self._capture(header, result[0])
        return result

    def _remaining(self, context: grpc.aio.ServicerContext) -> float:
        remaining = context.time_remaining()
        budget = self._default_s if remaining is None else min(self._default_s, remaining)
        return max(budget - 0.05, 0.001)

    def _targeted(
        self, mode: Mode, peer: str | None, item: envelope.Envelope | None
    ) -> envelope.Header | None:
        """The header of an admissible envelope this mode attacks, else None."""
        if item is None:
            return None
        try:
            header = envelope.unverified_header(item)
        except EnvelopeError:
            return None
        self._event(action="received", **_meta(header))
        self._sealed_to_attacker(header, item)
        if mode.name in {"honest", "swap-key"} or header.recipient != mode.target:
            return None
        if peer is None or header.sender != peer or header.kind != envelope.QUERY_REQUEST:
            return None
        return header

    async def Query(  # noqa: N802 - gRPC method name
        self, request: object, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.QueryResponse:
        mode = Mode.read(self._mode_file)
        parsed = _parsed(request, gateway_pb2.QueryRequest)
        item = parsed.envelope if parsed is not None else None
        header = self._targeted(mode, transport.peer_bureau(context), item)
        if item is None or header is None:
            reply: gateway_pb2.QueryResponse = await super().Query(cast(Any, request), context)
            if item is not None:  # admitted by the real gateway, so the header parses
                relayed = envelope.unverified_header(item)
                self._capture(relayed, reply.envelope)
                self._event(rpc="Query", mode=mode.name, action="relayed", **_meta(relayed))
            return reply
        self._event(rpc="Query", **_meta(header))
        response_or_none, code, detail = await self._attack(
            mode, header, item, self._remaining(context)
        )
        if response_or_none is None:
            await abort(context, code, detail)
        return gateway_pb2.QueryResponse(envelope=response_or_none)

    async def MultiQuery(  # noqa: N802 - gRPC method name
        self, request: object, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.MultiQueryResponse:
        mode = Mode.read(self._mode_file)
        peer = transport.peer_bureau(context)
        parsed = _parsed(request, gateway_pb2.MultiQueryRequest)
        envelopes = list(parsed.envelopes) if parsed is not None else []
        targeted = [self._targeted(mode, peer, item) for item in envelopes]
        if not any(targeted):
            reply: gateway_pb2.MultiQueryResponse = await super().MultiQuery(
                cast(Any, request), context
            )
            return reply
        timeout = self._remaining(context)

        async def one(item: envelope.Envelope, header: envelope.Header | None) -> Any:
            if header is None:
                parsed = envelope.unverified_header(item)
                self._event(rpc="MultiQuery", action="relayed", **_meta(parsed))
                result = await self._forward(parsed.recipient, item, timeout)
                bureau = parsed.recipient
            else:
                self._event(rpc="MultiQuery", **_meta(header))
                result = await self._attack(mode, header, item, timeout)
                bureau = header.recipient
            response, code, detail = result
            delivery = gateway_pb2.Delivery(bureau=bureau)
            if response is not None:
                delivery.status = gateway_pb2.DELIVERY_STATUS_DELIVERED
                delivery.response.CopyFrom(response)
            elif code in _NO_ANSWER:
                delivery.status = gateway_pb2.DELIVERY_STATUS_NO_ANSWER
                delivery.detail = code.name
            else:
                delivery.status = gateway_pb2.DELIVERY_STATUS_REFUSED
                delivery.detail = detail or code.name
            return delivery

        deliveries = list(
            await asyncio.gather(
                *(one(item, header) for item, header in zip(envelopes, targeted, strict=True))
            )
        )
        if mode.name == "mix-deliveries":
            deliveries = self._mixed(deliveries, mode)
        return gateway_pb2.MultiQueryResponse(deliveries=deliveries)

    def _mixed(self, deliveries: list[Any], mode: Mode) -> list[Any]:
        """The merged reply, rearranged: ``omit`` the target, or ``swap`` its answer with
        another bureau's (each still labelled with its own bureau)."""
        target = [d for d in deliveries if d.bureau == mode.target]
        others = [d for d in deliveries if d.bureau != mode.target]
        self._event(action="mixed-deliveries", variant=mode.variant, target=mode.target)
        if mode.variant == "omit":
            return others
        if mode.variant == "swap" and target and others:
            mine = envelope.Envelope()
            mine.CopyFrom(target[0].response)
            target[0].response.CopyFrom(others[0].response)
            others[0].response.CopyFrom(mine)
        return deliveries

    async def Routes(  # noqa: N802 - gRPC method name
        self, request: object, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.RoutesResponse:
        reply: gateway_pb2.RoutesResponse = await super().Routes(cast(Any, request), context)
        mode = Mode.read(self._mode_file)
        if mode.name == "hide-route" and mode.target in reply.bureaus:
            kept = [b for b in reply.bureaus if b != mode.target]
            del reply.bureaus[:]
            reply.bureaus.extend(kept)
            self._event(rpc="Routes", action="hid-route", target=mode.target)
        return reply


async def serve(config: GatewayConfig, args: argparse.Namespace) -> None:
    """Run the compromised gateway until SIGINT or SIGTERM (as ncbsim.gateway.server.serve)."""
    tls = config.pki.tls("gateway")
    router = Router(tls)
    audit = AuditLog(config.files.audit)
    service = EvilGateway(
        config,
        router,
        audit,
        mode_file=args.mode_file,
        events=args.events,
        capture=args.capture,
    )
    # Registered the way the real gateway registers itself (raw requests, if it does).
    add = getattr(gateway_server, "add_to_server", None)
    if add is None:
        add = gateway_pb2_grpc.add_GatewayServiceServicer_to_server
    served = await start_server(
        tls,
        config.listen,
        [gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name],
        register=lambda server: add(service, server),
    )
    log.info("evil_gateway_listening", address=served.address)
    await served.set_serving(True)
    write_ready_file(
        config.ready_file,
        role="evil-gateway",
        address=served.address,
        attacker_signing_key_id=service.signing_id.hex(),
        attacker_encryption_key_id=service.encryption_id.hex(),
    )
    try:
        await wait_for_shutdown()
    finally:
        await served.server.stop(grace=1)
        await router.close()
        audit.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", type=Path, required=True, help="PKI directory")
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--audit", type=Path, required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--mode-file", type=Path)
    parser.add_argument("--events", type=Path, help="JSON lines: what it did (metadata)")
    parser.add_argument("--capture", type=Path, help="JSON lines: responses it relayed")
    args = parser.parse_args(argv)
    logsetup.configure("info", role="evil-gateway")
    config = GatewayConfig(
        pki=PkiDir(args.dir),
        listen=args.listen,
        files=GatewayFiles.beside(args.audit),
        ready_file=args.ready_file,
    )
    asyncio.run(serve(config, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
