"""Group commit of the audit log: ``commit`` returns once its rows are in the file, without
waiting for a batch to fill, and concurrent callers share transactions."""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from ncbsim.auditlog import AuditWriteError, ChainedLog
from ncbsim.auditread import verify

COLUMNS = (("at_ms", "INTEGER"), ("sender", "TEXT"), ("elapsed_ms", "REAL"))
AN_HOUR = 3600.0
"""A batch wait no test could sit through: a commit that waited for it would time out."""
BOUND_S = 60.0
"""How long a commit may take on a very busy machine before the test gives up."""


def _row(i: int) -> tuple[int, str, float]:
    return (1_700_000_000_000 + i, "FR", 0.5)


def _stored(path: Path) -> list[int]:
    """The at_ms of every committed row, read through a connection of its own."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in db.execute("SELECT at_ms FROM audit ORDER BY seq")]
    finally:
        db.close()


def test_a_committed_row_is_in_the_file_when_commit_returns(tmp_path: Path) -> None:
    """Once ``commit`` returns, another connection reads the row: the writer did not wait
    for the batch to fill (it would have waited an hour)."""
    path = tmp_path / "audit.sqlite"
    log = ChainedLog(path, COLUMNS, batch_wait_s=AN_HOUR)

    async def main() -> list[int]:
        found = []
        for i in range(3):  # an idle writer, each time
            await asyncio.wait_for(log.commit(_row(i)), BOUND_S)
            found.append(_stored(path))
        return found[-1]

    try:
        assert asyncio.run(main()) == [_row(i)[0] for i in range(3)]
    finally:
        log.close()
    assert verify(path).intact


def test_a_commit_also_writes_the_rows_recorded_before_it(tmp_path: Path) -> None:
    """Rows queued with ``record`` go out with the next commit, in order, in one chain."""
    path = tmp_path / "audit.sqlite"
    log = ChainedLog(path, COLUMNS, batch_wait_s=AN_HOUR)

    async def main() -> None:
        log.record(_row(0))
        log.record(_row(1))
        await asyncio.wait_for(log.commit(_row(2)), BOUND_S)

    try:
        asyncio.run(main())
        assert _stored(path) == [_row(i)[0] for i in range(3)]
    finally:
        log.close()
    assert verify(path).intact


def test_concurrent_commits_share_transactions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five hundred handlers committing at once all land once, in one intact chain, in far
    fewer transactions than rows."""
    transactions = []
    write = ChainedLog._write

    def counted(self: ChainedLog, conn: sqlite3.Connection, batch: list[tuple[object, ...]]):  # type: ignore[no-untyped-def]
        transactions.append(len(batch))
        return write(self, conn, batch)

    monkeypatch.setattr(ChainedLog, "_write", counted)
    path = tmp_path / "audit.sqlite"
    log = ChainedLog(path, COLUMNS, batch_wait_s=AN_HOUR)

    async def main() -> None:
        await asyncio.wait_for(asyncio.gather(*(log.commit(_row(i)) for i in range(500))), BOUND_S)

    try:
        asyncio.run(main())
    finally:
        log.close()
    assert sorted(_stored(path)) == [_row(i)[0] for i in range(500)]
    assert verify(path).intact
    assert sum(transactions) == 500
    assert len(transactions) < 100, transactions


def test_a_commit_that_cannot_be_written_raises_and_the_chain_stays_whole(
    tmp_path: Path,
) -> None:
    """A batch SQLite refuses fails its waiters with AuditWriteError; later rows still chain
    on from the last row really written, so the log verifies."""
    path = tmp_path / "audit.sqlite"
    log = ChainedLog(path, COLUMNS, batch_wait_s=AN_HOUR)

    def refuse_inserts(on: bool) -> None:
        db = sqlite3.connect(path)
        with db:
            if on:
                db.execute(
                    "CREATE TRIGGER full BEFORE INSERT ON audit "
                    "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
                )
            else:
                db.execute("DROP TRIGGER full")
        db.close()

    async def main() -> None:
        await asyncio.wait_for(log.commit(_row(0)), BOUND_S)
        refuse_inserts(True)
        with pytest.raises(AuditWriteError, match="disk full"):
            await asyncio.wait_for(log.commit(_row(1)), BOUND_S)
        refuse_inserts(False)
        await asyncio.wait_for(log.commit(_row(2)), BOUND_S)

    try:
        asyncio.run(main())
    finally:
        log.close()
    assert _stored(path) == [_row(0)[0], _row(2)[0]]
    assert verify(path).intact


def test_a_commit_after_close_raises(tmp_path: Path) -> None:
    """A closed log refuses a commit at once rather than leave its caller waiting."""
    log = ChainedLog(tmp_path / "audit.sqlite", COLUMNS)
    log.close()
    with pytest.raises(AuditWriteError, match="closed"):
        asyncio.run(log.commit(_row(0)))


