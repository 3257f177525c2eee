"""The post path: Post stores one-way envelopes durably, Receipts tells their senders.

One-way envelopes (diffusions, notices, case messages) do not wait for an answer:
``Post`` admits every envelope of the call (:func:`~ncbsim.gateway.admission.admit_posts`),
stores the copies (:mod:`ncbsim.gateway.mailbox`), wakes their recipients' workers
(:mod:`ncbsim.gateway.delivery`) and answers accepted, duplicate or queue_full only once
the copies and their audit rows are committed. ``Receipts`` lists a sender's own copies
by sequence, a page at a time, with the recipients' signed receipts. docs/delivery.md
has the details.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial

import grpc
import structlog

from ncbsim.auditlog import AuditWriteError
from ncbsim.errors import ConfigError, NcbsimError, QueueFull
from ncbsim.gateway import copies, observed
from ncbsim.gateway.admission import admit_posts
from ncbsim.gateway.control import bureau_request
from ncbsim.gateway.mailbox import Mailbox
from ncbsim.gateway.parts import GatewayParts, audit_row, refusal_status
from ncbsim.gateway.writer import run_to_end
from ncbsim.metrics import envelope_kind
from ncbsim.serving import abort
from ncbsim.v2 import gateway_pb2, messages_pb2

log = structlog.get_logger()

RECEIPTS_PAGE = 500
"""Gateway.Receipts lists at most this many messages a call (also its default)."""
MAX_SEQUENCE = 2**63 - 1
"""The largest sequence SQLite can hold: an ``after_sequence`` above it lists nothing."""
QUEUE_FULL_RETRY_MS = 1_000
"""The retry hint sent with a Post refused because every recipient's queue is full."""
_POST_STATUS = {
    copies.ACCEPTED: gateway_pb2.POST_STATUS_ACCEPTED,
    copies.DUPLICATE: gateway_pb2.POST_STATUS_DUPLICATE,
    copies.QUEUE_FULL: gateway_pb2.POST_STATUS_QUEUE_FULL,
}
_MESSAGE_STATE = {
    copies.QUEUED: gateway_pb2.MESSAGE_STATE_QUEUED,
    copies.DELIVERED: gateway_pb2.MESSAGE_STATE_DELIVERED,
    copies.EXPIRED: gateway_pb2.MESSAGE_STATE_EXPIRED,
    copies.REJECTED: gateway_pb2.MESSAGE_STATE_REJECTED,
}


def _now_ms() -> int:
    return int(time.time() * 1000)


