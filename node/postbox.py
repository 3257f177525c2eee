"""Bureau.Deliver: open the one-way envelopes the gateway stored for this bureau, process
each exactly once, and answer each with a signed receipt.

The gateway delivers at least once: after a crash on either side, or a lost reply, the
same envelope comes again. The node makes processing effectively exactly once. Each
envelope is looked up by ``(sender, message_id)`` in the inbox (ncbsim.node.inbox) and, if new,
processed and recorded (messages row, processed row, receipt) in one transaction; a
repeat is answered DUPLICATE with the receipt signed the first time, and processed no
more.

A call is handled in two phases. First, with awaits: the headers are read and every
sender's directory entry is made sure of (fetched from the gateway for a sender not met
yet, as Bureau.Handle does); at GS, a batch holding a notice request also reloads the
whole directory, whose bureaus a published notice goes to. If the gateway cannot be
asked, the batch stops before the envelope that needed it: the node answers the
results so far and the gateway delivers the rest again later. Second, with no await:
every envelope is processed inside one inbox transaction, committed once (one fsync per
batch), and only then are the results returned. Nothing else runs on the loop during
that second phase, so two overlapping calls cannot both process one envelope.

Per kind: a diffusion or a case message is stored; a notice (from GS only) is applied
to the bureau's notices and records (ncbsim.node.notices); a notice request (only GS takes
them) is reviewed at once and GS's decision, with its sealed copies, commits in the same
transaction. Results: PROCESSED with a receipt, DUPLICATE with the first receipt, or
REJECTED with a coarse reason that the node also audits: ``undecodable``,
``wrong_recipient``, ``unverified``, ``expired``, ``revoked``, ``replay`` (a different
envelope under a message id this sender spent), ``not_gs`` (a notice from a bureau
other than GS, or a notice request to one), ``unprocessable`` (content that opened but
raised while being processed: an EnvelopeError, ValueError or DecodeError; failures of
I/O, such as ``sqlite3.OperationalError``, stop the batch instead, to be retried). One
node audit row per envelope; ids, parties, kinds and sizes only, never content.

A copy addressed to one of this bureau's users (``NG/x``, docs/users.md) is sealed to
the user, not to the node: the node checks it against the user's verified entry (sender's
signature, validity, sealed to the user's current key; else REJECTED as above, or
``no_user`` for a user its directory does not hold, unknown or revoked) and the user's
``receive_kinds`` (else REJECTED ``rights``), then keeps it unopened in the inbox's
``user_mail`` and signs the receipt as the bureau; ``ncbsim inbox --as NG/x`` opens it.

A sender's entry that is missing, or does not name the envelope's signing key, even
after asking the gateway, stops the batch too (the directory may be behind, or Peers
in its back-off after a miss): the gateway delivers again until the TTL.

Limit: a copy sealed to an encryption key this bureau no longer holds, because it
rotated its keys and the grace period (``ncbsim pki rotate --grace``, 1 h by default)
ended before the copy was delivered, cannot be opened: it is REJECTED ``unverified``,
and the sender learns so from the gateway. Copies may wait up to their TTL (24 h by
default) at the gateway, so rotate with a grace at least as long as the longest queue
a bureau expects to drain.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog
from google.protobuf.message import DecodeError

from ncbsim import envelope, messages, receipts, transport
from ncbsim.auditlog import AuditWriteError, ChainedLog
from ncbsim.clock import Clock
from ncbsim.countries import GENERAL_SECRETARIAT
from ncbsim.errors import DirectoryError, EnvelopeError, NcbsimError
from ncbsim.eventbus import EventBus
from ncbsim.identity import Identity
from ncbsim.node import notices, observed
from ncbsim.node.audit import NodeAuditRecord, audit_record
from ncbsim.node.inbox import Inbox
from ncbsim.node.outbox import OutboxPoster
from ncbsim.peers import Peers
from ncbsim.pki import GATEWAY_NAME
from ncbsim.principal import bureau_of, is_user
from ncbsim.serving import abort
from ncbsim.v2 import bureau_pb2, messages_pb2

__all__ = ["Postbox"]

log = structlog.get_logger()

PROCESSED = bureau_pb2.DELIVER_STATUS_PROCESSED
DUPLICATE = bureau_pb2.DELIVER_STATUS_DUPLICATE
REJECTED = bureau_pb2.DELIVER_STATUS_REJECTED
_OUTCOMES = {PROCESSED: "processed", DUPLICATE: "duplicate", REJECTED: "rejected"}


@dataclass(slots=True)
class _Item:
    """One envelope of the batch: its bytes and its header (None: it did not parse)."""

    sealed: envelope.Envelope
    header: envelope.Header | None


@dataclass(slots=True)
class _Outcome:
    item: _Item
    result: bureau_pb2.DeliverResult
    reason: str = ""
    decided: int = 0
    """Notice copies GS queued in its outbox while processing this envelope."""


class Postbox:
    """Processes Bureau.Deliver calls for one bureau (see the module docstring).

    ``records_path`` is the bureau's record database, which published notices write
    to. ``outbox``, at GS, is woken when a decision queued Notice copies.
    """

    def __init__(
        self,
        identity: Identity,
        peers: Peers,
        inbox: Inbox,
        audit: ChainedLog,
        *,
        records_path: Path,
        clock: Clock | None = None,
        clock_skew_ms: int = envelope.CLOCK_SKEW_MS,
        outbox: OutboxPoster | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self._bus = bus if bus is not None else EventBus(identity.bureau)
        self._identity = identity
        self._peers = peers
        self._inbox = inbox
        self._audit = audit
        self._records_path = records_path
        self._clock = clock or Clock()
        self._clock_skew_ms = clock_skew_ms
        self._outbox = outbox

    def use_identity(self, identity: Identity) -> None:
        """Open and sign receipts under ``identity`` from now on (after a key rotation)."""
        self._identity = identity

    @property
    def _is_gs(self) -> bool:
        return self._identity.bureau == GENERAL_SECRETARIAT

    async def deliver(
        self, raw: bytes, context: grpc.aio.ServicerContext
    ) -> bureau_pb2.DeliverResponse:
        """Handle one Deliver call: the request as raw bytes, one result per envelope
        processed, in order (fewer than sent if the batch had to stop)."""
        started = time.perf_counter()
        if not transport.peer_is(context, GATEWAY_NAME):
            log.warning("refused_caller", rpc="Deliver", reason="not the gateway")
            await self._audit_call(
                len(raw), "not_gateway", grpc.StatusCode.PERMISSION_DENIED, started
            )
            await abort(context, grpc.StatusCode.PERMISSION_DENIED, "only the gateway may call")
        try:
            request = bureau_pb2.DeliverRequest.FromString(raw)
        except DecodeError:
            await self._audit_call(
                len(raw), "undecodable", grpc.StatusCode.INVALID_ARGUMENT, started
            )
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "request rejected")
        items = await self._prepare(request)
        try:
            outcomes = self._process_all(items)
        except (sqlite3.Error, NcbsimError, OSError):
            log.exception("deliver_failed", envelopes=len(items))
            await self._audit_call(len(raw), "internal", grpc.StatusCode.INTERNAL, started)
            await abort(context, grpc.StatusCode.INTERNAL, "internal error")
        elapsed = round((time.perf_counter() - started) * 1000, 3)
        if self._outbox is not None and any(o.decided for o in outcomes):
            self._outbox.wake()
        rows = [_audit_row(outcome, elapsed) for outcome in outcomes]
        try:  # no receipt leaves before its row is in the audit
            await self._audit.commit(*rows)
        except AuditWriteError as exc:
            # Processed but unaudited: the gateway keeps the copies and delivers them
            # again, and they come back as duplicates, audited then.
            log.error("audit_not_written", rpc="Deliver", error=str(exc))
            await abort(context, grpc.StatusCode.INTERNAL, "internal error")
        for row in rows:
            observed.delivered(self._bus, row)
        if len(outcomes) < len(request.envelopes):
            log.info("deliver_stopped", taken=len(outcomes), sent=len(request.envelopes))
        return bureau_pb2.DeliverResponse(results=[o.result for o in outcomes])

    # ------------------------------------------------------------ phase 1: senders

    async def _prepare(self, request: bureau_pb2.DeliverRequest) -> list[_Item]:
        """Headers parsed and senders known, up to the first envelope whose sender's entry
        could not be asked for (the gateway is unreachable)."""
        items: list[_Item] = []
        for sealed in request.envelopes:
            try:
                header: envelope.Header | None = envelope.unverified_header(sealed)
            except EnvelopeError:
                header = None
            mine = header is not None and bureau_of(header.recipient) == self._identity.bureau
            if mine and header is not None and not await self._know_parties(header):
                break
            items.append(_Item(sealed, header))
        if self._is_gs and any(
            i.header is not None and i.header.kind == envelope.NOTICE_REQUEST for i in items
        ):
            try:
                await self._peers.load_all()
            except (grpc.aio.AioRpcError, TimeoutError) as exc:
                log.warning("directory_unavailable", error=str(exc))
                first = next(
                    n
                    for n, i in enumerate(items)
                    if i.header is not None and i.header.kind == envelope.NOTICE_REQUEST
                )
                del items[first:]
        return items

    async def _know_parties(self, header: envelope.Header) -> bool:
        """:meth:`_know_sender`, and for a copy to one of our users, that user's entry
        (one the gateway does not have is decided in phase 2: ``no_user``)."""
        user = header.recipient
        if is_user(user) and user not in self._peers.directory:
            try:
                await self._peers.resolve([user])
            except DirectoryError:
                pass
            except (grpc.aio.AioRpcError, TimeoutError) as exc:
                log.warning("directory_unavailable", recipient=user, error=str(exc))
                return False
        return await self._know_sender(header)

    async def _know_sender(self, header: envelope.Header) -> bool:
        """Hold a sender's entry that names the envelope's signing key; False (stop the
        batch) if the gateway could not be asked, or if after asking the entry is still
        missing or names another key: a directory behind, or Peers' back-off after a
        miss, is transient, so the gateway delivers it again (until its TTL) rather than
        the node rejecting it for good. A revoked key is not waited for: it is rejected.
        """
        if self._signs(header):
            return True
        try:
            await self._peers.resolve(
                [header.sender], refresh=header.sender in self._peers.directory
            )
        except DirectoryError:
            pass  # no valid entry yet: decided below
        except (grpc.aio.AioRpcError, TimeoutError) as exc:
            log.warning(
                "directory_unavailable",
                sender=header.sender,
                message_id=header.message_hex,
                error=str(exc),
            )
            return False
        if self._signs(header) or self._peers.directory.revoked.key_revoked(header.sender_key_id):
            return True
        log.warning(
            "sender_key_unknown",
            sender=header.sender,
            message_id=header.message_hex,
            sender_key_id=header.sender_key_id.hex(),
        )
        return False

    def _signs(self, header: envelope.Header) -> bool:
        """Whether the held entry of the sender names the envelope's signing key."""
        directory = self._peers.directory
        return header.sender in directory and directory.get(header.sender).signs_with(
            header.sender_key_id
        )

    # ------------------------------------------------------------ phase 2: processing

    def _process_all(self, items: list[_Item]) -> list[_Outcome]:
        """Process ``items`` in one inbox transaction (no await: nothing interleaves)."""
        outcomes: list[_Outcome] = []
        now_ms = self._clock.now_ms()
        with self._inbox.transaction():
            for item in items:
                try:
                    with self._inbox.savepoint():
                        outcomes.append(self._process(item, now_ms))
                except (EnvelopeError, ValueError, DecodeError) as exc:
                    # The content itself cannot be processed: it would fail again on every
                    # delivery and block this sender's later copies until the TTL. (The
                    # error's type only: its text may quote the content.)
                    header = item.header
                    log.warning(
                        "deliver_envelope_unprocessable",
                        message_id=header.message_hex if header else "",
                        sender=header.sender if header else "",
                        error=type(exc).__name__,
                    )
                    outcomes.append(self._rejected(item, "unprocessable"))
                except Exception:
                    # I/O (sqlite3.OperationalError, a full disk) or a bug: stop here, keep
                    # what is done; the gateway delivers this envelope and the rest again.
                    header = item.header
                    log.exception(
                        "deliver_envelope_failed",
                        message_id=header.message_hex if header else "",
                        sender=header.sender if header else "",
                    )
                    break
        return outcomes

    def _rejected(self, item: _Item, reason: str) -> _Outcome:
        message_id = item.header.message_id if item.header is not None else b""
        if item.header is not None and reason != "undecodable":
            log.warning(
                "envelope_rejected",
                sender=item.header.sender,
                reason=reason,
                message_id=item.header.message_hex,
                correlation_id=item.header.correlation_hex,
            )
        result = bureau_pb2.DeliverResult(message_id=message_id, status=REJECTED, detail=reason)
        return _Outcome(item, result, reason)

    def _process(self, item: _Item, now_ms: int) -> _Outcome:  # noqa: PLR0911 - one per outcome
        header = item.header
        if header is None:
            return self._rejected(item, "undecodable")
        to_user = header.recipient != self._identity.bureau
        if to_user and not (
            is_user(header.recipient) and bureau_of(header.recipient) == self._identity.bureau
        ):
            return self._rejected(item, "wrong_recipient")
        digest = envelope.envelope_digest(item.sealed)
        stored = self._inbox.stored(header.sender, header.message_id)
        if stored is not None:
            if stored.envelope_sha256 != digest:
                return self._rejected(item, "replay")
            # The very bytes that verified and were processed before: no need to open again.
            result = bureau_pb2.DeliverResult(
                message_id=header.message_id, status=DUPLICATE, receipt=stored.receipt
            )
            return _Outcome(item, result)
        if to_user:
            return self._keep_for_user(item, header, digest, now_ms)
        try:
            opened = envelope.open_message(
                item.sealed,
                recipient=self._identity,
                senders=self._peers.get,
                now_ms=now_ms,
                header=header,
                clock_skew_ms=self._clock_skew_ms,
            )
        except EnvelopeError:
            return self._unopened(item, header, now_ms)
        header = opened.header
        try:
            body = messages.unpack(header.kind, opened.plaintext)
        except EnvelopeError:
            return self._rejected(item, "undecodable")
        if header.kind == envelope.NOTICE and header.sender != GENERAL_SECRETARIAT:
            return self._rejected(item, "not_gs")
        if header.kind == envelope.NOTICE_REQUEST and not self._is_gs:
            return self._rejected(item, "not_gs")
        decided = 0
        if isinstance(body, messages_pb2.Notice):
            notices.apply_notice(self._inbox, self._records_path, body, now_ms=now_ms)
        elif isinstance(body, messages_pb2.NoticeRequest):
            decided = self._decide(header, body, now_ms)
        receipt = receipts.sign(self._identity, header, digest, now_ms)
        self._inbox.add(
            sender=header.sender,
            message_id=header.message_id,
            post_id=header.correlation_id,
            kind=header.kind,
            issued_at_ms=header.issued_at_ms,
            processed_at_ms=now_ms,
            body=body.SerializeToString(),
            envelope_sha256=digest,
            receipt=receipt,
        )
        result = bureau_pb2.DeliverResult(
            message_id=header.message_id, status=PROCESSED, receipt=receipt
        )
        return _Outcome(item, result, decided=decided)

    def _unopened(self, item: _Item, header: envelope.Header, now_ms: int) -> _Outcome:
        """The rejection of a copy that did not verify: ``revoked``, ``expired`` or
        ``unverified``."""
        if self._peers.directory.revoked.key_revoked(header.sender_key_id):
            return self._rejected(item, "revoked")
        return self._rejected(item, "expired" if header.expires_at_ms <= now_ms else "unverified")

    def _keep_for_user(
        self, item: _Item, header: envelope.Header, digest: bytes, now_ms: int
    ) -> _Outcome:
        """Verify a copy to one of our users and keep it unopened (module docstring)."""
        try:
            user = self._peers.get(header.recipient)
        except DirectoryError:
            return self._rejected(item, "no_user")
        try:
            header = envelope.check_message(
                item.sealed,
                recipient=user.bureau,
                recipient_key_id=user.encryption_key_id,
                senders=self._peers.get,
                now_ms=now_ms,
                header=header,
                clock_skew_ms=self._clock_skew_ms,
            )
        except EnvelopeError:
            return self._unopened(item, header, now_ms)
        if user.rights is None or not user.rights.may_receive(header.kind):
            return self._rejected(item, "rights")
        receipt = receipts.sign(self._identity, header, digest, now_ms)
        self._inbox.add_user_mail(
            header.recipient,
            header.sender,
            header.message_id,
            header.kind,
            now_ms,
            item.sealed.SerializeToString(),
            digest,
            receipt,
        )
        result = bureau_pb2.DeliverResult(
            message_id=header.message_id, status=PROCESSED, receipt=receipt
        )
        return _Outcome(item, result)

    def _decide(
        self, header: envelope.Header, request: messages_pb2.NoticeRequest, now_ms: int
    ) -> int:
        """GS: review a notice request and queue the Notice copies; how many were queued."""
        directory = self._peers.directory
        decision = notices.review(
            self._inbox,
            header.sender,
            request,
            now_ms=now_ms,
            requested_at_ms=header.issued_at_ms,
            bureaus=notices.notice_recipients(directory),
        )
        return notices.record_decision(
            self._inbox,
            decision,
            records_path=self._records_path,
            sender=self._identity,
            directory=directory,
            now_ms=now_ms,
        )

    # ------------------------------------------------------------ audit

    async def _audit_call(
        self, size: int, reason: str, status: grpc.StatusCode, started: float
    ) -> None:
        """Commit the row of a refused call; the refusal goes out even if it cannot be."""
        row = audit_record(
            None,
            request_bytes=size,
            response_bytes=0,
            outcome="refused",
            reason=reason,
            status=status,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        try:
            await self._audit.commit(row)
        except AuditWriteError as exc:
            log.error("audit_not_written", rpc="Deliver", reason=reason, error=str(exc))
        observed.delivered(self._bus, row)


def _audit_row(outcome: _Outcome, elapsed_ms: float) -> NodeAuditRecord:
    """The audit row of one processed, duplicate or rejected copy."""
    receipt = outcome.result.receipt
    return audit_record(
        outcome.item.header,
        request_bytes=outcome.item.sealed.ByteSize(),
        response_bytes=receipt.ByteSize() if outcome.result.HasField("receipt") else 0,
        outcome=_OUTCOMES[outcome.result.status],
        reason=outcome.reason,
        status=grpc.StatusCode.OK,
        elapsed_ms=elapsed_ms,
    )