@pytest.mark.parametrize(("synchronous", "level"), [("NORMAL", 1), ("FULL", 2)])
def test_the_writer_commits_under_the_sync_setting_asked_for(
    tmp_path: Path, synchronous: str, level: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's connection really runs with NORMAL (a committed row survives a crash
    of the process) or FULL (a power loss too), and commits under it."""
    seen: list[int] = []

    class Watched(sqlite3.Connection):
        def executemany(self, sql: str, rows: Iterable[Any], /) -> sqlite3.Cursor:
            seen.append(self.execute("PRAGMA synchronous").fetchone()[0])  # the rows' setting
            return super().executemany(sql, rows)

    real = sqlite3.connect

    def connect(*args: object, **kwargs: object) -> sqlite3.Connection:
        return real(*args, **{**kwargs, "factory": Watched})  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite3, "connect", connect)  # before the writer connects
    path = tmp_path / "audit.sqlite"
    log = ChainedLog(path, COLUMNS, synchronous=synchronous)
    try:
        asyncio.run(asyncio.wait_for(log.commit(_row(0)), BOUND_S))
        assert _stored(path) == [_row(0)[0]]
    finally:
        log.close()
    assert seen
    assert set(seen) == {level}


def test_an_unknown_sync_setting_is_refused(tmp_path: Path) -> None:
    """Only NORMAL and FULL are offered: with OFF a power loss could corrupt the log."""
    with pytest.raises(ValueError, match="synchronous"):
        ChainedLog(tmp_path / "audit.sqlite", COLUMNS, synchronous="OFF")


class _PausingQueue(collections.deque):  # type: ignore[type-arg]
    """The writer's queue of pending rows: the first time anything is queued, it makes the
    writer take and write one batch right then, before the queuing call goes on."""

    def __init__(self, log: ChainedLog, written: threading.Event) -> None:
        super().__init__()
        self._log = log
        self._written = written
        self._paused = False

    def append(self, item: object) -> None:
        super().append(item)
        self._pause()

    def extend(self, items: Iterable[object]) -> None:
        super().extend(items)
        self._pause()

    def _pause(self) -> None:
        if self._paused:
            return
        self._paused = True
        self._log._wake.set()
        self._log._hurry.set()
        assert self._written.wait(BOUND_S), "the writer took no batch"


def test_a_commit_whose_rows_fail_in_a_batch_of_their_own_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the writer takes a commit's rows the instant they are queued, and that batch
    fails, the commit raises: it never returns as though its rows were written (a server
    would then answer with no audit row)."""
    written = threading.Event()
    write = ChainedLog._write

    def noted(self: ChainedLog, conn: sqlite3.Connection, batch: list[tuple[object, ...]]):  # type: ignore[no-untyped-def]
        try:
            return write(self, conn, batch)
        finally:
            written.set()

    monkeypatch.setattr(ChainedLog, "_write", noted)
    path = tmp_path / "audit.sqlite"
    log = ChainedLog(path, COLUMNS, batch_wait_s=AN_HOUR)
    log._pending = _PausingQueue(log, written)
    db = sqlite3.connect(path)
    with db:
        db.execute(
            "CREATE TRIGGER full BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
    db.close()

    async def main() -> None:
        with pytest.raises(AuditWriteError, match="disk full"):
            await asyncio.wait_for(log.commit(_row(0)), BOUND_S)

    try:
        asyncio.run(main())
    finally:
        log.close()
    assert written.is_set()
    assert _stored(path) == []


def test_a_writer_that_dies_fails_every_commit_instead_of_hanging(tmp_path: Path) -> None:
    """A row the writer cannot even chain (bytes) stops the writer: that commit and every
    later one raise AuditWriteError at once, instead of waiting forever, and a recorded
    row is dropped rather than queued for nobody."""
    path = tmp_path / "audit.sqlite"
    log = ChainedLog(path, COLUMNS, batch_wait_s=AN_HOUR)

    async def main() -> None:
        with pytest.raises(AuditWriteError, match="stopped"):
            await asyncio.wait_for(log.commit((1_700_000_000_000, b"FR", 0.5)), BOUND_S)
        log.record(_row(1))
        with pytest.raises(AuditWriteError, match="stopped"):
            await asyncio.wait_for(log.commit(_row(2)), BOUND_S)

    try:
        asyncio.run(main())
    finally:
        log.close()
    assert _stored(path) == []
    assert len(log._pending) == 0
    assert verify(path).intact


def _head(path: Path) -> dict[str, Any]:
    import json

    from ncbsim.auditlog import head_path

    try:
        return dict(json.loads(head_path(path).read_text()))
    except FileNotFoundError:  # not written yet
        return {"seq": 0}


def test_an_idle_logs_commits_run_on_the_loop_and_the_head_follows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the writer idle, a commit is one transaction run on the event loop, handed to
    no thread; the head file still catches up with it within its interval."""
    handed: list[int] = []
    hand_over = ChainedLog._hand_over

    def counted(self: ChainedLog, rows: Any, loop: Any, waiter: Any) -> None:
        handed.append(len(rows))
        hand_over(self, rows, loop, waiter)

    monkeypatch.setattr(ChainedLog, "_hand_over", counted)
    path = tmp_path / "audit.sqlite"
    log = ChainedLog(path, COLUMNS, batch_wait_s=AN_HOUR)

    async def main() -> list[int]:
        while log._conn is None:  # the writer opens the file first
            await asyncio.sleep(0.01)
        loop_thread = threading.get_ident()
        threads: list[int] = []
        write = log._write

        def watched(conn: sqlite3.Connection, batch: list[Any]) -> Any:
            threads.append(threading.get_ident())
            return write(conn, batch)

        log._write = watched  # type: ignore[method-assign]
        for i in range(5):
            await asyncio.wait_for(log.commit(_row(i)), BOUND_S)
            assert _stored(path)[-1] == _row(i)[0]
        deadline = asyncio.get_running_loop().time() + BOUND_S
        while _head(path)["seq"] != 5:
            assert asyncio.get_running_loop().time() < deadline, "the head never caught up"
            await asyncio.sleep(0.01)
        return [t == loop_thread for t in threads]

    try:
        assert asyncio.run(main()) == [True] * 5
    finally:
        log.close()
    assert handed == []
    assert verify(path).intact


def test_a_commit_goes_to_the_writer_while_it_holds_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the writer thread holds the log (writing a batch), a commit does not wait on
    the loop for it: it is handed to the writer, and returns once that commits."""
    handed: list[int] = []
    hand_over = ChainedLog._hand_over

    def counted(self: ChainedLog, rows: Any, loop: Any, waiter: Any) -> None:
        handed.append(len(rows))
        hand_over(self, rows, loop, waiter)

    monkeypatch.setattr(ChainedLog, "_hand_over", counted)
    path = tmp_path / "audit.sqlite"
    log = ChainedLog(path, COLUMNS, batch_wait_s=AN_HOUR)

    async def main() -> None:
        while log._conn is None:
            await asyncio.sleep(0.01)
        log._lock.acquire()  # as the writer does for a batch
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, log._lock.release)
        await asyncio.wait_for(log.commit(_row(0)), BOUND_S)
        assert handed == [1]
        await asyncio.wait_for(log.commit(_row(1)), BOUND_S)  # the loop's again
        assert handed == [1]

    try:
        asyncio.run(main())
    finally:
        log.close()
    assert _stored(path) == [_row(0)[0], _row(1)[0]]
    assert verify(path).intact
    assert _head(path)["seq"] == 2


