"""Write tests/vectors/session-v2.json: a query session FR -> DE, envelope format 2, classic suite.

The handshake (OPEN, ACCEPT), the epoch keys, two requests (the second carries a
checkpoint over the first), the response to the first, and the close with its final
checkpoint and DE's CLOSED. Everything is fixed (keys, the ephemeral key, ids, times,
the epoch seed, plaintexts) except the HPKE encapsulation key of the ACCEPT, which
cryptography's public ``hpke.Suite.encrypt`` draws fresh: so the ACCEPT's ``sealed``, and
everything derived from the transcript (the epoch keys, the ciphertexts, the checkpoint
signatures), change each time this script runs. The vectors are generated once and
committed; the tests read the committed file.

    .venv/bin/python tests/vectors/generate_session.py            # refuses to overwrite
    .venv/bin/python tests/vectors/generate_session.py --force

See docs/protocol.md §15, "Worked example".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from ncbsim import _crypto, padding, session
from ncbsim.envelope import Envelope, Header
from ncbsim.identity import Identity
from ncbsim.v2 import envelope_pb2, query_pb2, records_pb2, session_pb2

OUTPUT = Path(__file__).with_name("session-v2.json")

NOTE = (
    "The ACCEPT is sealed with HPKE (RFC 9180, base mode, empty AAD), which draws a fresh "
    "encapsulation key: its sealed bytes, and everything derived from the transcript (epoch "
    "keys, ciphertexts, checkpoints, signatures), cannot be reproduced; they were generated "
    "once by tests/vectors/generate_session.py and committed. Keys, ids, times, the epoch "
    "seed and plaintexts are fixed. Open the ACCEPT with the ephemeral private key, derive "
    "the epoch keys (§15.4), open the requests with k_request and the response with "
    "k_response; AEAD sealing and Ed25519 are deterministic, so sealing or signing again "
    "gives the same bytes. Times are on 2026-01-01 with 30 s lifetimes: give now_ms."
)

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
OPEN_ID, OPEN_CORRELATION = bytes(range(0x40, 0x50)), bytes(range(0x50, 0x60))
SESSION_ID = bytes(range(0x60, 0x70))
ACCEPT_ID = bytes(range(0x70, 0x80))
REQUEST_IDS = (bytes(range(0x80, 0x90)), bytes(range(0xA0, 0xB0)))
REQUEST_CORRELATIONS = (bytes(range(0x90, 0xA0)), bytes(range(0xB0, 0xC0)))
RESPONSE_ID = bytes(range(0xC0, 0xD0))
CLOSE_ID, CLOSE_CORRELATION = bytes(range(0xD0, 0xE0)), bytes(range(0xE0, 0xF0))
REQUEST_TIMES = (T0 + 100, T0 + 1_200)  # 1.1 s apart: the second carries a checkpoint


def _fixed(label: str) -> bytes:
    """32 fixed bytes from a readable label (the same recipe as generate.py)."""
    return hashlib.sha256(f"ncbsim test vector: {label}".encode()).digest()


def _identity(bureau: str) -> Identity:
    return Identity.from_keys(
        bureau,
        _crypto.ed25519_from_seed(_fixed(f"{bureau} ed25519 seed")),
        _crypto.x25519_private_from_bytes(_fixed(f"{bureau} x25519 private key")),
    )


def _keys(identity: Identity) -> dict[str, str]:
    return {
        "ed25519_seed": bytes(identity.signing_key).hex(),
        "ed25519_public": bytes(identity.signing_key.verify_key).hex(),
        "x25519_private": _crypto.x25519_private_bytes(identity.encryption_key).hex(),
        "x25519_public": _crypto.x25519_public_bytes(identity.encryption_key).hex(),
        "signing_key_id": identity.signing_key_id.hex(),
        "encryption_key_id": identity.encryption_key_id.hex(),
    }


def _fields(raw: bytes) -> dict[str, Any]:
    h = Header.parse(raw)
    return {
        "version": h.version,
        "message_id": h.message_id.hex(),
        "sender": h.sender,
        "recipient": h.recipient,
        "kind": h.kind,
        "kind_name": envelope_pb2.MessageKind.Name(h.kind),  # type: ignore[arg-type]
        "issued_at_ms": h.issued_at_ms,
        "expires_at_ms": h.expires_at_ms,
        "correlation_id": h.correlation_id.hex(),
        "sender_key_id": h.sender_key_id.hex(),
        "recipient_key_id": h.recipient_key_id.hex(),
        "suite": h.suite,
        "session_id": h.session_id.hex(),
        "seq": h.seq,
    }


def _signed(env: Envelope, now_ms: int) -> dict[str, Any]:
    return {
        "now_ms": now_ms,
        "header_fields": _fields(env.header),
        "header": env.header.hex(),
        "sealed": env.sealed.hex(),
        "signed_message": session.signed_bytes_v2(env.header, env.sealed).hex(),
        "signature": env.signature.hex(),
        "checkpoint": env.checkpoint.hex(),
        "envelope": env.SerializeToString().hex(),
    }


def _aead(env: Envelope, *, nonce_prefix: bytes, plaintext: bytes, now_ms: int) -> dict[str, Any]:
    seq = Header.parse(env.header).seq
    return {
        "now_ms": now_ms,
        "header_fields": _fields(env.header),
        "header": env.header.hex(),
        "nonce": (nonce_prefix + seq.to_bytes(8, "big")).hex(),
        "plaintext": plaintext.hex(),
        "sealed": env.sealed.hex(),
        "sealed_sha256": hashlib.sha256(env.sealed).hexdigest(),
        "leaf": session.leaf(env.header, hashlib.sha256(env.sealed).digest()).hex(),
        "checkpoint": env.checkpoint.hex(),
        "envelope": env.SerializeToString().hex(),
    }


def _checkpoint(signed: bytes) -> dict[str, Any]:
    outer = session_pb2.SignedCheckpoint.FromString(signed)
    inner = session_pb2.Checkpoint.FromString(outer.checkpoint)
    return {
        "fields": {
            "version": inner.version,
            "sender": inner.sender,
            "recipient": inner.recipient,
            "session_id": inner.session_id.hex(),
            "key_commitment": inner.key_commitment.hex(),
            "first_seq": inner.first_seq,
            "leaves": [one.hex() for one in inner.leaves],
            "signed_at_ms": inner.signed_at_ms,
        },
        "checkpoint": outer.checkpoint.hex(),
        "signed_message": (b"ncbsim/v2 checkpoint\x00" + outer.checkpoint).hex(),
        "signature": outer.signature.hex(),
        "signed_checkpoint": signed.hex(),
    }


def build() -> dict[str, Any]:
    """Run the session through ncbsim's code, check every step, and return the document."""
    fr, de = _identity("FR"), _identity("DE")
    peers = {"FR": fr.as_peer(), "DE": de.as_peer()}
    ephemeral = _crypto.kem_private_from_seed(1, _fixed("FR session ephemeral key"))
    seed = _fixed("DE epoch seed")
    opening = session.open_session(
        fr,
        peers["DE"],
        suite=1,
        now_ms=T0,
        message_id=OPEN_ID,
        session_id=SESSION_ID,
        correlation_id=OPEN_CORRELATION,
        ephemeral=ephemeral,
    )
    registry = session.ServerSessions(de, suite=1)
    accept = registry.accept(
        opening.envelope,
        opening.header,
        senders=peers.__getitem__,
        now_ms=T0 + 20,
        message_id=ACCEPT_ID,
        epoch_seed=seed,
    )
    client = session.finish_session(opening, accept, sender=fr, peer=peers["DE"], now_ms=T0 + 40)

    open_signed = session.signed_bytes_v2(opening.envelope.header, opening.envelope.sealed)
    accept_signed = session.signed_bytes_v2(accept.header, accept.sealed)
    transcript = hashlib.sha256(open_signed + accept_signed).digest()
    okm = _crypto.hkdf_sha256(salt=transcript, ikm=seed, info=b"ncbsim/v2 epoch keys", length=64)
    commitment = hashlib.sha256(b"ncbsim/v2 key commitment\x00" + okm[:32]).digest()

    bodies = (
        padding.padded(
            query_pb2.Query(document=query_pb2.DocumentQuery(number="C01X00T47", issuer="DE")), 256
        ),
        padding.padded(query_pb2.Query(fetch=query_pb2.FetchQuery(ref="DE-SLTD-000042")), 256),
    )
    sent = [
        client.seal_request(body, now_ms=at, message_id=mid, correlation_id=corr)
        for body, at, mid, corr in zip(
            bodies, REQUEST_TIMES, REQUEST_IDS, REQUEST_CORRELATIONS, strict=True
        )
    ]
    assert not sent[0].envelope.checkpoint
    assert sent[1].envelope.checkpoint
    opened, held, _ = registry.open_request(
        sent[0].envelope, sent[0].header, sender=peers["FR"], now_ms=REQUEST_TIMES[0] + 10
    )
    assert opened.plaintext == bodies[0]
    answer = padding.padded(
        query_pb2.Answer(
            hits=query_pb2.Hits(
                matches=[
                    query_pb2.Match(
                        ref="DE-SLTD-000042", kind=records_pb2.RECORD_KIND_DOCUMENT, score=1.0
                    )
                ]
            )
        ),
        1024,
    )
    reply = held.seal_response(
        answer, request=opened.header, now_ms=REQUEST_TIMES[0] + 20, message_id=RESPONSE_ID
    )
    assert client.open_response(sent[0], reply, now_ms=REQUEST_TIMES[0] + 30).plaintext == answer
    second, _, covered = registry.open_request(
        sent[1].envelope, sent[1].header, sender=peers["FR"], now_ms=REQUEST_TIMES[1] + 10
    )
    assert second.plaintext == bodies[1]
    assert covered is not None
    assert len(covered.requests) == 1

    close = client.close(now_ms=T0 + 2_000, message_id=CLOSE_ID, correlation_id=CLOSE_CORRELATION)
    closed, last = registry.close(
        close, Header.parse(close.header), sender=peers["FR"], now_ms=T0 + 2_010
    )
    assert last is not None
    assert last.first_seq == 2
    client.check_closed(close, closed, peer=peers["DE"], now_ms=T0 + 2_020)

    ek_private, ek_public = ephemeral
    assert isinstance(ek_private, _crypto.X25519PrivateKey)
    accept_info = (
        b"ncbsim/v2 accept"
        + hashlib.sha256(open_signed).digest()
        + hashlib.sha256(accept.header).digest()
    )
    accept_doc = _signed(accept, T0 + 40)
    accept_doc |= {
        "hpke_info": accept_info.hex(),
        "enc": accept.sealed[:32].hex(),
        "plaintext": seed.hex(),
    }
    open_doc = _signed(opening.envelope, T0 + 20)
    open_doc["sealed_fields"] = {
        "type": session_pb2.SessionOpen.DESCRIPTOR.full_name,
        "ephemeral_key": ek_public.hex(),
    }
    return {
        "description": "ncbsim v2 query session FR -> DE (classic suite): handshake, two "
        "requests, a response, checkpoints and the close",
        "note": NOTE,
        "generator": "tests/vectors/generate_session.py",
        "suite": {
            "id": 1,
            "name": "classic",
            "hpke": {"mode": 0, "kem_id": 0x0020, "kdf_id": 0x0001, "aead_id": 0x0003},
        },
        "constants": {
            "signature_context": b"ncbsim/v2 envelope\x00".hex(),
            "accept_info_prefix": b"ncbsim/v2 accept".hex(),
            "epoch_keys_info": b"ncbsim/v2 epoch keys".hex(),
            "key_commitment_prefix": b"ncbsim/v2 key commitment\x00".hex(),
            "leaf_prefix": b"ncbsim/v2 leaf\x00".hex(),
            "checkpoint_context": b"ncbsim/v2 checkpoint\x00".hex(),
        },
        "keys": {
            "FR": _keys(fr),
            "DE": _keys(de),
            "ephemeral": {
                "x25519_private": _crypto.x25519_private_bytes(ek_private).hex(),
                "x25519_public": ek_public.hex(),
                "key_id": _crypto.key_id(ek_public).hex(),
            },
        },
        "open": open_doc,
        "accept": accept_doc,
        "epoch": {
            "transcript": transcript.hex(),
            "epoch_seed": seed.hex(),
            "k_request": okm[:32].hex(),
            "k_response": okm[32:].hex(),
            "key_commitment": commitment.hex(),
        },
        "requests": [
            _aead(env.envelope, nonce_prefix=b"\x00\x00\x00\x00", plaintext=body, now_ms=at + 10)
            for env, body, at in zip(sent, bodies, REQUEST_TIMES, strict=True)
        ],
        "response": _aead(
            reply, nonce_prefix=b"\x00\x00\x00\x01", plaintext=answer, now_ms=REQUEST_TIMES[0] + 30
        ),
        "checkpoints": [_checkpoint(sent[1].envelope.checkpoint), _checkpoint(close.checkpoint)],
        "close": _signed(close, T0 + 2_010),
        "closed": _signed(closed, T0 + 2_020),
    }


def main(argv: list[str] | None = None) -> int:
    """Write the vector file; refuse to replace a committed one without --force."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    args = parser.parse_args(argv)
    if args.output.exists() and not args.force:
        print(f"{args.output} exists; the committed vectors are not regenerated without --force")
        return 1
    args.output.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
