"""A running node follows key rotation and revocation without a restart.

Every ``interval_s`` (1 s by default) the node looks at two files of the PKI folder,
by their stat only:

- its own directory entry: after ``ncbsim pki rotate`` it loads its new keys (and the
  previous encryption key, kept for the grace period) and answers under them;
- the root's revocation list (``revocations.list``), the out-of-band distribution
  point: a newer list is verified and adopted at once, so envelopes signed with
  revoked keys are refused even if the gateway withholds the list.

A file caught half-written, or keys that do not match the entry yet, leave the node
on what it had; the next look tries again.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

import structlog

from ncbsim.directory import Directory
from ncbsim.errors import DirectoryError, PkiError
from ncbsim.identity import Identity
from ncbsim.pki import PkiDir

log = structlog.get_logger()

_Stamp = tuple[int, int, int] | None


def _stamp(path: os.PathLike[str] | str) -> _Stamp:
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
        bureau: str,
        directory: Directory,
        on_identity: Callable[[Identity], None],
    ) -> None:
        self._pki = pki
        self._bureau = bureau
        self._directory = directory
        self._on_identity = on_identity
        self._entry_stamp = _stamp(pki.entry_path(bureau))
        self._list_stamp: _Stamp = None
        self._previous_until_ms = 0

    def watch_grace(self, identity: Identity) -> None:
        """Remember when ``identity``'s previous key expires, to drop it then."""
        self._previous_until_ms = identity.previous_until_ms

    def check(self) -> None:
        """Look at both files once; reload what changed."""
        list_stamp = _stamp(self._pki.revocations)
        if list_stamp != self._list_stamp:
            signed = self._pki.revocation_list()
            try:
                if signed is not None and self._directory.apply_revocations(signed):
                    log.info("revocations_adopted", sequence=self._directory.revoked.sequence)
                self._list_stamp = list_stamp
            except DirectoryError as exc:
                log.warning("revocation_list_refused", reason=str(exc))
        entry_stamp = _stamp(self._pki.entry_path(self._bureau))
        now_ms = int(time.time() * 1000)
        expired = bool(self._previous_until_ms) and now_ms >= self._previous_until_ms
        if entry_stamp == self._entry_stamp and not expired:
            return
        try:
            identity = Identity.load(self._pki, self._bureau, now_ms=now_ms)
        except (PkiError, DirectoryError) as exc:
            log.warning("identity_reload_failed", reason=str(exc))
            return
        self._entry_stamp = entry_stamp
        self._previous_until_ms = identity.previous_until_ms
        if not expired:
            log.info(
                "identity_reloaded",
                signing_key_id=identity.signing_key_id.hex(),
                previous_until_ms=identity.previous_until_ms,
            )
        self._on_identity(identity)

    async def run(self, interval_s: float = 1.0) -> None:
        """Check every ``interval_s`` seconds until cancelled."""
        while True:
            self.check()
            await asyncio.sleep(interval_s)
