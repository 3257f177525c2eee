"""A load user's query sessions (format 2, docs/protocol.md §15), over a synchronous stub.

:class:`UserSessions` holds one :class:`~ncbsim.session.ClientSession` per target bureau
for one locust user, the sync counterpart of :class:`ncbsim.client_sessions.SessionPool`
(locust users are gevent greenlets that call the ordinary sync stubs, and one user runs
one task at a time, so nothing here is shared or awaited):

- :meth:`UserSessions.open` does the handshakes, one Query of a SESSION_OPEN for one
  bureau or one MultiQuery of them for several, and checks every SESSION_ACCEPT; a
  session it replaces (a rekey) is then closed;
- :meth:`UserSessions.needed` says which bureaus need a new session before the next
  request: none held, one past a bound, or one due for rekey (50 s or 9,000 requests);
- :meth:`UserSessions.drop` forgets a session the node no longer holds
  (FAILED_PRECONDITION), and :meth:`UserSessions.close_all` says SESSION_CLOSE for every
  session, best effort, and erases the keys.

It neither times nor reports anything: the locust user wraps each handshake in a call of
its own (``load/bureau_user.py``). Nothing here reads a payload or logs a key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import grpc

from ncbsim import session
from ncbsim.client_sessions import CLOSE_TIMEOUT_S
from ncbsim.directory import Peer
from ncbsim.envelope import Envelope
from ncbsim.errors import EnvelopeError, SessionRefused
from ncbsim.identity import Identity
from ncbsim.v2 import gateway_pb2, gateway_pb2_grpc

REFUSED = grpc.StatusCode.FAILED_PRECONDITION
"""The node's one distinguishable refusal of a session request: it holds no such session
(it restarted, or the session ended); the requester opens a new one."""


def wall_ms() -> int:
    """The wall clock in milliseconds (the sessions' default clock)."""
    return int(time.time() * 1000)


def refused(error: grpc.RpcError) -> bool:
    """Whether a failed Query says the node no longer holds the session."""
    return isinstance(error, grpc.Call) and bool(error.code() == REFUSED)


def delivery_refused(delivery: gateway_pb2.Delivery) -> bool:
    """Whether a MultiQuery delivery says the node no longer holds the session."""
    return bool(delivery.detail == REFUSED.name)


class UserSessions:
    """``identity``'s sessions with its target bureaus, through the gateway ``stub``.

    ``suite`` is the network's (``PkiDir.suite``); ``timeout_s`` each handshake's gRPC
    deadline; ``now_ms`` the clock the envelopes are dated by.
    """

    def __init__(
        self,
        identity: Identity,
        stub: gateway_pb2_grpc.GatewayServiceStub,
        *,
        suite: int,
        timeout_s: float,
        now_ms: Callable[[], int] = wall_ms,
    ) -> None:
        self._identity = identity
        self.stub = stub
        self.suite = suite
        self.timeout_s = timeout_s
        self.now_ms = now_ms
        self._live: dict[str, tuple[session.ClientSession, Peer]] = {}
        self.handshakes = 0
        """Sessions opened so far (each one verified handshake)."""

    def __len__(self) -> int:
        return len(self._live)

    def get(self, bureau: str) -> session.ClientSession | None:
        """The session held with ``bureau``, if any."""
        held = self._live.get(bureau)
        return held[0] if held is not None else None

    def needed(self, peers: Sequence[Peer]) -> list[Peer]:
        """Those of ``peers`` to open a session with before the next request: no session
        held, one that may carry no more requests, or one due for rekey."""
        now = self.now_ms()
        return [
            p
            for p in peers
            if (live := self.get(p.bureau)) is None
            or not live.usable(now)
            or live.due_for_rekey(now)
        ]

    def open(self, peers: Sequence[Peer]) -> tuple[int, dict[str, str]]:
        """Open a session with each of ``peers`` (distinct bureaus): one Query of a
        SESSION_OPEN for one, one MultiQuery of them for several. Each ACCEPT that
        verifies installs its session and closes the one it replaces.

        Returns the reply's size and, by bureau, why no session was opened. A failed
        gateway call raises its ``grpc.RpcError`` (no session opened).
        """
        if not peers:
            return 0, {}
        now = self.now_ms()
        openings = {
            p.bureau: session.open_session(self._identity, p, suite=self.suite, now_ms=now)
            for p in peers
        }
        accepts: dict[str, Envelope] = {}
        failed: dict[str, str] = {}
        try:
            if len(openings) == 1:
                ((bureau, opening),) = openings.items()
                reply = self.stub.Query(
                    gateway_pb2.QueryRequest(envelope=opening.envelope), timeout=self.timeout_s
                )
                accepts[bureau] = reply.envelope
                size = reply.ByteSize()
            else:
                multi = self.stub.MultiQuery(
                    gateway_pb2.MultiQueryRequest(
                        envelopes=[o.envelope for o in openings.values()]
                    ),
                    timeout=self.timeout_s,
                )
                size = multi.ByteSize()
                for delivery in multi.deliveries:
                    if delivery.bureau not in openings or delivery.bureau in accepts:
                        continue
                    if delivery.status == gateway_pb2.DELIVERY_STATUS_DELIVERED:
                        accepts[delivery.bureau] = delivery.response
                    else:
                        status = gateway_pb2.DeliveryStatus.Name(delivery.status)
                        failed[delivery.bureau] = (
                            f"{status.removeprefix('DELIVERY_STATUS_')} {delivery.detail}".strip()
                        )
        except grpc.RpcError:
            for opening in openings.values():
                opening.erase()
            raise
        by_code = {p.bureau: p for p in peers}
        for bureau, opening in openings.items():
            accept = accepts.get(bureau)
            if accept is None:
                failed.setdefault(bureau, "missing from the reply")
                opening.erase()
                continue
            try:
                opened = session.finish_session(
                    opening, accept, sender=self._identity, peer=by_code[bureau],
                    now_ms=self.now_ms(),
                )  # fmt: skip
            except EnvelopeError:
                failed[bureau] = "session handshake did not verify"
                opening.erase()
                continue
            self._install(by_code[bureau], opened)
        return size, {b: f"{b}: session not opened: {why}" for b, why in failed.items()}

    def _install(self, peer: Peer, opened: session.ClientSession) -> None:
        """Make ``opened`` the session with ``peer``; say goodbye to the one it replaces."""
        self.handshakes += 1
        previous = self._live.get(peer.bureau)
        self._live[peer.bureau] = (opened, peer)
        if previous is not None:
            self._goodbye(*previous)

    def drop(self, bureau: str) -> None:
        """The node no longer holds the session with ``bureau``: erase it, sending nothing."""
        held = self._live.pop(bureau, None)
        if held is not None:
            held[0].erase()

    def close_all(self) -> None:
        """SESSION_CLOSE for every session (short deadline, errors ignored), keys erased."""
        while self._live:
            _bureau, held = self._live.popitem()
            self._goodbye(*held)

    def _goodbye(self, live: session.ClientSession, peer: Peer) -> None:
        """SESSION_CLOSE for ``live`` and its SESSION_CLOSED checked, if it can still be
        said; failures ignored (the node ends the session at its bound anyway); the keys
        are erased either way."""
        try:
            if not live.usable(self.now_ms()):
                return
            close = live.close(now_ms=self.now_ms())
            reply = self.stub.Query(
                gateway_pb2.QueryRequest(envelope=close), timeout=CLOSE_TIMEOUT_S
            )
            live.check_closed(close, reply.envelope, peer=peer, now_ms=self.now_ms())
        except (grpc.RpcError, EnvelopeError, SessionRefused):
            pass
        finally:
            live.erase()
