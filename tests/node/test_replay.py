"""The durable replay cache: first sight, repeats, sender scope, pruning, restart, bad files."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from ncbsim.errors import NcbsimError
from ncbsim.node.replay import ReplayCache

NOW = 1_767_225_600_000
SKEW = 30_000
EXPIRES = NOW + 30_000


@pytest.fixture
def cache(tmp_path: Path) -> ReplayCache:
    return ReplayCache(tmp_path / "replay.sqlite", clock_skew_ms=SKEW)


@pytest.mark.attack(
    "resend an already accepted (sender, message id)",
    adversary="replayer",
    expect="the replay cache says not first time",
)
def test_new_id_is_first_time_and_repeat_is_not(cache: ReplayCache) -> None:
    """The first call with an id says True; every later call with it says False."""
    mid = os.urandom(16)
    assert cache.first_time(mid, "FR", EXPIRES, now_ms=NOW) is True
    assert cache.first_time(mid, "FR", EXPIRES, now_ms=NOW) is False
    assert cache.first_time(mid, "FR", EXPIRES + 5, now_ms=NOW + 1) is False
    assert cache.first_time(os.urandom(16), "FR", EXPIRES, now_ms=NOW) is True


@pytest.mark.attack(
    "spend another bureau's message id to pre-empt its envelope",
    adversary="rogue bureau",
    expect="the pair is scoped to the signed sender: still first time",
)
def test_same_id_from_another_sender_is_a_different_message(cache: ReplayCache) -> None:
    """The key is (sender, message_id): one bureau cannot spend another's message id."""
    mid = os.urandom(16)
    assert cache.first_time(mid, "IT", EXPIRES, now_ms=NOW)
    assert cache.first_time(mid, "FR", EXPIRES, now_ms=NOW)
    assert not cache.first_time(mid, "FR", EXPIRES, now_ms=NOW)
    assert not cache.first_time(mid, "IT", EXPIRES, now_ms=NOW)


def test_rows_are_kept_until_expiry_plus_skew_then_pruned(tmp_path: Path) -> None:
    """A row outlives expires_at_ms by the clock skew, then a prune removes it."""
    cache = ReplayCache(tmp_path / "r.sqlite", clock_skew_ms=SKEW, prune_interval_s=0)
    mid, other = os.urandom(16), os.urandom(16)
    assert cache.first_time(mid, "FR", EXPIRES, now_ms=NOW)
    assert cache.first_time(other, "FR", EXPIRES + 60_000, now_ms=NOW)
    assert not cache.first_time(mid, "FR", EXPIRES, now_ms=EXPIRES + SKEW)  # still kept
    assert len(cache) == 2
    assert cache.prune(now_ms=EXPIRES + SKEW + 1) == 1
    assert len(cache) == 1
    # Pruned, it is new again (the envelope itself is refused as expired by then).
    assert cache.first_time(mid, "FR", EXPIRES, now_ms=EXPIRES + SKEW + 1)
    assert not cache.first_time(other, "FR", EXPIRES + 60_000, now_ms=EXPIRES + SKEW + 1)


def test_first_time_prunes_in_bounded_batches_at_most_once_an_interval(tmp_path: Path) -> None:
    """Calls prune by themselves, a batch at a time; a full batch lets the next call go on."""
    cache = ReplayCache(
        tmp_path / "r.sqlite", clock_skew_ms=0, prune_interval_s=3600, prune_batch=3
    )
    for _ in range(7):
        assert cache.first_time(os.urandom(16), "FR", NOW + 1, now_ms=NOW)
    # The first call above pruned (nothing); the interval now holds off further prunes.
    later = NOW + 10
    assert cache.first_time(os.urandom(16), "FR", later + 1000, now_ms=later)
    assert len(cache) == 8
    fresh = ReplayCache(
        tmp_path / "r.sqlite", clock_skew_ms=0, prune_interval_s=3600, prune_batch=3
    )
    counts = []
    for _ in range(4):
        fresh.first_time(os.urandom(16), "FR", later + 1000, now_ms=later)
        counts.append(len(fresh))
    # 7 expired rows: batches of 3, 3, 1 (the short batch restarts the interval).
    assert counts == [8 - 3 + 1, 8 - 6 + 2, 8 - 7 + 3, 8 - 7 + 4]


@pytest.mark.attack(
    "replay an envelope after the node's replay cache was closed and reopened",
    adversary="replayer",
    expect="still refused: the cache is durable",
)
def test_cache_survives_close_and_reopen(tmp_path: Path) -> None:
    """A restarted node (same file) still refuses an id it accepted before."""
    path = tmp_path / "bureaus" / "DE" / "replay.sqlite"
    first = ReplayCache(path)
    mid = os.urandom(16)
    assert first.first_time(mid, "FR", EXPIRES, now_ms=NOW)
    first.close()
    again = ReplayCache(path)
    assert not again.first_time(mid, "FR", EXPIRES, now_ms=NOW + 1)
    assert again.first_time(os.urandom(16), "FR", EXPIRES, now_ms=NOW + 1)
    again.close()


def test_file_uses_wal_with_normal_sync(tmp_path: Path) -> None:
    """The cache is in WAL mode, so a commit survives a crash of the process."""
    path = tmp_path / "r.sqlite"
    ReplayCache(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_a_file_that_is_not_sqlite_is_a_clear_error(tmp_path: Path) -> None:
    """Garbage at the path is refused with an error that names the file."""
    path = tmp_path / "replay.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(NcbsimError, match="not an SQLite replay cache") as info:
        ReplayCache(path)
    assert str(path) in str(info.value)


def test_another_sqlite_database_is_a_clear_error(tmp_path: Path) -> None:
    """An SQLite file whose seen table is something else is refused, not written into."""
    path = tmp_path / "replay.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE seen (x TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(NcbsimError, match="not a replay cache"):
        ReplayCache(path)


def test_a_directory_in_the_way_is_a_clear_error(tmp_path: Path) -> None:
    """A path that cannot be opened as a file gives an error naming it."""
    path = tmp_path / "replay.sqlite"
    path.mkdir()
    with pytest.raises(NcbsimError, match="replay cache") as info:
        ReplayCache(path)
    assert str(path) in str(info.value)


def test_a_locked_database_is_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    """While another connection holds the write lock, a call fails quickly and clearly."""
    path = tmp_path / "replay.sqlite"
    cache = ReplayCache(path, busy_timeout_ms=50)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(NcbsimError, match="locked"):
            cache.first_time(os.urandom(16), "FR", EXPIRES, now_ms=NOW)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    mid = os.urandom(16)
    assert cache.first_time(mid, "FR", EXPIRES, now_ms=NOW)
    assert not cache.first_time(mid, "FR", EXPIRES, now_ms=NOW)


@pytest.mark.attack(
    "race two copies of one envelope through two connections",
    adversary="replayer",
    expect="exactly one is first",
)
def test_two_connections_agree_on_who_saw_it_first(tmp_path: Path) -> None:
    """Two caches on one file (two processes of one bureau): exactly one says True."""
    path = tmp_path / "replay.sqlite"
    a, b = ReplayCache(path), ReplayCache(path)
    mid = os.urandom(16)
    assert [
        a.first_time(mid, "FR", EXPIRES, now_ms=NOW),
        b.first_time(mid, "FR", EXPIRES, now_ms=NOW),
    ] == [True, False]
