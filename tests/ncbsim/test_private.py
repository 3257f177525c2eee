"""Private files: a bureau's databases, logs and folders are its owner's alone (0600 and
0700), whatever the umask, and a file an older version left readable is tightened."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ncbsim import pki, private
from ncbsim.auditlog import ChainedLog
from ncbsim.gateway.mailbox import Mailbox
from ncbsim.node import datagen
from ncbsim.node.inbox import Inbox
from ncbsim.node.replay import ReplayCache
from ncbsim.node.store import RecordStore
from ncbsim.simulations import scenario as scenarios
from ncbsim.simulations.prepare import prepare


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """Umask 0: a file that relied on the umask would be readable (and writable) by all."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_a_readable_records_database_is_tightened_on_open(tmp_path: Path) -> None:
    """A records.sqlite (and its -wal and -shm) left 0644 by an older version is 0600 once
    a RecordStore opens it."""
    db = tmp_path / "records.sqlite"
    datagen.generate(db, "DE", seed=1, documents=5, persons=5, vehicles=5, workers=1)
    sidecars = [tmp_path / "records.sqlite-wal", tmp_path / "records.sqlite-shm"]
    for path in (db, *sidecars):
        path.touch()
        path.chmod(0o644)
    store = RecordStore(db)
    store.close()
    assert {p.name: oct(_mode(p)) for p in (db, *sidecars)} == {
        p.name: oct(0o600) for p in (db, *sidecars)
    }


def test_generated_records_are_private(tmp_path: Path, permissive_umask: None) -> None:
    """The record generator creates records.sqlite 0600 even under umask 0."""
    db = tmp_path / "records.sqlite"
    datagen.generate(db, "DE", seed=1, documents=5, persons=5, vehicles=5, workers=1)
    assert _mode(db) == 0o600


def test_sqlite_gives_its_wal_and_shm_files_the_databases_mode(
    tmp_path: Path, permissive_umask: None
) -> None:
    """A database made by sqlite_file is 0600, and so are the -wal and -shm files SQLite
    creates beside it under umask 0 (it copies the database's mode)."""
    path = private.sqlite_file(tmp_path / "new" / "data.sqlite")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    with conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
    modes = {p.name: oct(_mode(p)) for p in sorted(tmp_path.joinpath("new").iterdir())}
    conn.close()
    assert modes == {
        "data.sqlite": oct(0o600),
        "data.sqlite-shm": oct(0o600),
        "data.sqlite-wal": oct(0o600),
    }
    assert _mode(tmp_path / "new") == 0o700


def _inbox(path: Path) -> None:
    Inbox(path).close()


def _replay(path: Path) -> None:
    ReplayCache(path).close()


def _audit(path: Path) -> None:
    log = ChainedLog(path, (("at_ms", "INTEGER"),))
    log.record((1,))
    log.close()


def _mailbox(path: Path) -> None:
    async def main() -> None:
        mailbox = await Mailbox.open(path, max_queue=10)
        await mailbox.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    "make",
    [_inbox, _replay, _audit, _mailbox],
    ids=["inbox", "replay cache", "audit log", "mailbox"],
)
def test_every_database_is_created_private(
    tmp_path: Path, permissive_umask: None, make: Callable[[Path], None]
) -> None:
    """The inbox, replay cache, audit (and hits) logs and the mailbox are created 0600, with
    every file SQLite or the writer put beside them, in a folder created 0700."""
    folder = tmp_path / "party"
    make(folder / "data.sqlite")
    modes = {p.name: oct(_mode(p)) for p in folder.iterdir()}
    assert modes == dict.fromkeys(modes, oct(0o600))
    assert _mode(folder) == 0o700


