"""Raw cryptographic primitives. The only module that touches pynacl and cryptography's hazmat.

Everything else goes through the recipes in :mod:`ncbsim.envelope` and
:mod:`ncbsim.directory`. Nothing here logs, and no function here says why a check
failed: callers turn every failure into one opaque error.

Choices (see docs/protocol.md):
- HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305,
  single-shot, with AAD. cryptography's public ``Suite.encrypt`` takes no AAD, so we call
  the AAD-taking single-shot functions it ships beside it (the pyproject pins the 50.x
  series). ``tests/ncbsim/test_envelope_vectors.py`` opens our envelopes with an
  independent RFC 9180 implementation written from the RFC, so a change in those functions
  cannot go unnoticed.
- Ed25519 through PyNaCl (libsodium): verify is about twice as fast as cryptography's here.
- The root CA signs directory entries with ECDSA P-256 / SHA-256, the same key that signs
  the X.509 certificates.
"""

from __future__ import annotations

import hashlib

import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.bindings._rust import openssl as _rust_openssl
from cryptography.hazmat.primitives import hashes, hpke, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519

KEY_ID_LEN = 8
PUBLIC_KEY_LEN = 32
SIGNATURE_LEN = 64

_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
_hpke_seal = _rust_openssl.hpke._encrypt_with_aad
_hpke_open = _rust_openssl.hpke._decrypt_with_aad

SigningKey = nacl.signing.SigningKey
VerifyKey = nacl.signing.VerifyKey
X25519PrivateKey = x25519.X25519PrivateKey
X25519PublicKey = x25519.X25519PublicKey


class CryptoFailure(Exception):  # noqa: N818 - internal signal, never leaves the recipes
    """A primitive rejected its input. Carries no detail on purpose."""


def key_id(public_key: bytes) -> bytes:
    """Key identifier: the first 8 bytes of SHA-256 over the raw 32-byte public key."""
    return hashlib.sha256(public_key).digest()[:KEY_ID_LEN]


# ----------------------------------------------------------------------------- HPKE


def hpke_seal(public_key: X25519PublicKey, *, info: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """HPKE base-mode single-shot seal. Returns enc (32 bytes) || ciphertext."""
    return bytes(_hpke_seal(_SUITE, plaintext, public_key, info=info, aad=aad))


def hpke_open(private_key: X25519PrivateKey, *, info: bytes, aad: bytes, sealed: bytes) -> bytes:
    """Open what :func:`hpke_seal` produced, or raise :class:`CryptoFailure`."""
    if len(sealed) < PUBLIC_KEY_LEN + 16:
        raise CryptoFailure
    try:
        return bytes(_hpke_open(_SUITE, sealed, private_key, info=info, aad=aad))
    except (InvalidTag, ValueError) as exc:
        raise CryptoFailure from exc


def x25519_generate() -> X25519PrivateKey:
    """A fresh X25519 private key."""
    return x25519.X25519PrivateKey.generate()


def x25519_public_bytes(key: X25519PrivateKey | X25519PublicKey) -> bytes:
    """Raw 32-byte public key."""
    public = key.public_key() if isinstance(key, x25519.X25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def x25519_public_from_bytes(raw: bytes) -> X25519PublicKey:
    """Parse a raw 32-byte X25519 public key, or raise :class:`CryptoFailure`."""
    if len(raw) != PUBLIC_KEY_LEN:
        raise CryptoFailure
    return x25519.X25519PublicKey.from_public_bytes(raw)


def x25519_private_from_bytes(raw: bytes) -> X25519PrivateKey:
    """Parse a raw 32-byte X25519 private key."""
    return x25519.X25519PrivateKey.from_private_bytes(raw)


def x25519_private_bytes(key: X25519PrivateKey) -> bytes:
    """Raw 32-byte private key (for test vectors only; never logged)."""
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


# ----------------------------------------------------------------------------- Ed25519


def ed25519_generate() -> SigningKey:
    """A fresh Ed25519 signing key."""
    return nacl.signing.SigningKey.generate()


def ed25519_from_seed(seed: bytes) -> SigningKey:
    """Signing key from its 32-byte seed."""
    return nacl.signing.SigningKey(seed)


def ed25519_verify_key(raw: bytes) -> VerifyKey:
    """Parse a raw 32-byte Ed25519 public key, or raise :class:`CryptoFailure`."""
    if len(raw) != PUBLIC_KEY_LEN:
        raise CryptoFailure
    return nacl.signing.VerifyKey(raw)


def ed25519_sign(key: SigningKey, message: bytes) -> bytes:
    """Detached 64-byte Ed25519 signature."""
    return bytes(key.sign(message).signature)


def ed25519_verify(key: VerifyKey, message: bytes, signature: bytes) -> None:
    """Verify a detached signature, or raise :class:`CryptoFailure`."""
    if len(signature) != SIGNATURE_LEN:
        raise CryptoFailure
    try:
        key.verify(message, signature)
    except nacl.exceptions.BadSignatureError as exc:
        raise CryptoFailure from exc


# ----------------------------------------------------------------------------- PEM files


def private_key_to_pem(key: SigningKey | X25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (the files are written with mode 0600)."""
    pkcs8: ed25519.Ed25519PrivateKey | X25519PrivateKey | ec.EllipticCurvePrivateKey
    if isinstance(key, nacl.signing.SigningKey):
        pkcs8 = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(key))
    else:
        pkcs8 = key
    return pkcs8.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def signing_key_from_pem(pem: bytes) -> SigningKey:
    """Load an Ed25519 PKCS#8 PEM as a PyNaCl signing key."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise CryptoFailure
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return nacl.signing.SigningKey(seed)


def x25519_from_pem(pem: bytes) -> X25519PrivateKey:
    """Load an X25519 PKCS#8 PEM."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, x25519.X25519PrivateKey):
        raise CryptoFailure
    return key


# ----------------------------------------------------------------------------- ECDSA (root)


def ecdsa_generate() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key (root CA and TLS keys)."""
    return ec.generate_private_key(ec.SECP256R1())


def ecdsa_sign(key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    """DER-encoded ECDSA P-256 / SHA-256 signature."""
    return key.sign(message, ec.ECDSA(hashes.SHA256()))


def ecdsa_verify(key: ec.EllipticCurvePublicKey, message: bytes, signature: bytes) -> None:
    """Verify a DER ECDSA P-256 / SHA-256 signature, or raise :class:`CryptoFailure`."""
    try:
        key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError) as exc:
        raise CryptoFailure from exc
