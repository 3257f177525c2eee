"""Verified key directory: each bureau's E2E public keys, trusted only if the root signed them.

The gateway serves directory entries but cannot substitute a key: every entry is
verified here against the pinned root before use, and an entry the root did not
sign raises :class:`~ncbsim.errors.DirectoryError`. Verified entries are cached by
their exact bytes, so the ECDSA check runs once per entry, not once per message.

Two things retire keys. Rotation (``ncbsim pki rotate``): a bureau's newer entry
names the keys it replaced and how long they stay acceptable (the grace period).
Revocation (``ncbsim pki revoke``): the root's signed list (:mod:`ncbsim.revocation`)
names revoked entries and keys; a directory drops them at once and refuses them
from then on, and never accepts an older list than the one it holds.

A directory holds a bureau's users too (docs/users.md): each ``SignedUserEntry`` is
verified against its bureau's entry held here (:func:`ncbsim.users.verify_user`), and
:meth:`Directory.get` serves a user ``FR/x`` as a :class:`Peer` whose ``bureau`` is the
principal and whose ``rights`` are set. A user is refused once its bureau revokes it
(``SignedUserRevocation``) or once its bureau is revoked or gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.message import DecodeError

from ncbsim import _crypto
from ncbsim.errors import DirectoryError, PkiError
from ncbsim.pki import DIRECTORY_CONTEXT, PkiDir, check_bureau_code
from ncbsim.principal import bureau_of, is_user
from ncbsim.revocation import NONE, Revoked, verify_list
from ncbsim.users import (
    Rights,
    User,
    entry_principal,
    revocation_principal,
    verify_user,
    verify_user_revocation,
)
from ncbsim.v2 import directory_pb2


@dataclass(frozen=True, slots=True)
class Peer:
    """A bureau's public E2E keys from a verified directory entry, or a user's from its
    bureau-signed entry (then ``bureau`` is the principal ``FR/x`` and ``rights`` is set)."""

    bureau: str
    verify_key: _crypto.VerifyKey
    encryption_key: _crypto.X25519PublicKey
    signing_key_id: bytes
    encryption_key_id: bytes
    not_after_ms: int
    serial: int
    previous_verify_key: _crypto.VerifyKey | None = None
    """The signing key this entry replaced, accepted until ``previous_until_ms``."""
    previous_signing_key_id: bytes = b""
    previous_encryption_key_id: bytes = b""
    previous_until_ms: int = 0
    requester_only: bool = False
    """The bureau sends queries but runs no node to answer them."""
    rights: Rights | None = None
    """A user's rights, as its bureau signed them; None for a bureau."""

    def verify_key_for(self, key_id: bytes, now_ms: int) -> _crypto.VerifyKey | None:
        """The signing key with id ``key_id``: the current one, or the previous one
        within its grace period; None otherwise."""
        if key_id == self.signing_key_id:
            return self.verify_key
        if (
            self.previous_verify_key is not None
            and key_id == self.previous_signing_key_id
            and now_ms < self.previous_until_ms
        ):
            return self.previous_verify_key
        return None

    def signs_with(self, key_id: bytes) -> bool:
        """Whether ``key_id`` names this peer's signing key or the one it rotated out."""
        return key_id == self.signing_key_id or (
            self.previous_verify_key is not None and key_id == self.previous_signing_key_id
        )

    def key_ids(self) -> tuple[bytes, ...]:
        """Ids of every key this peer certifies, previous ones included."""
        if self.previous_verify_key is None:
            return (self.signing_key_id, self.encryption_key_id)
        return (
            self.signing_key_id,
            self.encryption_key_id,
            self.previous_signing_key_id,
            self.previous_encryption_key_id,
        )


def parse_entry(root: ec.EllipticCurvePublicKey, signed: bytes) -> directory_pb2.DirectoryEntry:
    """The DirectoryEntry inside ``signed``, once its root signature has been checked."""
    try:
        outer = directory_pb2.SignedDirectoryEntry.FromString(signed)
        _crypto.ecdsa_verify(root, DIRECTORY_CONTEXT + outer.entry, outer.signature)
        entry = directory_pb2.DirectoryEntry.FromString(outer.entry)
    except (DecodeError, _crypto.CryptoFailure) as exc:
        raise DirectoryError("directory entry not signed by the pinned root") from exc
    if entry.version != 1:
        raise DirectoryError("unsupported directory entry version")
    return entry


