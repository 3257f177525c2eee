"""A locust user that is a real bureau: its own keys, fresh sealed envelopes, verified answers.

Each user loads one requester bureau's certificate and E2E keys from the plan's
PKI, fetches the targets' directory entries through the gateway and verifies
them against the pinned root, as a bureau does. That fetch is the user's
warm-up (it also opens the user's TLS connection): it is reported as
``directory`` with request type :data:`ncbsim.load.slo.WARM_UP`, which the SLO gate
does not judge. Every request is sealed afresh
(new message id, new response key), so a recipient never sees a replay. Every
response is verified and opened; one that does not verify, or that gives the
wrong answer for the corpus item, is reported as a failure.
"""

from __future__ import annotations

import itertools
import random
import time
from pathlib import Path
from typing import Any, ClassVar

from ncbsim.client import open_answer, seal_query
from ncbsim.directory import Directory, Peer
from ncbsim.errors import DirectoryError
from ncbsim.identity import Identity
from ncbsim.load.grpc_user import Call, GrpcUser
from ncbsim.load.plan import Item, LoadPlan
from ncbsim.load.slo import WARM_UP
from ncbsim.pki import GATEWAY_NAME, PkiDir
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
        """Become a bureau: load keys, connect, verify the targets' directory entries."""
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

    def send_query(self, kind: str) -> None:
        """One check of ``kind`` (document, person, vehicle or fetch) to one bureau."""
        item = self._pick(kind)
        with self.call(kind) as call:
            peer = self._peer(call, item.to)
            if peer is None:
                return
            sealed = seal_query(self.identity, peer, item.request())
            reply = self.gateway.Query(
                gateway_pb2.QueryRequest(envelope=sealed.envelope), timeout=self.plan.deadline_s
            )
            call.response_length = reply.ByteSize()
            reason = item.mismatch(open_answer(sealed, reply.envelope, peer))
            if reason:
                call.fail(reason)

    def send_multi(self) -> None:
        """One document checked at every target bureau at once (a merged reply)."""
        item = self._pick("multi")
        with self.call("multi") as call:
            correlation = self.rng.randbytes(16)
            sealed = {
                b: seal_query(self.identity, p, item.request(), correlation)
                for b, p in self.peers.items()
            }
            reply = self.gateway.MultiQuery(
                gateway_pb2.MultiQueryRequest(envelopes=[s.envelope for s in sealed.values()]),
                timeout=self.plan.deadline_s,
            )
            call.response_length = reply.ByteSize()
            answered = {d.bureau: d for d in reply.deliveries if d.bureau in sealed}
            for bureau, request in sealed.items():
                delivery = answered.get(bureau)
                if delivery is None or delivery.status != gateway_pb2.DELIVERY_STATUS_DELIVERED:
                    call.fail(f"{bureau}: no answer in the merged reply")
                    return
                answer = open_answer(request, delivery.response, self.peers[bureau])
                # The owner must find its document; every other bureau must not.
                expected = Item(bureau, item.query, item.expect if bureau == item.to else None)
                reason = expected.mismatch(answer)
                if reason:
                    call.fail(reason)
                    return


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
