"""Raw cryptographic primitives. The only module that touches pynacl and cryptography's hazmat.

Everything else goes through the recipes in :mod:`ncbsim.envelope` and
:mod:`ncbsim.directory`. Nothing here logs, and no function here says why a check
failed: callers turn every failure into one opaque error.

Choices (see docs/protocol.md):
- HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305,
  single-shot, with AAD (envelope format 1). cryptography's public ``Suite.encrypt`` takes
  no AAD, so format 1's HPKE is composed here from public primitives exactly as RFC 9180
  describes it: X25519, HKDF-Extract/Expand (HMAC-SHA256) and ChaCha20-Poly1305.
  ``tests/ncbsim/test_envelope_vectors.py`` checks it against RFC 9180 Appendix A.2.1 and
  the committed vectors, and opens our envelopes with an independent RFC 9180
  implementation written from the RFC.
- Format 2 (query sessions, :mod:`ncbsim.session`): the handshake KEM through the public
  ``hpke.Suite`` (no AAD), X25519 or X-Wing (MLKEM768-X25519); HKDF-SHA256 for the epoch
  keys; ChaCha20-Poly1305 with a cached cipher object per epoch key (:class:`AeadKey`).
- Ed25519 through PyNaCl (libsodium): verify is about twice as fast as cryptography's here.
- The root CA signs directory entries with ECDSA P-256 / SHA-256, the same key that signs
  the X.509 certificates.
"""

from __future__ import annotations

import hashlib
import hmac

import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hpke, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

KEY_ID_LEN = 8
PUBLIC_KEY_LEN = 32
SIGNATURE_LEN = 64
AEAD_KEY_LEN = 32
AEAD_NONCE_LEN = 12
AEAD_TAG_LEN = 16

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


# RFC 9180 §4 and §7.1: labels of DHKEM(X25519, HKDF-SHA256) = 0x0020 and of the suite
# (KEM 0x0020, KDF HKDF-SHA256 = 0x0001, AEAD ChaCha20-Poly1305 = 0x0003), base mode.
_KEM_LABEL = b"HPKE-v1" + b"KEM" + (0x0020).to_bytes(2, "big")
_SUITE_LABEL = b"HPKE-v1" + b"HPKE" + bytes.fromhex("002000010003")


def _extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.digest(salt, ikm, "sha256")


def _expand32(prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand for one block (length <= 32): T(1) = HMAC(prk, info || 0x01)."""
    return hmac.digest(prk, info + b"\x01", "sha256")[:length]


_PSK_ID_HASH = _extract(b"", _SUITE_LABEL + b"psk_id_hash")
_SECRET_IKM = _SUITE_LABEL + b"secret"


def _key_schedule(dh: bytes, kem_context: bytes, info: bytes) -> tuple[bytes, bytes]:
    """Encap/Decap's shared secret, then KeySchedule(mode_base): (key, base_nonce)."""
    eae_prk = _extract(b"", _KEM_LABEL + b"eae_prk" + dh)
    shared = _expand32(eae_prk, b"\x00\x20" + _KEM_LABEL + b"shared_secret" + kem_context, 32)
    context = b"\x00" + _PSK_ID_HASH + _extract(b"", _SUITE_LABEL + b"info_hash" + info)
    secret = _extract(shared, _SECRET_IKM)
    key = _expand32(secret, b"\x00\x20" + _SUITE_LABEL + b"key" + context, 32)
    nonce = _expand32(secret, b"\x00\x0c" + _SUITE_LABEL + b"base_nonce" + context, 12)
    return key, nonce


def hpke_seal(public_key: X25519PublicKey, *, info: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """HPKE base-mode single-shot seal. Returns enc (32 bytes) || ciphertext."""
    ephemeral = x25519.X25519PrivateKey.generate()
    enc = ephemeral.public_key().public_bytes_raw()
    try:
        dh = ephemeral.exchange(public_key)
    except ValueError as exc:  # a small-order recipient key: the shared secret is zero
        raise CryptoFailure from exc
    key, nonce = _key_schedule(dh, enc + public_key.public_bytes_raw(), info)
    return enc + ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)


def hpke_open(private_key: X25519PrivateKey, *, info: bytes, aad: bytes, sealed: bytes) -> bytes:
    """Open what :func:`hpke_seal` produced, or raise :class:`CryptoFailure`."""
    if len(sealed) < PUBLIC_KEY_LEN + AEAD_TAG_LEN:
        raise CryptoFailure
    enc = sealed[:PUBLIC_KEY_LEN]
    try:
        dh = private_key.exchange(x25519.X25519PublicKey.from_public_bytes(enc))
        key, nonce = _key_schedule(dh, enc + private_key.public_key().public_bytes_raw(), info)
        return ChaCha20Poly1305(key).decrypt(nonce, sealed[PUBLIC_KEY_LEN:], aad)
    except (InvalidTag, ValueError) as exc:
        raise CryptoFailure from exc


# ----------------------------------------------------------------------------- session KEM

KEM_CLASSIC = 1
"""Suite id of DHKEM(X25519, HKDF-SHA256) handshakes (protocol.md §15.1)."""
KEM_HYBRID = 2
"""Suite id of X-Wing (MLKEM768-X25519) handshakes."""
MLKEM768_PUBLIC_LEN = 1184
KEM_PUBLIC_LEN = {KEM_CLASSIC: PUBLIC_KEY_LEN, KEM_HYBRID: MLKEM768_PUBLIC_LEN + PUBLIC_KEY_LEN}
"""Length of a suite's ephemeral public key on the wire."""

KemPrivate = x25519.X25519PrivateKey | hpke.MLKEM768X25519PrivateKey
_KDF, _AEAD = hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305
_KEM_SUITES = {
    KEM_CLASSIC: hpke.Suite(hpke.KEM.X25519, _KDF, _AEAD),
    KEM_HYBRID: hpke.Suite(hpke.KEM.MLKEM768_X25519, _KDF, _AEAD),
}


def _kem_suite(suite: int) -> hpke.Suite:
    try:
        return _KEM_SUITES[suite]
    except KeyError:
        raise CryptoFailure from None


def kem_generate(suite: int) -> tuple[KemPrivate, bytes]:
    """A fresh ephemeral KEM key pair of ``suite``: (private key, public key bytes)."""
    if suite == KEM_CLASSIC:
        key = x25519.X25519PrivateKey.generate()
        return key, key.public_key().public_bytes_raw()
    _kem_suite(suite)
    x = x25519.X25519PrivateKey.generate()
    m = mlkem.MLKEM768PrivateKey.generate()
    public = m.public_key().public_bytes_raw() + x.public_key().public_bytes_raw()
    return hpke.MLKEM768X25519PrivateKey(m, x), public


def kem_private_from_seed(suite: int, seed: bytes) -> tuple[KemPrivate, bytes]:
    """A KEM key pair from fixed bytes (known-answer vectors): classic takes the 32-byte
    X25519 private key; hybrid takes the 64-byte ML-KEM-768 seed, then the 32-byte X25519
    private key."""
    try:
        if suite == KEM_CLASSIC:
            key = x25519.X25519PrivateKey.from_private_bytes(seed)
            return key, key.public_key().public_bytes_raw()
        _kem_suite(suite)
        m = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed[:64])
        x = x25519.X25519PrivateKey.from_private_bytes(seed[64:])
    except ValueError as exc:
        raise CryptoFailure from exc
    public = m.public_key().public_bytes_raw() + x.public_key().public_bytes_raw()
    return hpke.MLKEM768X25519PrivateKey(m, x), public


