"""Envelope recipes against known answers, and an independent HPKE opener.

Known-answer vectors come from tests/vectors/envelope-v1.json (see generate.py there and
docs/protocol.md). ``_Rfc9180`` below is an HPKE base-mode opener written from RFC 9180
with cryptography's X25519, HMAC-SHA256 and ChaCha20-Poly1305 only; it opens ncbsim
envelopes, which shows the wire format is standard HPKE with the header bytes as AAD.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from envelope_helpers import (
    RESPONSE_BODY,
    Flow,
    _flip_byte,
    _senders,
    _sign,
    _signed_message,
)

from ncbsim import _crypto, envelope
from ncbsim.identity import Identity
from ncbsim.v2 import envelope_pb2, query_pb2

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "envelope-v1.json").read_text()
)


# ----------------------------------------------------------------------------- known answers


def _vector_identity(bureau: str) -> Identity:
    keys = VECTORS["keys"][bureau]
    return Identity.from_keys(
        bureau,
        _crypto.ed25519_from_seed(bytes.fromhex(keys["ed25519_seed"])),
        _crypto.x25519_private_from_bytes(bytes.fromhex(keys["x25519_private"])),
    )


def _vector_envelope(leg_name: str) -> envelope.Envelope:
    return envelope.Envelope.FromString(bytes.fromhex(VECTORS[leg_name]["envelope"]))


def _vector_request() -> envelope.SealedRequest:
    private = bytes.fromhex(VECTORS["keys"]["response_key"]["x25519_private"])
    return envelope.SealedRequest(
        envelope=_vector_envelope("request"),
        header=envelope.Header.parse(bytes.fromhex(VECTORS["request"]["header"])),
        response_key=_crypto.x25519_private_from_bytes(private),
    )


def test_vector_request_opens_to_expected_plaintext() -> None:
    """The committed request opens with DE's fixed key to the committed Query."""
    fr, de = _vector_identity("FR"), _vector_identity("DE")
    vector = VECTORS["request"]
    opened = envelope.open_request(
        _vector_envelope("request"),
        recipient=de,
        senders=_senders(fr, de),
        now_ms=vector["now_ms"],
    )
    assert opened.plaintext == bytes.fromhex(vector["plaintext"])
    query = query_pb2.Query.FromString(opened.plaintext)
    assert query.response_key.hex() == VECTORS["keys"]["response_key"]["x25519_public"]
    assert query.WhichOneof("query") == "document"


def test_vector_response_opens_to_expected_plaintext() -> None:
    """The committed response opens with the fixed ephemeral key to the committed answer."""
    vector = VECTORS["response"]
    answer = envelope.open_response(
        _vector_envelope("response"),
        request=_vector_request(),
        sender=_vector_identity("DE").as_peer(),
        now_ms=vector["now_ms"],
    )
    assert answer.plaintext == bytes.fromhex(vector["plaintext"])
    matches = query_pb2.Answer.FromString(answer.plaintext).hits.matches
    assert [(m.ref, m.kind, m.score) for m in matches] == [
        (m["ref"], m["kind"], m["score"]) for m in vector["plaintext_fields"]["hits"]["matches"]
    ]


def test_vector_key_ids_are_sha256_prefixes() -> None:
    """Public keys follow from the fixed private keys; key ids are SHA-256(public)[:8]."""
    for bureau in ("FR", "DE"):
        keys = VECTORS["keys"][bureau]
        signing = ed25519.Ed25519PrivateKey.from_private_bytes(
            bytes.fromhex(keys["ed25519_seed"])
        ).public_key()
        encryption = x25519.X25519PrivateKey.from_private_bytes(
            bytes.fromhex(keys["x25519_private"])
        ).public_key()
        assert signing.public_bytes_raw().hex() == keys["ed25519_public"]
        assert encryption.public_bytes_raw().hex() == keys["x25519_public"]
        assert hashlib.sha256(signing.public_bytes_raw()).hexdigest()[:16] == keys["signing_key_id"]
        assert (
            hashlib.sha256(encryption.public_bytes_raw()).hexdigest()[:16]
            == keys["encryption_key_id"]
        )
    ephemeral = VECTORS["keys"]["response_key"]
    public = bytes.fromhex(ephemeral["x25519_public"])
    assert hashlib.sha256(public).hexdigest()[:16] == ephemeral["key_id"]
    assert (
        VECTORS["request"]["header_fields"]["recipient_key_id"]
        == VECTORS["keys"]["DE"]["encryption_key_id"]
    )
    assert VECTORS["response"]["header_fields"]["recipient_key_id"] == ephemeral["key_id"]