class PostOffice:
    """Gateway.Post and Gateway.Receipts over one gateway's parts."""

    def __init__(self, parts: GatewayParts) -> None:
        self._parts = parts

    def _mailbox_or_refuse(self) -> Mailbox:
        if self._parts.mailbox is None:
            raise ConfigError("this gateway stores no messages")
        return self._parts.mailbox

    async def _store(
        self, mailbox: Mailbox, admitted: Sequence[copies.Incoming], started: float
    ) -> list[copies.Acceptance]:
        """Store the admitted copies, wake the recipients' workers, and commit each copy's
        audit row (AuditWriteError if they cannot be written: the copies are stored then)."""
        accepted = await mailbox.accept(admitted)
        rows = []
        for incoming, result in zip(admitted, accepted, strict=True):
            full = result.status == copies.QUEUE_FULL
            rows.append(
                audit_row(
                    "Post",
                    incoming.header.sender,
                    len(incoming.data),
                    incoming.header,
                    outcome=result.status,
                    status=grpc.StatusCode.RESOURCE_EXHAUSTED if full else grpc.StatusCode.OK,
                    started=started,
                )
            )
            if result.status == copies.ACCEPTED and self._parts.deliverer is not None:
                self._parts.deliverer.wake(incoming.header.recipient)
        await self._parts.audit.commit(*rows)
        for row, result in zip(rows, accepted, strict=True):
            observed.accepted(self._parts.bus, row, result.sequence)
        return accepted

    async def post(
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.PostResponse:
        """Store each one-way envelope durably, then answer accepted, duplicate or queue_full."""
        parts = self._parts
        started = time.perf_counter()
        admit = partial(
            admit_posts,
            max_bytes=parts.max_bytes,
            limiter=parts.limiter,
            directory=parts.directory,
            users=parts.users,
            clock_ms=_now_ms,
        )
        peer, admitted = await parts.admit_call(
            context, "Post", request, gateway_pb2.PostRequest, admit, started=started
        )
        refused_admitted = [(len(i.data), i.header) for i in admitted]
        try:
            mailbox = self._mailbox_or_refuse()  # refused after the admission checks
            accepted = await run_to_end(self._store(mailbox, admitted, started))
        except NcbsimError as exc:  # no mailbox, or a message id reused: nothing stored
            await parts.refuse(
                context, "Post", peer, exc, started=started, refused=refused_admitted
            )
        except AuditWriteError as exc:
            # The copies are stored (and will be delivered) but their rows are not written:
            # no receipt leaves without its row, as no answer does. Not "refused": they are
            # stored. The sender's retry of the same envelopes gets their receipts, as
            # duplicates, and those rows are the copies' audit trail.
            log.error(
                "audit_not_written", rpc="Post", peer=peer, rows=len(admitted), error=str(exc)
            )
            detail = (
                "the gateway could not audit them; the copies it stored stay stored, "
                "so resend the same envelopes for their receipts"
            )
            await abort(context, grpc.StatusCode.UNAVAILABLE, detail)
        except Exception:  # never UNKNOWN: the disk, a closed mailbox, a bug
            rows = [
                audit_row(
                    "Post",
                    incoming.header.sender,
                    len(incoming.data),
                    incoming.header,
                    outcome="refused",
                    status=grpc.StatusCode.UNAVAILABLE,
                    started=started,
                )
                for incoming in admitted
            ]
            await parts.audit_refused(rows)
            for row in rows:
                observed.refused(parts.bus, row, "unavailable")
            log.exception("post_not_stored", peer=peer, envelopes=len(admitted))
            await abort(context, grpc.StatusCode.UNAVAILABLE, "the gateway could not store them")
        reply = gateway_pb2.PostResponse()
        for incoming, result in zip(admitted, accepted, strict=True):
            parts.metrics.envelope(envelope_kind(incoming.header), result.status)
            reply.results.add(
                message_id=incoming.header.message_id,
                recipient=incoming.header.recipient,
                status=_POST_STATUS[result.status],
                sequence=result.sequence,
                accepted_at_ms=result.accepted_at_ms,
                detail=result.detail,
            )
        if all(r.status == copies.QUEUE_FULL for r in accepted):
            recipients = sorted({i.header.recipient for i in admitted})
            details = list(dict.fromkeys(r.detail for r in accepted))  # which bound, in order
            full_error = QueueFull(f"{'; '.join(details)}; retry later", QUEUE_FULL_RETRY_MS)
            log.warning("queue_full", rpc="Post", peer=peer, recipients=recipients)
            await abort(context, *refusal_status(full_error))
        return reply

    async def receipts(
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.ReceiptsResponse:
        """The caller's own posted copies after ``after_sequence``, by sequence, one page."""
        parts = self._parts
        started = time.perf_counter()
        parsed, bureau = await bureau_request(
            parts,
            "Receipts",
            request,
            gateway_pb2.ReceiptsRequest,
            context,
            only="list its receipts",
            users_too=True,
        )
        try:
            mailbox = self._mailbox_or_refuse()
        except NcbsimError as exc:
            refused = [(len(request), None)]
            await parts.refuse(context, "Receipts", bureau, exc, started=started, refused=refused)
        limit = min(parsed.limit or RECEIPTS_PAGE, RECEIPTS_PAGE)
        after = min(parsed.after_sequence, MAX_SEQUENCE)  # nothing is stored above SQLite's max
        try:
            rows = await mailbox.posted(bureau, after, limit + 1)
        except Exception:  # never UNKNOWN: the disk, a closed mailbox, a bug
            refusal = audit_row(
                "Receipts",
                bureau,
                len(request),
                None,
                outcome="refused",
                status=grpc.StatusCode.UNAVAILABLE,
                started=started,
            )
            await parts.audit_refused([refusal])
            log.exception("receipts_not_read", peer=bureau)
            await abort(context, grpc.StatusCode.UNAVAILABLE, "the gateway could not read them")
        reply = gateway_pb2.ReceiptsResponse(more=len(rows) > limit)
        for row in rows[:limit]:
            message = reply.messages.add(
                sequence=row.sequence,
                message_id=row.message_id,
                post_id=row.post_id,
                recipient=row.recipient,
                kind=row.kind,
                state=_MESSAGE_STATE[row.state],
                accepted_at_ms=row.accepted_at_ms,
                expires_at_ms=row.expires_at_ms,
                settled_at_ms=row.settled_at_ms,
                attempts=row.attempts,
                detail=row.detail,
            )
            if row.receipt is not None:
                message.receipt.CopyFrom(messages_pb2.SignedReceipt.FromString(row.receipt))
        return reply
