"""The primitives of format 2 in ncbsim._crypto: the session KEM in both suites, the AEAD,
HKDF (RFC 5869 vectors), and format 1 HPKE's refusal of degenerate input."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

from ncbsim import _crypto, envelope
from ncbsim.errors import EnvelopeError
from ncbsim.identity import Identity
from ncbsim.v2 import envelope_pb2


@pytest.mark.parametrize("suite", [_crypto.KEM_CLASSIC, _crypto.KEM_HYBRID])
def test_kem_round_trip_and_wrong_key(suite: int) -> None:
    """A seal to a fresh key pair opens with its private key only, under the same info."""
    private, public = _crypto.kem_generate(suite)
    assert len(public) == _crypto.KEM_PUBLIC_LEN[suite]
    sealed = _crypto.kem_seal(suite, public, info=b"info", plaintext=b"s" * 32)
    assert _crypto.kem_open(suite, private, info=b"info", sealed=sealed) == b"s" * 32
    other, _ = _crypto.kem_generate(suite)
    for key, info, data in (
        (other, b"info", sealed),
        (private, b"other", sealed),
        (private, b"info", sealed[:-1]),
    ):
        with pytest.raises(_crypto.CryptoFailure):
            _crypto.kem_open(suite, key, info=info, sealed=data)


@pytest.mark.parametrize("suite", [_crypto.KEM_CLASSIC, _crypto.KEM_HYBRID])
def test_kem_public_keys_are_checked(suite: int) -> None:
    """A public key of the wrong length, or of the other suite, is refused before sealing."""
    _, public = _crypto.kem_generate(suite)
    _, other = _crypto.kem_generate(3 - suite)
    for bad in (public[:-1], public + b"\x00", other, b""):
        with pytest.raises(_crypto.CryptoFailure):
            _crypto.kem_check_public(suite, bad)
    with pytest.raises(_crypto.CryptoFailure):
        _crypto.kem_generate(7)


def test_hybrid_key_from_seed_is_mlkem_then_x25519() -> None:
    """A hybrid key from fixed bytes is deterministic: ML-KEM-768 key (1,184 bytes) then
    the X25519 public key of the last 32 seed bytes."""
    seed = bytes(range(96))
    private, public = _crypto.kem_private_from_seed(_crypto.KEM_HYBRID, seed)
    assert _crypto.kem_private_from_seed(_crypto.KEM_HYBRID, seed)[1] == public
    x_public = x25519.X25519PrivateKey.from_private_bytes(seed[64:]).public_key()
    assert public[1184:] == x_public.public_bytes_raw()
    sealed = _crypto.kem_seal(_crypto.KEM_HYBRID, public, info=b"", plaintext=b"k")
    assert _crypto.kem_open(_crypto.KEM_HYBRID, private, info=b"", sealed=sealed) == b"k"


def test_hkdf_sha256_matches_rfc5869() -> None:
    """RFC 5869 Appendix A.1 and A.3 (basic case; zero-length salt and info)."""
    okm = _crypto.hkdf_sha256(
        salt=bytes(range(13)), ikm=b"\x0b" * 22, info=bytes(range(0xF0, 0xFA)), length=42
    )
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )
    okm = _crypto.hkdf_sha256(salt=b"", ikm=b"\x0b" * 22, info=b"", length=42)
    assert okm.hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )


def test_aead_round_trip_and_refusals() -> None:
    """ChaCha20-Poly1305 opens what it sealed; another nonce, AAD, key or an erased key fails."""
    key, nonce = b"k" * 32, b"n" * 12
    sealed = _crypto.aead_seal(key, nonce, b"aad", b"plain")
    assert len(sealed) == 5 + 16
    assert _crypto.aead_open(key, nonce, b"aad", sealed) == b"plain"
    for args in (
        (key, b"m" * 12, b"aad"),
        (key, nonce, b"aaD"),
        (b"j" * 32, nonce, b"aad"),
        (key, b"short", b"aad"),
    ):
        with pytest.raises(_crypto.CryptoFailure):
            _crypto.aead_open(*args, sealed)
    with pytest.raises(_crypto.CryptoFailure):
        _crypto.AeadKey(b"short")
    held = _crypto.AeadKey(key)
    held.erase()
    with pytest.raises(_crypto.CryptoFailure):
        held.seal(nonce, b"", b"x")


def test_hpke_refuses_a_small_order_encapsulation() -> None:
    """Format 1 HPKE: an all-zero enc (a small-order point) fails as CryptoFailure."""
    key = _crypto.x25519_generate()
    with pytest.raises(_crypto.CryptoFailure):
        _crypto.hpke_open(key, info=b"i", aad=b"", sealed=b"\x00" * 64)
    zero = x25519.X25519PublicKey.from_public_bytes(b"\x00" * 32)
    with pytest.raises(_crypto.CryptoFailure):
        _crypto.hpke_seal(zero, info=b"i", aad=b"", plaintext=b"x")


def test_v1_response_to_a_small_order_key_is_the_opaque_error() -> None:
    """A request whose response key is a small-order point gets EnvelopeError, not a crash."""
    de = Identity.from_keys("DE", _crypto.ed25519_generate(), _crypto.x25519_generate())
    request = envelope.Header.parse(
        envelope_pb2.Header(
            version=1, message_id=b"m" * 16, sender="FR", recipient="DE", kind=1
        ).SerializeToString()
    )
    with pytest.raises(EnvelopeError):
        envelope.seal_response(b"a", sender=de, request=request, response_key=b"\x00" * 32)