@pytest.mark.parametrize("leg_name", ["request", "response"])
def test_vector_header_rebuilds_from_fields(leg_name: str) -> None:
    """Serializing the documented header fields with protobuf gives the committed bytes."""
    f = VECTORS[leg_name]["header_fields"]
    rebuilt = envelope_pb2.Header(
        version=f["version"],
        message_id=bytes.fromhex(f["message_id"]),
        sender=f["sender"],
        recipient=f["recipient"],
        kind=f["kind"],
        issued_at_ms=f["issued_at_ms"],
        expires_at_ms=f["expires_at_ms"],
        correlation_id=bytes.fromhex(f["correlation_id"]),
        sender_key_id=bytes.fromhex(f["sender_key_id"]),
        recipient_key_id=bytes.fromhex(f["recipient_key_id"]),
    ).SerializeToString()
    assert rebuilt.hex() == VECTORS[leg_name]["header"]
    assert f["kind"] == envelope_pb2.MessageKind.Value(f["kind_name"])


def test_vector_plaintexts_rebuild_from_fields() -> None:
    """Serializing the documented query and answer with protobuf gives the committed bytes,
    and each "type" is the full name of the message its plaintext is."""
    asked = VECTORS["request"]["plaintext_fields"]
    assert asked["type"] == query_pb2.Query.DESCRIPTOR.full_name
    assert VECTORS["response"]["plaintext_fields"]["type"] == query_pb2.Answer.DESCRIPTOR.full_name
    request = query_pb2.Query(
        response_key=bytes.fromhex(asked["response_key"]),
        document=query_pb2.DocumentQuery(**asked["document"]),
    )
    assert request.SerializeToString().hex() == VECTORS["request"]["plaintext"]
    matches = VECTORS["response"]["plaintext_fields"]["hits"]["matches"]
    response = query_pb2.Answer(
        hits=query_pb2.Hits(matches=[query_pb2.Match(**m) for m in matches])
    )
    assert response.SerializeToString().hex() == VECTORS["response"]["plaintext"]


@pytest.mark.parametrize(("leg_name", "signer"), [("request", "FR"), ("response", "DE")])
def test_vector_signature_recomputes(leg_name: str, signer: str) -> None:
    """Ed25519 over context || u32be(len) || header || sealed, with the fixed seed, matches."""
    vector = VECTORS[leg_name]
    header, sealed = bytes.fromhex(vector["header"]), bytes.fromhex(vector["sealed"])
    assert _signed_message(header, sealed).hex() == vector["signed_message"]
    seed = bytes.fromhex(VECTORS["keys"][signer]["ed25519_seed"])
    assert _sign(seed, header, sealed).hex() == vector["signature"]


@pytest.mark.parametrize("leg_name", ["request", "response"])
def test_vector_envelope_is_header_sealed_signature(leg_name: str) -> None:
    """The envelope is the protobuf of header, sealed (enc || ciphertext) and signature."""
    vector = VECTORS[leg_name]
    rebuilt = envelope_pb2.Envelope(
        header=bytes.fromhex(vector["header"]),
        sealed=bytes.fromhex(vector["sealed"]),
        signature=bytes.fromhex(vector["signature"]),
    )
    assert rebuilt.SerializeToString().hex() == vector["envelope"]
    assert vector["sealed"].startswith(vector["enc"])
    assert len(bytes.fromhex(vector["sealed"])) == 32 + len(bytes.fromhex(vector["plaintext"])) + 16