def verify_entry(
    root: ec.EllipticCurvePublicKey, signed: bytes, *, now_ms: int, revoked: Revoked = NONE
) -> Peer:
    """Check a SignedDirectoryEntry against the root and return the peer it certifies.

    An entry that ``revoked`` revokes, or whose current keys it revokes, is refused; a
    revoked previous key is dropped (the entry's current keys stay usable).
    """
    entry = parse_entry(root, signed)
    try:
        check_bureau_code(entry.bureau)
        verify_key = _crypto.ed25519_verify_key(entry.signing_key)
        encryption_key = _crypto.x25519_public_from_bytes(entry.encryption_key)
        previous_key = None
        if entry.previous_signing_key:
            previous_key = _crypto.ed25519_verify_key(entry.previous_signing_key)
            _crypto.x25519_public_from_bytes(entry.previous_encryption_key)
    except (_crypto.CryptoFailure, PkiError) as exc:
        raise DirectoryError("directory entry not signed by the pinned root") from exc
    if not entry.not_before_ms <= now_ms < entry.not_after_ms:
        raise DirectoryError(f"directory entry for {entry.bureau} is outside its validity")
    signing_id = _crypto.key_id(entry.signing_key)
    encryption_id = _crypto.key_id(entry.encryption_key)
    if (
        revoked.entry_revoked(entry.bureau, entry.serial)
        or revoked.key_revoked(signing_id)
        or revoked.key_revoked(encryption_id)
    ):
        raise DirectoryError(f"the keys of {entry.bureau} are revoked")
    previous_ids = (b"", b"")
    if previous_key is not None:
        previous_ids = (
            _crypto.key_id(entry.previous_signing_key),
            _crypto.key_id(entry.previous_encryption_key),
        )
        if any(revoked.key_revoked(i) for i in previous_ids):
            previous_key, previous_ids = None, (b"", b"")
    return Peer(
        bureau=entry.bureau,
        verify_key=verify_key,
        encryption_key=encryption_key,
        signing_key_id=signing_id,
        encryption_key_id=encryption_id,
        not_after_ms=entry.not_after_ms,
        serial=entry.serial,
        previous_verify_key=previous_key,
        previous_signing_key_id=previous_ids[0],
        previous_encryption_key_id=previous_ids[1],
        previous_until_ms=entry.previous_until_ms if previous_key is not None else 0,
        requester_only=entry.requester_only,
    )


def _user_peer(user: User) -> Peer:
    return Peer(
        bureau=user.principal,
        verify_key=user.verify_key,
        encryption_key=user.encryption_key,
        signing_key_id=user.signing_key_id,
        encryption_key_id=user.encryption_key_id,
        not_after_ms=user.not_after_ms,
        serial=user.serial,
        rights=user.rights,
    )


