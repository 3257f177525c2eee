"""The classroom-mode gateway's attacks on one query envelope, and its bookkeeping.

A mixin of :class:`~ncbsim.gateway.attacks.service.AttackGateway`, which owns the state:
each attack (``alter-request``, ``alter-response``, ``replay-request``,
``replay-response``, ``reroute``, ``forge``, ``forge-request``, ``drop``; service.py's
docstring says what each does) takes the envelope the gateway admitted and returns what
the caller gets. Every attack applied is recorded as metadata (the attack record) and as
an ``attack.applied`` event on the gateway's bus; never a payload.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import ClassVar

import grpc
import structlog

from ncbsim import envelope
from ncbsim.auditlog import AuditWriteError
from ncbsim.errors import RoutingError
from ncbsim.gateway import observed
from ncbsim.gateway.attacks.forgery import Forger
from ncbsim.gateway.attacks.modes import NO_ANSWER, Mode, Result, tamper
from ncbsim.gateway.parts import GatewayParts, audit_row
from ncbsim.v2 import bureau_pb2, envelope_pb2

log = structlog.get_logger()

CAPTURED_PER_PAIR = 8
"""Responses kept in memory per (requester, bureau) pair, for the replay attacks."""


_Attack = Callable[
    ["QueryAttacks", Mode, envelope.Header, envelope.Envelope, float, dict[str, str]],
    Awaitable[Result],
]
"""One attack on a query envelope: the gateway, the mode, the header, the envelope, the
time left, and the ids to record."""


class QueryAttacks(Forger):
    """Attacks on one query envelope, and the record of what was done."""

    _parts: GatewayParts
    _events: Path
    _capture_file: Path

    def _event(self, **fields: object) -> None:
        """One JSON line of metadata about what was done (never a payload)."""
        log.info("attack_record", **fields)
        with self._events.open("a") as out:
            out.write(json.dumps({"at_ms": int(time.time() * 1000), **fields}) + "\n")

    def _capture(self, header: envelope.Header, response: envelope.Envelope) -> None:
        """Keep a relayed response, as an attacker on the path would, for replays."""
        pair = (header.sender, header.recipient)
        self._captured.setdefault(pair, deque(maxlen=CAPTURED_PER_PAIR)).append(response)
        with self._capture_file.open("a") as out:
            record = {
                "requester": header.sender,
                "bureau": header.recipient,
                "request": header.message_hex,
                "response": response.SerializeToString().hex(),
            }
            out.write(json.dumps(record) + "\n")

    def _applied(
        self,
        attack: str,
        variant: str,
        *,
        sender: str,
        recipient: str,
        header: envelope.Header | None = None,
    ) -> None:
        """``attack.applied`` on the gateway's bus: which attack, on whose envelope."""
        view = {"attack": attack, "variant": variant, "sender": sender, "recipient": recipient}
        self._parts.bus.emit(
            "attack.applied",
            {k: v for k, v in view.items() if v},
            message_id=header.message_hex if header is not None else "",
            correlation_id=header.correlation_hex if header is not None else "",
        )

    async def _forward(self, bureau: str, item: envelope.Envelope, timeout: float) -> Result:
        try:
            route = self._parts.router.get(bureau)
        except RoutingError:
            return None, grpc.StatusCode.UNAVAILABLE, f"bureau {bureau} has no registered node"
        try:
            handled: bureau_pb2.HandleResponse = await route.stub.Handle(
                bureau_pb2.HandleRequest(envelope=item), timeout=timeout
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            return None, code, f"no answer from {bureau}" if code in NO_ANSWER else code.name
        return handled.envelope, grpc.StatusCode.OK, ""

    async def _attack(
        self,
        mode: Mode,
        header: envelope.Header,
        item: envelope.Envelope,
        timeout: float,
        *,
        rpc: str = "Query",
    ) -> Result:
        """Do to one envelope addressed to ``mode.target`` what ``mode`` says, and audit it
        as the real relay does (``drop`` audits before it holds the call)."""
        started = time.perf_counter()
        attack = self._ATTACKS.get(mode.name)
        if attack is None:
            # swap-key and anything unknown: relay honestly (a swap acts in GetDirectory).
            result = await self._forward(header.recipient, item, timeout)
            if result[0] is not None:
                self._capture(header, result[0])
            await self._audit(rpc, header, item, result, started)
            return result
        self._applied(
            mode.name, mode.variant, sender=header.sender, recipient=header.recipient, header=header
        )
        ids = {
            "rpc": rpc,
            "mode": mode.name,
            "variant": mode.variant,
            "message_id": header.message_hex,
        }
        result = await attack(self, mode, header, item, timeout, ids)
        if mode.name != "drop":
            await self._audit(rpc, header, item, result, started)
        return result

    async def _audit(
        self,
        rpc: str,
        header: envelope.Header,
        item: envelope.Envelope,
        result: Result,
        started: float,
    ) -> None:
        """The gateway's audit row and ``query.relayed`` event of an attacked envelope, as
        the honest relay writes them: what the caller gets (delivered, no answer, refused)."""
        response, code, _detail = result
        outcome = (
            "delivered" if response is not None else "no_answer" if code in NO_ANSWER else "refused"
        )
        row = audit_row(
            rpc,
            header.sender,
            item.ByteSize(),
            header,
            outcome=outcome,
            status=code,
            started=started,
            response=response,
        )
        try:
            await self._parts.audit.commit(row)
        except AuditWriteError as exc:  # the classroom goes on; the log says so
            log.error("attack_not_audited", error=str(exc), message_id=header.message_hex)
            return
        observed.relayed(self._parts.bus, row)

    async def _alter_request(
        self,
        mode: Mode,
        header: envelope.Header,
        item: envelope.Envelope,
        timeout: float,
        ids: dict[str, str],
    ) -> Result:
        """Flip one bit of the query on its way to the node."""
        self._event(action="altered-request", **ids)
        return await self._forward(header.recipient, tamper(item, mode.variant), timeout)

    async def _alter_response(
        self,
        mode: Mode,
        header: envelope.Header,
        item: envelope.Envelope,
        timeout: float,
        ids: dict[str, str],
    ) -> Result:
        """Flip one bit of the node's answer on its way back."""
        response, code, detail = await self._forward(header.recipient, item, timeout)
        self._event(action="altered-response", status=code.name, **ids)
        return (tamper(response, mode.variant) if response else None), code, detail

    async def _replay_response(
        self,
        mode: Mode,
        header: envelope.Header,
        item: envelope.Envelope,
        timeout: float,
        ids: dict[str, str],
    ) -> Result:
        """Answer with a response captured earlier instead of forwarding."""
        owner = header.sender if mode.variant == "same" else mode.source
        earlier = self._captured.get((owner, header.recipient))
        if not earlier:
            return None, grpc.StatusCode.FAILED_PRECONDITION, "nothing captured to replay"
        self._event(action="replayed-response", captured_for=owner, **ids)
        return earlier[-1], grpc.StatusCode.OK, ""

    async def _replay_request(
        self,
        mode: Mode,
        header: envelope.Header,
        item: envelope.Envelope,
        timeout: float,
        ids: dict[str, str],
    ) -> Result:
        """Forward the same query twice; the caller gets the first answer."""
        first = await self._forward(header.recipient, item, timeout)
        _, again, _detail = await self._forward(header.recipient, item, timeout)
        self._event(action="replayed-request", first=first[1].name, second=again.name, **ids)
        return first

    async def _reroute(
        self,
        mode: Mode,
        header: envelope.Header,
        item: envelope.Envelope,
        timeout: float,
        ids: dict[str, str],
    ) -> Result:
        """Deliver the query to ``mode.to``'s node instead (its header rewritten or not)."""
        sent = item
        if mode.variant == "rewrite":
            fields = envelope_pb2.Header.FromString(item.header)
            fields.recipient = mode.to
            sent = envelope.Envelope(
                header=fields.SerializeToString(), sealed=item.sealed, signature=item.signature
            )
        result = await self._forward(mode.to, sent, timeout)
        self._event(action="rerouted", to=mode.to, status=result[1].name, **ids)
        return result

    async def _forge(
        self,
        mode: Mode,
        header: envelope.Header,
        item: envelope.Envelope,
        timeout: float,
        ids: dict[str, str],
    ) -> Result:
        """Answer the query itself, with a fabricated no-hit or the query reflected."""
        forged = item if mode.variant == "reflect" else self._forged_response(header, mode.variant)
        if forged is None:
            return None, grpc.StatusCode.FAILED_PRECONDITION, "nothing captured to splice"
        self._event(action="forged-response", **ids)
        return forged, grpc.StatusCode.OK, ""

    async def _forge_request(
        self,
        mode: Mode,
        header: envelope.Header,
        item: envelope.Envelope,
        timeout: float,
        ids: dict[str, str],
    ) -> Result:
        """Send the node a query the gateway made up as ``mode.as_`` instead."""
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

    async def _drop(
        self,
        mode: Mode,
        header: envelope.Header,
        item: envelope.Envelope,
        timeout: float,
        ids: dict[str, str],
    ) -> Result:
        """Drop the answer: hang past the caller's deadline, or reply UNAVAILABLE."""
        started = time.perf_counter()
        self._event(action="dropped", **ids)
        detail = f"no answer from {header.recipient}"
        if mode.variant == "unavailable":
            dropped: Result = (None, grpc.StatusCode.UNAVAILABLE, detail)
            await self._audit(ids["rpc"], header, item, dropped, started)
            return dropped
        if mode.variant == "hang":
            await self._forward(header.recipient, item, timeout)
        dropped = (None, grpc.StatusCode.DEADLINE_EXCEEDED, detail)
        await self._audit(ids["rpc"], header, item, dropped, started)
        await asyncio.sleep(timeout + 5)  # past the caller's deadline
        return dropped

    _ATTACKS: ClassVar[dict[str, _Attack]] = {
        "alter-request": _alter_request,
        "alter-response": _alter_response,
        "replay-response": _replay_response,
        "replay-request": _replay_request,
        "reroute": _reroute,
        "forge": _forge,
        "forge-request": _forge_request,
        "drop": _drop,
    }
    """The attacks on one query envelope, by mode."""