@pytest.mark.parametrize(
    "make", [_inbox, _replay, _audit, _mailbox], ids=["inbox", "replay", "audit", "mailbox"]
)
def test_every_database_left_readable_is_tightened(
    tmp_path: Path, make: Callable[[Path], None]
) -> None:
    """A database an older version created 0644 is made 0600 when it is opened again."""
    path = tmp_path / "data.sqlite"
    make(path)
    for file in tmp_path.iterdir():
        file.chmod(0o644)
    make(path)
    modes = {p.name: oct(_mode(p)) for p in tmp_path.iterdir()}
    assert modes == dict.fromkeys(modes, oct(0o600))


def test_a_log_is_created_private_and_tightened(tmp_path: Path, permissive_umask: None) -> None:
    """A process log is created 0600 (folders 0700), and an old 0644 log tightened."""
    new = tmp_path / "hosts" / "host-0.log"
    os.close(private.open_log(new))
    old = tmp_path / "node.log"
    old.write_text("earlier run\n")
    old.chmod(0o644)
    fd = private.open_log(old)
    os.write(fd, b"this run\n")
    os.close(fd)
    assert (_mode(new), _mode(new.parent), _mode(old)) == (0o600, 0o700, 0o600)
    assert old.read_text() == "earlier run\nthis run\n"


def test_a_private_folder_is_tightened_but_a_users_folder_is_left_alone(tmp_path: Path) -> None:
    """ncbsim's own folders (run/, hosts/) are tightened to 0700; creating a database in a
    folder the user chose never changes that folder's mode."""
    ours = tmp_path / "run"
    ours.mkdir(mode=0o755)
    ours.chmod(0o755)
    private.private_folder(ours)
    theirs = tmp_path / "shared"
    theirs.mkdir()
    theirs.chmod(0o755)
    private.sqlite_file(theirs / "audit.sqlite")
    assert (_mode(ours), _mode(theirs), _mode(theirs / "audit.sqlite")) == (0o700, 0o755, 0o600)


def test_a_partys_certificate_is_private_and_public_material_readable(
    tmp_path: Path, permissive_umask: None
) -> None:
    """pki init makes every file in a party's folder 0600 (its certificate too) and the
    folders 0700; the root certificate and directory entries stay readable by all."""
    directory = pki.init(tmp_path / "pki", ["FR"])
    for party in ("FR", "gateway", "operator"):
        folder = directory.party(party)
        assert _mode(folder) == 0o700
        assert {p.name: _mode(p) for p in folder.iterdir()} == {
            p.name: 0o600 for p in folder.iterdir()
        }
    assert _mode(directory.root / "bureaus") == 0o700
    assert _mode(directory.ca_cert) == 0o644
    assert _mode(directory.entry_path("FR")) == 0o644


def test_restrict_umask_makes_new_files_private(tmp_path: Path, permissive_umask: None) -> None:
    """Under the servers' umask, a file made without an explicit mode is 0600."""
    private.restrict_umask()
    (tmp_path / "ready.json").write_text("{}")
    assert _mode(tmp_path / "ready.json") == 0o600


def test_a_work_directory_of_an_older_version_is_tightened_on_start(tmp_path: Path) -> None:
    """Preparing a network again tightens the folders and certificates an older version
    left readable: bureaus/, each bureau's folder, gateway/, operator/ and their tls.crt."""
    small = scenarios.load(str(Path(__file__).parent.parent / "scenarios" / "small.toml"))
    workdir = tmp_path / "net"
    directory = prepare(workdir, small)
    loose = [workdir / "bureaus", *(directory.party(p) for p in ("FR", "gateway", "operator"))]
    for folder in loose:
        folder.chmod(0o755)
    for folder in loose[1:]:
        (folder / "tls.crt").chmod(0o644)
    prepare(workdir, small)
    assert {str(f.relative_to(workdir)): oct(_mode(f)) for f in loose} == {
        str(f.relative_to(workdir)): oct(0o700) for f in loose
    }
    certs = [f / "tls.crt" for f in loose[1:]]
    assert {oct(_mode(c)) for c in certs} == {oct(0o600)}
