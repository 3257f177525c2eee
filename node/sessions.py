"""Format-2 query sessions at a node: the path of Bureau.Handle for ``header.version == 2``.

A requester opens a session (SESSION_OPEN, answered SESSION_ACCEPT), sends its queries
in it (QUERY_REQUEST, each opened and answered with the session's AEAD keys) and closes
it (SESSION_CLOSE, answered SESSION_CLOSED); docs/protocol.md §15. The cryptography and
the session state are :class:`ncbsim.session.ServerSessions`, pure; this module is the
node's side of it: it checks the sender against the directory first (as format 1 does),
audits every envelope with the same rows and events as format 1, turns refusals into
statuses, hands verified checkpoints to the proof log off the answer's path, and ends
sessions when they expire (a sweep every few seconds), when the node's keys rotate and
when a sender's keys are revoked.

There is no replay cache for format 2: the durable SQLite cache of format 1
(:mod:`ncbsim.node.replay`) is replaced by each session's seen-set of ``seq``. A request
is answered at most once in its session, and sessions live only in memory, at most 60 s:
after a restart every request of an older session is ``session unknown``, so it cannot
be replayed either.

Refusals: a bad envelope is ``INVALID_ARGUMENT "envelope rejected"``, audited
``unverified`` (or ``revoked`` when the sender's key is on the revocation list); a
request outside any live session is ``FAILED_PRECONDITION "session unknown"``
(``session_unknown``), one over the unsigned bound ``FAILED_PRECONDITION "checkpoint
required"`` (``checkpoint_required``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn, Protocol

import grpc
import structlog
from google.protobuf.message import DecodeError

from ncbsim import envelope, padding, session
from ncbsim.clock import Clock
from ncbsim.directory import Peer
from ncbsim.errors import DirectoryError, EnvelopeError, Replayed, SessionRefused
from ncbsim.eventbus import EventBus
from ncbsim.identity import Identity
from ncbsim.node import observed
from ncbsim.node.refusals import refuse
from ncbsim.node.user_revocations import UserRevocations
from ncbsim.peers import Peers
from ncbsim.serving import abort
from ncbsim.v2 import bureau_pb2, query_pb2

log = structlog.get_logger()

SWEEP_INTERVAL_S = 2.0
"""How often ended sessions are erased and those of revoked senders ended."""


class ProofSink(Protocol):
    """Where verified checkpoints go (``ncbsim.node.proofs.ProofLog``)."""

    async def record(self, covered: session.Covered) -> None:
        """Keep one verified checkpoint and the requests it covers."""
        ...


class Audited(Protocol):
    """Commit the audit row of one handled envelope (``BureauService._audited``)."""

    async def __call__(  # noqa: PLR0917 - the shape of BureauService._audited
        self,
        request: envelope.Envelope | bytes,
        header: envelope.Header | None,
        started: float,
        status: grpc.StatusCode,
        reason: str = "",
        response: envelope.Envelope | None = None,
    ) -> None: ...


KnowSender = Callable[
    [envelope.Envelope, envelope.Header, float, grpc.aio.ServicerContext], Awaitable[None]
]
Release = Callable[
    [grpc.aio.ServicerContext, envelope.Envelope, envelope.Header, float, envelope.Envelope],
    Awaitable[bureau_pb2.HandleResponse],
]
AnswerQuery = Callable[[query_pb2.Query, str, str], query_pb2.Answer]
"""``(query, requester, message id hex) -> answer``: the node's pure answer path."""


