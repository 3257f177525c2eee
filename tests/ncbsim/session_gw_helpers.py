"""What the session attack tests share: FR's session with DE set up through the core
(``Pair``), and the tools of a gateway that holds every envelope and no bureau's key:
rewriting a header field, re-signing with a key of its own, stripping or replacing a
checkpoint. Everything is spelled out from docs/protocol.md §15, not taken from the code
under test."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from envelope_helpers import NOW, _identity, _senders

from ncbsim import _crypto, envelope, session
from ncbsim.identity import Identity
from ncbsim.v2 import envelope_pb2, query_pb2, session_pb2

SIGNED_V2 = b"ncbsim/v2 envelope\x00"
CHECKPOINT_CONTEXT = b"ncbsim/v2 checkpoint\x00"
LEAF_CONTEXT = b"ncbsim/v2 leaf\x00"
QUERY = query_pb2.Query(vehicle=query_pb2.VehicleQuery(plate="CANARY-42")).SerializeToString()
ANSWER = query_pb2.Answer(hits=query_pb2.Hits()).SerializeToString()


def signed_v2(header: bytes, sealed: bytes) -> bytes:
    """signed_message_v2 of §15.2."""
    return SIGNED_V2 + len(header).to_bytes(4, "big") + header + sealed


def leaf(header: bytes, sealed: bytes) -> bytes:
    """leaf(request) of §15.6."""
    digest = hashlib.sha256(sealed).digest()
    return hashlib.sha256(LEAF_CONTEXT + len(header).to_bytes(4, "big") + header + digest).digest()


def copy(item: envelope.Envelope, **fields: Any) -> envelope.Envelope:
    """``item`` with some of its four fields replaced."""
    out = envelope.Envelope()
    out.CopyFrom(item)
    for name, value in fields.items():
        setattr(out, name, value)
    return out


def rewrite(raw: bytes, **fields: Any) -> bytes:
    """Header bytes with some fields changed (what the gateway can do to the clear header)."""
    header = envelope_pb2.Header.FromString(raw)
    for name, value in fields.items():
        setattr(header, name, value)
    changed = header.SerializeToString()
    assert changed != raw
    return changed


def resign(item: envelope.Envelope, signer: Identity, **fields: Any) -> envelope.Envelope:
    """``item`` with fields changed and signed again by ``signer`` (not its sender)."""
    out = copy(item, **fields)
    out.signature = _crypto.ed25519_sign(signer.signing_key, signed_v2(out.header, out.sealed))
    return out


def sign_checkpoint(signer: Identity, checkpoint: session_pb2.Checkpoint) -> bytes:
    """A SignedCheckpoint over ``checkpoint``, signed by ``signer``."""
    body = checkpoint.SerializeToString()
    signature = _crypto.ed25519_sign(signer.signing_key, CHECKPOINT_CONTEXT + body)
    return session_pb2.SignedCheckpoint(checkpoint=body, signature=signature).SerializeToString()


def header_of(item: envelope.Envelope) -> envelope_pb2.Header:
    return envelope_pb2.Header.FromString(item.header)


@dataclass
class Pair:
    """FR holds a session with DE (DE's registry ``server``); IT is a third bureau that
    both know. ``opening`` and ``accept`` are the handshake the gateway relayed."""

    fr: Identity
    de: Identity
    it: Identity
    server: session.ServerSessions
    client: session.ClientSession
    opening: session.Opening
    accept: envelope.Envelope
    suite: int
    sent: list[session.SessionRequest] = field(default_factory=list)

    def senders(self) -> Any:
        return _senders(self.fr, self.de, self.it)

    def send(
        self, plaintext: bytes = QUERY, *, now: int = NOW + 10, ttl_ms: int = 30_000
    ) -> session.SessionRequest:
        """FR seals its next request in the session."""
        request = self.client.seal_request(plaintext, now_ms=now, ttl_ms=ttl_ms)
        self.sent.append(request)
        return request

    def receive(
        self, item: envelope.Envelope, *, now: int = NOW + 11, sender: Identity | None = None
    ) -> tuple[envelope.Opened, session.ServerSession, session.Covered | None]:
        """DE opens a request the gateway delivered."""
        return self.server.open_request(
            item,
            envelope.unverified_header(item),
            sender=(sender or self.fr).as_peer(),
            now_ms=now,
        )

    def answer(self, item: envelope.Envelope, *, now: int = NOW + 12) -> envelope.Envelope:
        """DE opens a request and seals its answer."""
        opened, held, _ = self.receive(item, now=now)
        return held.seal_response(ANSWER, request=opened.header, now_ms=now)


def handshake(
    fr: Identity,
    de: Identity,
    server: session.ServerSessions,
    *,
    suite: int,
    now: int = NOW,
    it: Identity | None = None,
) -> tuple[session.Opening, envelope.Envelope, session.ClientSession]:
    """FR opens a session with DE through an honest relay."""
    senders = _senders(fr, de, *([it] if it else []))
    opening = session.open_session(fr, de.as_peer(), suite=suite, now_ms=now)
    accept = server.accept(opening.envelope, opening.header, senders=senders, now_ms=now + 1)
    client = session.finish_session(opening, accept, sender=fr, peer=de.as_peer(), now_ms=now + 2)
    return opening, accept, client


def make_pair(suite: int = session.DEFAULT_SUITE) -> Pair:
    fr, de, it = _identity("FR"), _identity("DE"), _identity("IT")
    server = session.ServerSessions(de, suite=suite)
    opening, accept, client = handshake(fr, de, server, suite=suite, it=it)
    return Pair(fr, de, it, server, client, opening, accept, suite)
