"""Deliver stored one-way envelopes: one worker per recipient, in order, at least once.

A worker runs while its recipient has queued copies. Only once the recipient has a
route (its node registered) does it read the store: it takes up to ``batch`` of the
oldest queued, unexpired copies (by sequence, so in order per sender and recipient), at
most :data:`~ncbsim.protocol.MAX_BATCH_BYTES` of envelopes (at least one), sends them in
one ``Bureau.Deliver`` over the router's channel and applies the results in order:

- ``PROCESSED`` or ``DUPLICATE`` with a receipt whose fields match the copy (message id,
  post id, sender, recipient, envelope digest): delivered; the receipt is kept and the
  envelope dropped;
- ``REJECTED``: rejected, with the node's coarse reason (the envelope never will open),
  or expired if that reason is ``expired`` (the node's clock found it past its TTL);
- a missing result (the node stopped part way) or a receipt that does not match: the
  copy stays queued and is sent again later; the node's dedup makes that harmless. The
  sender of the first such copy is held back for a while (0.1 s doubling to 2 s) and the
  worker goes on with the other senders' copies: order is kept per sender and
  recipient, so one sender's copy that the node cannot check yet (say, under a signing
  key id no entry names) blocks only that sender, not the recipient's whole queue.

A call the node refuses as too large (RESOURCE_EXHAUSTED) is tried again at once with
half as many copies (and the worker keeps the smaller batch while it runs). A failed
call (node down, deadline) or no route backs off from 0.1 s, doubling to 2 s; a
Register of that bureau (:meth:`Deliverer.kick`) ends the wait at once. A sweeper
marks copies past their TTL expired every second and restarts any worker that should
run. Each settled copy gets one gateway audit row (rpc ``Deliver``). Every
:data:`PRUNE_INTERVAL_MS` the sweeper also deletes the rows of copies settled more than
``retention_ms`` ago (:meth:`Mailbox.prune`), so the store does not grow without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
import structlog

from ncbsim import envelope, receipts, tracing
from ncbsim.errors import EnvelopeError, RoutingError
from ncbsim.eventbus import EventBus
from ncbsim.gateway import observed
from ncbsim.gateway.audit import AuditLog, AuditRecord
from ncbsim.gateway.copies import (
    DELIVERED,
    EXPIRED,
    QUEUED,
    REJECTED,
    Due,
    Outcome,
    Settled,
)
from ncbsim.gateway.mailbox import Mailbox
from ncbsim.gateway.router import Router
from ncbsim.gateway.writer import run_to_end
from ncbsim.metrics import GatewayMetrics
from ncbsim.principal import bureau_of, is_user
from ncbsim.protocol import MAX_BATCH_BYTES
from ncbsim.v2 import bureau_pb2

log = structlog.get_logger()

BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 2.0
SWEEP_INTERVAL_S = 1.0
PRUNE_INTERVAL_MS = 60_000
"""How often the sweeper deletes settled rows past their retention."""
DELIVER_TIMEOUT_S = 10.0
MAX_DETAIL = 200
"""A rejection reason from a node is cut to this many characters."""

_STATUS = {DELIVERED: "OK", REJECTED: "OK", EXPIRED: "DEADLINE_EXCEEDED"}
"""The audit row's status: the Deliver call's (OK), or DEADLINE_EXCEEDED for a TTL."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


_DONE = "done"
"""Every copy of the batch settled."""
_RETRY = "retry"
"""Nothing could be delivered (no route, a failed call): back off."""
_TOO_LARGE = "too_large"
"""The node refused the call as too large: send fewer copies at once."""
_STUCK = "stuck"
"""The node took the batch up to one copy and stopped there: hold back that copy's sender
and go on with the others."""


@dataclass(slots=True)
class _Hold:
    """A sender whose oldest copy the node would not take yet."""

    until: float
    """Loop time until which the sender's copies are left out of batches."""
    delay: float
    """How long the last hold was; doubled by the next one, up to the back-off maximum."""


@dataclass(slots=True)
class _Worker:
    task: asyncio.Task[None] | None = None
    pending: bool = False
    """New copies were stored since the worker last looked: do not stop yet."""
    kick: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by a Register: end the back-off at once."""
    held: dict[str, _Hold] = field(default_factory=dict)
    """Senders held back: their copies wait, in order, while the other senders' go on."""


