"""Format 2 known answers (tests/vectors/session-v2.json) opened from protocol.md §15 alone.

The first tests use no ncbsim crypto: the ACCEPT opens with the RFC 9180 opener of
test_envelope_vectors.py (empty AAD), the epoch keys come from HKDF written here from
RFC 5869, requests and the response open with cryptography's ChaCha20-Poly1305, and
signatures verify with its Ed25519. The last ones check that ncbsim's own code reproduces
the committed bytes (AEAD and Ed25519 are deterministic).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from test_envelope_vectors import _Rfc9180

from ncbsim import _crypto, session
from ncbsim.envelope import Envelope, Header
from ncbsim.identity import Identity
from ncbsim.v2 import envelope_pb2, session_pb2

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "session-v2.json").read_text()
)


def _b(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text)


def _hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF-SHA256, Extract then Expand."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out, counter = out + block, counter + 1
    return out[:length]


def _signed_v2(header: bytes, sealed: bytes) -> bytes:
    return b"ncbsim/v2 envelope\x00" + len(header).to_bytes(4, "big") + header + sealed


def _verify(bureau: str, message: bytes, signature: bytes) -> None:
    key = ed25519.Ed25519PublicKey.from_public_bytes(_b(VECTORS["keys"][bureau]["ed25519_public"]))
    key.verify(signature, message)


def _epoch_keys() -> tuple[bytes, bytes]:
    """The ACCEPT opened with the ephemeral key, then §15.4."""
    opening, accept = VECTORS["open"], VECTORS["accept"]
    open_signed = _signed_v2(_b(opening["header"]), _b(opening["sealed"]))
    accept_signed = _signed_v2(_b(accept["header"]), _b(accept["sealed"]))
    info = (
        b"ncbsim/v2 accept"
        + hashlib.sha256(open_signed).digest()
        + hashlib.sha256(_b(accept["header"])).digest()
    )
    seed = _Rfc9180.open(
        _b(VECTORS["keys"]["ephemeral"]["x25519_private"]), _b(accept["sealed"]), info=info, aad=b""
    )
    transcript = hashlib.sha256(open_signed + accept_signed).digest()
    okm = _hkdf(transcript, seed, b"ncbsim/v2 epoch keys", 64)
    return okm[:32], okm[32:]


# ----------------------------------------------------------------------------- from the spec


def test_handshake_signatures_and_accept_open_from_the_spec() -> None:
    """OPEN and ACCEPT are signed over signed_message_v2; the ACCEPT opens to the seed."""
    for name, signer in (("open", "FR"), ("accept", "DE"), ("close", "FR"), ("closed", "DE")):
        leg = VECTORS[name]
        message = _signed_v2(_b(leg["header"]), _b(leg["sealed"]))
        assert message.hex() == leg["signed_message"]
        _verify(signer, message, _b(leg["signature"]))
        with pytest.raises(InvalidSignature):
            _verify(signer, message + b"\x00", _b(leg["signature"]))
    opened = session_pb2.SessionOpen.FromString(_b(VECTORS["open"]["sealed"]))
    assert opened.ephemeral_key.hex() == VECTORS["keys"]["ephemeral"]["x25519_public"]
    k_request, k_response = _epoch_keys()
    epoch = VECTORS["epoch"]
    assert (k_request.hex(), k_response.hex()) == (epoch["k_request"], epoch["k_response"])
    commitment = hashlib.sha256(b"ncbsim/v2 key commitment\x00" + k_request).digest()
    assert commitment.hex() == epoch["key_commitment"]


def test_requests_and_response_open_from_the_spec() -> None:
    """Requests open with k_request, the response with k_response, nonce = prefix || u64be(seq),
    the header bytes as AAD; a changed header byte fails the tag."""
    k_request, k_response = _epoch_keys()
    legs = [(leg, k_request, 0) for leg in VECTORS["requests"]]
    legs.append((VECTORS["response"], k_response, 1))
    for leg, key, direction in legs:
        header, sealed = _b(leg["header"]), _b(leg["sealed"])
        seq = leg["header_fields"]["seq"]
        nonce = direction.to_bytes(4, "big") + seq.to_bytes(8, "big")
        assert nonce.hex() == leg["nonce"]
        assert ChaCha20Poly1305(key).decrypt(nonce, sealed, header).hex() == leg["plaintext"]
        with pytest.raises(InvalidTag):
            ChaCha20Poly1305(key).decrypt(nonce, sealed, header[:-1] + b"\x00")
    response = VECTORS["response"]["header_fields"]
    request = VECTORS["requests"][0]["header_fields"]
    assert response["correlation_id"] == request["message_id"]
    assert (response["seq"], response["session_id"]) == (request["seq"], request["session_id"])


def test_checkpoints_verify_from_the_spec() -> None:
    """Each checkpoint is signed by FR, names the session and key commitment, and lists the
    leaves SHA-256("ncbsim/v2 leaf" || 0x00 || u32be(len) || header || SHA-256(sealed))."""
    leaves = []
    for leg in VECTORS["requests"]:
        header, sealed = _b(leg["header"]), _b(leg["sealed"])
        leaf = hashlib.sha256(
            b"ncbsim/v2 leaf\x00"
            + len(header).to_bytes(4, "big")
            + header
            + hashlib.sha256(sealed).digest()
        ).digest()
        assert leaf.hex() == leg["leaf"]
        leaves.append(leaf.hex())
    carried = [VECTORS["requests"][1]["checkpoint"], VECTORS["close"]["checkpoint"]]
    for number, (doc, signed) in enumerate(zip(VECTORS["checkpoints"], carried, strict=True)):
        outer = session_pb2.SignedCheckpoint.FromString(_b(signed))
        _verify("FR", b"ncbsim/v2 checkpoint\x00" + outer.checkpoint, outer.signature)
        inner = session_pb2.Checkpoint.FromString(outer.checkpoint)
        assert (inner.version, inner.sender, inner.recipient) == (1, "FR", "DE")
        assert inner.session_id.hex() == VECTORS["open"]["header_fields"]["session_id"]
        assert inner.key_commitment.hex() == VECTORS["epoch"]["key_commitment"]
        assert inner.first_seq == number + 1
        assert [one.hex() for one in inner.leaves] == [leaves[number]]
        assert doc["signature"] == outer.signature.hex()


@pytest.mark.parametrize("leg_name", ["open", "accept", "response", "close", "closed"])
def test_headers_rebuild_from_fields(leg_name: str) -> None:
    """Serializing the documented header fields canonically gives the committed bytes."""
    leg = VECTORS[leg_name]
    fields = dict(leg["header_fields"])
    kind_name = fields.pop("kind_name")
    for name in ("message_id", "correlation_id", "sender_key_id", "recipient_key_id", "session_id"):
        fields[name] = _b(fields[name])
    assert envelope_pb2.Header(**fields).SerializeToString().hex() == leg["header"]
    assert envelope_pb2.MessageKind.Value(kind_name) == fields["kind"]


# ----------------------------------------------------------------------------- ncbsim's code


def _identity(bureau: str) -> Identity:
    keys = VECTORS["keys"][bureau]
    return Identity.from_keys(
        bureau,
        _crypto.ed25519_from_seed(_b(keys["ed25519_seed"])),
        _crypto.x25519_private_from_bytes(_b(keys["x25519_private"])),
    )


def test_ncbsim_reproduces_the_session_from_the_vectors() -> None:
    """ncbsim rebuilds the OPEN byte for byte, finishes the handshake with the committed
    ACCEPT, re-seals both requests to the committed bytes and opens the response."""
    fr, de = _identity("FR"), _identity("DE")
    opening_doc = VECTORS["open"]["header_fields"]
    ephemeral = _crypto.kem_private_from_seed(1, _b(VECTORS["keys"]["ephemeral"]["x25519_private"]))
    opening = session.open_session(
        fr,
        de.as_peer(),
        suite=1,
        now_ms=opening_doc["issued_at_ms"],
        message_id=_b(opening_doc["message_id"]),
        session_id=_b(opening_doc["session_id"]),
        correlation_id=_b(opening_doc["correlation_id"]),
        ephemeral=ephemeral,
    )
    assert opening.envelope.SerializeToString().hex() == VECTORS["open"]["envelope"]
    accept = Envelope.FromString(_b(VECTORS["accept"]["envelope"]))
    client = session.finish_session(
        opening, accept, sender=fr, peer=de.as_peer(), now_ms=VECTORS["accept"]["now_ms"]
    )
    sent = []
    for leg in VECTORS["requests"]:
        f = leg["header_fields"]
        one = client.seal_request(
            _b(leg["plaintext"]),
            now_ms=f["issued_at_ms"],
            message_id=_b(f["message_id"]),
            correlation_id=_b(f["correlation_id"]),
        )
        assert one.envelope.SerializeToString().hex() == leg["envelope"]
        sent.append(one)
    response = VECTORS["response"]
    opened = client.open_response(
        sent[0], Envelope.FromString(_b(response["envelope"])), now_ms=response["now_ms"]
    )
    assert opened.plaintext.hex() == response["plaintext"]
    close = client.close(
        now_ms=VECTORS["close"]["header_fields"]["issued_at_ms"],
        message_id=_b(VECTORS["close"]["header_fields"]["message_id"]),
        correlation_id=_b(VECTORS["close"]["header_fields"]["correlation_id"]),
    )
    assert close.SerializeToString().hex() == VECTORS["close"]["envelope"]
    client.check_closed(
        close,
        Envelope.FromString(_b(VECTORS["closed"]["envelope"])),
        peer=de.as_peer(),
        now_ms=VECTORS["closed"]["now_ms"],
    )
    assert Header.parse(close.header).seq == 2