def _kem_public(suite: int, public: bytes) -> x25519.X25519PublicKey | hpke.MLKEM768X25519PublicKey:
    if len(public) != KEM_PUBLIC_LEN.get(suite):
        raise CryptoFailure
    try:
        if suite == KEM_CLASSIC:
            return x25519.X25519PublicKey.from_public_bytes(public)
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(public[:MLKEM768_PUBLIC_LEN]),
            x25519.X25519PublicKey.from_public_bytes(public[MLKEM768_PUBLIC_LEN:]),
        )
    except ValueError as exc:
        raise CryptoFailure from exc


def kem_check_public(suite: int, public: bytes) -> None:
    """Raise :class:`CryptoFailure` unless ``public`` is a key of ``suite`` that parses."""
    _kem_public(suite, public)


def kem_seal(suite: int, public: bytes, *, info: bytes, plaintext: bytes) -> bytes:
    """HPKE base-mode single-shot seal to a raw KEM public key of ``suite`` (public
    ``hpke.Suite.encrypt``, empty AAD): enc || ciphertext."""
    key = _kem_public(suite, public)
    try:
        return _kem_suite(suite).encrypt(plaintext, key, info)
    except ValueError as exc:
        raise CryptoFailure from exc


def kem_open(suite: int, private: KemPrivate, *, info: bytes, sealed: bytes) -> bytes:
    """Open what :func:`kem_seal` produced, or raise :class:`CryptoFailure`."""
    try:
        return _kem_suite(suite).decrypt(sealed, private, info)
    except (InvalidTag, ValueError, TypeError) as exc:
        raise CryptoFailure from exc


# ----------------------------------------------------------------------------- AEAD, HKDF


def hkdf_sha256(*, salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869): Extract then Expand to ``length`` bytes (at most 8,160)."""
    if not 0 < length <= 255 * 32:
        raise CryptoFailure
    prk = _extract(salt, ikm)
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes([counter]), "sha256")
        out, counter = out + block, counter + 1
    return out[:length]


class AeadKey:
    """A ChaCha20-Poly1305 key, its cipher object built once (the session hot path).

    :meth:`erase` drops the cipher; every later call raises :class:`CryptoFailure`.
    """

    __slots__ = ("_cipher",)

    def __init__(self, key: bytes) -> None:
        if len(key) != AEAD_KEY_LEN:
            raise CryptoFailure
        self._cipher: ChaCha20Poly1305 | None = ChaCha20Poly1305(key)

    def seal(self, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        """Ciphertext || 16-byte tag."""
        cipher = self._cipher
        if cipher is None:
            raise CryptoFailure
        return cipher.encrypt(nonce, plaintext, aad)

    def open(self, nonce: bytes, aad: bytes, sealed: bytes) -> bytes:
        """The plaintext, or :class:`CryptoFailure` if the tag does not verify."""
        cipher = self._cipher
        if cipher is None:
            raise CryptoFailure
        try:
            return cipher.decrypt(nonce, sealed, aad)
        except InvalidTag as exc:
            raise CryptoFailure from exc

    def erase(self) -> None:
        """Forget the key."""
        self._cipher = None

    @property
    def erased(self) -> bool:
        """Whether :meth:`erase` was called."""
        return self._cipher is None


def aead_seal(key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """ChaCha20-Poly1305 encrypt: ciphertext || 16-byte tag."""
    return AeadKey(key).seal(nonce, aad, plaintext)


def aead_open(key: bytes, nonce: bytes, aad: bytes, sealed: bytes) -> bytes:
    """ChaCha20-Poly1305 decrypt, or :class:`CryptoFailure`."""
    try:
        return AeadKey(key).open(nonce, aad, sealed)
    except ValueError as exc:  # a nonce of the wrong length
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
