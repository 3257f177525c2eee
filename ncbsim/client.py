"""A bureau's query client: seal, send through the gateway, verify and open the answer.

Used by ``ncbsim query``, the simulator and the tests. It holds one mTLS channel to
the gateway for its whole life, and verifies every directory entry it uses. Its queries
run in format-2 sessions (docs/protocol.md §15, :mod:`ncbsim.client_sessions`);
:func:`seal_query` and :func:`open_answer` keep format 1 for the demo, the bench and the tests.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import grpc
from google.protobuf.message import DecodeError

from ncbsim import envelope, padding, principal, rpctrace, session, tracing, transport
from ncbsim.client_sessions import HandshakeError, Sent, SessionPool
from ncbsim.clock import Clock
from ncbsim.directory import Directory, Peer
from ncbsim.errors import DirectoryError, EnvelopeError, SessionRefused
from ncbsim.eventbus import EventBus
from ncbsim.identity import Identity
from ncbsim.peers import Peers, RevocationFile
from ncbsim.pki import PkiDir
from ncbsim.v2 import gateway_pb2, gateway_pb2_grpc, query_pb2

ALL = "ALL"
PEER_MAX_AGE_S = 30.0
"""A client fetches again a peer's directory entry held longer than this, so it follows a
rotation (whose grace period is an hour by default) while it runs."""


class Outcome(StrEnum):
    """How one bureau answered one query."""

    HIT = "hit"
    NO_HIT = "no_hit"
    RECORD = "record"  # step 2: the full record came back
    NOT_FOUND = "not_found"  # step 2: no such reference (or not releasable)
    ERROR = "error"  # the bureau answered that the query was unusable
    NO_ANSWER = "no_answer"  # unreachable, or no answer within the deadline
    FAILED = "failed"  # refused, or the answer did not verify


@dataclass(frozen=True, slots=True)
class Answer:
    """One bureau's answer to one query."""

    bureau: str
    outcome: Outcome
    response: query_pb2.Answer | None = None
    detail: str = ""
    latency_ms: float = 0.0
    message_id: str = ""

    @property
    def matches(self) -> list[query_pb2.Match]:
        """Step-1 matches (empty unless the outcome is a hit)."""
        if self.response is None or not self.response.HasField("hits"):
            return []
        return list(self.response.hits.matches)


def failure_outcome(code: grpc.StatusCode) -> Outcome:
    """How a failed gateway call counts: unreachable or too slow is no answer, else failed."""
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Outcome.NO_ANSWER
    return Outcome.FAILED


def failure_detail(exc: grpc.aio.AioRpcError) -> str:
    """``CODE: details`` of a failed gateway call, with the gateway's retry hint.

    A gateway over a bureau's rate limit or daily quota answers RESOURCE_EXHAUSTED and
    says when to retry, in the details and in the ``retry-after-ms`` trailer; the hint is
    added from the trailer when the details do not already carry it.
    """
    code = exc.code()
    detail = f"{code.name}: {exc.details()}"
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "retry after" not in detail:
        for key, value in exc.trailing_metadata() or ():
            if key == "retry-after-ms":
                detail += f" (retry after {value} ms)"
    return detail


def seal_query(
    identity: Identity,
    recipient: Peer,
    query: query_pb2.Query,
    correlation_id: bytes | None = None,
    *,
    ttl_ms: int = envelope.DEFAULT_TTL_MS,
    now_ms: int | None = None,
) -> envelope.SealedRequest:
    """Seal ``query`` to ``recipient`` as ``identity``, with a fresh response key.

    Every call makes a new message id, so no two envelopes are alike. Pure and
    synchronous (format 1: the demo, ``ncbsim bench --format 1`` and tests). ``ttl_ms``
    and ``now_ms`` set the envelope's lifetime and issue time (tests use them).
    """
    key, public = envelope.new_response_key()
    body = query_pb2.Query()
    body.CopyFrom(query)
    body.response_key = public
    return envelope.seal_request(
        padding.padded(body, padding.REQUEST_BYTES),
        sender=identity,
        recipient=recipient,
        response_key=key,
        correlation_id=correlation_id,
        ttl_ms=ttl_ms,
        now_ms=now_ms,
    )