class Deliverer:
    """Delivery workers for every recipient with queued copies, and the expiry sweeper."""

    def __init__(
        self,
        mailbox: Mailbox,
        router: Router,
        audit: AuditLog,
        *,
        batch: int = 64,
        timeout_s: float = DELIVER_TIMEOUT_S,
        backoff_min_s: float = BACKOFF_MIN_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        sweep_interval_s: float = SWEEP_INTERVAL_S,
        retention_ms: int,
        metrics: GatewayMetrics | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self._metrics = metrics or GatewayMetrics()
        self._mailbox = mailbox
        self._bus = bus if bus is not None else EventBus("gateway")
        self._router = router
        self._audit = audit
        self._batch = batch
        self._timeout_s = timeout_s
        self._backoff = (backoff_min_s, backoff_max_s)
        self._sweep_interval_s = sweep_interval_s
        self._retention_ms = retention_ms
        self._pruned_at_ms: int | None = None
        self._workers: dict[str, _Worker] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        """Start a worker for every recipient with queued copies, and the sweeper."""
        for bureau in self._mailbox.recipients():
            self.wake(bureau)
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="mailbox-sweeper")

    async def stop(self) -> None:
        """Stop every worker and the sweeper; copies in flight stay queued."""
        self._stopping = True
        tasks = [w.task for w in self._workers.values() if w.task is not None]
        if self._sweeper is not None:
            tasks.append(self._sweeper)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()

    def wake(self, bureau: str) -> None:
        """New copies for ``bureau`` were stored: make sure its worker runs."""
        if self._stopping:
            return
        worker = self._workers.get(bureau)
        if worker is not None:
            worker.pending = True
            return
        worker = self._workers[bureau] = _Worker(pending=True)
        worker.task = asyncio.create_task(self._work(bureau, worker), name=f"deliver-{bureau}")

    def kick(self, bureau: str) -> None:
        """``bureau`` (re)registered its node: deliver now if it has queued copies, and
        what waits for its users (queued under their principals ``FR/x``)."""
        worker = self._workers.get(bureau)
        if worker is not None:
            worker.kick.set()
        elif self._mailbox.queued(bureau) > 0:
            self.wake(bureau)
        for recipient, other in self._workers.items():
            if is_user(recipient) and bureau_of(recipient) == bureau:
                other.kick.set()

    def running(self) -> list[str]:
        """Recipients with a worker, sorted (for tests and tools)."""
        return sorted(self._workers)

    # ----------------------------------------------------------------- worker

    async def _work(self, bureau: str, worker: _Worker) -> None:
        delay = 0.0
        limit = self._batch
        low, high = self._backoff
        try:
            while True:
                worker.pending = False
                worker.kick.clear()  # a Register from here on ends the coming back-off
                result = _RETRY
                due: list[Due] = []
                wait: float | None = None  # until a held sender is due; None: back off
                if self._router.has_route(bureau):  # offline: do not even read the store
                    due, wait = await self._next(bureau, worker, limit)
                    if due:
                        result = await self._deliver(bureau, due, worker)
                    elif worker.pending:
                        continue
                    elif wait is None:
                        return  # nothing to do; a later wake starts a new worker
                if result in {_DONE, _STUCK}:
                    delay = 0.0
                    continue
                if result == _TOO_LARGE and len(due) > 1:
                    limit = max(len(due) // 2, 1)  # for as long as this worker runs
                    continue
                if wait is None:
                    delay = wait = min(max(delay * 2, low), high)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(worker.kick.wait(), wait)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug: log it; the sweeper starts the worker again
            log.exception("delivery_worker_failed", recipient=bureau)
        finally:
            if self._workers.get(bureau) is worker:
                del self._workers[bureau]

    async def _next(
        self, bureau: str, worker: _Worker, limit: int
    ) -> tuple[list[Due], float | None]:
        """The next batch, leaving out held senders; with none, how long until a hold
        ends (None when no sender is held: the queue is empty)."""
        now = asyncio.get_running_loop().time()
        skip = [s for s, hold in worker.held.items() if hold.until > now]
        due = await self._mailbox.due(
            bureau, limit, _now_ms(), max_bytes=MAX_BATCH_BYTES, skip=skip
        )
        if due or not skip:
            return due, None
        return due, min(worker.held[s].until for s in skip) - now

    async def _deliver(self, bureau: str, due: Sequence[Due], worker: _Worker) -> str:
        """Send ``due`` to ``bureau`` and record what came back: _DONE, _RETRY, _TOO_LARGE
        or _STUCK (the sender of the first copy left queued is then held back)."""
        started = time.perf_counter()
        try:
            route = self._router.get(bureau)
        except RoutingError:
            log.debug("delivery_waiting_for_route", recipient=bureau, queued=len(due))
            return _RETRY
        request = bureau_pb2.DeliverRequest(
            envelopes=[envelope.Envelope.FromString(d.data) for d in due]
        )
        try:
            # A trace of its own (a batch carries many senders' posts), parent of the call.
            with tracing.span(
                "ncbsim.gateway.deliver", party="gateway", root=True, envelopes=len(due)
            ):
                reply = await route.stub.Deliver(request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            log.info(
                "delivery_failed",
                recipient=bureau,
                envelopes=len(due),
                status=exc.code().name,
            )
            await self._mailbox.settle([Outcome(d.sequence, QUEUED) for d in due])
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                return _TOO_LARGE
            return _RETRY
        outcomes = self._outcomes(due, reply.results)
        await run_to_end(self._settle(outcomes, started))
        kept = [copy for copy, o in zip(due, outcomes, strict=True) if o.state == QUEUED]
        for copy, outcome in zip(due, outcomes, strict=True):
            if outcome.state != QUEUED:  # its sender's copies go through: no longer held
                worker.held.pop(copy.sender, None)
        if not kept:
            return _DONE
        # Order is kept per sender and recipient, not per recipient: hold back only the
        # sender of the copy the node stopped at, so it cannot block everyone else's.
        stuck = kept[0].sender
        hold = worker.held.get(stuck)
        delay = min(max(hold.delay * 2 if hold else 0.0, self._backoff[0]), self._backoff[1])
        worker.held[stuck] = _Hold(asyncio.get_running_loop().time() + delay, delay)
        log.info(
            "delivery_incomplete",
            recipient=bureau,
            envelopes=len(due),
            results=len(reply.results),
            kept=len(kept),
            held_sender=stuck,
            hold_s=delay,
        )
        return _STUCK

    async def _settle(self, outcomes: Sequence[Outcome], started: float) -> None:
        """Record the outcomes, then audit each copy they settled."""
        settled = await self._mailbox.settle(outcomes)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        for row in settled:
            self._record(row, elapsed_ms)

    @staticmethod
    def _outcomes(due: Sequence[Due], results: Sequence[bureau_pb2.DeliverResult]) -> list[Outcome]:
        """One outcome per copy, in order; copies after a result that does not fit stay."""
        outcomes: list[Outcome] = []
        trusted = True
        for i, copy in enumerate(due):
            result = results[i] if trusted and i < len(results) else None
            if result is None or result.message_id != copy.message_id:
                trusted = False  # out of step: nothing after this is believed
                outcomes.append(Outcome(copy.sequence, QUEUED))
            elif result.status == bureau_pb2.DELIVER_STATUS_REJECTED:
                detail = result.detail[:MAX_DETAIL] or "rejected"
                # The node found it past its TTL (their clocks differ): the sender is told
                # it expired, as if the sweeper had found it first.
                state = EXPIRED if detail == EXPIRED else REJECTED
                outcomes.append(Outcome(copy.sequence, state, detail=detail))
            elif result.status in (
                bureau_pb2.DELIVER_STATUS_PROCESSED,
                bureau_pb2.DELIVER_STATUS_DUPLICATE,
            ) and _receipt_matches(copy, result.receipt):
                outcomes.append(
                    Outcome(copy.sequence, DELIVERED, receipt=result.receipt.SerializeToString())
                )
            else:
                outcomes.append(Outcome(copy.sequence, QUEUED))
        return outcomes

    # ----------------------------------------------------------------- expiry

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval_s)
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:  # the next sweep tries again
                log.exception("mailbox_sweep_failed")

    async def sweep(self, now_ms: int | None = None) -> list[Settled]:
        """Expire queued copies past their TTL (audited), start any missing worker, and
        delete settled rows past their retention when a prune is due."""
        now = _now_ms() if now_ms is None else now_ms
        expired = []
        if self._mailbox.queued() > 0:
            expired = await run_to_end(self._expire(now))
        if self._pruned_at_ms is None or now - self._pruned_at_ms >= PRUNE_INTERVAL_MS:
            self._pruned_at_ms = now
            pruned = await run_to_end(self._mailbox.prune(now - self._retention_ms, now))
            if pruned:
                log.info("mailbox_pruned", rows=pruned, retention_h=self._retention_ms / 3.6e6)
        for bureau in self._mailbox.recipients():
            if bureau not in self._workers:
                self.wake(bureau)
        return expired

    async def _expire(self, now_ms: int) -> list[Settled]:
        """Expire what is due, then audit each copy."""
        expired = await self._mailbox.expire(now_ms)
        for row in expired:
            self._record(row, 0.0)
        if expired:
            log.info("messages_expired", count=len(expired))
        return expired

    def _record(self, row: Settled, elapsed_ms: float) -> None:
        self._metrics.envelope(envelope.kind_name(row.kind), row.state)
        if row.state == DELIVERED:
            self._metrics.delivered((_now_ms() - row.accepted_at_ms) / 1000)
        observed.settled(self._bus, row)
        self._audit.record(
            AuditRecord(
                _now_ms(),
                "Deliver",
                row.recipient,
                row.message_id.hex(),
                row.post_id.hex(),
                row.sender,
                row.recipient,
                envelope.kind_name(row.kind),
                row.issued_at_ms,
                row.expires_at_ms,
                row.envelope_bytes,
                row.receipt_bytes,
                row.state,
                _STATUS[row.state],
                elapsed_ms,
            )
        )


def _receipt_matches(copy: Due, signed: receipts.SignedReceipt) -> bool:
    """True if the (unverified) receipt names exactly this copy."""
    try:
        receipt = receipts.parse(signed)
    except EnvelopeError:
        return False
    return (
        receipt.message_id == copy.message_id
        and receipt.post_id == copy.post_id
        and receipt.sender == copy.sender
        and receipt.recipient == copy.recipient
        and receipt.envelope_sha256 == copy.sha256
    )