class Directory:
    """Peers this party trusts, each verified against the pinned root."""

    def __init__(self, root: ec.EllipticCurvePublicKey) -> None:
        self._root = root
        self._peers: dict[str, Peer] = {}
        self._verified: dict[bytes, Peer] = {}
        self._users: dict[str, tuple[User, Peer]] = {}
        self._verified_users: dict[bytes, User] = {}
        self._users_revoked: dict[str, int] = {}
        """The highest serial each bureau revoked of each of its users."""
        self.revoked = NONE
        """The newest revocation list this directory has verified."""

    @classmethod
    def pinned(cls, pki: PkiDir) -> Directory:
        """An empty directory pinned to the root of ``pki``, holding the revocation list
        found there, if any: a party that can read it never depends on the gateway to
        learn of a revocation."""
        directory = cls(pki.root_public_key())
        signed_list = pki.revocation_list()
        if signed_list is not None:
            directory.apply_revocations(signed_list)
        return directory

    @classmethod
    def from_pki(cls, pki: PkiDir) -> Directory:
        """A directory pinned to the root of ``pki``, loaded with every entry on disk
        that its revocation list (if any) leaves valid."""
        directory = cls.pinned(pki)
        for signed in pki.signed_entries():
            try:
                directory.add([signed])
            except DirectoryError:
                if not directory.revoked.sequence:
                    raise
        for revocation in pki.signed_user_revocations():
            with contextlib.suppress(DirectoryError):  # its bureau is gone: so are its users
                directory.add_users([], [revocation])
        for signed in pki.signed_users():
            with contextlib.suppress(DirectoryError):  # revoked, expired or not its bureau's
                directory.add_users([signed])
        return directory

    def apply_revocations(self, signed_list: bytes) -> bool:
        """Verify a SignedRevocationList and, if it is newer than the one held, adopt it
        and drop every peer it revokes. Returns whether it was adopted.

        Raises DirectoryError if the root did not sign it. An older or equal list is
        ignored: nobody, the gateway included, can roll a revocation back.
        """
        revoked = verify_list(self._root, signed_list)
        if revoked.sequence <= self.revoked.sequence:
            return False
        self.revoked = revoked
        self._verified.clear()
        self._peers = {
            code: peer
            for code, peer in self._peers.items()
            if not revoked.entry_revoked(code, peer.serial)
            and not any(revoked.key_revoked(i) for i in peer.key_ids()[:2])
        }
        for code, peer in list(self._peers.items()):
            if peer.previous_verify_key is not None and any(
                revoked.key_revoked(i) for i in peer.key_ids()[2:]
            ):
                self._peers[code] = dataclasses.replace(
                    peer,
                    previous_verify_key=None,
                    previous_signing_key_id=b"",
                    previous_encryption_key_id=b"",
                    previous_until_ms=0,
                )
        return True

    def add(self, signed_entries: Iterable[bytes]) -> list[Peer]:
        """Verify and remember entries; raises DirectoryError on the first bad one."""
        now_ms = int(time.time() * 1000)
        added = []
        for signed in signed_entries:
            peer = self._verified.get(signed)
            if peer is None or peer.not_after_ms <= now_ms:
                peer = verify_entry(self._root, signed, now_ms=now_ms, revoked=self.revoked)
                self._verified[signed] = peer
            current = self._peers.get(peer.bureau)
            if current is not None and current.serial > peer.serial:
                # An older entry, still within its validity, never displaces a newer one.
                continue
            self._peers[peer.bureau] = peer
            added.append(peer)
        return added

    def add_users(
        self, signed_users: Iterable[bytes], signed_revocations: Iterable[bytes] = ()
    ) -> list[Peer]:
        """Verify and remember user revocations, then user entries, each against its
        bureau's entry held here; raises DirectoryError on the first bad one (a bureau
        signing for another, a revoked or expired user, a bureau not held)."""
        now_ms = int(time.time() * 1000)
        for signed in signed_revocations:
            claimed = revocation_principal(signed)
            user, serial = verify_user_revocation(self._bureau_peer(claimed), signed)
            if serial > self._users_revoked.get(user, 0):
                self._users_revoked[user] = serial
            held = self._users.get(user)
            if held is not None and held[0].serial <= serial:
                del self._users[user]
        added = []
        for signed in signed_users:
            claimed = entry_principal(signed)
            bureau = self._bureau_peer(claimed)
            found = self._verified_users.get(signed)
            if found is None or found.not_after_ms <= now_ms:
                found = verify_user(bureau, signed, now_ms=now_ms)
                self._verified_users[signed] = found
            elif bureau.verify_key_for(found.issuer_key_id, now_ms) is None:
                raise DirectoryError(f"user entry for {claimed} not signed by {bureau.bureau}")
            if self._users_revoked.get(found.principal, 0) >= found.serial:
                raise DirectoryError(f"{found.principal} is revoked by {found.bureau}")
            current = self._users.get(found.principal)
            if current is not None and current[0].serial > found.serial:
                continue  # an older entry never displaces a newer one
            peer = _user_peer(found)
            self._users[found.principal] = (found, peer)
            added.append(peer)
        return added

    def _bureau_peer(self, user: str) -> Peer:
        bureau = bureau_of(user)
        try:
            return self._peers[bureau]
        except KeyError:
            raise DirectoryError(
                f"no verified directory entry for {bureau}, the bureau of {user}"
            ) from None

    def user(self, principal: str) -> User:
        """The verified user ``FR/x``: DirectoryError if none is held, or it is revoked,
        expired, or its bureau is revoked or no longer certifies the key that signed it."""
        held = self._users.get(principal)
        if held is None:
            if principal in self._users_revoked:
                raise DirectoryError(f"{principal} is revoked by {bureau_of(principal)}")
            raise DirectoryError(f"no verified directory entry for {principal}")
        user = held[0]
        now_ms = int(time.time() * 1000)
        bureau = self._bureau_peer(principal)
        if user.not_after_ms <= now_ms:
            raise DirectoryError(f"the entry of {principal} is outside its validity")
        if bureau.verify_key_for(user.issuer_key_id, now_ms) is None:
            raise DirectoryError(
                f"{user.bureau} no longer certifies the key that signed {principal}"
            )
        return user

    def get(self, bureau: str) -> Peer:
        """The verified peer for ``bureau`` (a bureau code or a user ``FR/x``), or
        DirectoryError."""
        if is_user(bureau):
            self.user(bureau)
            return self._users[bureau][1]
        try:
            return self._peers[bureau]
        except KeyError:
            raise DirectoryError(f"no verified directory entry for {bureau}") from None

    def __contains__(self, bureau: object) -> bool:
        return bureau in self._peers or bureau in self._users

    def sender_revoked(self, sender: str, key_id: bytes) -> bool:
        """Whether an envelope from ``sender`` signed with ``key_id`` failed for a
        revocation (the audit's reason, never the caller's): the key is on the root's
        list, or ``sender`` is a user its bureau revoked and holds no newer entry for."""
        if self.revoked.key_revoked(key_id):
            return True
        held = sender in self._users
        return is_user(sender) and not held and self.revoked_user_serial(sender) > 0

    def revoked_user_serial(self, principal: str) -> int:
        """The highest serial of ``principal`` its bureau revoked (0: none)."""
        return self._users_revoked.get(principal, 0)

    def users(self) -> list[str]:
        """Principals of every user held (revoked ones left out), sorted."""
        return sorted(self._users)

    def bureaus(self) -> list[str]:
        """Codes of every verified peer, sorted."""
        return sorted(self._peers)
