"""A bureau's mailer: seal one-way posts per recipient, post them durably, list receipts.

A *post* (a diffusion, a notice request, a notice or a case message) is sealed once per
recipient, each copy with its own message id and the post id as correlation id, and
handed to the gateway's ``Post`` in calls of at most 256 envelopes. The gateway answers
only after it stored them durably. A call that fails because the gateway is down or slow
(UNAVAILABLE, DEADLINE_EXCEEDED) is retried with the *same* envelopes until the
mailer's deadline: the gateway recognises a message id it stored before (DUPLICATE), so
a gateway that crashed mid-call neither loses a copy nor delivers one twice.

Receipts (:meth:`Mailer.receipts`) are the recipients' signed word that they processed a
copy, verified here against each recipient's directory entry: a gateway can withhold a
receipt but not forge one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar, cast

import grpc
import structlog
from google.protobuf.message import Message

from ncbsim import envelope, messages, receipts
from ncbsim.client import ALL, PEER_MAX_AGE_S, BureauClient, failure_detail
from ncbsim.countries import GENERAL_SECRETARIAT
from ncbsim.directory import Peer
from ncbsim.errors import (
    RETRY_AFTER_KEY,
    ConfigError,
    DirectoryError,
    EnvelopeError,
    NcbsimError,
    is_queue_full,
)
from ncbsim.peers import Peers
from ncbsim.protocol import MAX_BATCH_BYTES, MAX_ENVELOPES_PER_CALL
from ncbsim.v2 import gateway_pb2, gateway_pb2_grpc, messages_pb2

log = structlog.get_logger()

RETRY_FIRST_S = 0.1
RETRY_MAX_S = 1.0
"""A failed gateway call is tried again after 0.1 s, then doubling up to 1 s, which
matches the channel's own reconnect back-off (transport.py)."""
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

CopyStatus = Literal["accepted", "duplicate", "queue_full", "failed"]
State = Literal["queued", "delivered", "expired", "rejected", "unknown"]

_POST_STATUS: dict[int, CopyStatus] = {
    gateway_pb2.POST_STATUS_ACCEPTED: "accepted",
    gateway_pb2.POST_STATUS_DUPLICATE: "duplicate",
    gateway_pb2.POST_STATUS_QUEUE_FULL: "queue_full",
}
_STATE: dict[int, State] = {
    gateway_pb2.MESSAGE_STATE_QUEUED: "queued",
    gateway_pb2.MESSAGE_STATE_DELIVERED: "delivered",
    gateway_pb2.MESSAGE_STATE_EXPIRED: "expired",
    gateway_pb2.MESSAGE_STATE_REJECTED: "rejected",
}

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Copy:
    """One recipient's copy of a post, and what the gateway said about it.

    ``accepted`` and ``duplicate`` (the gateway had stored this very envelope before,
    on an earlier attempt) both mean stored durably: it will be delivered or expire.
    ``failed`` after a last attempt that timed out (DEADLINE_EXCEEDED in ``detail``)
    may still have been stored: :meth:`Mailer.receipts` tells.
    """

    recipient: str
    message_id: bytes
    status: CopyStatus
    sequence: int = 0
    detail: str = ""
    accepted_at_ms: int = 0

    @property
    def stored(self) -> bool:
        """Whether the gateway holds this copy (accepted now or before)."""
        return self.status in ("accepted", "duplicate")

    @property
    def message_hex(self) -> str:
        """The copy's message id as hex."""
        return self.message_id.hex()


@dataclass(frozen=True, slots=True)
class PostOutcome:
    """What became of one post: one :class:`Copy` per recipient, in recipient order."""

    post_id: bytes
    kind: int
    copies: list[Copy]
    attempts: int = 0
    """Gateway.Post calls made, retries included."""
    notice_id: bytes = b""
    """The notice a notice request (publication or withdrawal) is about; else empty."""

    @property
    def post_hex(self) -> str:
        """The post id as hex."""
        return self.post_id.hex()

    @property
    def stored(self) -> bool:
        """Whether the gateway holds every copy."""
        return bool(self.copies) and all(c.stored for c in self.copies)

    @property
    def recipients(self) -> list[str]:
        """Every recipient, in order."""
        return [c.recipient for c in self.copies]