def open_answer(
    sealed: envelope.SealedRequest,
    response: envelope.Envelope,
    sender: Peer,
    latency_ms: float = 0.0,
    *,
    now_ms: int | None = None,
) -> Answer:
    """Verify and open the response to ``sealed`` from ``sender``, and classify it.

    A response that fails verification is :attr:`Outcome.FAILED`, never an answer.
    ``now_ms`` is the time its validity is checked against (default: the wall clock).
    """
    bureau = sealed.header.recipient
    mid = sealed.header.message_hex
    try:
        opened = envelope.open_response(response, request=sealed, sender=sender, now_ms=now_ms)
        body = query_pb2.Answer.FromString(opened.plaintext)
    except (EnvelopeError, DecodeError):
        return Answer(bureau, Outcome.FAILED, None, "response did not verify", latency_ms, mid)
    return classify(bureau, body, latency_ms, mid)


def open_session_answer(
    request: session.SessionRequest, response: envelope.Envelope, latency_ms: float, now_ms: int
) -> Answer:
    """Open the answer to a format-2 ``request`` in its session and classify it; one that
    does not open is :attr:`Outcome.FAILED`, as in :func:`open_answer`."""
    bureau, mid = request.header.recipient, request.header.message_hex
    try:
        opened = request.session.open_response(request, response, now_ms=now_ms)
        body = query_pb2.Answer.FromString(opened.plaintext)
    except (EnvelopeError, DecodeError):
        return Answer(bureau, Outcome.FAILED, None, "response did not verify", latency_ms, mid)
    return classify(bureau, body, latency_ms, mid)


def classify(bureau: str, body: query_pb2.Answer, latency_ms: float, mid: str) -> Answer:
    """The :class:`Answer` an opened answer body makes."""
    which = body.WhichOneof("result")
    if which == "hits":
        outcome = Outcome.HIT if body.hits.matches else Outcome.NO_HIT
    elif which == "candidates":  # a biometric search: a candidate list, or none
        outcome = Outcome.HIT if body.candidates.candidates else Outcome.NO_HIT
    elif which == "confirmation":  # its step 2: the person, or not confirmed
        outcome = Outcome.RECORD if body.confirmation.confirmed else Outcome.NOT_FOUND
    elif which == "record":
        outcome = Outcome.RECORD
    elif which == "not_found":
        outcome = Outcome.NOT_FOUND
    else:
        outcome = Outcome.ERROR
    detail = body.error.message if which == "error" else ""
    return Answer(bureau, outcome, body, detail, latency_ms, mid)


def open_deliveries(
    sealed: Mapping[str, envelope.SealedRequest],
    deliveries: Iterable[gateway_pb2.Delivery],
    peer: Callable[[str], Peer],
    latency_ms: float,
    *,
    now_ms: Callable[[], int | None] = lambda: None,
) -> dict[str, Answer]:
    """The answers of a MultiQuery reply by bureau: the first delivery of each bureau
    ``sealed`` holds, opened (:func:`open_answer`, its validity checked at ``now_ms()``,
    None: the wall clock) if it was delivered; any other delivery is left out."""
    answers: dict[str, Answer] = {}
    for delivery in deliveries:
        if delivery.bureau not in sealed or delivery.bureau in answers:
            continue
        if delivery.status == gateway_pb2.DELIVERY_STATUS_DELIVERED:
            answers[delivery.bureau] = open_answer(
                sealed[delivery.bureau],
                delivery.response,
                peer(delivery.bureau),
                latency_ms,
                now_ms=now_ms(),
            )
        else:
            outcome = (
                Outcome.NO_ANSWER
                if delivery.status == gateway_pb2.DELIVERY_STATUS_NO_ANSWER
                else Outcome.FAILED
            )
            answers[delivery.bureau] = Answer(
                delivery.bureau,
                outcome,
                None,
                delivery.detail,
                latency_ms,
                sealed[delivery.bureau].header.message_hex,
            )
    return answers


