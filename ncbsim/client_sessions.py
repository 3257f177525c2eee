"""A client's query sessions: one live session per peer, opened, rekeyed and closed for it.

:class:`SessionPool` holds the format-2 sessions (docs/protocol.md §15) of one
:class:`ncbsim.client.BureauClient`, one live :class:`~ncbsim.session.ClientSession` per
peer, and does the handshakes through the gateway:

- concurrent first queries to one peer share one handshake, and a query to several peers
  opens the missing sessions together, in one MultiQuery of SESSION_OPEN envelopes;
- a session due for rekey (50 s or 9,000 requests) keeps serving while its successor is
  opened in the background; a session replaced, or one whose peer's directory entry
  changed (other signing or encryption key), finishes its requests in flight and is then
  closed (SESSION_CLOSE) in the background;
- a session the node no longer holds (FAILED_PRECONDITION: it restarted, or the session
  ended) is dropped by the caller (:meth:`SessionPool.drop`), who opens a new one and
  retries once;
- :meth:`SessionPool.close` closes every session, waiting a short while for each node's
  SESSION_CLOSED, then erases the keys.

Nothing here reads a payload; the pool hands sessions out, the client seals in them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import structlog

from ncbsim import envelope, session
from ncbsim.directory import Peer
from ncbsim.errors import EnvelopeError, SessionRefused
from ncbsim.identity import Identity
from ncbsim.v2 import gateway_pb2, gateway_pb2_grpc

log = structlog.get_logger()

CLOSE_TIMEOUT_S = 1.0
"""How long a SESSION_CLOSE waits for its SESSION_CLOSED (the answer is a courtesy)."""
REKEY_TIMEOUT_S = 5.0
"""Deadline of a background rekey's handshake."""


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Sent:
    """One request sent in a session and what came of it: the response, the gateway's
    error (Query), or the delivery that carried no response (MultiQuery)."""

    request: session.SessionRequest
    response: envelope.Envelope | None = None
    error: grpc.aio.AioRpcError | None = None
    delivery: gateway_pb2.Delivery | None = None

    @property
    def status(self) -> str:
        """The call's status (``OK``, a gRPC code) or the delivery's (``DELIVERED``, ...)."""
        if self.error is not None:
            return str(self.error.code().name)
        if self.delivery is not None:
            name = gateway_pb2.DeliveryStatus.Name(self.delivery.status)
            return name.removeprefix("DELIVERY_STATUS_")
        return "OK"

    @property
    def session_refused(self) -> bool:
        """Whether the node no longer holds the session (FAILED_PRECONDITION)."""
        refused = grpc.StatusCode.FAILED_PRECONDITION
        if self.error is not None:
            return bool(self.error.code() == refused)
        return self.delivery is not None and self.delivery.detail == refused.name


Sealed = Callable[[list[session.SessionRequest]], None]
"""Told of every request sealed, before it is sent (``query.sealed``)."""


