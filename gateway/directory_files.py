"""The gateway's view of the PKI folder: directory entries and the revocation list.

The gateway is not trusted with keys, so it never needs to verify an entry for its own
safety (every party does); it reads the files to know which bureaus exist, which are
revoked, and to serve both to the parties that ask.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import structlog
from google.protobuf.message import DecodeError

from ncbsim.errors import DirectoryError
from ncbsim.eventbus import EventBus
from ncbsim.gateway import observed
from ncbsim.metrics import Metrics
from ncbsim.pki import PkiDir
from ncbsim.revocation import NONE, Revoked, verify_list
from ncbsim.v2 import directory_pb2

log = structlog.get_logger()

_FileStamp = tuple[str, int, int, int]
_Stamp = tuple[tuple[_FileStamp, ...], _FileStamp | None]


def _file_stamp(name: str, stat: os.stat_result) -> _FileStamp:
    return (name, stat.st_ino, stat.st_mtime_ns, stat.st_size)


class DirectoryFiles:
    """Root-signed directory entries and the revocation list, reloaded when files change.

    Admission asks :meth:`known` about every envelope, so the folder is looked at no
    more than once per ``refresh_s`` (one ``scandir`` and a ``stat`` per entry, plus one
    for the revocation list; files are read only when one changed), and at once when
    asked about a bureau it does not hold, so a bureau added while the gateway runs is
    routable straight away. A changed entry or a new revocation list therefore takes
    effect within ``refresh_s``: that bounds how long a revoked bureau can still be
    served. Each file is keyed by (name, inode, mtime_ns, size), so an entry replaced
    (``pki`` writes with ``os.replace``) or rewritten in place is seen even when its
    size is unchanged. :meth:`entries`, which serves GetDirectory, always looks.

    The revocation list is verified against the root before it is used, so a list
    written by anyone but the root is ignored (and logged).
    """

    def __init__(
        self,
        pki: PkiDir,
        *,
        refresh_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self._metrics = metrics or Metrics("gateway")
        self._pki = pki
        self._bus = bus
        self._refresh_s = refresh_s
        self._clock = clock
        self._checked_at = float("-inf")
        self._stamp: _Stamp | None = None
        self._entries: dict[str, directory_pb2.SignedDirectoryEntry] = {}
        self._serials: dict[str, int] = {}
        self._send_only: frozenset[str] = frozenset()
        self.revoked: Revoked = NONE
        """The newest revocation list on disk that the root signed."""
        self.generation = 0
        """Grows each time an entry or the revocation list changed on disk (the users'
        book, :mod:`ncbsim.gateway.user_files`, checks its users again then)."""

    def entries(self, bureaus: list[str]) -> list[directory_pb2.SignedDirectoryEntry]:
        """Entries for ``bureaus`` (all when empty), revoked ones left out."""
        self._reload()
        codes = bureaus or list(self._entries)
        return [self._entries[b] for b in codes if b in self._entries and not self._revoked(b)]

    def revocation_list(self) -> directory_pb2.SignedRevocationList | None:
        """The revocation list to serve with every directory reply, if there is one."""
        self.refresh()
        if not self.revoked.signed:
            return None
        return directory_pb2.SignedRevocationList.FromString(self.revoked.signed)

    def known(self, bureau: str) -> bool:
        """Whether ``bureau`` has a directory entry. DirectoryError if it is revoked."""
        if bureau not in self._entries:
            self._reload()
        else:
            self.refresh()
        if bureau in self._entries and self._revoked(bureau):
            raise DirectoryError(f"the keys of {bureau} are revoked")
        return bureau in self._entries

    def send_only(self, bureau: str) -> bool:
        """Whether ``bureau``'s entry says it only sends (``requester_only``): it runs no
        node, so nothing can be delivered to it. Asked after :meth:`known`."""
        return bureau in self._send_only

    def refresh(self) -> None:
        """Look at the folder if ``refresh_s`` has passed since the last look."""
        if self._clock() - self._checked_at >= self._refresh_s:
            self._reload()

    def _revoked(self, bureau: str) -> bool:
        return self.revoked.entry_revoked(bureau, self._serials.get(bureau, 0))

    def _reload(self) -> None:
        self._checked_at = self._clock()
        folder = self._pki.directory
        stamps: list[_FileStamp] = []
        with os.scandir(folder) as listing:
            for item in listing:
                if not item.name.endswith(".entry"):
                    continue
                try:
                    stamps.append(_file_stamp(item.name, item.stat()))
                except FileNotFoundError:  # removed since the listing
                    continue
        try:
            listed: _FileStamp | None = _file_stamp("", os.stat(self._pki.revocations))
        except FileNotFoundError:
            listed = None
        stamp = (tuple(sorted(stamps)), listed)
        self._metrics.directory_refreshed("unchanged" if stamp == self._stamp else "changed")
        if stamp == self._stamp:
            return
        if self._stamp is None or listed != self._stamp[1]:
            self._metrics.revocations_refreshed(self._load_revocations())
        if self._stamp is None or stamp[0] != self._stamp[0]:
            self._load_entries(folder, stamp[0])
        self._stamp = stamp
        self.generation += 1

    def _load_entries(self, folder: Path, stamps: tuple[_FileStamp, ...]) -> None:
        entries: dict[str, directory_pb2.SignedDirectoryEntry] = {}
        serials: dict[str, int] = {}
        send_only: set[str] = set()
        for name, *_ in stamps:
            try:
                signed = directory_pb2.SignedDirectoryEntry.FromString((folder / name).read_bytes())
                entry = directory_pb2.DirectoryEntry.FromString(signed.entry)
            except (FileNotFoundError, DecodeError):
                # Gone or not an entry: skip it. Bureaus verify every entry they use anyway.
                log.warning("directory_entry_unreadable", file=name)
                continue
            code = Path(name).stem
            entries[code] = signed
            serials[code] = entry.serial
            if entry.requester_only:
                send_only.add(code)
        self._entries = entries
        self._serials = serials
        self._send_only = frozenset(send_only)
        if self._bus is not None:
            observed.directory_refreshed(self._bus, len(entries))

    def _load_revocations(self) -> str:
        """Adopt the list on disk if the root signed it and it is newer; what became of it
        (``adopted``, ``unchanged``, ``refused``)."""
        signed = self._pki.revocation_list()
        if signed is None:
            return "unchanged"
        try:
            revoked = verify_list(self._pki.root_public_key(), signed)
        except DirectoryError as exc:
            log.warning("revocation_list_refused", reason=str(exc))
            return "refused"
        if revoked.sequence > self.revoked.sequence:
            log.info("revocations_adopted", sequence=revoked.sequence, bureaus=revoked.bureaus())
            newly = sorted(set(revoked.bureaus()) - set(self.revoked.bureaus()))
            self.revoked = revoked
            if self._bus is not None:
                observed.revocation_refreshed(self._bus, len(revoked.bureaus()), newly)
            return "adopted"
        return "unchanged"