@dataclass(slots=True)
class BureauClient:
    """Acts as bureau ``identity.bureau`` towards the gateway at ``gateway``.

    ``clock``, when given, dates the envelopes it seals and checks the answers' times
    (the simulator skews a requester's clock with it); None means the wall clock.
    """

    pki: PkiDir
    identity: Identity
    gateway: str
    clock: Clock | None = None
    directory: Directory | None = None
    """Verified entries to use; None: a directory of its own. A simulator acting as many
    bureaus shares one, so each entry is verified once, not once per bureau."""
    bus: EventBus | None = None
    """Hears ``query.sealed`` and ``query.returned`` (party ``client:XX``), if given."""
    suite: int | None = None
    """The session suite to open sessions of; None: the network's (``pki.suite``)."""
    _channel: grpc.aio.Channel = field(init=False)
    _stub: gateway_pb2_grpc.GatewayServiceStub = field(init=False)
    peers: Peers = field(init=False)
    sessions: SessionPool = field(init=False)

    def __post_init__(self) -> None:
        bureau = self.identity.bureau
        self._channel = transport.gateway_channel(
            self.gateway,
            self.pki.tls(bureau),
            interceptors=rpctrace.client_interceptors(f"client:{bureau}"),
        )
        self._stub = gateway_pb2_grpc.GatewayServiceStub(self._channel)
        directory = self.directory if self.directory is not None else Directory.pinned(self.pki)
        self.peers = Peers(
            directory,
            self._stub,
            revocations=RevocationFile(self.pki, directory),
            max_age_s=PEER_MAX_AGE_S,
        )
        suite = self.suite if self.suite is not None else self.pki.suite
        self.sessions = SessionPool(self.identity, self._stub, suite=suite, now_ms=self._clock_ms)

    @classmethod
    def open(
        cls,
        pki: PkiDir,
        bureau: str,
        gateway: str,
        *,
        clock: Clock | None = None,
        directory: Directory | None = None,
        bus: EventBus | None = None,
    ) -> BureauClient:
        """Load ``bureau``'s keys from ``pki`` and connect to ``gateway``."""
        now_ms = clock.now_ms() if clock is not None else int(time.time() * 1000)
        identity = Identity.load(pki, bureau, now_ms=now_ms)
        return cls(pki, identity, gateway, clock, directory, bus)

    @property
    def stub(self) -> gateway_pb2_grpc.GatewayServiceStub:
        """The gateway stub on this client's channel (the mailer posts through it)."""
        return self._stub

    def _clock_ms(self) -> int:
        """This client's time (the session code takes it always)."""
        return self.clock.now_ms() if self.clock is not None else int(time.time() * 1000)

    async def close(self) -> None:
        """Close every session (SESSION_CLOSE, briefly awaited), then the channel."""
        await self.sessions.close()
        await self._channel.close()

    async def __aenter__(self) -> BureauClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def recipients(self, to: Sequence[str], timeout: float = 5.0) -> list[str]:
        """Expand ``ALL`` to every bureau of the verified directory except ourselves.

        Bureaus whose signed entry says they only send (``requester_only``, such as
        ``ncbsim load``'s requesters) run no node and are left out. Membership comes
        from root-signed entries, not from the gateway's routes, so a gateway cannot
        quietly leave a bureau out: one it does not route shows as no answer. The
        entries are fetched again first; a failed fetch raises the gRPC error.
        """
        if list(to) == [ALL]:
            await self.peers.load_all(timeout)
            return self.members()
        return list(dict.fromkeys(to))

    def members(self) -> list[str]:
        """What ``ALL`` means from the verified entries held now, without asking anyone
        (a user's ALL leaves out its own bureau too)."""
        me, directory = principal.bureau_of(self.identity.bureau), self.peers.directory
        return [c for c in directory.bureaus() if c != me and not directory.get(c).requester_only]

    def unusable(self, bureau: str) -> str:
        """Why a query cannot be sealed to ``bureau``, whose entry is not held."""
        if bureau in self.peers.directory.revoked.serials:
            return f"{bureau}'s keys are revoked and no newer directory entry is held"
        return f"no verified directory entry for {bureau}"

    async def query(self, query: query_pb2.Query, to: str, *, timeout: float = 5.0) -> Answer:
        """Send one query to one bureau through the gateway and open its answer.

        Traced (when tracing is set up) as one ``ncbsim.query`` span, parent of the
        directory look-ups and the Query call.
        """
        with tracing.span("ncbsim.query", party=f"client:{self.identity.bureau}", recipients=1):
            return await self._query(query, to, timeout)

    async def _query(self, query: query_pb2.Query, to: str, timeout: float) -> Answer:
        started = time.perf_counter()
        try:
            await self.peers.resolve([to], timeout=timeout)
        except DirectoryError:
            return Answer(to, Outcome.FAILED, None, self.unusable(to))
        except grpc.aio.AioRpcError as exc:
            return Answer(to, failure_outcome(exc.code()), None, f"gateway: {failure_detail(exc)}")
        result = await self.sessions.ask(
            self.peers.get(to),
            padding.padded(query, padding.REQUEST_BYTES),  # format 2: no response key
            timeout=timeout,
            now_ms=self._clock_ms,
            sealed=lambda requests: emit_sealed(self.bus, requests),
            returned=lambda sent: self._returned(sent, started),
        )
        return result if isinstance(result, Answer) else unopened(to, result, started)

    def _returned(self, sent: Sent, started: float) -> Answer:
        """The answer one request in a session came back with; ``query.returned``."""
        latency = (time.perf_counter() - started) * 1000
        to, mid = sent.request.header.recipient, sent.request.header.message_hex
        if sent.response is not None:
            answer = open_session_answer(sent.request, sent.response, latency, self._clock_ms())
        elif sent.error is not None:
            outcome, detail = failure_outcome(sent.error.code()), failure_detail(sent.error)
            answer = Answer(to, outcome, None, detail, latency, mid)
        else:
            delivery = sent.delivery or gateway_pb2.Delivery()
            no_answer = delivery.status == gateway_pb2.DELIVERY_STATUS_NO_ANSWER
            outcome = Outcome.NO_ANSWER if no_answer else Outcome.FAILED
            answer = Answer(to, outcome, None, delivery.detail, latency, mid)
        emit_returned(self.bus, sent.request, answer, sent.status, sent.response)
        return answer

    async def multi_query(
        self, query: query_pb2.Query, to: Sequence[str], *, timeout: float = 5.0
    ) -> list[Answer]:
        """One query to several bureaus (or ``["ALL"]``), answered as one merged reply.

        Every recipient is listed: hit, no-hit, no-answer or failed. A bureau that cannot
        be sealed to (revoked, not in the directory) fails alone; the others are asked.
        When the gateway cannot be reached, ``ALL`` still lists every bureau of the
        directory held, each unanswered; a client that holds no directory yet cannot
        tell who ``ALL`` is and raises :class:`~ncbsim.errors.DirectoryError` saying so.
        Traced as one ``ncbsim.multi_query`` span.
        """
        party = f"client:{self.identity.bureau}"
        with tracing.span("ncbsim.multi_query", party=party) as span:
            answers = await self._multi_query(query, to, timeout)
            if span.is_recording():
                span.set_attribute("ncbsim.recipients", len(answers))
            return answers

    async def _multi_query(
        self, query: query_pb2.Query, to: Sequence[str], timeout: float
    ) -> list[Answer]:
        started = time.perf_counter()
        try:
            recipients = await self.recipients(to, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            # Only ALL asks the gateway here: the root-signed entries held still say who it is.
            recipients = self.members()
            if not recipients:
                raise DirectoryError(
                    f"the gateway could not be asked who {ALL} is ({failure_detail(exc)}) "
                    f"and {self.identity.bureau} holds no verified directory yet; name the "
                    "bureaus, or try again once the gateway answers"
                ) from None
            outcome, detail = failure_outcome(exc.code()), f"gateway: {failure_detail(exc)}"
            return [Answer(r, outcome, None, detail) for r in recipients]
        try:
            await self.peers.resolve(recipients, timeout=timeout)
        except DirectoryError:
            pass  # the entries still missing fail below, each alone
        except grpc.aio.AioRpcError as exc:
            outcome, detail = failure_outcome(exc.code()), f"gateway: {failure_detail(exc)}"
            return [Answer(r, outcome, None, detail) for r in recipients]
        answers: dict[str, Answer] = {
            r: Answer(r, Outcome.FAILED, None, self.unusable(r))
            for r in recipients
            if r not in self.peers.directory
        }
        sealable = [r for r in recipients if r not in answers]
        if sealable:
            answers.update(await self._send_multi(query, sealable, started, timeout))
        # A bureau the gateway left out of its reply did not answer.
        return [
            answers.get(r, Answer(r, Outcome.NO_ANSWER, None, "missing from reply"))
            for r in recipients
        ]

    async def _send_multi(
        self, query: query_pb2.Query, recipients: list[str], started: float, timeout: float
    ) -> dict[str, Answer]:
        """Ask each of ``recipients`` (all held) in its session, as one MultiQuery (the
        sessions missing opened first, in one MultiQuery too); a bureau whose node no
        longer holds the session is asked again once, in a new one. Bureaus missing
        from the reply are missing here."""
        results = await self.sessions.ask_many(
            [self.peers.get(r) for r in recipients],
            padding.padded(query, padding.REQUEST_BYTES),  # format 2: no response key
            # One correlation id ties together the envelopes of one multi-bureau query.
            correlation_id=os.urandom(envelope.MESSAGE_ID_LEN),
            timeout=timeout,
            now_ms=self._clock_ms,
            sealed=lambda requests: emit_sealed(self.bus, requests),
            returned=lambda sent: self._returned(sent, started),
        )
        return {
            r: result if isinstance(result, Answer) else unopened(r, result, started)
            for r, result in results.items()
        }


def unopened(bureau: str, exc: BaseException, started: float) -> Answer:
    """How a query to ``bureau`` counts when no session could be opened with it."""
    outcome, detail = Outcome.FAILED, "session handshake did not verify"
    if isinstance(exc, grpc.aio.AioRpcError):
        outcome, detail = failure_outcome(exc.code()), f"session not opened: {failure_detail(exc)}"
    elif isinstance(exc, HandshakeError):
        outcome = Outcome.NO_ANSWER if exc.unreachable else Outcome.FAILED
        detail = exc.detail
    elif isinstance(exc, SessionRefused):
        detail = "session ended"
    return Answer(bureau, outcome, None, detail, (time.perf_counter() - started) * 1000)


Sealed = envelope.SealedRequest | session.SessionRequest
"""A query's envelope as the events tell it: format 1 or 2 (both have the same two fields)."""


def emit_sealed(bus: EventBus | None, sealed: Sequence[Sealed]) -> None:
    """``query.sealed`` for each envelope of one query (several: one per recipient)."""
    if bus is None or not bus.observed:
        return
    for item in sealed:
        bus.emit(
            "query.sealed",
            {
                "recipient": item.header.recipient,
                "recipients": len(sealed),
                "bytes": item.envelope.ByteSize(),
            },
            message_id=item.header.message_hex,
            correlation_id=item.header.correlation_hex,
        )


def emit_returned(
    bus: EventBus | None,
    sealed: Sealed,
    answer: Answer,
    status: str,
    response: envelope.Envelope | None = None,
) -> None:
    """``query.returned``: how one recipient's answer came back (its outcome, never its
    content), ``status`` being the gateway call's (or the MultiQuery delivery's)."""
    if bus is None or not bus.observed:
        return
    bus.emit(
        "query.returned",
        {
            "recipient": answer.bureau,
            "outcome": answer.outcome.value,
            "status": status,
            "elapsed_ms": round(answer.latency_ms, 3),
            "response_bytes": response.ByteSize() if response is not None else 0,
        },
        message_id=sealed.header.message_hex,
        correlation_id=sealed.header.correlation_hex,
    )
