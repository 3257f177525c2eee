"""Print the CPU cost of the query session core: µs per call, in this process.

Usage: .venv/bin/python scripts/bench_session.py [--rounds N]

Measures, with in-process identities and no network:
- format 1 HPKE seal and open as _crypto composes them from public primitives;
- the four steady-state calls of a session (seal_request, open_request, seal_response,
  open_response) with a 256-byte query and a 1,024-byte answer (padded sizes), checkpoints
  included at their cadence, and the raw ChaCha20-Poly1305 they wrap;
- a whole handshake (open, accept, finish) in each suite.

Figures are the best of five runs of N calls each; on a shared machine they are noisy.
Nothing is asserted: this prints figures for docs and reviews.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from ncbsim import _crypto, session
from ncbsim.identity import Identity

NOW = 1_767_225_600_000
QUERY = b"q" * 256
ANSWER = b"a" * 1024


def _best_us(call: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            call()
        best = min(best, (time.perf_counter() - start) / rounds)
    return best * 1e6


def _identity(bureau: str) -> Identity:
    return Identity.from_keys(bureau, _crypto.ed25519_generate(), _crypto.x25519_generate())


def _line(label: str, micros: float, tail: str = "") -> None:
    print(f"{label:<26}{micros:8.1f} µs{tail}")


def _hpke(rounds: int) -> None:
    key = _crypto.x25519_generate()
    public = key.public_key()
    info, aad = b"ncbsim/v1 request", b"h" * 82
    sealed = _crypto.hpke_seal(public, info=info, aad=aad, plaintext=QUERY)
    seal = lambda: _crypto.hpke_seal(public, info=info, aad=aad, plaintext=QUERY)  # noqa: E731
    unseal = lambda: _crypto.hpke_open(key, info=info, aad=aad, sealed=sealed)  # noqa: E731
    _line("v1 hpke_seal (composed)", _best_us(seal, rounds))
    _line("v1 hpke_open (composed)", _best_us(unseal, rounds))


def _session(fr: Identity, de: Identity) -> tuple[session.ServerSessions, session.ClientSession]:
    peers = {"FR": fr.as_peer(), "DE": de.as_peer()}
    registry = session.ServerSessions(de, suite=1)
    opening = session.open_session(fr, peers["DE"], suite=1, now_ms=NOW)
    accept = registry.accept(
        opening.envelope, opening.header, senders=peers.__getitem__, now_ms=NOW
    )
    client = session.finish_session(opening, accept, sender=fr, peer=peers["DE"], now_ms=NOW)
    return registry, client


def _steady_state(rounds: int) -> None:
    fr, de = _identity("FR"), _identity("DE")
    fr_peer = fr.as_peer()
    aead = _crypto.AeadKey(b"k" * 32)
    nonce, aad = b"\x00" * 12, b"h" * 100
    _line("chacha20poly1305 256 B", _best_us(lambda: aead.seal(nonce, aad, QUERY), rounds))
    _line("chacha20poly1305 1 KiB", _best_us(lambda: aead.seal(nonce, aad, ANSWER), rounds))
    count = min(rounds, 9_000)  # within one session's 10,000
    best = dict.fromkeys(("seal_request", "open_request", "seal_response", "open_response"), 1e9)
    for _ in range(5):
        registry, client = _session(fr, de)
        clock = time.perf_counter
        start = clock()
        sent = [client.seal_request(QUERY, now_ms=NOW) for _ in range(count)]
        mark = clock()
        best["seal_request"] = min(best["seal_request"], mark - start)
        opened = [
            registry.open_request(s.envelope, s.header, sender=fr_peer, now_ms=NOW) for s in sent
        ]
        start, mark = mark, clock()
        best["open_request"] = min(best["open_request"], mark - start)
        replies = [
            held.seal_response(ANSWER, request=o.header, now_ms=NOW) for o, held, _ in opened
        ]
        start, mark = mark, clock()
        best["seal_response"] = min(best["seal_response"], mark - start)
        for one, reply in zip(sent, replies, strict=True):
            client.open_response(one, reply, now_ms=NOW)
        best["open_response"] = min(best["open_response"], clock() - mark)
    for name, seconds in best.items():
        _line(name, seconds / count * 1e6)
    _line("all four", sum(best.values()) / count * 1e6, " per query (checkpoints amortized)")


def _handshakes(rounds: int) -> None:
    fr, de = _identity("FR"), _identity("DE")
    peers = {"FR": fr.as_peer(), "DE": de.as_peer()}
    for name, suite in session.SUITES.items():
        registry = session.ServerSessions(de, suite=suite, max_per_peer=1)

        def handshake(suite: int = suite, registry: session.ServerSessions = registry) -> None:
            opening = session.open_session(fr, peers["DE"], suite=suite, now_ms=NOW)
            accept = registry.accept(
                opening.envelope, opening.header, senders=peers.__getitem__, now_ms=NOW
            )
            session.finish_session(opening, accept, sender=fr, peer=peers["DE"], now_ms=NOW)

        _line(f"handshake {name}", _best_us(handshake, max(rounds // 50, 20)), " (both sides)")


def main() -> None:
    """Print every figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5_000)
    args = parser.parse_args()
    _hpke(args.rounds)
    _steady_state(args.rounds)
    _handshakes(args.rounds)


if __name__ == "__main__":
    main()
