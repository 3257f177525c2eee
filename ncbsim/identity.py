"""A party's own identity: its private E2E keys and the public entry that certifies them.

The party is a bureau (``FR``, certified by the root) or one of its users
(``FR/cdg-border-12``, certified by its bureau: docs/users.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ncbsim import _crypto, principal, users
from ncbsim.directory import Peer, verify_entry
from ncbsim.errors import DirectoryError, PkiError
from ncbsim.pki import PkiDir


@dataclass(frozen=True, slots=True)
class Identity:
    """Private E2E keys of one bureau or user (``bureau`` is the principal). Never
    logged, never serialized off the machine."""

    bureau: str
    signing_key: _crypto.SigningKey
    encryption_key: _crypto.X25519PrivateKey
    signing_key_id: bytes
    encryption_key_id: bytes
    previous_encryption_key: _crypto.X25519PrivateKey | None = None
    """After ``ncbsim pki rotate``: the encryption key replaced, kept to open requests
    sealed to it until ``previous_until_ms`` (senders that have not yet seen the new
    directory entry)."""
    previous_encryption_key_id: bytes = b""
    previous_until_ms: int = 0

    def decryption_key(self, key_id: bytes, now_ms: int) -> _crypto.X25519PrivateKey | None:
        """The private key a request sealed to ``key_id`` needs: the current one, or the
        previous one within its grace period; None otherwise."""
        if key_id == self.encryption_key_id:
            return self.encryption_key
        if (
            self.previous_encryption_key is not None
            and key_id == self.previous_encryption_key_id
            and now_ms < self.previous_until_ms
        ):
            return self.previous_encryption_key
        return None

    @classmethod
    def from_keys(
        cls, bureau: str, signing_key: _crypto.SigningKey, encryption_key: _crypto.X25519PrivateKey
    ) -> Identity:
        """Build an identity from key objects, deriving the key ids."""
        return cls(
            bureau=bureau,
            signing_key=signing_key,
            encryption_key=encryption_key,
            signing_key_id=_crypto.key_id(bytes(signing_key.verify_key)),
            encryption_key_id=_crypto.key_id(_crypto.x25519_public_bytes(encryption_key)),
        )

    @classmethod
    def load(cls, pki: PkiDir, bureau: str, *, now_ms: int) -> Identity:
        """Load ``bureau``'s keys and check they match its root-signed directory entry;
        for a user (``FR/x``), its entry signed by its bureau (:func:`load_user`)."""
        if principal.is_user(bureau):
            return load_user(pki, bureau, now_ms=now_ms)
        folder = pki.party(bureau)
        try:
            signing = _crypto.signing_key_from_pem((folder / "signing.key").read_bytes())
            encryption = _crypto.x25519_from_pem((folder / "encryption.key").read_bytes())
            entry = pki.entry_path(bureau).read_bytes()
        except (FileNotFoundError, _crypto.CryptoFailure, ValueError) as exc:
            raise PkiError(f"cannot load the E2E keys of {bureau} from {folder}") from exc
        identity = cls.from_keys(bureau, signing, encryption)
        peer = verify_entry(pki.root_public_key(), entry, now_ms=now_ms)
        if peer.bureau != bureau:
            raise PkiError(f"the directory entry filed for {bureau} names {peer.bureau}")
        if (peer.signing_key_id, peer.encryption_key_id) != (
            identity.signing_key_id,
            identity.encryption_key_id,
        ):
            raise PkiError(f"the keys of {bureau} do not match its directory entry")
        previous = folder / "previous" / "encryption.key"
        if peer.previous_verify_key is None or now_ms >= peer.previous_until_ms:
            return identity
        try:
            old = _crypto.x25519_from_pem(previous.read_bytes())
        except (FileNotFoundError, _crypto.CryptoFailure, ValueError):
            return identity  # the old key is gone: requests sealed to it are refused
        old_id = _crypto.key_id(_crypto.x25519_public_bytes(old))
        if old_id != peer.previous_encryption_key_id:
            return identity
        return dataclasses.replace(
            identity,
            previous_encryption_key=old,
            previous_encryption_key_id=old_id,
            previous_until_ms=peer.previous_until_ms,
        )

    def as_peer(self, not_after_ms: int = 2**62) -> Peer:
        """This identity's public half, as others see it."""
        return Peer(
            bureau=self.bureau,
            verify_key=self.signing_key.verify_key,
            encryption_key=self.encryption_key.public_key(),
            signing_key_id=self.signing_key_id,
            encryption_key_id=self.encryption_key_id,
            not_after_ms=not_after_ms,
            serial=0,
        )


def load_user(pki: PkiDir, user: str, *, now_ms: int) -> Identity:
    """Load user ``FR/x``'s keys from ``pki/bureaus/FR/users/x`` and check them against
    its entry, verified against FR's root-verified entry; PkiError if they do not match,
    or if FR revoked the user (``pki/users/FR/x.revoked``)."""
    bureau = principal.bureau_of(user)
    folder = pki.party(user)
    try:
        signing = _crypto.signing_key_from_pem((folder / "signing.key").read_bytes())
        encryption = _crypto.x25519_from_pem((folder / "encryption.key").read_bytes())
        signed = pki.user_entry_path(user).read_bytes()
        bureau_entry = pki.entry_path(bureau).read_bytes()
    except (FileNotFoundError, _crypto.CryptoFailure, ValueError) as exc:
        raise PkiError(f"cannot load the E2E keys of {user} from {folder}") from exc
    identity = Identity.from_keys(user, signing, encryption)
    bureau_peer = verify_entry(pki.root_public_key(), bureau_entry, now_ms=now_ms)
    try:
        entry = users.verify_user(bureau_peer, signed, now_ms=now_ms)
    except DirectoryError as exc:
        raise PkiError(f"the entry of {user} does not verify: {exc}") from None
    if entry.principal != user:
        raise PkiError(f"the entry filed for {user} names {entry.principal}")
    if (entry.signing_key_id, entry.encryption_key_id) != (
        identity.signing_key_id,
        identity.encryption_key_id,
    ):
        raise PkiError(f"the keys of {user} do not match its entry")
    revoked = pki.user_revocation_path(user)
    if revoked.is_file():
        try:
            _, serial = users.verify_user_revocation(bureau_peer, revoked.read_bytes())
        except DirectoryError:
            serial = -1  # not signed by its bureau: no revocation
        if serial == entry.serial:
            raise PkiError(f"{bureau} revoked {user}")
    return identity