class NodeSessions:
    """A node's format-2 handling: one :class:`~ncbsim.session.ServerSessions` for its
    identity, and the gRPC edge around it (checks, audit, statuses, proofs)."""

    def __init__(
        self,
        identity: Identity,
        peers: Peers,
        *,
        suite: int,
        clock: Clock,
        clock_skew_ms: int,
        bus: EventBus,
        audited: Audited,
        know_sender: KnowSender,
        release: Release,
        answer: AnswerQuery,
        proofs: ProofSink | None = None,
        on_replay: Callable[[], None] = lambda: None,
    ) -> None:
        self.sessions = session.ServerSessions(identity, suite=suite)
        self._on_replay = on_replay
        self._peers = peers
        self._clock = clock
        self._clock_skew_ms = clock_skew_ms
        self._bus = bus
        self._audited = audited
        self._know_sender = know_sender
        self._release = release
        self._answer = answer
        self.proofs = proofs
        """Set by whoever opens the proof log; None: checkpoints are verified, not kept."""
        self.revocations: UserRevocations | None = None
        """Set by run_node: the users revoked since the last sweep are dropped first."""
        self._senders: set[str] = set()  # principals that opened a session since the last sweep
        self._recording: set[asyncio.Task[None]] = set()

    def use_identity(self, identity: Identity) -> None:
        """The node's keys rotated: every session under the old ones ends."""
        held = len(self.sessions)
        self.sessions.use_identity(identity)
        self._senders.clear()
        if held:
            log.info("sessions_ended", reason="rotated", sessions=held)

    def sweep(self) -> int:
        """Erase ended sessions, and end those of every sender the directory no longer
        holds (revoked: :meth:`ncbsim.directory.Directory.apply_revocations` dropped it,
        or for a user, a revocation by its bureau, node/user_revocations.py). Returns
        how many sessions ended."""
        if self.revocations is not None:
            self.revocations.check()
        ended = 0
        directory = self._peers.directory
        for sender in list(self._senders):
            if sender not in directory:
                revoked = self.sessions.end_peer(sender)
                self._senders.discard(sender)
                if revoked:
                    log.info("sessions_ended", reason="revoked", sender=sender, sessions=revoked)
                ended += revoked
        return ended + self.sessions.sweep(self._clock.now_ms())

    async def run(self, interval_s: float = SWEEP_INTERVAL_S) -> None:
        """Sweep every ``interval_s`` seconds until cancelled; an error is logged."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                self.sweep()
            except Exception:
                log.exception("session_sweep_failed")

    async def drain(self) -> None:
        """Wait for the checkpoints still being recorded (when the node stops)."""
        if self._recording:
            await asyncio.gather(*self._recording, return_exceptions=True)

    async def handle(
        self,
        request: envelope.Envelope,
        header: envelope.Header,
        started: float,
        context: grpc.aio.ServicerContext,
    ) -> bureau_pb2.HandleResponse:
        """Answer one format-2 envelope: an OPEN, a request or a CLOSE."""
        try:
            await self._know_sender(request, header, started, context)
        except DirectoryError:  # no valid entry: unknown, or revoked
            self.sessions.end_peer(header.sender)
            await self._rejected(request, header, started, context)
        if header.kind == session.SESSION_OPEN:
            return await self._open(request, header, started, context)
        sender = await self._sender(request, header, started, context)
        if header.kind == envelope.QUERY_REQUEST:
            return await self._query(request, header, sender, started, context)
        if header.kind == session.SESSION_CLOSE:
            return await self._close(request, header, sender, started, context)
        return await self._rejected(request, header, started, context)

    async def _open(
        self,
        request: envelope.Envelope,
        header: envelope.Header,
        started: float,
        context: grpc.aio.ServicerContext,
    ) -> bureau_pb2.HandleResponse:
        try:
            accept = self.sessions.accept(
                request,
                header,
                senders=self._peers.get,
                now_ms=self._clock.now_ms(),
                clock_skew_ms=self._clock_skew_ms,
            )
        except (EnvelopeError, DirectoryError):
            return await self._rejected(request, header, started, context)
        self._senders.add(header.sender)
        log.debug("session_accepted", sender=header.sender, sessions=len(self.sessions))
        return await self._release(context, request, header, started, accept)

    async def _query(
        self,
        request: envelope.Envelope,
        header: envelope.Header,
        sender: Peer,
        started: float,
        context: grpc.aio.ServicerContext,
    ) -> bureau_pb2.HandleResponse:
        try:
            opened, live, covered = self.sessions.open_request(
                request,
                header,
                sender=sender,
                now_ms=self._clock.now_ms(),
                clock_skew_ms=self._clock_skew_ms,
            )
            query = query_pb2.Query.FromString(opened.plaintext)
        except SessionRefused as exc:
            await self._refused(request, header, started, context, exc)
        except Replayed:
            await self._replayed(request, header, started, context)
        except (EnvelopeError, DecodeError):
            return await self._rejected(request, header, started, context)
        observed.opened(self._bus, header, request)
        self._record(covered)
        for late in self.sessions.drain_covered():  # one this request came after
            self._record(late)
        try:
            result = self._answer(query, opened.header.sender, header.message_hex)
            sealed = live.seal_response(
                padding.padded(result, padding.RESPONSE_BYTES),
                request=opened.header,
                now_ms=self._clock.now_ms(),
            )
        except Exception as exc:  # refused (a bad probe, a daily cap, rights), or a bug
            await refuse(self._audited, request, header, started, context, exc)
        log.debug(
            "answered",
            sender=header.sender,
            query=query.WhichOneof("query"),
            result=result.WhichOneof("result"),
            seq=header.seq,
            **log_ids(header),
        )
        return await self._release(context, request, header, started, sealed)

    async def _close(
        self,
        request: envelope.Envelope,
        header: envelope.Header,
        sender: Peer,
        started: float,
        context: grpc.aio.ServicerContext,
    ) -> bureau_pb2.HandleResponse:
        try:
            closed, covered = self.sessions.close(
                request, header, sender=sender, now_ms=self._clock.now_ms()
            )
        except SessionRefused as exc:
            await self._refused(request, header, started, context, exc)
        except EnvelopeError:
            return await self._rejected(request, header, started, context)
        self._record(covered)
        log.debug("session_closed", sender=header.sender, sessions=len(self.sessions))
        return await self._release(context, request, header, started, closed)

    async def _sender(
        self,
        request: envelope.Envelope,
        header: envelope.Header,
        started: float,
        context: grpc.aio.ServicerContext,
    ) -> Peer:
        """The sender's verified entry; a sender the directory no longer holds (revoked)
        has its sessions ended and the envelope refused."""
        try:
            return self._peers.get(header.sender)
        except DirectoryError:
            self.sessions.end_peer(header.sender)
            await self._rejected(request, header, started, context)

    async def _refused(
        self,
        request: envelope.Envelope,
        header: envelope.Header,
        started: float,
        context: grpc.aio.ServicerContext,
        exc: SessionRefused,
    ) -> NoReturn:
        """FAILED_PRECONDITION with the refusal's detail: the requester opens a new
        session (``session unknown``) or sends a checkpoint (``checkpoint required``)."""
        log.info("session_refused", sender=header.sender, reason=exc.reason, **log_ids(header))
        status = grpc.StatusCode.FAILED_PRECONDITION
        await self._audited(request, header, started, status, exc.reason)
        await abort(context, status, exc.detail)

    async def _replayed(
        self,
        request: envelope.Envelope,
        header: envelope.Header,
        started: float,
        context: grpc.aio.ServicerContext,
    ) -> NoReturn:
        """ALREADY_EXISTS for a seq its session already took, audited ``replay``, as a
        format 1 replay is (node/server.py)."""
        self._on_replay()
        log.warning("replayed_envelope", sender=header.sender, seq=header.seq, **log_ids(header))
        status = grpc.StatusCode.ALREADY_EXISTS
        await self._audited(request, header, started, status, "replay")
        await abort(context, status, "envelope already processed")

    async def _rejected(
        self,
        request: envelope.Envelope,
        header: envelope.Header,
        started: float,
        context: grpc.aio.ServicerContext,
    ) -> NoReturn:
        """The opaque refusal; the audit says whether the sender's key was revoked."""
        revoked = self._peers.directory.sender_revoked(header.sender, header.sender_key_id)
        reason = "revoked" if revoked else "unverified"
        log.warning(
            "envelope_rejected",
            sender=header.sender,
            reason=reason,
            kind=envelope.kind_name(header.kind),
            **log_ids(header),
        )
        status = grpc.StatusCode.INVALID_ARGUMENT
        await self._audited(request, header, started, status, reason)
        await abort(context, status, "envelope rejected")

    def _record(self, covered: session.Covered | None) -> None:
        """Hand a verified checkpoint to the proof log, off the answer's path."""
        if covered is None or self.proofs is None:
            return
        task = asyncio.create_task(self._keep(self.proofs, covered))
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)

    @staticmethod
    async def _keep(proofs: ProofSink, covered: session.Covered) -> None:
        started = time.perf_counter()
        try:
            await proofs.record(covered)
        except Exception:
            log.exception(
                "checkpoint_not_recorded",
                sender=covered.sender,
                first_seq=covered.first_seq,
                last_seq=covered.last_seq,
                elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
            )


def log_ids(header: envelope.Header) -> dict[str, str]:
    """The ids every log line about one envelope carries."""
    return {"message_id": header.message_hex, "correlation_id": header.correlation_hex}