def test_a_row_the_loop_cannot_chain_stops_the_log(tmp_path: Path) -> None:
    """A row the loop's batch cannot chain (bytes) fails as the writer's death does: that
    commit and every later one raise AuditWriteError, none hangs, nothing is written."""
    path = tmp_path / "audit.sqlite"
    log = ChainedLog(path, COLUMNS, batch_wait_s=AN_HOUR)

    async def main() -> None:
        while log._conn is None:
            await asyncio.sleep(0.01)
        with pytest.raises(AuditWriteError, match="stopped"):
            await asyncio.wait_for(log.commit((1_700_000_000_000, b"FR", 0.5)), BOUND_S)
        with pytest.raises(AuditWriteError, match="stopped"):
            await asyncio.wait_for(log.commit(_row(2)), BOUND_S)

    try:
        asyncio.run(main())
    finally:
        log.close()
    assert _stored(path) == []
    assert verify(path).intact


def test_full_sync_commits_never_run_on_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With synchronous=FULL every commit waits for an fsync: it goes to the writer
    thread, never blocking the event loop."""
    handed: list[int] = []
    hand_over = ChainedLog._hand_over

    def counted(self: ChainedLog, rows: Any, loop: Any, waiter: Any) -> None:
        handed.append(len(rows))
        hand_over(self, rows, loop, waiter)

    monkeypatch.setattr(ChainedLog, "_hand_over", counted)
    path = tmp_path / "audit.sqlite"
    log = ChainedLog(path, COLUMNS, synchronous="FULL")

    async def main() -> None:
        while log._conn is None:
            await asyncio.sleep(0.01)
        for i in range(3):
            await asyncio.wait_for(log.commit(_row(i)), BOUND_S)

    try:
        asyncio.run(main())
    finally:
        log.close()
    assert handed == [1, 1, 1]
    assert _stored(path) == [_row(i)[0] for i in range(3)]


def test_the_writer_checkpoints_the_wal_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's automatic checkpoint is off on the log's connection (it would run inside a
    commit on the loop); the writer copies the WAL back once it holds enough rows."""
    import ncbsim.auditlog as auditlog

    monkeypatch.setattr(auditlog, "CHECKPOINT_ROWS", 10)
    path = tmp_path / "audit.sqlite"
    log = ChainedLog(path, COLUMNS, batch_wait_s=AN_HOUR, head_interval_s=0.01)

    async def main() -> None:
        while log._conn is None:
            await asyncio.sleep(0.01)
        assert log._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        await asyncio.wait_for(asyncio.gather(*(log.commit(_row(i)) for i in range(20))), BOUND_S)
        deadline = asyncio.get_running_loop().time() + BOUND_S
        while log._uncheckpointed:
            assert asyncio.get_running_loop().time() < deadline, "no checkpoint"
            await asyncio.sleep(0.01)

    try:
        asyncio.run(main())
    finally:
        log.close()
    assert len(_stored(path)) == 20
    assert verify(path).intact