# ----------------------------------------------------------------------------- independent HPKE


class _Rfc9180:
    """HPKE base mode, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20-Poly1305, from RFC 9180.

    Only the receiving side, single-shot (sequence number 0). Independent of ncbsim._crypto.
    """

    KEM_SUITE_ID = b"KEM" + (0x0020).to_bytes(2, "big")
    SUITE_ID = b"HPKE" + b"".join(i.to_bytes(2, "big") for i in (0x0020, 0x0001, 0x0003))
    MODE_BASE = b"\x00"

    @staticmethod
    def extract(salt: bytes, ikm: bytes) -> bytes:
        return hmac.new(salt, ikm, hashlib.sha256).digest()

    @staticmethod
    def expand(prk: bytes, info: bytes, length: int) -> bytes:
        out, block, counter = b"", b"", 1
        while len(out) < length:
            block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
            out, counter = out + block, counter + 1
        return out[:length]

    @classmethod
    def labeled_extract(cls, suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
        return cls.extract(salt, b"HPKE-v1" + suite_id + label + ikm)

    @classmethod
    def labeled_expand(
        cls, suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int
    ) -> bytes:
        labeled_info = length.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info
        return cls.expand(prk, labeled_info, length)

    @classmethod
    def context(cls, sk_r: bytes, enc: bytes, info: bytes) -> dict[str, bytes]:
        """Decap and KeySchedule: the intermediate values RFC 9180 Appendix A lists."""
        recipient = x25519.X25519PrivateKey.from_private_bytes(sk_r)
        dh = recipient.exchange(x25519.X25519PublicKey.from_public_bytes(enc))
        kem_context = enc + recipient.public_key().public_bytes_raw()
        eae_prk = cls.labeled_extract(cls.KEM_SUITE_ID, b"", b"eae_prk", dh)
        shared_secret = cls.labeled_expand(
            cls.KEM_SUITE_ID, eae_prk, b"shared_secret", kem_context, 32
        )
        psk_id_hash = cls.labeled_extract(cls.SUITE_ID, b"", b"psk_id_hash", b"")
        info_hash = cls.labeled_extract(cls.SUITE_ID, b"", b"info_hash", info)
        key_schedule_context = cls.MODE_BASE + psk_id_hash + info_hash
        secret = cls.labeled_extract(cls.SUITE_ID, shared_secret, b"secret", b"")
        return {
            "shared_secret": shared_secret,
            "key_schedule_context": key_schedule_context,
            "secret": secret,
            "key": cls.labeled_expand(cls.SUITE_ID, secret, b"key", key_schedule_context, 32),
            "base_nonce": cls.labeled_expand(
                cls.SUITE_ID, secret, b"base_nonce", key_schedule_context, 12
            ),
        }

    @classmethod
    def open(cls, sk_r: bytes, sealed: bytes, *, info: bytes, aad: bytes) -> bytes:
        """Open enc (32 bytes) || ciphertext; the nonce is base_nonce XOR 0 (sequence 0)."""
        enc, ciphertext = sealed[:32], sealed[32:]
        ctx = cls.context(sk_r, enc, info)
        return ChaCha20Poly1305(ctx["key"]).decrypt(ctx["base_nonce"], ciphertext, aad)


# RFC 9180 Appendix A.2.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305, base.
RFC_A21 = {
    "info": "4f6465206f6e2061204772656369616e2055726e",
    "skRm": "8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb",
    "enc": "1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a",
    "shared_secret": "0bbe78490412b4bbea4812666f7916932b828bba79942424abb65244930d69a7",
    "key_schedule_context": "00431df6cd95e11ff49d7013563baf7f11588c75a6611ee2a4404a49306ae4cf"
    "c5b69c5718a60cc5876c358d3f7fc31ddb598503f67be58ea1e798c0bb19eb9796",
    "secret": "5b9cd775e64b437a2335cf499361b2e0d5e444d5cb41a8a53336d8fe402282c6",
    "key": "ad2744de8e17f4ebba575b3f5f5a8fa1f69c2a07f6e7500bc60ca6e3e3ec1c91",
    "base_nonce": "5c4d98150661b848853b547f",
    "pt": "4265617574792069732074727574682c20747275746820626561757479",
    "aad": "436f756e742d30",
    "ct": "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db"
    "21993c62ce81883d2dd1b51a28",
}


def test_independent_hpke_matches_rfc9180_vector() -> None:
    """The test's own RFC 9180 opener reproduces Appendix A.2.1 and opens its sequence-0 ct."""
    v = {name: bytes.fromhex(value) for name, value in RFC_A21.items()}
    ctx = _Rfc9180.context(v["skRm"], v["enc"], v["info"])
    for name in ("shared_secret", "key_schedule_context", "secret", "key", "base_nonce"):
        assert ctx[name] == v[name], name
    opened = _Rfc9180.open(v["skRm"], v["enc"] + v["ct"], info=v["info"], aad=v["aad"])
    assert opened == v["pt"]


def test_ncbsim_hpke_opens_rfc9180_vector() -> None:
    """ncbsim's HPKE open accepts RFC 9180 Appendix A.2.1 (enc || ct, info, aad) as is."""
    v = {name: bytes.fromhex(value) for name, value in RFC_A21.items()}
    key = _crypto.x25519_private_from_bytes(v["skRm"])
    assert (
        _crypto.hpke_open(key, info=v["info"], aad=v["aad"], sealed=v["enc"] + v["ct"]) == (v["pt"])
    )


@pytest.mark.parametrize(
    ("leg_name", "private_key"),
    [("request", ("DE", "x25519_private")), ("response", ("response_key", "x25519_private"))],
)
def test_independent_hpke_opens_vectors(leg_name: str, private_key: tuple[str, str]) -> None:
    """The RFC 9180 opener opens the committed vectors with header bytes as AAD, and only so."""
    vector = VECTORS[leg_name]
    sk_r = bytes.fromhex(VECTORS["keys"][private_key[0]][private_key[1]])
    header, sealed = bytes.fromhex(vector["header"]), bytes.fromhex(vector["sealed"])
    info = bytes.fromhex(vector["hpke_info"])
    assert _Rfc9180.open(sk_r, sealed, info=info, aad=header).hex() == vector["plaintext"]
    with pytest.raises(InvalidTag):
        _Rfc9180.open(sk_r, sealed, info=info, aad=_flip_byte(header, -1))


def test_vector_info_strings() -> None:
    """Request info is "ncbsim/v1 request"; response info appends the request message id."""
    assert bytes.fromhex(VECTORS["request"]["hpke_info"]) == b"ncbsim/v1 request"
    request_id = bytes.fromhex(VECTORS["request"]["header_fields"]["message_id"])
    assert bytes.fromhex(VECTORS["response"]["hpke_info"]) == b"ncbsim/v1 response" + request_id


def test_independent_hpke_opens_fresh_envelopes(flow: Flow) -> None:
    """Freshly sealed requests and responses open with the RFC 9180 opener."""
    de_key = _crypto.x25519_private_bytes(flow.de.encryption_key)
    request = flow.sent.envelope
    assert (
        _Rfc9180.open(de_key, request.sealed, info=b"ncbsim/v1 request", aad=request.header)
        == flow.open_request(request).plaintext
    )

    ephemeral = _crypto.x25519_private_bytes(flow.sent.response_key)
    info = b"ncbsim/v1 response" + flow.sent.header.message_id
    opened = _Rfc9180.open(ephemeral, flow.response.sealed, info=info, aad=flow.response.header)
    assert opened == RESPONSE_BODY
