"""A locust user that is a real bureau: its own keys, query sessions, verified answers.

Each user loads one requester bureau's certificate and E2E keys from the plan's
PKI, fetches the targets' directory entries through the gateway and verifies
them against the pinned root, as a bureau does, then opens one query session
(envelope format 2, docs/protocol.md §15) with every target, in one MultiQuery of
SESSION_OPEN envelopes. Both are the user's warm-up (the fetch also opens the user's
TLS connection), reported as ``directory`` and ``session`` with request type
:data:`ncbsim.load.slo.WARM_UP`, which the SLO gate does not judge; so is every later
handshake (a rekey, a session the node no longer holds), made before the check that
needs it is timed. Every check is sealed in its bureau's session, as
:class:`ncbsim.client.BureauClient` does: one AEAD seal, one AEAD open, no key pair and
no signature per query. Every response is opened in its session; one that does not
open, or that gives the wrong answer for the corpus item, is reported as a failure.
A check whose session the node no longer holds (FAILED_PRECONDITION) is sent once more
in a new session, and judged on that answer. On stop, each session is closed.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import grpc

from ncbsim import padding
from ncbsim.client import open_session_answer
from ncbsim.directory import Directory, Peer
from ncbsim.errors import DirectoryError, SessionRefused
from ncbsim.identity import Identity
from ncbsim.load.grpc_user import Call, GrpcUser
from ncbsim.load.plan import Item, LoadPlan
from ncbsim.load.slo import WARM_UP
from ncbsim.load.user_sessions import UserSessions, delivery_refused, refused, wall_ms
from ncbsim.pki import GATEWAY_NAME, PkiDir
from ncbsim.session import SessionRequest
from ncbsim.v2 import gateway_pb2, gateway_pb2_grpc

_plans: dict[str, LoadPlan] = {}


def _plan(path: str) -> LoadPlan:
    """The plan at ``path``, read once per process."""
    if path not in _plans:
        _plans[path] = LoadPlan.read(Path(path))
    return _plans[path]


class BureauUser(GrpcUser):
    """One requester bureau sending checks through the gateway."""

    abstract = True
    _numbering: ClassVar[itertools.count[int]] = itertools.count()

    def on_start(self) -> None:
        """Become a bureau: load keys, connect, verify the targets' directory entries,
        open a session with each target."""
        options = self.environment.parsed_options
        self.plan = _plan(options.plan)
        runner = self.environment.runner
        worker_index = max(getattr(runner, "worker_index", 0), 0)
        self.bureau = self.plan.requester(next(self._numbering), worker_index)
        directory = PkiDir(Path(self.plan.pki_dir))
        self.identity = Identity.load(directory, self.bureau, now_ms=int(time.time() * 1000))
        channel = self.secure_channel(
            self.plan.gateway, directory.tls(self.bureau), peer_name=GATEWAY_NAME
        )
        self.gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        self.peers = self._verified_peers(Directory.pinned(directory))
        self.rng = random.Random()
        self.sessions = UserSessions(
            self.identity, self.gateway, suite=directory.suite, timeout_s=self.plan.deadline_s
        )
        self._ensure(list(self.peers.values()))

    def _verified_peers(self, directory: Directory) -> dict[str, Peer]:
        with self.call("directory", request_type=WARM_UP) as call:
            reply = self.gateway.GetDirectory(
                gateway_pb2.GetDirectoryRequest(bureaus=self.plan.targets),
                timeout=self.plan.deadline_s,
            )
            call.response_length = reply.ByteSize()
            for entry in reply.entries:
                try:
                    directory.add([entry.SerializeToString()])
                except DirectoryError:
                    call.fail("directory entry did not verify against the root")
        return {b: directory.get(b) for b in self.plan.targets if b in directory}

    def _pick(self, kind: str) -> Item:
        return self.rng.choice(self.plan.corpus[kind])

    def _peer(self, call: Call, bureau: str) -> Peer | None:
        peer = self.peers.get(bureau)
        if peer is None:
            call.fail(f"{bureau}: no verified directory entry")
        return peer

    def _ensure(self, peers: Sequence[Peer]) -> None:
        """Open the sessions ``peers`` need (none held, ended, or due for rekey) in one
        call, reported as warm-up ``session``; the sessions they replace are closed."""
        needed = self.sessions.needed(peers)
        if not needed:
            return
        with self.call("session", request_type=WARM_UP) as call:
            call.response_length, failed = self.sessions.open(needed)
            if failed:
                call.fail("; ".join(failed.values()))

    def _seal(
        self, call: Call, peer: Peer, body: bytes, correlation: bytes | None = None
    ) -> SessionRequest | None:
        """``body`` sealed in ``peer``'s session, or None (the call failed) if there is none."""
        live = self.sessions.get(peer.bureau)
        if live is None:
            call.fail(f"{peer.bureau}: no session")
            return None
        try:
            return live.seal_request(body, now_ms=wall_ms(), correlation_id=correlation)
        except SessionRefused:
            call.fail(f"{peer.bureau}: session ended")
            return None

    def send_query(self, kind: str) -> None:
        """One check of ``kind`` (document, person, vehicle or fetch) to one bureau."""
        item = self._pick(kind)
        if item.to in self.peers:
            self._ensure([self.peers[item.to]])  # a handshake is warm-up, not the check's
        with self.call(kind) as call:
            peer = self._peer(call, item.to)
            if peer is None:
                return
            body = padding.padded(item.request(), padding.REQUEST_BYTES)  # no response key
            for last in (False, True):
                request = self._seal(call, peer, body)
                if request is None:
                    return
                try:
                    reply = self.gateway.Query(
                        gateway_pb2.QueryRequest(envelope=request.envelope),
                        timeout=self.plan.deadline_s,
                    )
                except grpc.RpcError as exc:
                    if last or not refused(exc):
                        raise
                    # The node no longer holds the session: a new one, and the check again.
                    self.sessions.drop(peer.bureau)
                    self._ensure([peer])
                    continue
                call.response_length = reply.ByteSize()
                answer = open_session_answer(request, reply.envelope, 0.0, wall_ms())
                reason = item.mismatch(answer)
                if reason:
                    call.fail(reason)
                return

    def send_multi(self) -> None:
        """One document checked at every target bureau at once (a merged reply), each
        bureau's request in its own session."""
        item = self._pick("multi")
        self._ensure(list(self.peers.values()))
        with self.call("multi") as call:
            correlation = self.rng.randbytes(16)
            body = padding.padded(item.request(), padding.REQUEST_BYTES)
            pending = list(self.peers.values())
            for last in (False, True):
                requests: dict[str, SessionRequest] = {}
                for peer in pending:
                    request = self._seal(call, peer, body, correlation)
                    if request is None:
                        return
                    requests[peer.bureau] = request
                reply = self.gateway.MultiQuery(
                    gateway_pb2.MultiQueryRequest(
                        envelopes=[r.envelope for r in requests.values()]
                    ),
                    timeout=self.plan.deadline_s,
                )
                call.response_length += reply.ByteSize()
                answered: dict[str, gateway_pb2.Delivery] = {}
                for delivery in reply.deliveries:
                    answered.setdefault(delivery.bureau, delivery)
                retry = [
                    self.peers[b]
                    for b in requests
                    if not last and b in answered and delivery_refused(answered[b])
                ]
                again = {p.bureau for p in retry}
                for bureau, request in requests.items():
                    if bureau in again:
                        continue
                    reason = self._multi_mismatch(item, request, answered.get(bureau))
                    if reason:
                        call.fail(reason)
                        return
                if not retry:
                    return
                # Those nodes no longer hold the session: new ones, and their checks again.
                for peer in retry:
                    self.sessions.drop(peer.bureau)
                self._ensure(retry)
                pending = retry

    @staticmethod
    def _multi_mismatch(
        item: Item, request: SessionRequest, delivery: gateway_pb2.Delivery | None
    ) -> str | None:
        """Why one bureau's part of a merged reply is wrong, or None."""
        bureau = request.header.recipient
        if delivery is None or delivery.status != gateway_pb2.DELIVERY_STATUS_DELIVERED:
            detail = f" ({delivery.detail})" if delivery is not None and delivery.detail else ""
            return f"{bureau}: no answer in the merged reply{detail}"
        answer = open_session_answer(request, delivery.response, 0.0, wall_ms())
        # The owner must find its document; every other bureau must not.
        expected = Item(bureau, item.query, item.expect if bureau == item.to else None)
        return expected.mismatch(answer)

    def on_stop(self) -> None:
        """Close every session (SESSION_CLOSE, best effort), then the channels."""
        sessions: UserSessions | None = getattr(self, "sessions", None)
        if sessions is not None:
            sessions.close_all()
        super().on_stop()


def name_target(environment: Any, **_kwargs: Any) -> None:
    """``init`` hook: name the plan's target as locust's host, unless ``--host`` named one.

    Locust's HTML report shows ``environment.host`` as its "Target Host".
    """
    path = getattr(environment.parsed_options, "plan", None)
    if environment.host is None and path:
        environment.host = _plan(path).describe()


def add_arguments(parser: Any) -> None:
    """Locust command-line options of the bureau users (``init_command_line_parser``)."""
    parser.add_argument(
        "--plan",
        env_var="NCBSIM_LOAD_PLAN",
        required=True,
        help="plan.json written by `ncbsim load` (gateway, PKI, requesters, corpus)",
    )
