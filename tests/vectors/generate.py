"""Write tests/vectors/envelope-v1.json: one sealed request FR -> DE and its response.

Everything is fixed (keys, message ids, times, plaintexts) except the HPKE encapsulation
key, which the sender draws fresh for every seal. So ``enc``, ``sealed``, ``signature`` and
``envelope`` change each time this script runs, while header bytes and plaintexts do not.
The vectors are generated once and committed; the tests read the committed file.

    .venv/bin/python tests/vectors/generate.py            # refuses to overwrite
    .venv/bin/python tests/vectors/generate.py --force    # new enc/sealed/signature

See docs/protocol.md, "Worked example".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from ncbsim import _crypto, envelope
from ncbsim.identity import Identity
from ncbsim.v2 import envelope_pb2, query_pb2, records_pb2

OUTPUT = Path(__file__).with_name("envelope-v1.json")

NOTE = (
    "HPKE sealing is randomized: every seal draws a fresh encapsulation key (enc), so enc, "
    "sealed, signature and envelope cannot be reproduced; they were generated once by "
    "tests/vectors/generate.py and committed. Check them by opening (HPKE open with the "
    "recipient's key gives plaintext) and by verifying or re-computing the Ed25519 "
    "signature (deterministic). Header bytes, key ids and plaintexts are deterministic "
    "and can be rebuilt from the fields given here. The messages were issued on "
    "2026-01-01 with a 30 s lifetime, so a receiver must be given now_ms explicitly."
)

# 2026-01-01T00:00:00Z in Unix milliseconds.
REQUEST_ISSUED_MS = 1_767_225_600_000
RESPONSE_ISSUED_MS = REQUEST_ISSUED_MS + 1_000
REQUEST_MESSAGE_ID = bytes(range(0x00, 0x10))
REQUEST_CORRELATION_ID = bytes(range(0x10, 0x20))
RESPONSE_MESSAGE_ID = bytes(range(0x20, 0x30))

DOCUMENT_NUMBER = "C01X00T47"
DOCUMENT_ISSUER = "DE"
MATCH_REF = "DE-SLTD-000042"
MATCH_SCORE = 1.0


def _fixed(label: str) -> bytes:
    """32 fixed bytes, derived from a readable label so nobody mistakes them for real keys."""
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


def _fields(header: envelope.Header) -> dict[str, Any]:
    return {
        "version": header.version,
        "message_id": header.message_id.hex(),
        "sender": header.sender,
        "recipient": header.recipient,
        "kind": header.kind,
        "kind_name": envelope_pb2.MessageKind.Name(header.kind),  # type: ignore[arg-type]
        "issued_at_ms": header.issued_at_ms,
        "expires_at_ms": header.expires_at_ms,
        "correlation_id": header.correlation_id.hex(),
        "sender_key_id": header.sender_key_id.hex(),
        "recipient_key_id": header.recipient_key_id.hex(),
    }


def _message(
    env: envelope.Envelope, *, plaintext: bytes, info: bytes, now_ms: int
) -> dict[str, Any]:
    header = envelope.Header.parse(env.header)
    signed = (
        envelope.SIGNATURE_CONTEXT + len(env.header).to_bytes(4, "big") + env.header + env.sealed
    )
    return {
        "now_ms": now_ms,
        "header_fields": _fields(header),
        "header": env.header.hex(),
        "hpke_info": info.hex(),
        "plaintext": plaintext.hex(),
        "enc": env.sealed[:32].hex(),
        "sealed": env.sealed.hex(),
        "signed_message": signed.hex(),
        "signature": env.signature.hex(),
        "envelope": env.SerializeToString().hex(),
    }


def build() -> dict[str, Any]:
    """Seal the request and the response, check both open, and return the JSON document."""
    fr, de = _identity("FR"), _identity("DE")
    response_key = _crypto.x25519_private_from_bytes(_fixed("FR ephemeral response key"))
    response_public = _crypto.x25519_public_bytes(response_key)

    request_body = query_pb2.Query(
        response_key=response_public,
        document=query_pb2.DocumentQuery(number=DOCUMENT_NUMBER, issuer=DOCUMENT_ISSUER),
    ).SerializeToString()
    sent = envelope.seal_request(
        request_body,
        sender=fr,
        recipient=de.as_peer(),
        response_key=response_key,
        now_ms=REQUEST_ISSUED_MS,
        message_id=REQUEST_MESSAGE_ID,
        correlation_id=REQUEST_CORRELATION_ID,
    )
    request_now = REQUEST_ISSUED_MS + 500
    peers = {"FR": fr.as_peer(), "DE": de.as_peer()}
    opened = envelope.open_request(
        sent.envelope, recipient=de, senders=peers.__getitem__, now_ms=request_now
    )
    assert opened.plaintext == request_body

    response_body = query_pb2.Answer(
        hits=query_pb2.Hits(
            matches=[
                query_pb2.Match(
                    ref=MATCH_REF, kind=records_pb2.RECORD_KIND_DOCUMENT, score=MATCH_SCORE
                )
            ]
        )
    ).SerializeToString()
    reply = envelope.seal_response(
        response_body,
        sender=de,
        request=opened.header,
        response_key=response_public,
        now_ms=RESPONSE_ISSUED_MS,
        message_id=RESPONSE_MESSAGE_ID,
    )
    response_now = RESPONSE_ISSUED_MS + 500
    answer = envelope.open_response(reply, request=sent, sender=de.as_peer(), now_ms=response_now)
    assert answer.plaintext == response_body

    request = _message(
        sent.envelope, plaintext=request_body, info=envelope.REQUEST_INFO, now_ms=request_now
    )
    request["plaintext_fields"] = {
        "type": query_pb2.Query.DESCRIPTOR.full_name,
        "response_key": response_public.hex(),
        "document": {"number": DOCUMENT_NUMBER, "issuer": DOCUMENT_ISSUER},
    }
    response = _message(
        reply,
        plaintext=response_body,
        info=envelope.RESPONSE_INFO + REQUEST_MESSAGE_ID,
        now_ms=response_now,
    )
    response["plaintext_fields"] = {
        "type": query_pb2.Answer.DESCRIPTOR.full_name,
        "hits": {
            "matches": [
                {"ref": MATCH_REF, "kind": records_pb2.RECORD_KIND_DOCUMENT, "score": MATCH_SCORE}
            ]
        },
    }
    return {
        "description": "ncbsim v1 envelopes: a document query FR -> DE and its one-match answer",
        "note": NOTE,
        "generator": "tests/vectors/generate.py",
        "hpke": {"mode": 0, "kem_id": 0x0020, "kdf_id": 0x0001, "aead_id": 0x0003},
        "constants": {
            "request_info": envelope.REQUEST_INFO.hex(),
            "response_info_prefix": envelope.RESPONSE_INFO.hex(),
            "signature_context": envelope.SIGNATURE_CONTEXT.hex(),
        },
        "keys": {
            "FR": _keys(fr),
            "DE": _keys(de),
            "response_key": {
                "x25519_private": _crypto.x25519_private_bytes(response_key).hex(),
                "x25519_public": response_public.hex(),
                "key_id": _crypto.key_id(response_public).hex(),
            },
        },
        "request": request,
        "response": response,
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
