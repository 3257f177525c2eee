"""A party's view of the directory: verified peers, fetched from the gateway on demand.

The gateway only carries directory entries; each one is verified here against the
pinned root (see :mod:`ncbsim.directory`), so a gateway that swaps a key is caught.
Every directory reply also carries the gateway's newest revocation list, which is
verified the same way and adopted only if it is newer than the one held.

A user ``FR/x`` resolves the same way: its entry (and its bureau's, if missing) is fetched
and verified against its bureau's entry (docs/users.md); the reply's user revocations,
each signed by its bureau, are applied before it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

import structlog

from ncbsim.directory import Directory, Peer
from ncbsim.errors import DirectoryError
from ncbsim.pki import PkiDir
from ncbsim.principal import bureau_of, is_user
from ncbsim.v2 import gateway_pb2, gateway_pb2_grpc

_MISS_BACKOFF_S = 5.0

log = structlog.get_logger()


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


class RevocationFile:
    """The root's revocation list in a PKI folder, adopted by ``directory`` when it changes.

    :meth:`check` costs one ``stat`` when nothing changed. This is how a party that can
    read the PKI folder learns of a revocation without depending on the gateway.
    """

    def __init__(self, pki: PkiDir, directory: Directory) -> None:
        self._pki = pki
        self._directory = directory
        self._stamp: tuple[int, int, int] | None = None

    def check(self) -> bool:
        """Adopt the list on disk if it changed and is newer; True if adopted."""
        stamp = _stamp(self._pki.revocations)
        if stamp == self._stamp:
            return False
        signed = self._pki.revocation_list()
        try:
            adopted = signed is not None and self._directory.apply_revocations(signed)
        except DirectoryError as exc:  # not the root's: keep what we hold, look again later
            log.warning("revocation_list_refused", reason=str(exc))
            return False
        self._stamp = stamp
        if adopted:
            log.info("revocations_adopted", sequence=self._directory.revoked.sequence)
        return adopted


class Peers:
    """Verified directory entries, refreshed from the gateway when a bureau is missing.

    ``revocations``, when given, is checked before every :meth:`resolve`, so a
    long-running party learns of a revocation on its next query. ``max_age_s``, when
    given, makes :meth:`resolve` fetch again an entry held longer than that, so a
    long-running party follows a peer's key rotation well inside its grace period.
    """

    def __init__(
        self,
        directory: Directory,
        gateway: gateway_pb2_grpc.GatewayServiceStub,
        *,
        revocations: RevocationFile | None = None,
        max_age_s: float | None = None,
    ) -> None:
        self.directory = directory
        self._gateway = gateway
        self._revocations = revocations
        self._max_age_s = max_age_s
        self._missed: dict[str, float] = {}
        self._fetched: dict[str, float] = {}

    async def load_all(self, timeout: float = 5.0) -> list[str]:
        """Fetch and verify every entry the gateway serves; returns the bureau codes."""
        await self._fetch([], timeout)
        return self.directory.bureaus()

    async def resolve(
        self, bureaus: Iterable[str], timeout: float = 5.0, *, refresh: bool = False
    ) -> list[Peer]:
        """Verified peers for ``bureaus``, fetching missing entries once per back-off period.

        ``refresh`` fetches the entries even when they are held (a sender signed with a
        key the held entry does not name: it may have rotated), within the same back-off.
        """
        if self._revocations is not None:
            self._revocations.check()
        codes = list(bureaus)
        now = time.monotonic()
        stale = now - self._max_age_s if self._max_age_s is not None else float("-inf")
        missing = [
            c
            for c in codes
            if (refresh or c not in self.directory or self._fetched.get(c, now) < stale)
            and now - self._missed.get(c, float("-inf")) >= _MISS_BACKOFF_S
        ]
        if missing:
            # a user's entry is checked against its bureau's: ask for both
            bureaus_too = (bureau_of(c) for c in missing if is_user(c))
            ask = [*missing, *(b for b in bureaus_too if b not in self.directory)]
            await self._fetch(list(dict.fromkeys(ask)), timeout)
            for code in missing:
                if refresh or code not in self.directory:
                    self._missed[code] = now
        return [self.directory.get(c) for c in codes]

    def get(self, bureau: str) -> Peer:
        """A peer already verified, or DirectoryError."""
        return self.directory.get(bureau)

    async def _fetch(self, bureaus: list[str], timeout: float) -> None:
        reply = await self._gateway.GetDirectory(
            gateway_pb2.GetDirectoryRequest(bureaus=bureaus), timeout=timeout
        )
        if reply.HasField("revocations"):
            try:
                if self.directory.apply_revocations(reply.revocations.SerializeToString()):
                    log.info("revocations_adopted", sequence=self.directory.revoked.sequence)
            except DirectoryError as exc:
                log.warning("revocation_list_refused", reason=str(exc))
        verified = 0
        now = time.monotonic()
        for entry in reply.entries:
            try:
                for peer in self.directory.add([entry.SerializeToString()]):
                    self._fetched[peer.bureau] = now
                verified += 1
            except DirectoryError as exc:
                # A gateway that substitutes a key lands here; the entry is never used.
                log.warning("directory_entry_refused", reason=str(exc))
        for signed in reply.user_revocations:
            try:
                self.directory.add_users([], [signed.SerializeToString()])
            except DirectoryError as exc:
                log.warning("user_revocation_refused", reason=str(exc))
        for signed in reply.users:
            try:
                for peer in self.directory.add_users([signed.SerializeToString()]):
                    self._fetched[peer.bureau] = now
                verified += 1
            except DirectoryError as exc:
                # A gateway serving a user no bureau vouches for lands here: never used.
                log.warning("user_entry_refused", reason=str(exc))
        log.debug("directory_fetched", asked=len(bureaus), verified=verified)
