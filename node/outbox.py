"""GS's outbox poster: posts the sealed Notice copies GS stored (ncbsim.node.notices) to the
gateway, the same bytes on every retry, until the gateway accepted each one.

A Post carries at most :data:`~ncbsim.protocol.MAX_ENVELOPES_PER_CALL` envelopes and
:data:`~ncbsim.protocol.MAX_BATCH_BYTES` of them. A recipient whose queue is full, or
whose copy the gateway refuses for a reason that may pass, is held back alone (its order
kept) while the others are posted. Only an expired copy, or one refused for its own size,
is dropped. See :class:`OutboxPoster`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import grpc
import structlog
from google.protobuf.message import DecodeError

from ncbsim import envelope
from ncbsim.clock import Clock
from ncbsim.errors import RETRY_AFTER_KEY, EnvelopeError, is_queue_full
from ncbsim.node.inbox import Inbox, OutboxRow
from ncbsim.protocol import MAX_BATCH_BYTES, MAX_ENVELOPES_PER_CALL
from ncbsim.v2 import gateway_pb2, gateway_pb2_grpc

__all__ = ["OutboxPoster"]

log = structlog.get_logger()


_PER_ENVELOPE = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
"""Post refusals that may concern one envelope of the batch (a recipient a gateway's
directory does not know yet, a clock apart): the batch is posted again one envelope at
a time, and the recipient of an envelope refused alone is held back and retried."""
_DONE = frozenset({gateway_pb2.POST_STATUS_ACCEPTED, gateway_pb2.POST_STATUS_DUPLICATE})


def _refusal_kind(exc: grpc.aio.AioRpcError) -> str:
    """How the poster treats a failed Post: ``size`` (RESOURCE_EXHAUSTED with no
    retry-after: an envelope too large, or more envelopes in one call than GS's burst;
    split the batch, and drop an envelope refused so alone), ``full`` (every recipient's
    queue is full: hold them back), ``envelope`` (maybe one envelope's fault: split the
    batch, hold back the recipient of one refused alone), or ``retry`` (the gateway
    cannot take anything now, or rate-limits GS: back off)."""
    code = exc.code()
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        trailers = exc.trailing_metadata() or ()
        if not any(key == RETRY_AFTER_KEY for key, _ in trailers):
            return "size"
        return "full" if is_queue_full(exc) else "retry"
    return "envelope" if code in _PER_ENVELOPE else "retry"


def _by_bytes(rows: Sequence[OutboxRow], max_bytes: int) -> list[OutboxRow]:
    """The longest head of ``rows`` within ``max_bytes`` of envelopes (at least one)."""
    total = 0
    for n, row in enumerate(rows):
        total += len(row.envelope)
        if total > max_bytes and n > 0:
            return list(rows[:n])
    return list(rows)


def _postable(row: OutboxRow) -> bool:
    """Whether the row holds a Notice envelope (GS seals nothing else)."""
    try:
        header = envelope.unverified_header(envelope.Envelope.FromString(row.envelope))
    except (EnvelopeError, DecodeError):
        return False
    return header.kind == envelope.NOTICE and header.message_id == row.message_id


class OutboxPoster:
    """Posts GS's outbox to the gateway until every envelope was accepted.

    :meth:`run` posts what is pending at start (a GS that crashed after deciding), then
    waits for :meth:`wake`. A Post holds at most ``batch`` envelopes and
    ``max_batch_bytes`` of them. While the gateway is down or rate-limits GS, it tries
    again after ``retry_s``, doubling up to ``max_retry_s``; :meth:`run` never stops on an
    error (it logs it and backs off), only when cancelled.

    A recipient whose queue is full (QUEUE_FULL), or whose envelope the gateway refuses
    alone for a reason that may pass (NOT_FOUND: its directory is behind;
    INVALID_ARGUMENT, ...), is held back: its later envelopes wait too, to keep its
    order, while the other recipients' envelopes are posted; it is tried again with the
    back-off, until its envelopes expire. An envelope is dropped (logged) only when it
    expired in the outbox, when the gateway refuses it for its size (RESOURCE_EXHAUSTED
    without a retry-after), or when it is not a Notice envelope. Logs ids and counts,
    never content.
    """

    def __init__(
        self,
        inbox: Inbox,
        gateway: gateway_pb2_grpc.GatewayServiceStub,
        *,
        clock: Clock | None = None,
        batch: int = MAX_ENVELOPES_PER_CALL,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        retry_s: float = 0.1,
        max_retry_s: float = 2.0,
        timeout_s: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._inbox = inbox
        self._gateway = gateway
        self._clock = clock or Clock()
        self._batch = batch
        self._max_batch_bytes = max_batch_bytes
        self._retry_s = retry_s
        self._max_retry_s = max_retry_s
        self._timeout_s = timeout_s
        self._sleep = sleep
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New envelopes are in the outbox: post them now."""
        self._wake.set()

    async def run(self) -> None:
        """Post until cancelled; any error is logged and retried after a back-off."""
        delay = self._retry_s
        failing = False
        while True:
            self._wake.clear()
            try:
                empty = await self.post_pending()
            except (grpc.aio.AioRpcError, TimeoutError) as exc:
                if not failing:
                    code = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else "TIMEOUT"
                    log.warning("outbox_post_failed", code=code)
                failing = True
                await self._sleep(delay)
                delay = min(delay * 2, self._max_retry_s)
                continue
            except Exception:
                # The inbox failing (a full disk) or a bug: keep the task alive, try again.
                log.exception("outbox_failed")
                failing = True
                await self._sleep(delay)
                delay = min(delay * 2, self._max_retry_s)
                continue
            if failing:
                log.info("outbox_posting_again")
            failing = False
            if empty:
                delay = self._retry_s
                await self._wake.wait()
            else:
                await self._sleep(delay)
                delay = min(delay * 2, self._max_retry_s)

    async def post_pending(self) -> bool:
        """Post the pending envelopes once, a batch at a time; True if the outbox is empty.

        Recipients held back (see the class docstring) are left for a later call, which
        returns False meanwhile. Raises grpc.aio.AioRpcError (retryable) or TimeoutError
        if the gateway cannot take anything now; what it took before that is out of the
        outbox.
        """
        held: set[str] = set()
        while True:
            rows = self._inbox.outbox(self._batch, skip=held)
            if not rows:
                if held:
                    log.info("outbox_held", recipients=sorted(held))
                return not held
            now_ms = self._clock.now_ms()
            expired = [r.id for r in rows if r.expires_at_ms <= now_ms]
            if expired:
                log.warning("outbox_expired", copies=len(expired))
            bad = [r for r in rows if r.expires_at_ms > now_ms and not _postable(r)]
            for row in bad:
                log.error("outbox_unpostable", recipient=row.recipient, row=row.id)
            self._inbox.remove_outbox(expired + [r.id for r in bad])
            live = [r for r in rows if r.expires_at_ms > now_ms and r not in bad]
            if not live:
                continue
            batch = _by_bytes(live, self._max_batch_bytes)
            done, stuck = await self._post(batch)
            self._inbox.remove_outbox(done)
            held |= stuck
            taken = set(done)
            if any(r.id not in taken and r.recipient not in held for r in batch):
                return False  # results missing from the reply: try again later

    async def _post(self, rows: Sequence[OutboxRow]) -> tuple[list[int], set[str]]:
        """Post ``rows``: the ids of those the gateway took (or refused for good), and the
        recipients to hold back."""
        request = gateway_pb2.PostRequest(
            envelopes=[envelope.Envelope.FromString(r.envelope) for r in rows]
        )
        try:
            reply = await self._gateway.Post(request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            kind = _refusal_kind(exc)
            if kind == "retry":
                raise
            if kind == "full":
                recipients = {r.recipient for r in rows}
                log.info("outbox_queue_full", recipients=sorted(recipients))
                return [], recipients
            if len(rows) > 1:
                done: list[int] = []
                held: set[str] = set()
                for row in rows:
                    if row.recipient not in held:
                        taken, stuck = await self._post([row])
                        done.extend(taken)
                        held |= stuck
                return done, held
            row = rows[0]
            if kind == "size":
                log.warning(
                    "outbox_refused",
                    code=exc.code().name,
                    recipient=row.recipient,
                    message_id=row.message_id.hex(),
                    size=len(row.envelope),
                )
                return [row.id], set()
            log.warning(
                "outbox_held",
                code=exc.code().name,
                recipient=row.recipient,
                message_id=row.message_id.hex(),
            )
            return [], {row.recipient}
        done = []
        full: set[str] = set()
        for row, result in zip(rows, reply.results, strict=False):
            if result.message_id != row.message_id:
                continue
            if result.status in _DONE:
                done.append(row.id)
            elif result.status == gateway_pb2.POST_STATUS_QUEUE_FULL:
                full.add(row.recipient)
        if full:
            log.info("outbox_queue_full", recipients=sorted(full))
        log.debug("outbox_posted", copies=len(rows), accepted=len(done))
        return done, full
