"""Print the CPU cost of the query session core: µs per call, in this process.

Usage: .venv/bin/python scripts/bench_session.py [--rounds N]

Measures, with in-process identities and no network:
- format 1 HPKE seal and open as _crypto composes them from public primitives, and (when
  the installed cryptography still ships it) the private single-shot call they replace;
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
from ncbsim.envelope import Header
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


def _hpke(rounds: int) -> None:
    key = _crypto.x25519_generate()
    public = key.public_key()
    sealed = _crypto.hpke_seal(public, info=b"ncbsim/v1 request", aad=b"h" * 82, plaintext=QUERY)
    print(
        f"v1 hpke_seal (composed)   {_best_us(lambda: _crypto.hpke_seal(public, info=b'ncbsim/v1 request', aad=b'h' * 82, plaintext=QUERY), rounds):8.1f} µs"
    )  # noqa: E501
    print(
        f"v1 hpke_open (composed)   {_best_us(lambda: _crypto.hpke_open(key, info=b'ncbsim/v1 request', aad=b'h' * 82, sealed=sealed), rounds):8.1f} µs"
    )  # noqa: E501
    try:  # the private call of cryptography 50.x that _crypto used before (gone in 51)
        from cryptography.hazmat.bindings._rust import openssl as rust
        from cryptography.hazmat.primitives import hpke

        suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
        seal, unseal = rust.hpke._encrypt_with_aad, rust.hpke._decrypt_with_aad
    except (ImportError, AttributeError):
        print("v1 private call            not in this cryptography")
        return
    info, aad = b"ncbsim/v1 request", b"h" * 82
    assert unseal(suite, sealed, key, info=info, aad=aad) == QUERY  # same bytes both ways
    print(
        f"v1 seal (private call)    {_best_us(lambda: seal(suite, QUERY, public, info=info, aad=aad), rounds):8.1f} µs"
    )  # noqa: E501
    print(
        f"v1 open (private call)    {_best_us(lambda: unseal(suite, sealed, key, info=info, aad=aad), rounds):8.1f} µs"
    )  # noqa: E501


def _steady_state(rounds: int) -> None:
    fr, de = _identity("FR"), _identity("DE")
    peers = {"FR": fr.as_peer(), "DE": de.as_peer()}
    aead = _crypto.AeadKey(b"k" * 32)
    nonce = b"\x00" * 12
    print(
        f"chacha20poly1305 256 B    {_best_us(lambda: aead.seal(nonce, b'h' * 100, QUERY), rounds):8.1f} µs"
    )  # noqa: E501
    print(
        f"chacha20poly1305 1 KiB    {_best_us(lambda: aead.seal(nonce, b'h' * 100, ANSWER), rounds):8.1f} µs"
    )  # noqa: E501
    total = 0.0
    # Fresh sessions per batch, so seq stays within the 10,000 bound.
    per_batch = min(rounds, 9_000)
    results: dict[str, float] = {}
    for name in ("seal_request", "open_request", "seal_response", "open_response"):
        best = float("inf")
        for _ in range(5):
            registry = session.ServerSessions(de, suite=1)
            opening = session.open_session(fr, peers["DE"], suite=1, now_ms=NOW)
            accept = registry.accept(
                opening.envelope, opening.header, senders=peers.__getitem__, now_ms=NOW
            )
            client = session.finish_session(
                opening, accept, sender=fr, peer=peers["DE"], now_ms=NOW
            )
            sent = (
                [client.seal_request(QUERY, now_ms=NOW) for _ in range(per_batch)]
                if name != "seal_request"
                else []
            )  # noqa: E501
            headers = [Header.parse(s.envelope.header) for s in sent]
            opened = (
                [
                    registry.open_request(s.envelope, h, sender=peers["FR"], now_ms=NOW)
                    for s, h in zip(sent, headers, strict=True)
                ]
                if name in ("seal_response", "open_response")
                else []
            )  # noqa: E501
            replies = (
                [o[1].seal_response(ANSWER, request=o[0].header, now_ms=NOW) for o in opened]
                if name == "open_response"
                else []
            )  # noqa: E501
            start = time.perf_counter()
            if name == "seal_request":
                for _ in range(per_batch):
                    client.seal_request(QUERY, now_ms=NOW)
            elif name == "open_request":
                for s, h in zip(sent, headers, strict=True):
                    registry.open_request(s.envelope, h, sender=peers["FR"], now_ms=NOW)
            elif name == "seal_response":
                for o in opened:
                    o[1].seal_response(ANSWER, request=o[0].header, now_ms=NOW)
            else:
                for s, r in zip(sent, replies, strict=True):
                    client.open_response(s, r, now_ms=NOW)
            best = min(best, (time.perf_counter() - start) / per_batch)
        results[name] = best * 1e6
        total += best * 1e6
    for name, value in results.items():
        print(f"{name:<25} {value:8.1f} µs")
    print(f"{'all four':<25} {total:8.1f} µs per query (checkpoints amortized)")


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

        print(
            f"handshake {name:<15} {_best_us(handshake, max(rounds // 50, 20)):8.1f} µs (both sides)"
        )  # noqa: E501


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
