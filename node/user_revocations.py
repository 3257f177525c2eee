"""A node's watch on the users its peers revoked: ``pki/users/XX/NAME.revoked`` files.

A bureau revokes one of its users with ``ncbsim user revoke`` (docs/users.md), which
writes a revocation signed with the bureau's directory key next to the user's entry.
The gateway refuses the user's calls from then on; a node that still holds the user's
entry (it answered the user before) learns of it here too, the way it reads the root's
revocation list (node/keys.py): each file new or changed since the last look is verified
against its bureau's entry and applied to the node's directory, which drops the user.
The node's session sweep (node/sessions.py) calls :meth:`UserRevocations.check` and then
ends the sessions of every sender the directory no longer holds, within a sweep.
"""

from __future__ import annotations

import structlog

from ncbsim.directory import Directory
from ncbsim.errors import DirectoryError
from ncbsim.pki import PkiDir

__all__ = ["UserRevocations"]

log = structlog.get_logger()


class UserRevocations:
    """Applies the user revocation files of ``pki`` to ``directory`` as they appear."""

    def __init__(self, pki: PkiDir, directory: Directory) -> None:
        self._folder = pki.root / "users"
        self._directory = directory
        self._seen: dict[str, tuple[int, int]] = {}

    def check(self) -> int:
        """Apply each revocation file new or changed since the last call; how many."""
        if not self._folder.is_dir():
            return 0
        applied = 0
        for path in sorted(self._folder.glob("*/*.revoked")):
            try:
                stat = path.stat()
                stamp = (stat.st_mtime_ns, stat.st_size)
                if self._seen.get(str(path)) == stamp:
                    continue
                signed = path.read_bytes()
            except OSError:
                continue  # being written: the next look takes it
            try:
                self._directory.add_users([], [signed])
            except DirectoryError as exc:
                log.warning("user_revocation_refused", file=path.name, error=str(exc))
            else:
                applied += 1
                log.info("user_revocation_adopted", user=f"{path.parent.name}/{path.stem}")
            self._seen[str(path)] = stamp
        return applied
