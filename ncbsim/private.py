"""Files and folders for their owner alone: a bureau's data is as private as its keys.

Records, opened messages, audit trails, hit notifications, the gateway's mailbox and every
process's log are created 0600 in folders of mode 0700, so no other local account reads
them. Two layers make sure of it, whatever code path creates a file:

- the braces: each place that creates a database, a log or a folder passes these modes
  explicitly (:func:`sqlite_file`, :func:`open_log`, :func:`private_folder`), and tightens
  a file or folder left looser by an older version when it opens it again;
- the belt: server processes (``ncbsim gateway``, ``node``, ``host``) run under the umask
  0o077 (:func:`restrict_umask`), so what a library creates behind our back (SQLite's
  ``-wal`` and ``-shm`` files, a ready file) is private too.

SQLite gives the ``-wal``, ``-shm`` and ``-journal`` files it creates the mode of their
database (whatever the umask), so a database created 0600 keeps its sidecars 0600.

Public material stays readable by design: the root certificate ``ca.crt``, the signed
directory entries, the revocation list and ``network.json``. docs/files.md lists what is
private and what is not.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

FOLDER_MODE = 0o700
FILE_MODE = 0o600
UMASK = 0o077
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")
"""The files SQLite keeps beside a database, named by suffix."""


def restrict_umask() -> None:
    """From now on this process creates files and folders for its owner alone."""
    os.umask(UMASK)


def _tighten(path: Path, mode: int) -> None:
    """Give an existing ``path`` exactly ``mode`` if it grants more. Nothing if it is
    absent, or someone else's (a database another account lets us read)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    current = stat.S_IMODE(info.st_mode)
    if current & ~mode and info.st_uid == os.geteuid():
        path.chmod(mode)


def tighten(path: Path) -> None:
    """Make an existing file (and its SQLite sidecars) 0600; nothing if it is absent."""
    _tighten(path, FILE_MODE)
    for suffix in SQLITE_SIDECARS:
        _tighten(path.with_name(path.name + suffix), FILE_MODE)


def private_folder(path: Path) -> Path:
    """``path`` as a folder only its owner enters: created 0700 (with any missing parents),
    or tightened to 0700 if it exists. Only for folders ncbsim owns (a party's folder,
    ``run/``, ``hosts/``): never for the folder of a path the user gave."""
    make_parents(path / "_")
    _tighten(path, FOLDER_MODE)
    return path


def make_parents(path: Path) -> None:
    """Create the missing folders above ``path``, each 0700; leave existing ones alone."""
    missing = []
    folder = path.parent
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=FOLDER_MODE)
        except FileExistsError:  # made meanwhile by someone else: leave it as it is
            continue
        folder.chmod(FOLDER_MODE)  # mkdir's mode is masked by the umask


def create_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it is absent, its folders 0700; tighten it
    (and its SQLite sidecars) to 0600 if it exists."""
    make_parents(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    os.close(fd)
    tighten(path)


def sqlite_file(path: Path) -> Path:
    """Make ``path`` ready for ``sqlite3.connect`` as a private database: see
    :func:`create_file` (SQLite takes an empty file for an empty database)."""
    create_file(path)
    return path


def open_log(path: Path) -> int:
    """A file descriptor appending to the log at ``path``, created 0600 (tightened if it
    exists), its folders 0700. The caller closes it."""
    make_parents(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` for its owner alone: 0600 (tightened if the file
    existed), its missing folders 0700."""
    make_parents(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w") as out:
        os.fchmod(fd, FILE_MODE)
        out.write(text)