class HandshakeError(Exception):
    """A session could not be opened with one peer of a MultiQuery of OPEN envelopes:
    ``unreachable`` if the peer did not answer, else it refused or its ACCEPT did not
    verify; ``detail`` says which, for the user. (One peer alone is opened with Query,
    whose failure stays the gateway's ``grpc.aio.AioRpcError``.)"""

    def __init__(self, detail: str, *, unreachable: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.unreachable = unreachable


@dataclass(slots=True, eq=False)
class Held:
    """A session as the pool holds it: with the peer entry it was opened under and the
    requests now in flight in it."""

    session: session.ClientSession
    peer: Peer
    in_flight: int = 0
    retired: bool = False
    close: bool = False
    """When retired: say SESSION_CLOSE once idle (else just erase: the node holds none)."""


class SessionPool:
    """One live session per peer for ``identity``, through the gateway ``stub``.

    ``suite`` is the network's (``PkiDir.suite``); ``now_ms`` the client's clock. Use:
    ``held = await pool.acquire(peer, timeout)``, seal in ``held.session``, send, then
    ``pool.release(held)`` (after ``pool.drop(held)`` if the node refused the session).
    """

    def __init__(
        self,
        identity: Identity,
        stub: gateway_pb2_grpc.GatewayServiceStub,
        *,
        suite: int,
        now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._identity = identity
        self._stub = stub
        self.suite = suite
        self._now_ms = now_ms
        self._live: dict[str, Held] = {}
        self._opening: dict[str, asyncio.Future[Held]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.handshakes = 0
        """Sessions opened so far (each one handshake)."""

    def __len__(self) -> int:
        return len(self._live)

    def live(self, bureau: str) -> session.ClientSession | None:
        """The session now used with ``bureau``, if any."""
        held = self._live.get(bureau)
        return held.session if held is not None else None

    async def acquire(self, peer: Peer, timeout: float) -> Held:
        """A usable session with ``peer``, opened if need be (shared with every caller
        waiting for the same peer), counted in flight until :meth:`release`.

        Raises ``grpc.aio.AioRpcError`` if the gateway refused or could not deliver the
        OPEN, :class:`~ncbsim.errors.EnvelopeError` if the ACCEPT did not verify.
        """
        held = self._current(peer)
        if held is None:
            pending = self._opening.get(peer.bureau)
            if pending is None:
                pending = self._start([peer], timeout)[peer.bureau]
            held = await asyncio.shield(pending)
        held.in_flight += 1
        return held

    async def acquire_many(
        self, peers: Sequence[Peer], timeout: float
    ) -> dict[str, Held | BaseException]:
        """:meth:`acquire` for each of ``peers`` (distinct bureaus), the sessions missing
        opened together in one MultiQuery; a peer that could not be given one maps to its
        error (:class:`HandshakeError`, ``grpc.aio.AioRpcError``), alone."""
        pending: dict[str, asyncio.Future[Held]] = {}
        result: dict[str, Held | BaseException] = {}
        missing = []
        for peer in peers:
            held = self._current(peer)
            if held is not None:
                held.in_flight += 1  # now: it must not be closed while we wait for others
                result[peer.bureau] = held
            elif peer.bureau in self._opening:
                pending[peer.bureau] = self._opening[peer.bureau]
            else:
                missing.append(peer)
        if missing:
            pending.update(self._start(missing, timeout))
        for bureau, future in pending.items():
            try:
                opened = await asyncio.shield(future)
            except (grpc.aio.AioRpcError, HandshakeError, EnvelopeError) as exc:
                result[bureau] = exc
            else:
                opened.in_flight += 1
                result[bureau] = opened
        return {peer.bureau: result[peer.bureau] for peer in peers}

    def release(self, held: Held) -> None:
        """One request of ``held`` is done; a retired session is closed once idle."""
        held.in_flight -= 1
        if held.retired and held.in_flight == 0:
            self._finish(held)

    def drop(self, held: Held) -> None:
        """The node refused ``held``'s session (FAILED_PRECONDITION): use it no more; its
        keys are erased once its other requests are done. Nothing is sent to the node."""
        self._retire(held, close=False)

    async def ask(
        self,
        peer: Peer,
        body: bytes,
        *,
        timeout: float,
        now_ms: Callable[[], int],
        sealed: Sealed,
        returned: Callable[[Sent], T],
    ) -> T | BaseException:
        """Send ``body`` to ``peer`` in its session (Query) and make ``returned`` of what
        came back. If the node no longer holds the session, it is dropped and ``body``
        sent once more in a new one (``returned`` hears both). The error if no session
        could be opened (``grpc.aio.AioRpcError``, :class:`HandshakeError`)."""
        for last in (False, True):
            try:
                held = await self.acquire(peer, timeout)
            except (grpc.aio.AioRpcError, HandshakeError, EnvelopeError) as exc:
                return exc
            try:
                request = held.session.seal_request(body, now_ms=now_ms())
            except SessionRefused as exc:  # it ended between acquire and now
                self.drop(held)
                self.release(held)
                if last:
                    return exc
                continue
            try:
                sealed([request])
                try:
                    reply = await self._stub.Query(
                        gateway_pb2.QueryRequest(envelope=request.envelope), timeout=timeout
                    )
                    sent = Sent(request, response=reply.envelope)
                except grpc.aio.AioRpcError as exc:
                    sent = Sent(request, error=exc)
                if sent.session_refused:
                    self.drop(held)
            finally:
                self.release(held)
            result = returned(sent)
            if last or not sent.session_refused:
                return result
        raise AssertionError("the last attempt always returns")  # pragma: no cover

    async def ask_many(
        self,
        peers: Sequence[Peer],
        body: bytes,
        *,
        correlation_id: bytes,
        timeout: float,
        now_ms: Callable[[], int],
        sealed: Sealed,
        returned: Callable[[Sent], T],
    ) -> dict[str, T | BaseException]:
        """:meth:`ask` for several peers (distinct bureaus): the missing sessions opened
        in one MultiQuery, then one MultiQuery of requests sharing ``correlation_id``;
        the bureaus whose node no longer holds the session asked again once, together.
        A bureau the gateway left out of its reply is left out here."""
        results: dict[str, T | BaseException] = {}
        pending = list(peers)
        for last in (False, True):
            acquired = await self.acquire_many(pending, timeout)
            held = {b: h for b, h in acquired.items() if isinstance(h, Held)}
            results.update((b, e) for b, e in acquired.items() if not isinstance(e, Held))
            try:
                requests: dict[str, session.SessionRequest] = {}
                for bureau, item in held.items():
                    try:
                        requests[bureau] = item.session.seal_request(
                            body, now_ms=now_ms(), correlation_id=correlation_id
                        )
                    except SessionRefused as exc:
                        self.drop(item)
                        results[bureau] = exc
                sent = await self._send_many(requests, timeout, sealed)
                for s in sent.values():
                    if s.session_refused:
                        self.drop(held[s.request.header.recipient])
            finally:
                for item in held.values():
                    self.release(item)
            for bureau, s in sent.items():
                results[bureau] = returned(s)
            retry = {b for b, r in results.items() if isinstance(r, SessionRefused)}
            retry |= {b for b, s in sent.items() if s.session_refused}
            pending = [p for p in pending if p.bureau in retry]
            if last or not pending:
                break
        return results

    async def _send_many(
        self, requests: dict[str, session.SessionRequest], timeout: float, sealed: Sealed
    ) -> dict[str, Sent]:
        """``requests`` in one MultiQuery: what came of each the reply names."""
        if not requests:
            return {}
        sealed(list(requests.values()))
        call = gateway_pb2.MultiQueryRequest(envelopes=[r.envelope for r in requests.values()])
        try:
            reply = await self._stub.MultiQuery(call, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            return {b: Sent(r, error=exc) for b, r in requests.items()}
        sent: dict[str, Sent] = {}
        for delivery in reply.deliveries:
            request = requests.get(delivery.bureau)
            if request is None or delivery.bureau in sent:
                continue
            if delivery.status == gateway_pb2.DELIVERY_STATUS_DELIVERED:
                sent[delivery.bureau] = Sent(request, response=delivery.response)
            else:
                sent[delivery.bureau] = Sent(request, delivery=delivery)
        return sent

    async def close(self) -> None:
        """Close every session (SESSION_CLOSE, short deadline, errors ignored) and erase."""
        for future in list(self._opening.values()):
            future.cancel()
        for held in list(self._live.values()):
            self._retire(held, close=True)
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _current(self, peer: Peer) -> Held | None:
        """The live session with ``peer`` if it may still carry a request; starts its
        successor in the background when it is due for rekey; retires it if it is over a
        bound or the peer's entry changed."""
        held = self._live.get(peer.bureau)
        if held is None:
            return None
        now_ms = self._now_ms()
        live = held.session
        same_keys = (
            live.peer_signing_key_id == peer.signing_key_id
            and live.peer_encryption_key_id == peer.encryption_key_id
        )
        if not same_keys or not live.usable(now_ms):
            self._retire(held, close=live.usable(now_ms))
            return None
        if live.due_for_rekey(now_ms) and peer.bureau not in self._opening:
            self._start([peer], REKEY_TIMEOUT_S)
        return held

    def _start(self, peers: Sequence[Peer], timeout: float) -> dict[str, asyncio.Future[Held]]:
        """Open sessions with ``peers`` in one task; a future for each, in ``_opening``
        until it is settled."""
        loop = asyncio.get_running_loop()
        futures: dict[str, asyncio.Future[Held]] = {}
        for peer in peers:
            future: asyncio.Future[Held] = loop.create_future()
            # Retrieved here, so a handshake nobody waits for (a rekey) logs no warning.
            future.add_done_callback(_consume)
            futures[peer.bureau] = future
        self._opening.update(futures)
        self._spawn(self._open(list(peers), futures, timeout))
        return futures

    async def _open(
        self, peers: list[Peer], futures: dict[str, asyncio.Future[Held]], timeout: float
    ) -> None:
        try:
            results = await self._handshakes(peers, timeout)
        except BaseException as exc:  # the call itself failed (or was cancelled): all fail
            results = dict.fromkeys((p.bureau for p in peers), exc)
        for peer in peers:
            future = futures[peer.bureau]
            if self._opening.get(peer.bureau) is future:
                del self._opening[peer.bureau]
            outcome = results[peer.bureau]
            if future.done():  # cancelled by close()
                if isinstance(outcome, session.ClientSession):
                    outcome.erase()
            elif isinstance(outcome, session.ClientSession):
                future.set_result(self._install(peer, outcome))
            elif isinstance(outcome, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(outcome)

    def _install(self, peer: Peer, opened: session.ClientSession) -> Held:
        """Make ``opened`` the live session with ``peer``; the one it replaces is closed
        once its requests in flight are done."""
        self.handshakes += 1
        previous = self._live.get(peer.bureau)
        held = Held(opened, peer)
        self._live[peer.bureau] = held
        if previous is not None:
            self._retire(previous, close=True)
        log.debug("session_opened", peer=peer.bureau, suite=opened.suite)
        return held

    async def _handshakes(
        self, peers: list[Peer], timeout: float
    ) -> dict[str, session.ClientSession | BaseException]:
        """OPEN to each of ``peers`` (Query for one, one MultiQuery for several), then
        each ACCEPT checked: a session, or why there is none, by bureau."""
        openings = {
            p.bureau: session.open_session(
                self._identity, p, suite=self.suite, now_ms=self._now_ms()
            )
            for p in peers
        }
        accepts: dict[str, envelope.Envelope | BaseException] = {}
        if len(peers) == 1:
            ((bureau, opening),) = openings.items()
            reply = await self._stub.Query(
                gateway_pb2.QueryRequest(envelope=opening.envelope), timeout=timeout
            )
            accepts[bureau] = reply.envelope
        else:
            request = gateway_pb2.MultiQueryRequest(
                envelopes=[o.envelope for o in openings.values()]
            )
            multi = await self._stub.MultiQuery(request, timeout=timeout)
            for delivery in multi.deliveries:
                if delivery.bureau not in openings or delivery.bureau in accepts:
                    continue
                if delivery.status == gateway_pb2.DELIVERY_STATUS_DELIVERED:
                    accepts[delivery.bureau] = delivery.response
                else:
                    no_answer = delivery.status == gateway_pb2.DELIVERY_STATUS_NO_ANSWER
                    accepts[delivery.bureau] = HandshakeError(
                        f"session not opened: {delivery.detail}", unreachable=no_answer
                    )
        results: dict[str, session.ClientSession | BaseException] = {}
        by_code = {p.bureau: p for p in peers}
        for bureau, opening in openings.items():
            accept = accepts.get(bureau, HandshakeError("missing from reply", unreachable=True))
            if isinstance(accept, BaseException):
                results[bureau] = accept
                continue
            try:
                results[bureau] = session.finish_session(
                    opening, accept, sender=self._identity, peer=by_code[bureau],
                    now_ms=self._now_ms(),
                )  # fmt: skip
            except EnvelopeError:
                results[bureau] = HandshakeError("session handshake did not verify")
        return results

    def _retire(self, held: Held, *, close: bool) -> None:
        """Take ``held`` out of use; close (or erase) it once its requests are done."""
        if self._live.get(held.peer.bureau) is held:
            del self._live[held.peer.bureau]
        if held.retired:
            held.close = held.close and close
            return
        held.retired, held.close = True, close
        if held.in_flight == 0:
            self._finish(held)

    def _finish(self, held: Held) -> None:
        if held.close:
            self._spawn(self._send_close(held))
        else:
            held.session.erase()

    async def _send_close(self, held: Held) -> None:
        """SESSION_CLOSE for ``held`` and its SESSION_CLOSED checked; errors ignored (the
        node ends the session at its bound anyway); the keys are erased either way."""
        live = held.session
        try:
            close = live.close(now_ms=self._now_ms())
            reply = await self._stub.Query(
                gateway_pb2.QueryRequest(envelope=close), timeout=CLOSE_TIMEOUT_S
            )
            live.check_closed(close, reply.envelope, peer=held.peer, now_ms=self._now_ms())
            log.debug("session_closed", peer=held.peer.bureau)
        except (grpc.aio.AioRpcError, EnvelopeError, SessionRefused) as exc:
            log.debug("session_close_failed", peer=held.peer.bureau, error=type(exc).__name__)
        finally:
            live.erase()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _consume(future: asyncio.Future[Held]) -> None:
    if not future.cancelled():
        with contextlib.suppress(BaseException):
            future.exception()