@dataclass(frozen=True, slots=True)
class Delivered:
    """One copy this bureau posted, as the gateway reports it (Gateway.Receipts).

    ``verified`` is True only for a delivered copy whose receipt carries the
    recipient's valid signature and names this copy (message id, post id, both
    parties); ``processed_at_ms`` then comes from the receipt.
    """

    sequence: int
    message_id: bytes
    post_id: bytes
    recipient: str
    kind: int
    state: State
    accepted_at_ms: int
    expires_at_ms: int
    settled_at_ms: int
    attempts: int
    detail: str = ""
    verified: bool = False
    processed_at_ms: int = 0

    @property
    def message_hex(self) -> str:
        """The copy's message id as hex."""
        return self.message_id.hex()

    @property
    def post_hex(self) -> str:
        """The post id as hex."""
        return self.post_id.hex()


def _batches(
    sealed: list[tuple[str, bytes, envelope.Envelope]],
) -> list[list[tuple[str, bytes, envelope.Envelope]]]:
    """``sealed`` in order, cut into Post calls of at most MAX_ENVELOPES_PER_CALL copies
    and MAX_BATCH_BYTES bytes (at least one copy each)."""
    batches: list[list[tuple[str, bytes, envelope.Envelope]]] = []
    size = 0
    for item in sealed:
        copy_bytes = item[2].ByteSize()
        if (
            not batches
            or len(batches[-1]) >= MAX_ENVELOPES_PER_CALL
            or size + copy_bytes > MAX_BATCH_BYTES
        ):
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += copy_bytes
    return batches


def _addressees(sender: str, kind: int, to: Sequence[str]) -> list[str]:
    """``to`` as upper-case codes, or ConfigError if it cannot be a post's address."""
    codes = [c.strip().upper() for c in to if c.strip()]
    if not codes:
        raise ConfigError("no recipient given")
    if ALL in codes and codes != [ALL]:
        raise ConfigError("ALL stands alone: give ALL or a list of bureaus")
    if sender in codes:
        raise ConfigError(f"{sender} cannot send to itself")
    if kind == envelope.NOTICE_REQUEST and codes != [GENERAL_SECRETARIAT]:
        raise ConfigError("a notice request goes to GS only")
    return codes


def attachment(name: str, data: bytes, media_type: str = "") -> messages_pb2.Attachment:
    """An attachment (``media_type`` defaults to application/octet-stream)."""
    return messages_pb2.Attachment(
        name=name, media_type=media_type or "application/octet-stream", data=data
    )


def notice_draft(
    color: int | str,
    subject: messages_pb2.NoticeSubject,
    summary: str = "",
    text: str = "",
    *,
    notice_id: bytes | None = None,
) -> messages_pb2.NoticeRequest:
    """A request to publish a notice (a fresh notice id unless given).

    ``color`` is a NoticeColor or its name (``red``, ``un-special``, ...); ConfigError
    if unknown or if the summary and text are too long.
    """
    value = messages.color(color) if isinstance(color, str) else color
    if value not in messages.COLOR_NAMES:
        raise ConfigError(f"unknown notice colour {color!r}")
    messages.check_size(summary + text, [])
    draft = messages_pb2.NoticeDraft(
        notice_id=os.urandom(envelope.MESSAGE_ID_LEN) if notice_id is None else notice_id,
        color=cast("messages_pb2.NoticeColor", value),
        subject=subject,
        summary=summary,
        text=text,
    )
    return messages_pb2.NoticeRequest(publish=draft)


def _ttl_checked(ttl_ms: int) -> int:
    if not 0 < ttl_ms <= envelope.MAX_TTL_MS:
        raise ConfigError(
            f"a message lives between 1 ms and {envelope.MAX_TTL_MS // 3_600_000} h, "
            f"not {ttl_ms} ms"
        )
    return ttl_ms


def _retry_after_s(exc: grpc.aio.AioRpcError) -> float | None:
    for key, value in exc.trailing_metadata() or ():
        if key == RETRY_AFTER_KEY:
            try:
                return max(int(value), 0) / 1000
            except ValueError:
                return None
    return None


