"""The classroom-mode gateway: the network's real gateway, misbehaving on purpose.

``ncbsim gateway --classroom-attacks FILE`` (for ``ncbsim classroom`` only) serves
:class:`AttackGateway`: the real :class:`~ncbsim.gateway.server.GatewayService`, started by
the real :func:`~ncbsim.gateway.server.serve` with the gateway's own mTLS certificate, its
audit log, mailbox, metrics and event bus. The nodes and bureaus talk to it exactly as they
talk to the honest gateway. Only the RPCs are wrapped: what they do is read from the JSON
*mode file* on every call, so one running network serves every attack, and the security
suite (tests/security) attacks the product's own code. Without the flag nothing of this
package is imported.

Mode file: ``{"mode": NAME, "variant": V, "target": "DE", "to": "NL", "source": "IT",
"as": "ES", "swap": {"bureau": "DE", "key": "encryption", "how": "altered",
"source": "NL"}, "sender": "FR"}``. Only envelopes addressed to ``target`` are attacked,
and with ``sender`` only that bureau's envelopes and directory fetches; every other call
is served honestly. Modes:

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

A mode file that is absent, unreadable or malformed means ``honest`` (a malformed one is
logged once). Each attack applied is an ``attack.applied`` event on the gateway's bus
(docs/events.md). It records metadata only (ids, parties, key ids, what it did) as JSON
lines in the *attack record* beside the mode file, and every response it relays, as the
opaque envelope bytes an attacker would capture, in the *capture* file
(:func:`attack_files`; ``WORKDIR/gateway/attack-events.jsonl`` and
``attack-capture.jsonl`` beside ``attack.json``). It writes no plaintext, and it can open nothing
unless a requester sealed a query to its own key (it tries, and records only whether
it could: the suite checks that this never happens).
"""

from __future__ import annotations

import asyncio
from collections import deque
from pathlib import Path
from typing import Any, cast

import grpc
import structlog
from google.protobuf.message import DecodeError

from ncbsim import _crypto, envelope, private, transport
from ncbsim.errors import EnvelopeError
from ncbsim.gateway.attacks.modes import (
    NO_ANSWER,
    Mode,
    ModeFile,
    meta,
    parse_request,
)
from ncbsim.gateway.attacks.queries import QueryAttacks
from ncbsim.gateway.parts import GatewayParts
from ncbsim.gateway.server import GatewayService
from ncbsim.serving import abort
from ncbsim.v2 import (
    directory_pb2,
    gateway_pb2,
)

log = structlog.get_logger()


def attack_files(mode_file: Path) -> tuple[Path, Path]:
    """The attack record and the capture file the gateway writes beside ``mode_file``
    (for ``attack.json``: ``attack-events.jsonl`` and ``attack-capture.jsonl``)."""
    stem = mode_file.stem
    return (
        mode_file.with_name(f"{stem}-events.jsonl"),
        mode_file.with_name(f"{stem}-capture.jsonl"),
    )


