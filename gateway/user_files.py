"""The gateway's book of users: the entries and revocations bureaus wrote under ``pki/users/``.

Unlike a bureau's entry, which the gateway only carries, a user's entry decides what the
gateway lets through (its certificate, its rights, its rates), so the gateway verifies
each one against its bureau's root-signed entry (:func:`ncbsim.users.verify_user`) before
it admits the user or serves the entry. An entry that does not verify, say FR signing an
entry for ``DE/x`` or one filed under another name, is refused: logged, reported to
``on_refused`` (the gateway audits it as ``user_entry_refused``) and never served.

Like :class:`~ncbsim.gateway.directory_files.DirectoryFiles`, the folder is looked at no
more than once per ``refresh_s`` (one ``scandir`` per bureau folder and a ``stat`` per
file), at once when asked about a user it does not hold, and the files are read and
verified again only when one of them, a bureau's entry or the root's revocation list
changed. So ``ncbsim user add`` and ``ncbsim user revoke`` take effect on a running
gateway without a restart, within ``refresh_s``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from ncbsim.directory import Directory
from ncbsim.errors import DirectoryError, RevokedError
from ncbsim.gateway.directory_files import DirectoryFiles
from ncbsim.pki import PkiDir
from ncbsim.principal import bureau_of
from ncbsim.users import User, entry_principal, revocation_principal
from ncbsim.v2 import users_pb2

log = structlog.get_logger()

_FileStamp = tuple[str, int, int, int]
Refused = Callable[[str, str], None]
"""Told of each entry refused (once per version of its file): the principal its file
name gives, and why."""


@dataclass(frozen=True, slots=True)
class _Book:
    users: dict[str, tuple[User, users_pb2.SignedUserEntry]]
    revoked: frozenset[str]
    revocations: tuple[users_pb2.SignedUserRevocation, ...]


_EMPTY = _Book({}, frozenset(), ())


class UserFiles:
    """Users verified against their bureaus, reloaded when files change (module docstring)."""

    def __init__(
        self,
        pki: PkiDir,
        entries: DirectoryFiles,
        *,
        refresh_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        on_refused: Refused | None = None,
    ) -> None:
        self._pki = pki
        self._entries = entries
        self._refresh_s = refresh_s
        self._clock = clock
        self._on_refused = on_refused
        self._checked_at = float("-inf")
        self._stamp: tuple[tuple[_FileStamp, ...], int] | None = None
        self._book = _EMPTY
        self._reported: set[_FileStamp] = set()

    # ------------------------------------------------------------------ questions

    def user(self, principal: str) -> User:
        """The verified, current user ``FR/x``. RevokedError if its bureau revoked it or
        the root revoked its bureau; DirectoryError if no entry of it verifies."""
        self._look(principal)
        held = self._book.users.get(principal)
        if held is not None and held[0].not_after_ms > time.time() * 1000:
            return held[0]
        if principal in self._book.revoked:
            raise RevokedError(f"{principal} is revoked by {bureau_of(principal)}")
        bureau = bureau_of(principal)
        try:
            self._entries.known(bureau)
        except DirectoryError:
            raise RevokedError(f"{bureau}, the bureau of {principal}, is revoked") from None
        raise DirectoryError(f"no current entry of {principal} signed by {bureau}")

    def signed(self, asked: list[str]) -> list[users_pb2.SignedUserEntry]:
        """The verified entries of the users in ``asked`` (of every user if it is empty)."""
        self.refresh(force=True)
        held = self._book.users
        names = [a for a in asked if a in held] if asked else sorted(held)
        return [held[name][1] for name in names]

    def revocations(self) -> list[users_pb2.SignedUserRevocation]:
        """Every user revocation that verified against its bureau."""
        self.refresh()
        return list(self._book.revocations)

    def refresh(self, *, force: bool = False) -> None:
        """Look at the folders if ``refresh_s`` has passed since the last look (or now)."""
        if force or self._clock() - self._checked_at >= self._refresh_s:
            self._reload()

    def _look(self, principal: str) -> None:
        book = self._book
        self.refresh(force=principal not in book.users and principal not in book.revoked)

    # ------------------------------------------------------------------ loading

    def _scan(self) -> list[_FileStamp]:
        stamps: list[_FileStamp] = []
        try:
            bureaus = [d.path for d in os.scandir(self._pki.users_dir) if d.is_dir()]
        except FileNotFoundError:
            return stamps
        for folder in bureaus:
            with os.scandir(folder) as listing:
                for item in listing:
                    if not item.name.endswith((".entry", ".revoked")):
                        continue
                    try:
                        stat = item.stat()
                    except FileNotFoundError:
                        continue
                    name = f"{os.path.basename(folder)}/{item.name}"
                    stamps.append((name, stat.st_ino, stat.st_mtime_ns, stat.st_size))
        return sorted(stamps)

    def _reload(self) -> None:
        self._checked_at = self._clock()
        self._entries.refresh()
        stamp = (tuple(self._scan()), self._entries.generation)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        self._book = self._load(stamp[0])

    def _bureaus(self) -> Directory:
        directory = Directory.pinned(self._pki)
        for signed in self._entries.entries([]):
            try:
                directory.add([signed.SerializeToString()])
            except DirectoryError as exc:
                log.warning("directory_entry_refused", reason=str(exc))
        return directory

    def _load(self, stamps: tuple[_FileStamp, ...]) -> _Book:
        directory = self._bureaus()
        files = {s[0]: s for s in stamps}
        revocations = []
        for name in (n for n in files if n.endswith(".revoked")):
            raw = self._read(name)
            try:
                if raw is None or revocation_principal(raw) != _principal(name):
                    raise DirectoryError(f"{name} is not a revocation of {_principal(name)}")
                directory.add_users([], [raw])
                revocations.append(users_pb2.SignedUserRevocation.FromString(raw))
            except DirectoryError as exc:
                log.warning("user_revocation_refused", file=name, reason=str(exc))
        users: dict[str, tuple[User, users_pb2.SignedUserEntry]] = {}
        revoked = set()
        for name in (n for n in files if n.endswith(".entry")):
            user = _principal(name)
            raw = self._read(name)
            if raw is None:
                continue
            if bureau_of(user) not in directory:
                log.info("user_entry_skipped", user=user, reason="its bureau is revoked or unknown")
                continue
            try:
                claimed = entry_principal(raw)
                if claimed != user:
                    raise DirectoryError(f"the entry filed as {user} names {claimed}")
                if directory.revoked_user_serial(user) >= _serial(raw):
                    revoked.add(user)
                    continue
                directory.add_users([raw])
                users[user] = (directory.user(user), users_pb2.SignedUserEntry.FromString(raw))
            except DirectoryError as exc:
                self._refused(files[name], user, str(exc))
        log.info("users_loaded", users=len(users), revoked=len(revoked))
        return _Book(users, frozenset(revoked), tuple(revocations))

    def _read(self, name: str) -> bytes | None:
        try:
            return (self._pki.users_dir / name).read_bytes()
        except FileNotFoundError:  # removed since the listing
            return None

    def _refused(self, stamp: _FileStamp, user: str, reason: str) -> None:
        log.warning("user_entry_refused", user=user, reason=reason)
        if stamp in self._reported:
            return
        self._reported.add(stamp)
        if self._on_refused is not None:
            self._on_refused(user, reason)


def _principal(name: str) -> str:
    """``FR/x`` from a file name ``FR/x.entry`` (no check: only used to compare)."""
    return name.rpartition(".")[0]


def _serial(raw: bytes) -> int:
    outer = users_pb2.SignedUserEntry.FromString(raw)
    return users_pb2.UserEntry.FromString(outer.entry).serial
