"""Helpers of the session tests: in-process identities FR, DE, IT and an open session FR -> DE."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ncbsim import _crypto, session
from ncbsim.directory import Peer
from ncbsim.envelope import Envelope, Header, Opened
from ncbsim.errors import DirectoryError
from ncbsim.identity import Identity

NOW = 1_767_225_600_000
"""2026-01-01T00:00:00Z."""
SUITE_IDS = {"classic": 1, "hybrid": 2}


def identity(bureau: str) -> Identity:
    """A fresh in-process identity."""
    return Identity.from_keys(bureau, _crypto.ed25519_generate(), _crypto.x25519_generate())


def senders(*identities: Identity) -> Callable[[str], Peer]:
    """A directory lookup that knows ``identities`` and raises DirectoryError otherwise."""
    peers = {one.bureau: one.as_peer() for one in identities}

    def lookup(bureau: str) -> Peer:
        try:
            return peers[bureau]
        except KeyError:
            raise DirectoryError(f"no entry for {bureau}") from None

    return lookup


@dataclass
class Pair:
    """FR's session with DE: FR's client side, DE's registry, and the handshake."""

    fr: Identity
    de: Identity
    it: Identity
    suite: int
    registry: session.ServerSessions
    opening: session.Opening
    accept: Envelope
    client: session.ClientSession
    now: int = NOW
    seed: bytes = field(default=b"", repr=False)

    def peer(self, bureau: str) -> Peer:
        """The directory peer of FR, DE or IT."""
        return {"FR": self.fr, "DE": self.de, "IT": self.it}[bureau].as_peer()

    def send(self, body: bytes = b"query", *, at: int = 0) -> session.SessionRequest:
        """FR seals its next request, ``at`` ms after the handshake."""
        return self.client.seal_request(body, now_ms=self.now + at)

    def receive(
        self, env: Envelope, *, at: int = 0, header: Header | None = None
    ) -> tuple[Opened, session.ServerSession, session.Covered | None]:
        """DE opens a request as its node would (header parsed on the way in)."""
        parsed = Header.parse(env.header) if header is None else header
        return self.registry.open_request(env, parsed, sender=self.peer("FR"), now_ms=self.now + at)

    def ask(self, body: bytes = b"query", *, at: int = 0) -> tuple[bytes, session.Covered | None]:
        """One full round trip: FR's request, DE's answer, FR opens it."""
        sent = self.send(body, at=at)
        opened, held, covered = self.receive(sent.envelope, at=at)
        reply = held.seal_response(
            b"answer:" + opened.plaintext, request=opened.header, now_ms=self.now + at
        )
        return self.client.open_response(sent, reply, now_ms=self.now + at).plaintext, covered


def make_pair(suite: int, *, seed: bytes | None = None, now: int = NOW) -> Pair:
    """A session FR -> DE of ``suite``, opened and accepted at ``now``."""
    fr, de, it = identity("FR"), identity("DE"), identity("IT")
    registry = session.ServerSessions(de, suite=suite)
    opening = session.open_session(fr, de.as_peer(), suite=suite, now_ms=now)
    accept = registry.accept(
        opening.envelope,
        opening.header,
        senders=senders(fr, de, it),
        now_ms=now,
        epoch_seed=seed,
    )
    client = session.finish_session(opening, accept, sender=fr, peer=de.as_peer(), now_ms=now)
    return Pair(fr, de, it, suite, registry, opening, accept, client, now, seed or b"")


def held_bytes(obj: object, seen: set[int] | None = None) -> list[bytes]:
    """Every bytes-like value reachable from ``obj`` through attributes and containers."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, int | str | float | type(None)):
        return []
    seen.add(id(obj))
    if isinstance(obj, bytes | bytearray):
        return [bytes(obj)]
    found: list[bytes] = []
    children: list[object] = []
    if isinstance(obj, dict):
        children = [*obj.keys(), *obj.values()]
    elif isinstance(obj, list | tuple | set | frozenset):
        children = list(obj)
    else:
        for klass in type(obj).__mro__:
            for name in getattr(klass, "__slots__", ()):
                if hasattr(obj, name):
                    children.append(getattr(obj, name))
        children += list(getattr(obj, "__dict__", {}).values())
    for child in children:
        found += held_bytes(child, seen)
    return found
