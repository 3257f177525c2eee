"""A running node follows key rotation and revocation without a restart.

Every ``interval_s`` (1 s by default) the node looks at two files of the PKI folder,
by their stat only:

- its own directory entry: after ``ncbsim pki rotate`` it loads its new keys (and the
  previous encryption key, kept for the grace period) and answers under them. When the
  grace period ends it forgets the previous key and deletes its copy on disk: requests
  have no forward secrecy, so an old key kept around keeps old requests readable;
- the root's revocation list (``revocations.list``), the out-of-band distribution
  point (:class:`ncbsim.peers.RevocationFile`): a newer list is verified and adopted
  at once, so envelopes signed with revoked keys are refused even if the gateway
  withholds the list.

A file caught half-written, or keys that do not match the entry yet, leave the node
on what it had; the next look tries again. So does any other error, which is logged.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from ncbsim import _crypto
from ncbsim.directory import Directory
from ncbsim.errors import DirectoryError, PkiError
from ncbsim.eventbus import EventBus
from ncbsim.identity import Identity
from ncbsim.node import observed
from ncbsim.peers import RevocationFile
from ncbsim.pki import PkiDir

log = structlog.get_logger()

Stamp = tuple[int, int, int] | None


def entry_stamp(pki: PkiDir, bureau: str) -> Stamp:
    """The stat of ``bureau``'s directory entry, to take *before* loading its identity,
    so that a rotation landing in between is seen by the first check."""
    return _stamp(pki.entry_path(bureau))


def _stamp(path: Path) -> Stamp:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


class KeyWatch:
    """Reloads ``bureau``'s identity after a rotation and adopts new revocation lists."""

    def __init__(
        self,
        pki: PkiDir,
        identity: Identity,
        directory: Directory,
        on_identity: Callable[[Identity], None],
        *,
        loaded_from: Stamp,
        bus: EventBus | None = None,
    ) -> None:
        """``loaded_from`` is :func:`entry_stamp` as it was before ``identity`` loaded;
        ``bus`` hears ``key.rotated`` when the signing key changes."""
        self._bus = bus
        self._signing_key_id = identity.signing_key_id
        self._pki = pki
        self._bureau = identity.bureau
        self._revocations = RevocationFile(pki, directory)
        self._on_identity = on_identity
        self._entry_stamp = loaded_from
        self._previous_until_ms = identity.previous_until_ms
        self._previous_key_id = identity.previous_encryption_key_id

    def check(self) -> None:
        """Look at both files once; reload what changed."""
        self._revocations.check()
        stamp = entry_stamp(self._pki, self._bureau)
        now_ms = int(time.time() * 1000)
        expired = bool(self._previous_until_ms) and now_ms >= self._previous_until_ms
        if stamp == self._entry_stamp and not expired:
            return
        try:
            identity = Identity.load(self._pki, self._bureau, now_ms=now_ms)
        except (PkiError, DirectoryError) as exc:
            log.warning("identity_reload_failed", reason=str(exc))
            return
        self._entry_stamp = stamp
        if identity.previous_encryption_key is None and self._previous_key_id:
            self._forget_previous(self._previous_key_id)
        self._previous_until_ms = identity.previous_until_ms
        self._previous_key_id = identity.previous_encryption_key_id
        log.info(
            "identity_reloaded",
            signing_key_id=identity.signing_key_id.hex(),
            previous_until_ms=identity.previous_until_ms,
        )
        self._on_identity(identity)
        if identity.signing_key_id != self._signing_key_id:
            self._signing_key_id = identity.signing_key_id
            if self._bus is not None:
                observed.key_rotated(self._bus, self._bureau, identity.signing_key_id)

    def _forget_previous(self, key_id: bytes) -> None:
        """Delete the previous keys on disk once their grace period is over, if they are
        still the ones that ended (a rotation under way may have put newer ones there)."""
        folder = self._pki.party(self._bureau) / "previous"
        try:
            held = _crypto.x25519_from_pem((folder / "encryption.key").read_bytes())
        except (FileNotFoundError, _crypto.CryptoFailure, ValueError):
            return
        if _crypto.key_id(_crypto.x25519_public_bytes(held)) == key_id:
            shutil.rmtree(folder, ignore_errors=True)
            log.info("previous_keys_deleted", encryption_key_id=key_id.hex())

    async def run(self, interval_s: float = 1.0) -> None:
        """Check every ``interval_s`` seconds until cancelled; an error is logged, and the
        next check tries again."""
        while True:
            try:
                self.check()
            except Exception:
                log.exception("key_check_failed")
            await asyncio.sleep(interval_s)
