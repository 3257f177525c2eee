"""The gateway's events: what it did with each envelope, told from its audit rows.

The gateway's view is metadata only, and its audit row of an envelope already holds all
of it (ids, parties, kind, sizes, outcome, status, elapsed time). So each event here is
made from the row the gateway writes at the same point, plus what the row has no column
for (a refusal's reason, a copy's sequence or delivery lag): one call per site, and an
event can never say more than the audit does. Nothing is built when no one subscribes
(:attr:`ncbsim.eventbus.EventBus.observed`). docs/events.md lists every kind.
"""

from __future__ import annotations

import os
import time

from ncbsim import envelope
from ncbsim.errors import reason_for
from ncbsim.eventbus import EventBus
from ncbsim.events import ViewValue, envelope_view
from ncbsim.gateway.audit import AuditRecord
from ncbsim.gateway.copies import DELIVERED, EXPIRED, Settled

QUERY_RPCS = frozenset({"Query", "MultiQuery"})
POST_RPCS = frozenset({"Post"})


def relayed(bus: EventBus, row: AuditRecord) -> None:
    """``query.relayed``: one envelope forwarded to its node, and what came of it."""
    if not bus.observed:
        return
    bus.emit(
        "query.relayed",
        {
            **envelope_view(row),
            "response_bytes": row.response_bytes,
            "outcome": row.outcome,
            "status": row.status,
            "elapsed_ms": row.elapsed_ms,
        },
        message_id=row.message_id,
        correlation_id=row.correlation_id,
    )


def refused(bus: EventBus, row: AuditRecord, why: BaseException | str) -> None:
    """The refusal of one envelope (``query.refused``, ``post.refused``) or of a call
    with none (``call.refused``); ``why`` is the error (its ``reason_for``) or a code."""
    if not bus.observed:
        return
    reason = why if isinstance(why, str) else reason_for(why)
    if row.rpc in QUERY_RPCS:
        view = {
            **envelope_view(row),
            "reason": reason,
            "status": row.status,
            "rpc": row.rpc,
        }
        kind = "query.refused"
    elif row.rpc in POST_RPCS:
        view = {
            **envelope_view(row),
            "reason": reason,
            "status": row.status,
        }
        kind = "post.refused"
    else:
        view = {"rpc": row.rpc, "reason": reason, "status": row.status}
        if row.peer:
            view["peer"] = row.peer
        kind = "call.refused"
    bus.emit(kind, view, message_id=row.message_id, correlation_id=row.correlation_id)


def accepted(bus: EventBus, row: AuditRecord, sequence: int) -> None:
    """``post.accepted``: a Post's copy stored (accepted), known (duplicate) or not
    stored (queue_full), with its mailbox sequence."""
    if not bus.observed:
        return
    bus.emit(
        "post.accepted",
        {
            **envelope_view(row),
            "outcome": row.outcome,
            "sequence": sequence,
        },
        message_id=row.message_id,
        correlation_id=row.correlation_id,
    )


def settled(bus: EventBus, copy: Settled) -> None:
    """``post.delivered``, ``post.expired`` or ``post.rejected``: a stored copy's end.

    ``lag_ms`` and ``age_ms`` run from when the gateway accepted the copy.
    """
    if not bus.observed:
        return
    view: dict[str, ViewValue] = {
        "sender": copy.sender,
        "recipient": copy.recipient,
        "kind": envelope.kind_name(copy.kind),
        "bytes": copy.envelope_bytes,
    }
    since_ms = max(int(time.time() * 1000) - copy.accepted_at_ms, 0) if copy.accepted_at_ms else 0
    if copy.state == DELIVERED:
        kind = "post.delivered"
        view |= {"attempts": copy.attempts, "lag_ms": since_ms, "outcome": "delivered"}
    elif copy.state == EXPIRED:
        kind = "post.expired"
        view |= {"attempts": copy.attempts, "age_ms": since_ms}
    else:
        kind = "post.rejected"
        # The node's coarse reason (a code such as ``unverified``), never free text.
        view["reason"] = copy.detail if _is_code(copy.detail) else "rejected"
    bus.emit(kind, view, message_id=copy.message_id.hex(), correlation_id=copy.post_id.hex())


def _is_code(text: str) -> bool:
    return 0 < len(text) <= 32 and text.replace("_", "").isalnum() and text.isascii()


def started(bus: EventBus, address: str) -> None:
    """``process.started``: the gateway serves on ``address``."""
    bus.emit("process.started", {"role": "gateway", "pid": os.getpid(), "address": address})


def stopped(bus: EventBus, reason: str = "signal") -> None:
    """``process.stopped``: the gateway begins to shut down."""
    bus.emit("process.stopped", {"role": "gateway", "pid": os.getpid(), "reason": reason})


def directory_refreshed(bus: EventBus, entries: int) -> None:
    """``directory.refreshed``: the entries on disk changed and were read again."""
    bus.emit("directory.refreshed", {"entries": entries, "source": "files"})


def revocation_refreshed(bus: EventBus, revoked: int, newly: list[str]) -> None:
    """``revocation.refreshed`` for a newer root-signed list, and ``bureau.revoked`` for
    each bureau it revokes that the previous list did not."""
    bus.emit("revocation.refreshed", {"revoked": revoked, "source": "files"})
    for bureau in newly:
        bus.emit("bureau.revoked", {"bureau": bureau, "reason": "revocation_list"})
