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

import dataclasses
import functools
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
import structlog
from google.protobuf.message import Message

from ncbsim import envelope, messages
from ncbsim.client import ALL, PEER_MAX_AGE_S, BureauClient, failure_detail
from ncbsim.countries import GENERAL_SECRETARIAT
from ncbsim.directory import Peer
from ncbsim.errors import (
    ConfigError,
    DirectoryError,
    NcbsimError,
    is_queue_full,
)
from ncbsim.eventbus import EventBus
from ncbsim.peers import Peers
from ncbsim.posts import (
    POST_STATUS,
    Copy,
    CopyStatus,
    Delivered,
    PostOutcome,
    addressees,
    delivered,
    notice_draft,
    ttl_checked,
)
from ncbsim.principal import bureau_of
from ncbsim.protocol import MAX_BATCH_BYTES, MAX_ENVELOPES_PER_CALL
from ncbsim.retry import retry
from ncbsim.v2 import gateway_pb2, gateway_pb2_grpc, messages_pb2

log = structlog.get_logger()


T = TypeVar("T")


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


@dataclass(slots=True)
class Mailer:
    """Posts one-way messages as ``client``'s bureau (or user: ``client.identity.bureau``
    is then ``FR/x``, who signs them), through ``client``'s gateway channel.

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
        """The sender: a bureau's code, or a user's principal (``FR/x``)."""
        return self.client.identity.bureau

    def _now_ms(self) -> int:
        clock = self.client.clock
        return clock.now_ms() if clock is not None else int(time.time() * 1000)

    async def _call(
        self, make: Callable[[float], Awaitable[T]], deadline: float, what: str
    ) -> tuple[T, int]:
        """``make(timeout)``, tried again on a passing failure until ``deadline`` (see
        :func:`ncbsim.retry.retry`); the result and the number of attempts."""
        return await retry(make, deadline, what, clock=self._loop_time)

    async def _recipients(
        self, kind: int, to: Sequence[str], deadline: float, *, copy_gs: bool = True
    ) -> tuple[list[str], dict[str, str]]:
        """Recipients of a post to ``to``, and those that cannot be sealed to (why)."""
        codes = addressees(self.bureau, kind, to)
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
        ttl_checked(ttl_ms)
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
        _sealed(self.client.bus, kind, post_id, sealed)
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
                    POST_STATUS.get(result.status, "failed"),
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
        return [
            delivered(row, signers.get(row.recipient), sender=self.bureau, now_ms=now_ms)
            for row in rows
        ]

    async def _signers(self, codes: set[str], deadline: float) -> dict[str, Peer]:
        """The verified entry that signs each recipient's receipts: its own, or for a
        user (``NG/x``) its bureau's; a recipient whose signer is not in the directory is
        left out."""
        peers = self.client.peers
        found: dict[str, Peer] = {}
        for code in sorted(codes):
            try:
                (peer,), _ = await self._call(
                    functools.partial(_resolve, peers, [bureau_of(code)]), deadline, "GetDirectory"
                )
            except DirectoryError:
                continue
            found[code] = peer
        return found


def _sealed(
    bus: EventBus | None,
    kind: int,
    post_id: bytes,
    sealed: Sequence[tuple[str, bytes, envelope.Envelope]],
) -> None:
    """``post.sealed`` for each copy of one post, its post id as correlation id."""
    if bus is None or not bus.observed:
        return
    name = envelope.kind_name(kind)
    for code, message_id, env in sealed:
        bus.emit(
            "post.sealed",
            {"recipient": code, "recipients": len(sealed), "kind": name, "bytes": env.ByteSize()},
            message_id=message_id.hex(),
            correlation_id=post_id.hex(),
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
