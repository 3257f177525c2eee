"""Format-2 traffic made in memory, for the proof log's and the proofs' tests.

A real session between two bureaus of a PKI (ncbsim.session, no gRPC): the requester
opens it, sends requests, closes it; the recipient accepts, opens every request and
returns the checkpoints it verified (:class:`ncbsim.session.Covered`), as a node hands
them to its proof log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ncbsim import envelope, session
from ncbsim.directory import Directory
from ncbsim.identity import Identity
from ncbsim.pki import PkiDir


@dataclass(frozen=True)
class Traffic:
    """What the recipient verified: its checkpoints, in order."""

    sender: str
    recipient: str
    covered: list[session.Covered]
    now_ms: int
    """The traffic's clock, frozen for all of it: by default when it was made, so within
    the validity of the PKI it was made with."""

    def requests(self) -> list[session.CoveredRequest]:
        """Every covered request the recipient received, in seq order."""
        return [r for c in self.covered for r in c.requests]


def traffic(
    pki: PkiDir,
    *,
    sender: str = "DE",
    recipient: str = "FR",
    count: int = 40,
    now_ms: int | None = None,
    skip: frozenset[int] = frozenset(),
) -> Traffic:
    """``count`` requests from ``sender`` to ``recipient`` in one session, then its close;
    the requests whose seq is in ``skip`` are sent but never reach the recipient. The clock
    is frozen at ``now_ms``, by default the time of the call."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    directory = Directory.from_pki(pki)
    requester = Identity.load(pki, sender, now_ms=now_ms)
    answerer = Identity.load(pki, recipient, now_ms=now_ms)
    opening = session.open_session(
        requester, directory.get(recipient), suite=session.DEFAULT_SUITE, now_ms=now_ms
    )
    server = session.ServerSessions(answerer, suite=session.DEFAULT_SUITE)
    accept = server.accept(opening.envelope, opening.header, senders=directory.get, now_ms=now_ms)
    client = session.finish_session(
        opening, accept, sender=requester, peer=directory.get(recipient), now_ms=now_ms
    )
    covered: list[session.Covered] = []
    for n in range(count):
        request = client.seal_request(b"query %d" % n, now_ms=now_ms)
        if request.seq in skip:
            continue
        _, _, checkpoint = server.open_request(
            request.envelope, request.header, sender=directory.get(sender), now_ms=now_ms
        )
        if checkpoint is not None:
            covered.append(checkpoint)
    close = client.close(now_ms=now_ms)
    _, last = server.close(
        close,
        envelope.unverified_header(close),
        sender=directory.get(sender),
        now_ms=now_ms,
    )
    if last is not None:
        covered.append(last)
    return Traffic(sender, recipient, covered, now_ms)
