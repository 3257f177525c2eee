"""A node's events: what the bureau did with each envelope, told from its audit rows.

A node opens what it is sent, but its events say no more than its audit does: ids, the
sender, kind, sizes, outcome and a coarse reason (docs/audit.md). Each event is made
from the row the node writes at the same point, so every site is one call, and nothing
is built when no one subscribes (:attr:`ncbsim.eventbus.EventBus.observed`).
docs/events.md lists every kind.
"""

from __future__ import annotations

import contextlib
import os

import grpc

from ncbsim import envelope, transport
from ncbsim.auditlog import AuditWriteError, ChainedLog
from ncbsim.eventbus import EventBus
from ncbsim.events import ViewValue, envelope_view
from ncbsim.node.audit import NodeAuditRecord, audit_record
from ncbsim.observe import DeniedHook


def opened(bus: EventBus, header: envelope.Header, request: envelope.Envelope) -> None:
    """``query.opened``: a query verified and opened (before the replay check)."""
    if not bus.observed:
        return
    bus.emit(
        "query.opened",
        {"sender": header.sender, "bytes": request.ByteSize()},
        message_id=header.message_hex,
        correlation_id=header.correlation_hex,
    )


def handled(bus: EventBus, row: NodeAuditRecord) -> None:
    """``query.answered`` or ``query.refused`` (with the node's coarse reason), from the
    audit row of one envelope Bureau.Handle took."""
    if not bus.observed:
        return
    if row.outcome == "answered":
        view: dict[str, ViewValue] = {
            "sender": row.sender,
            "bytes": row.request_bytes,
            "response_bytes": row.response_bytes,
            "elapsed_ms": row.elapsed_ms,
        }
        kind = "query.answered"
    else:
        view = {
            **envelope_view(row),
            "reason": row.reason,
            "status": row.status,
            "rpc": "Handle",
        }
        kind = "query.refused"
    bus.emit(kind, view, message_id=row.message_id, correlation_id=row.correlation_id)


def delivered(bus: EventBus, row: NodeAuditRecord) -> None:
    """From the audit row of one copy Bureau.Deliver took: ``post.delivered`` (processed
    or duplicate), ``post.rejected`` (with the reason), or ``post.refused`` for a call
    refused whole."""
    if not bus.observed:
        return
    view = envelope_view(row)
    if row.outcome == "rejected":
        kind, view["reason"] = "post.rejected", row.reason
    elif row.outcome == "refused":
        kind = "post.refused"
        view |= {"reason": row.reason, "status": row.status}
    else:
        kind, view["outcome"] = "post.delivered", row.outcome
    bus.emit(kind, view, message_id=row.message_id, correlation_id=row.correlation_id)


def key_rotated(bus: EventBus, bureau: str, signing_key_id: bytes) -> None:
    """``key.rotated``: the node answers under new keys (after ``ncbsim pki rotate``)."""
    bus.emit("key.rotated", {"bureau": bureau, "key_id": signing_key_id.hex(), "purpose": "all"})


def started(bus: EventBus, address: str) -> None:
    """``process.started``: the node is registered and serves on ``address``."""
    bus.emit(
        "process.started",
        {"role": "node", "pid": os.getpid(), "address": address, "bureaus": bus.party},
    )


def stopped(bus: EventBus, reason: str = "stop") -> None:
    """``process.stopped``: the node begins to shut down."""
    bus.emit("process.stopped", {"role": "node", "pid": os.getpid(), "reason": reason})


def denied_hook(bus: EventBus, audit: ChainedLog) -> DeniedHook:
    """The ``on_denied`` hook of a node's Observe: audit the refused caller in the
    bureau's own log (outcome refused, reason ``not_operator``) and tell the operator."""

    async def on_denied(context: grpc.aio.ServicerContext) -> None:
        row = audit_record(
            None,
            request_bytes=0,
            response_bytes=0,
            outcome="refused",
            reason="not_operator",
            status=grpc.StatusCode.PERMISSION_DENIED,
            elapsed_ms=0.0,
        )
        # The refusal goes out even if the row cannot be written: it carries nothing.
        with contextlib.suppress(AuditWriteError):
            await audit.commit(row)
        if bus.observed:
            view: dict[str, ViewValue] = {
                "rpc": "Observe",
                "reason": "not_operator",
                "status": "PERMISSION_DENIED",
            }
            peer = transport.peer_bureau(context)
            if peer:
                view["peer"] = peer
            bus.emit("call.refused", view)

    return on_denied