class AttackGateway(QueryAttacks, GatewayService):
    """The real gateway service with every RPC wrapped by the attack the mode file names."""

    def __init__(self, parts: GatewayParts, mode_file: Path) -> None:
        super().__init__(parts)
        self._pki_dir = parts.config.pki
        self._mode = ModeFile(mode_file)
        self._events, self._capture_file = attack_files(mode_file)
        for path in (self._events, self._capture_file):
            private.create_file(path)  # 0600: who attacked whom is the gateway's secret
        self._default_s = parts.config.default_deadline_ms / 1000
        # The attacker's own key material: it has no other bureau's private keys.
        self.signing = _crypto.ed25519_generate()
        self.encryption = _crypto.x25519_generate()
        self.fake_root = _crypto.ecdsa_generate()
        self.signing_id = _crypto.key_id(bytes(self.signing.verify_key))
        self.encryption_id = _crypto.key_id(_crypto.x25519_public_bytes(self.encryption))
        self._captured: dict[tuple[str, str], deque[envelope.Envelope]] = {}
        log.warning(
            "classroom_attacks_enabled",
            mode_file=str(mode_file),
            note="this gateway attacks on request; for `ncbsim classroom` only",
        )

    # ------------------------------------------------------------ bookkeeping

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
        asked = parse_request(request, gateway_pb2.GetDirectoryRequest)
        mode = self._mode.read()
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
        peer = transport.peer_bureau(context) or ""
        if swap and (not mode.sender or peer == mode.sender):
            for item in reply.entries:
                try:
                    bureau = directory_pb2.DirectoryEntry.FromString(item.entry).bureau
                except DecodeError:
                    continue
                if bureau == swap["bureau"]:
                    item.CopyFrom(self._swapped(swap))
                    swapped = bureau
        if swapped:
            self._applied("swap-key", swap.get("how", ""), sender=peer, recipient=swapped)
        if withheld:
            self._applied("withhold-revocations", "", sender=peer, recipient="")
        self._event(
            rpc="GetDirectory",
            peer=peer,
            asked=list(asked.bureaus) if asked is not None else [],
            swapped=swapped,
            how=swap.get("how", "") if swapped else "",
            withheld_revocations=withheld,
        )
        return reply

    # ------------------------------------------------------------ queries

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
        self._event(action="received", **meta(header))
        self._sealed_to_attacker(header, item)
        if mode.name in {"honest", "swap-key"} or header.recipient != mode.target:
            return None
        if mode.sender and header.sender != mode.sender:
            return None
        if peer is None or header.sender != peer or header.kind != envelope.QUERY_REQUEST:
            return None
        return header

    async def Query(  # noqa: N802 - gRPC method name
        self, request: object, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.QueryResponse:
        mode = self._mode.read()
        parsed = parse_request(request, gateway_pb2.QueryRequest)
        item = parsed.envelope if parsed is not None else None
        header = self._targeted(mode, transport.peer_bureau(context), item)
        if item is None or header is None:
            relayed_reply = await super().Query(cast(Any, request), context)
            reply = (  # the honest relay may hand the node's answer on as bytes
                gateway_pb2.QueryResponse.FromString(relayed_reply)
                if isinstance(relayed_reply, bytes)
                else relayed_reply
            )
            if item is not None:  # admitted by the real gateway, so the header parses
                relayed = envelope.unverified_header(item)
                self._capture(relayed, reply.envelope)
                self._event(rpc="Query", mode=mode.name, action="relayed", **meta(relayed))
            return reply
        self._event(rpc="Query", **meta(header))
        response_or_none, code, detail = await self._attack(
            mode, header, item, self._remaining(context)
        )
        if response_or_none is None:
            await abort(context, code, detail)
        return gateway_pb2.QueryResponse(envelope=response_or_none)

    async def MultiQuery(  # noqa: N802 - gRPC method name
        self, request: object, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.MultiQueryResponse:
        mode = self._mode.read()
        peer = transport.peer_bureau(context)
        parsed = parse_request(request, gateway_pb2.MultiQueryRequest)
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
                self._event(rpc="MultiQuery", action="relayed", **meta(parsed))
                result = await self._forward(parsed.recipient, item, timeout)
                bureau = parsed.recipient
            else:
                self._event(rpc="MultiQuery", **meta(header))
                result = await self._attack(mode, header, item, timeout, rpc="MultiQuery")
                bureau = header.recipient
            response, code, detail = result
            delivery = gateway_pb2.Delivery(bureau=bureau)
            if response is not None:
                delivery.status = gateway_pb2.DELIVERY_STATUS_DELIVERED
                delivery.response.CopyFrom(response)
            elif code in NO_ANSWER:
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
        self._applied("mix-deliveries", mode.variant, sender="", recipient=mode.target)
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
        mode = self._mode.read()
        if mode.name == "hide-route" and mode.target in reply.bureaus:
            kept = [b for b in reply.bureaus if b != mode.target]
            del reply.bureaus[:]
            reply.bureaus.extend(kept)
            self._event(rpc="Routes", action="hid-route", target=mode.target)
            peer = transport.peer_bureau(context) or ""
            self._applied("hide-route", "", sender=peer, recipient=mode.target)
        return reply
