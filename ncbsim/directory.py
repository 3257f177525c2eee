"""Verified key directory: each bureau's E2E public keys, trusted only if the root signed them.

The gateway serves directory entries but cannot substitute a key: every entry is
verified here against the pinned root before use, and an entry the root did not
sign raises :class:`~ncbsim.errors.DirectoryError`. Verified entries are cached by
their exact bytes, so the ECDSA check runs once per entry, not once per message.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.message import DecodeError

from ncbsim import _crypto
from ncbsim.errors import DirectoryError, PkiError
from ncbsim.pki import DIRECTORY_CONTEXT, PkiDir, check_bureau_code
from ncbsim.v1 import directory_pb2


@dataclass(frozen=True, slots=True)
class Peer:
    """A bureau's public E2E keys from a verified directory entry."""

    bureau: str
    verify_key: _crypto.VerifyKey
    encryption_key: _crypto.X25519PublicKey
    signing_key_id: bytes
    encryption_key_id: bytes
    not_after_ms: int
    serial: int


def verify_entry(root: ec.EllipticCurvePublicKey, signed: bytes, *, now_ms: int) -> Peer:
    """Check a SignedDirectoryEntry against the root and return the peer it certifies."""
    try:
        outer = directory_pb2.SignedDirectoryEntry.FromString(signed)
        _crypto.ecdsa_verify(root, DIRECTORY_CONTEXT + outer.entry, outer.signature)
        entry = directory_pb2.DirectoryEntry.FromString(outer.entry)
        if entry.version != 1:
            raise DirectoryError("unsupported directory entry version")
        check_bureau_code(entry.bureau)
        verify_key = _crypto.ed25519_verify_key(entry.signing_key)
        encryption_key = _crypto.x25519_public_from_bytes(entry.encryption_key)
    except (DecodeError, _crypto.CryptoFailure, PkiError) as exc:
        raise DirectoryError("directory entry not signed by the pinned root") from exc
    if not entry.not_before_ms <= now_ms < entry.not_after_ms:
        raise DirectoryError(f"directory entry for {entry.bureau} is outside its validity")
    return Peer(
        bureau=entry.bureau,
        verify_key=verify_key,
        encryption_key=encryption_key,
        signing_key_id=_crypto.key_id(entry.signing_key),
        encryption_key_id=_crypto.key_id(entry.encryption_key),
        not_after_ms=entry.not_after_ms,
        serial=entry.serial,
    )


class Directory:
    """Peers this party trusts, each verified against the pinned root."""

    def __init__(self, root: ec.EllipticCurvePublicKey) -> None:
        self._root = root
        self._peers: dict[str, Peer] = {}
        self._verified: dict[bytes, Peer] = {}

    @classmethod
    def from_pki(cls, pki: PkiDir) -> Directory:
        """A directory pinned to the root of ``pki``, loaded with every entry on disk."""
        directory = cls(pki.root_public_key())
        directory.add(pki.signed_entries())
        return directory

    def add(self, signed_entries: Iterable[bytes]) -> list[Peer]:
        """Verify and remember entries; raises DirectoryError on the first bad one."""
        now_ms = int(time.time() * 1000)
        added = []
        for signed in signed_entries:
            peer = self._verified.get(signed)
            if peer is None or peer.not_after_ms <= now_ms:
                peer = verify_entry(self._root, signed, now_ms=now_ms)
                self._verified[signed] = peer
            current = self._peers.get(peer.bureau)
            if current is not None and current.serial > peer.serial:
                # An older entry, still within its validity, never displaces a newer one.
                continue
            self._peers[peer.bureau] = peer
            added.append(peer)
        return added

    def get(self, bureau: str) -> Peer:
        """The verified peer for ``bureau``, or DirectoryError."""
        try:
            return self._peers[bureau]
        except KeyError:
            raise DirectoryError(f"no verified directory entry for {bureau}") from None

    def __contains__(self, bureau: object) -> bool:
        return bureau in self._peers

    def bureaus(self) -> list[str]:
        """Codes of every verified peer, sorted."""
        return sorted(self._peers)
