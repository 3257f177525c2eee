"""A compromised gateway's direct line to a node, for attacks on format 2 sessions that
the classroom gateway has no mode for: it holds the gateway's TLS key (so the node takes
its calls) and the genuine envelopes of FR's session (made here with FR's keys through
the session core, exactly as FR's client seals them), and sends them to the node's
``Bureau.Handle`` as it likes: twice, after a restart, without their checkpoints."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from ncbsim import envelope, session
from ncbsim.directory import Directory, Peer
from ncbsim.identity import Identity
from ncbsim.pki import PkiDir, bureau_dns_name
from ncbsim.v2 import bureau_pb2

DEADLINE_S = 10.0
HANDLE = "/ncbsim.v2.BureauService/Handle"


@dataclass
class Reply:
    """What the node answered one Handle call."""

    code: grpc.StatusCode
    detail: str
    envelope: envelope.Envelope | None


@dataclass
class GatewayLine:
    """The gateway's channel to one node, and FR's keys to make genuine session envelopes."""

    channel: grpc.Channel
    sender: Identity
    recipient: Peer
    suite: int

    def handle(self, item: envelope.Envelope) -> Reply:
        """Send ``item`` to the node's Bureau.Handle as the gateway would."""
        call = self.channel.unary_unary(
            HANDLE,
            request_serializer=bureau_pb2.HandleRequest.SerializeToString,
            response_deserializer=bureau_pb2.HandleResponse.FromString,
        )
        try:
            reply = call(bureau_pb2.HandleRequest(envelope=item), timeout=DEADLINE_S)
        except grpc.RpcError as exc:
            return Reply(exc.code(), exc.details() or "", None)  # type: ignore[attr-defined]
        return Reply(grpc.StatusCode.OK, "", reply.envelope)

    def open(self) -> session.ClientSession:
        """FR's session with the node, set up through Handle (OPEN, then ACCEPT)."""
        now = int(time.time() * 1000)
        opening = session.open_session(self.sender, self.recipient, suite=self.suite, now_ms=now)
        reply = self.handle(opening.envelope)
        assert reply.code == grpc.StatusCode.OK, reply
        assert reply.envelope is not None
        return session.finish_session(
            opening,
            reply.envelope,
            sender=self.sender,
            peer=self.recipient,
            now_ms=int(time.time() * 1000),
        )


def node_address(workdir: Path, bureau: str) -> str:
    """Where ``bureau``'s node of the evil network listens (its ready file says)."""
    ready = json.loads((workdir / "run" / f"node-{bureau}.json").read_text())
    return str(ready["address"])


@contextmanager
def gateway_line(workdir: Path, address: str, *, to: str, as_: str = "FR") -> Iterator[GatewayLine]:
    """A channel with the gateway's certificate to ``to``'s node at ``address``, and
    ``as_``'s identity; closed afterwards."""
    pki = PkiDir(workdir)
    tls = pki.tls("gateway")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.root, private_key=tls.key, certificate_chain=tls.cert
    )
    channel = grpc.secure_channel(
        address, credentials, options=[("grpc.ssl_target_name_override", bureau_dns_name(to))]
    )
    try:
        yield GatewayLine(
            channel=channel,
            sender=Identity.load(pki, as_, now_ms=int(time.time() * 1000)),
            recipient=Directory.from_pki(pki).get(to),
            suite=pki.suite,
        )
    finally:
        channel.close()