@dataclass(slots=True)
class Mailer:
    """Posts one-way messages as ``client``'s bureau, through ``client``'s gateway channel.

    ``client.clock``, when set, dates the envelopes (the simulator skews it).
    """

    client: BureauClient
    _loop_time: Callable[[], float] = field(default=time.monotonic, repr=False)
    strict: bool = False
    """Refuse a whole post (ConfigError, nothing sent) that names a bureau missing from the
    directory, instead of failing that copy alone (the CLI: a typo must not half-send)."""
    _everyone: list[str] = field(default_factory=list, init=False, repr=False)
    _everyone_at: float = field(default=float("-inf"), init=False, repr=False)

    @property
    def bureau(self) -> str:
        """The sending bureau's code."""
        return self.client.identity.bureau

    def _now_ms(self) -> int:
        clock = self.client.clock
        return clock.now_ms() if clock is not None else int(time.time() * 1000)

    async def _call(
        self, make: Callable[[float], Awaitable[T]], deadline: float, what: str
    ) -> tuple[T, int]:
        """``make(timeout)``, tried again on a passing failure until ``deadline``.

        Retried: UNAVAILABLE and DEADLINE_EXCEEDED, and RESOURCE_EXHAUSTED with a
        retry hint (a rate limit: the gateway counted nothing) that fits before the
        deadline. A full queue is not retried: that back-pressure is the caller's.
        Returns the result and the number of attempts; raises the last failure.
        """
        delay = RETRY_FIRST_S
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - self._loop_time()
            try:
                return await make(max(remaining, 0.05)), attempt
            except grpc.aio.AioRpcError as exc:
                wait: float | None = None
                if exc.code() in _RETRYABLE:
                    wait = delay
                    delay = min(delay * 2, RETRY_MAX_S)
                elif exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and not is_queue_full(exc):
                    wait = _retry_after_s(exc)
                if wait is None or self._loop_time() + wait >= deadline:
                    raise
                log.info("gateway_retry", call=what, code=exc.code().name, attempt=attempt)
                await asyncio.sleep(wait)

    async def _recipients(
        self, kind: int, to: Sequence[str], deadline: float, *, copy_gs: bool = True
    ) -> tuple[list[str], dict[str, str]]:
        """Recipients of a post to ``to``, and those that cannot be sealed to (why)."""
        codes = _addressees(self.bureau, kind, to)
        peers = self.client.peers
        if codes == [ALL]:
            # The membership is fetched again at most every PEER_MAX_AGE_S, not per post.
            if self._loop_time() - self._everyone_at > PEER_MAX_AGE_S:
                self._everyone, _ = await self._call(
                    functools.partial(_expand_all, self.client), deadline, "GetDirectory"
                )
                self._everyone_at = self._loop_time()
            recipients = list(self._everyone)
        else:
            recipients = list(dict.fromkeys(codes))
        if (
            kind == envelope.DIFFUSION
            and copy_gs
            and self.bureau != GENERAL_SECRETARIAT
            and GENERAL_SECRETARIAT not in recipients
        ):
            try:  # GS gets a copy of every diffusion, when the network has a GS
                await self._call(
                    functools.partial(_resolve, peers, [GENERAL_SECRETARIAT]),
                    deadline,
                    "GetDirectory",
                )
                recipients.append(GENERAL_SECRETARIAT)
            except DirectoryError:
                pass
        unknown: dict[str, str] = {}
        try:
            await self._call(
                functools.partial(_resolve, peers, recipients), deadline, "GetDirectory"
            )
        except DirectoryError:
            for code in recipients:  # entries missing now stay in the back-off: no refetch
                try:
                    await peers.resolve([code])
                except DirectoryError as exc:
                    unknown[code] = f"not in the directory: {exc}"
        for code in recipients:  # named explicitly: ALL leaves send-only bureaus out
            if code not in unknown and peers.get(code).requester_only:
                unknown[code] = "only sends: it runs no node to deliver to"
        if unknown and self.strict:
            why = "; ".join(f"{code}: {reason}" for code, reason in unknown.items())
            raise ConfigError(f"cannot send to {why}; nothing was sent")
        return recipients, unknown

    async def post(
        self,
        kind: int,
        body: Message,
        to: Sequence[str],
        *,
        ttl_ms: int = envelope.DEFAULT_MESSAGE_TTL_MS,
        post_id: bytes | None = None,
        timeout_s: float = 10.0,
        copy_gs: bool = True,
    ) -> PostOutcome:
        """Seal ``body`` of ``kind`` once per recipient in ``to`` and post every copy.

        ``to`` is bureau codes or ``["ALL"]`` (every bureau of the verified directory
        but this one and send-only ones). A diffusion also goes to GS when the network
        has one (unless ``copy_gs`` is false: sending again to bureaus whose copies
        failed), and its ``distribution`` is set to every recipient. A bureau not in the
        directory gets a ``failed`` copy (ConfigError if :attr:`strict`); a gateway that
        stays unreachable until ``timeout_s`` fails the copies not yet stored, and copies
        whose turn comes after ``timeout_s`` are not sent at all ("not sent").
        ConfigError on bad arguments.
        """
        if kind not in envelope.ONE_WAY_KINDS:
            raise ConfigError(f"kind {kind} is not a one-way kind")
        _ttl_checked(ttl_ms)
        post_id = os.urandom(envelope.MESSAGE_ID_LEN) if post_id is None else post_id
        if len(post_id) != envelope.MESSAGE_ID_LEN:
            raise ConfigError(f"a post id is {envelope.MESSAGE_ID_LEN} bytes")
        deadline = self._loop_time() + timeout_s
        try:
            recipients, unknown = await self._recipients(kind, to, deadline, copy_gs=copy_gs)
        except grpc.aio.AioRpcError as exc:
            detail = f"gateway: {failure_detail(exc)}"
            return PostOutcome(post_id, kind, [Copy(c, b"", "failed", 0, detail) for c in to])
        outgoing = type(body)()
        outgoing.CopyFrom(body)
        if isinstance(outgoing, messages_pb2.Diffusion):
            del outgoing.distribution[:]
            outgoing.distribution.extend(r for r in recipients if r not in unknown)
        plaintext = messages.pack(outgoing)
        now_ms = self._now_ms()
        sealed: list[tuple[str, bytes, envelope.Envelope]] = []
        for code in recipients:
            if code in unknown:
                continue
            message_id = os.urandom(envelope.MESSAGE_ID_LEN)
            sealed.append(
                (
                    code,
                    message_id,
                    envelope.seal_message(
                        plaintext,
                        sender=self.client.identity,
                        recipient=self.client.peers.get(code),
                        kind=kind,
                        post_id=post_id,
                        ttl_ms=ttl_ms,
                        now_ms=now_ms,
                        message_id=message_id,
                    ),
                )
            )
        copies: dict[str, Copy] = {
            code: Copy(code, b"", "failed", 0, reason) for code, reason in unknown.items()
        }
        attempts = 0
        for batch in _batches(sealed):
            if attempts and self._loop_time() >= deadline:
                # Certainly not stored: say so, rather than a last call that may time out
                # after the gateway stored the copies (a resend would then double them).
                late = "not sent: the timeout passed before its turn"
                copies.update((code, Copy(code, mid, "failed", 0, late)) for code, mid, _ in batch)
                continue
            results, tries = await self._post_batch(batch, deadline)
            attempts += tries
            copies.update((c.recipient, c) for c in results)
        outcome = PostOutcome(post_id, kind, [copies[r] for r in recipients], attempts)
        log.info(
            "posted",
            kind=envelope.kind_name(kind),
            post_id=outcome.post_hex,
            recipients=len(recipients),
            stored=sum(c.stored for c in outcome.copies),
            attempts=attempts,
            bytes=len(plaintext),
        )
        return outcome

    async def _post_batch(
        self, batch: list[tuple[str, bytes, envelope.Envelope]], deadline: float
    ) -> tuple[list[Copy], int]:
        """Post one batch (the same envelopes on every attempt); one Copy per envelope."""
        request = gateway_pb2.PostRequest(envelopes=[env for _, _, env in batch])
        stub = self.client.stub
        attempts = 0

        async def call(timeout: float) -> gateway_pb2.PostResponse:
            nonlocal attempts
            attempts += 1
            reply: gateway_pb2.PostResponse = await stub.Post(request, timeout=timeout)
            return reply

        try:
            reply, _ = await self._call(call, deadline, "Post")
        except grpc.aio.AioRpcError as exc:
            status: CopyStatus = "queue_full" if is_queue_full(exc) else "failed"
            detail = failure_detail(exc)
            return [Copy(code, mid, status, 0, detail) for code, mid, _ in batch], attempts
        by_id = {r.message_id: r for r in reply.results}
        copies = []
        for code, mid, _ in batch:
            result = by_id.get(mid)
            if result is None:
                copies.append(Copy(code, mid, "failed", 0, "missing from the gateway's reply"))
                continue
            copies.append(
                Copy(
                    code,
                    mid,
                    _POST_STATUS.get(result.status, "failed"),
                    result.sequence,
                    result.detail,
                    result.accepted_at_ms,
                )
            )
        return copies, attempts

    async def diffuse(
        self,
        to: Sequence[str],
        subject: str,
        text: str,
        attachments: Sequence[messages_pb2.Attachment] = (),
        *,
        ttl_ms: int = envelope.DEFAULT_MESSAGE_TTL_MS,
        timeout_s: float = 10.0,
        copy_gs: bool = True,
    ) -> PostOutcome:
        """Post a diffusion (an alert) to ``to`` or ``["ALL"]``; GS gets a copy too,
        unless ``copy_gs`` is false."""
        messages.check_size(subject + text, list(attachments))
        body = messages_pb2.Diffusion(subject=subject, text=text, attachments=attachments)
        return await self.post(
            envelope.DIFFUSION, body, to, ttl_ms=ttl_ms, timeout_s=timeout_s, copy_gs=copy_gs
        )

    async def message(
        self,
        to: str,
        text: str,
        *,
        thread: str = "",
        subject: str = "",
        in_reply_to: bytes = b"",
        attachments: Sequence[messages_pb2.Attachment] = (),
        ttl_ms: int = envelope.DEFAULT_MESSAGE_TTL_MS,
        timeout_s: float = 10.0,
    ) -> PostOutcome:
        """Post a case message to one bureau; with no ``thread`` it starts a new one.

        A new thread is named after the message's post id (hex). ``in_reply_to`` is
        the post id of the message answered.
        """
        messages.check_size(subject + text, list(attachments))
        if in_reply_to and len(in_reply_to) != envelope.MESSAGE_ID_LEN:
            raise ConfigError(f"a post id is {envelope.MESSAGE_ID_LEN} bytes")
        post_id = os.urandom(envelope.MESSAGE_ID_LEN)
        body = messages_pb2.CaseMessage(
            thread=thread or post_id.hex(),
            subject=subject,
            text=text,
            in_reply_to=in_reply_to,
            attachments=attachments,
        )
        return await self.post(
            envelope.MESSAGE, body, [to], ttl_ms=ttl_ms, post_id=post_id, timeout_s=timeout_s
        )

    async def request_notice(
        self,
        color: int | str,
        subject: messages_pb2.NoticeSubject,
        summary: str = "",
        text: str = "",
        *,
        notice_id: bytes | None = None,
        ttl_ms: int = envelope.DEFAULT_MESSAGE_TTL_MS,
        timeout_s: float = 10.0,
    ) -> bytes:
        """Ask GS to publish a notice; returns its notice id.

        GS reviews the request and tells the requester (refused) or every bureau
        (published) with a Notice. NcbsimError if the gateway did not store the
        request (use :meth:`post_notice_request` for the whole outcome).
        """
        body = notice_draft(color, subject, summary, text, notice_id=notice_id)
        outcome = await self.post_notice_request(body, ttl_ms=ttl_ms, timeout_s=timeout_s)
        if not outcome.stored:
            (copy,) = outcome.copies
            raise NcbsimError(f"notice request not stored: {copy.status} {copy.detail}".strip())
        return outcome.notice_id

    async def withdraw_notice(
        self,
        notice_id: bytes,
        reason: str = "",
        *,
        ttl_ms: int = envelope.DEFAULT_MESSAGE_TTL_MS,
        timeout_s: float = 10.0,
    ) -> PostOutcome:
        """Ask GS to withdraw a published notice this bureau requested."""
        messages.check_size(reason, [])
        withdrawal = messages_pb2.NoticeWithdrawal(notice_id=notice_id, reason=reason)
        body = messages_pb2.NoticeRequest(withdraw=withdrawal)
        return await self.post_notice_request(body, ttl_ms=ttl_ms, timeout_s=timeout_s)

    async def post_notice_request(
        self,
        body: messages_pb2.NoticeRequest,
        *,
        ttl_ms: int = envelope.DEFAULT_MESSAGE_TTL_MS,
        timeout_s: float = 10.0,
    ) -> PostOutcome:
        """Post a notice request (publish or withdraw) to GS; ``notice_id`` names the notice."""
        which = body.WhichOneof("action")
        notice_id = body.publish.notice_id if which == "publish" else body.withdraw.notice_id
        if which is None or len(notice_id) != envelope.MESSAGE_ID_LEN:
            raise ConfigError(f"a notice request needs a {envelope.MESSAGE_ID_LEN}-byte notice id")
        outcome = await self.post(
            envelope.NOTICE_REQUEST,
            body,
            [GENERAL_SECRETARIAT],
            ttl_ms=ttl_ms,
            timeout_s=timeout_s,
        )
        return dataclasses.replace(outcome, notice_id=notice_id)

    async def receipts(self, after: int = 0, *, timeout_s: float = 10.0) -> list[Delivered]:
        """Every copy this bureau posted with a sequence above ``after``, over all pages.

        Each delivered copy's receipt is verified against the recipient's verified
        directory entry (``verified``). Raises the gateway's error if it stays
        unreachable until ``timeout_s``.
        """
        deadline = self._loop_time() + timeout_s
        stub = self.client.stub
        rows: list[gateway_pb2.PostedMessage] = []
        cursor = after
        while True:
            reply, _ = await self._call(
                functools.partial(_receipts_page, stub, cursor), deadline, "Receipts"
            )
            rows.extend(reply.messages)
            if not reply.more or not reply.messages:
                break
            cursor = reply.messages[-1].sequence
        signers = await self._signers({r.recipient for r in rows}, deadline)
        now_ms = self._now_ms()
        return [self._delivered(row, signers.get(row.recipient), now_ms) for row in rows]

    async def _signers(self, codes: set[str], deadline: float) -> dict[str, Peer]:
        """Verified entries of ``codes``; a bureau not in the directory is left out."""
        peers = self.client.peers
        found: dict[str, Peer] = {}
        for code in sorted(codes):
            try:
                (peer,), _ = await self._call(
                    functools.partial(_resolve, peers, [code]), deadline, "GetDirectory"
                )
            except DirectoryError:
                continue
            found[code] = peer
        return found

    def _delivered(
        self, row: gateway_pb2.PostedMessage, signer: Peer | None, now_ms: int
    ) -> Delivered:
        verified, processed_at_ms = False, 0
        if row.state == gateway_pb2.MESSAGE_STATE_DELIVERED and signer is not None:
            try:
                receipt = receipts.verify(row.receipt, signer=signer, now_ms=now_ms)
            except EnvelopeError:
                receipt = None
            if receipt is not None and (
                receipt.message_id == row.message_id
                and receipt.post_id == row.post_id
                and receipt.sender == self.bureau
                and receipt.recipient == row.recipient
            ):
                verified, processed_at_ms = True, receipt.processed_at_ms
        return Delivered(
            sequence=row.sequence,
            message_id=row.message_id,
            post_id=row.post_id,
            recipient=row.recipient,
            kind=row.kind,
            state=_STATE.get(row.state, "unknown"),
            accepted_at_ms=row.accepted_at_ms,
            expires_at_ms=row.expires_at_ms,
            settled_at_ms=row.settled_at_ms,
            attempts=row.attempts,
            detail=row.detail,
            verified=verified,
            processed_at_ms=processed_at_ms,
        )


async def _receipts_page(
    stub: gateway_pb2_grpc.GatewayServiceStub, after: int, timeout: float
) -> gateway_pb2.ReceiptsResponse:
    reply: gateway_pb2.ReceiptsResponse = await stub.Receipts(
        gateway_pb2.ReceiptsRequest(after_sequence=after), timeout=timeout
    )
    return reply


async def _resolve(peers: Peers, codes: list[str], timeout: float) -> list[Peer]:
    return await peers.resolve(codes, timeout=timeout)


async def _expand_all(client: BureauClient, timeout: float) -> list[str]:
    return await client.recipients([ALL], timeout=timeout)
