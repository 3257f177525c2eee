"""A party's view of the directory: verified peers, fetched from the gateway on demand.

The gateway only carries directory entries; each one is verified here against the
pinned root (see :mod:`ncbsim.directory`), so a gateway that swaps a key is caught.
Every directory reply also carries the gateway's newest revocation list, which is
verified the same way and adopted only if it is newer than the one held.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import structlog

from ncbsim.directory import Directory, Peer
from ncbsim.errors import DirectoryError
from ncbsim.v1 import gateway_pb2, gateway_pb2_grpc

_MISS_BACKOFF_S = 5.0

log = structlog.get_logger()


class Peers:
    """Verified directory entries, refreshed from the gateway when a bureau is missing."""

    def __init__(self, directory: Directory, gateway: gateway_pb2_grpc.GatewayStub) -> None:
        self.directory = directory
        self._gateway = gateway
        self._missed: dict[str, float] = {}

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
        codes = list(bureaus)
        now = time.monotonic()
        missing = [
            c
            for c in codes
            if (refresh or c not in self.directory)
            and now - self._missed.get(c, float("-inf")) >= _MISS_BACKOFF_S
        ]
        if missing:
            await self._fetch(missing, timeout)
            for code in missing:
                if refresh or code not in self.directory:
                    self._missed[code] = now
        return [self.directory.get(c) for c in codes]

    def get(self, bureau: str) -> Peer:
        """A peer already verified, or DirectoryError."""
        return self.directory.get(bureau)

    async def _fetch(self, bureaus: list[str], timeout: float) -> None:
        reply = await self._gateway.GetDirectory(
            gateway_pb2.DirectoryRequest(bureaus=bureaus), timeout=timeout
        )
        if reply.HasField("revocations"):
            try:
                if self.directory.apply_revocations(reply.revocations.SerializeToString()):
                    log.info("revocations_adopted", sequence=self.directory.revoked.sequence)
            except DirectoryError as exc:
                log.warning("revocation_list_refused", reason=str(exc))
        verified = 0
        for entry in reply.entries:
            try:
                self.directory.add([entry.SerializeToString()])
                verified += 1
            except DirectoryError as exc:
                # A gateway that substitutes a key lands here; the entry is never used.
                log.warning("directory_entry_refused", reason=str(exc))
        log.debug("directory_fetched", asked=len(bureaus), verified=verified)
