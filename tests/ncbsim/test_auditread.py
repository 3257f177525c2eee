"""The hash-chained audit log: intact logs verify, and each kind of tampering is named."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from ncbsim.auditlog import ChainedLog, entry_hash, genesis, head_path
from ncbsim.auditread import Query, search, verify
from ncbsim.errors import NcbsimError

COLUMNS = (("at_ms", "INTEGER"), ("sender", "TEXT"), ("kind", "TEXT"), ("elapsed_ms", "REAL"))
NAMES = tuple(name for name, _ in COLUMNS)
FIELDS = "at_ms, sender, kind, elapsed_ms, prev_hash, hash"


def _row(i: int, sender: str = "FR") -> tuple[int, str, str, float]:
    kind = "query_request" if i % 2 else "query_response"
    return (1_700_000_000_000 + i * 1000, sender, kind, 1.25)


def _write(path: Path, n: int = 10, *, start: int = 0) -> None:
    log = ChainedLog(path, COLUMNS, batch_wait_s=0.001)
    for i in range(start, start + n):
        log.record(_row(i))
    log.close()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A log of ten entries, seq 1 to 10, whose append-only triggers have been dropped."""
    path = tmp_path / "audit.sqlite"
    _write(path)
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER audit_no_update")
        db.execute("DROP TRIGGER audit_no_delete")
    db.close()
    return path


def _sql(path: Path, *statements: str) -> None:
    db = sqlite3.connect(path)
    with db:
        for statement in statements:
            db.execute(statement)
    db.close()


def test_an_intact_log_verifies(tmp_path: Path) -> None:
    """A log written by the writer verifies, with its entry count and head."""
    path = tmp_path / "audit.sqlite"
    _write(path)
    verdict = verify(path)
    assert verdict.intact, verdict.describe()
    assert (verdict.entries, verdict.head_seq, verdict.warnings) == (10, 10, ())
    assert verdict.describe().startswith("intact: 10 entries, head seq=10 ")


def test_the_chain_is_the_documented_hash(tmp_path: Path) -> None:
    """Each hash is SHA-256(prev_hash || JSON [seq, *fields]), starting from the genesis value."""
    path = tmp_path / "audit.sqlite"
    _write(path, 3)
    db = sqlite3.connect(path)
    rows = db.execute(f"SELECT seq, {FIELDS} FROM audit ORDER BY seq").fetchall()
    db.close()
    prev = genesis(NAMES)
    for row in rows:
        assert row[-2] == prev
        assert row[-1] == entry_hash(prev, row[0], row[1:-2])
        prev = row[-1]
    assert [r[0] for r in rows] == [1, 2, 3]


def test_triggers_refuse_update_and_delete(tmp_path: Path) -> None:
    """The table itself refuses UPDATE and DELETE: it is append-only."""
    path = tmp_path / "audit.sqlite"
    _write(path, 2)
    db = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE audit SET sender = 'DE' WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM audit WHERE seq = 2")
    db.close()
    assert verify(path).intact


def test_a_changed_field_is_named(path: Path) -> None:
    """One changed byte in one field fails verify at that entry, as changed."""
    _sql(path, "UPDATE audit SET sender = 'FS' WHERE seq = 4")
    verdict = verify(path)
    assert (verdict.bad_seq, verdict.damage) == (4, "changed")
    assert verdict.entries == 3
    assert verdict.describe().startswith("entry seq=4: changed")
    assert any("audit_no_update" in w for w in verdict.warnings)


def test_a_changed_and_rehashed_entry_is_named(path: Path) -> None:
    """An edit whose hash was recomputed is still caught: the next entry links to the original."""
    db = sqlite3.connect(path)
    at_ms, kind, elapsed, prev = db.execute(
        "SELECT at_ms, kind, elapsed_ms, prev_hash FROM audit WHERE seq = 6"
    ).fetchone()
    fields = (at_ms, "DE", kind, elapsed)
    with db:
        db.execute(
            "UPDATE audit SET sender = ?, hash = ? WHERE seq = 6",
            ("DE", entry_hash(prev, 6, fields)),
        )
    db.close()
    verdict = verify(path)
    assert (verdict.bad_seq, verdict.damage) == (6, "changed")
    assert "recomputed" in verdict.detail


def test_a_deleted_entry_is_named(path: Path) -> None:
    """A deleted entry in the middle is named by its seq."""
    _sql(path, "DELETE FROM audit WHERE seq = 5")
    verdict = verify(path)
    assert (verdict.bad_seq, verdict.damage) == (5, "deleted")


def test_a_deleted_first_entry_is_named(path: Path) -> None:
    """Deleting the very first entry is caught too."""
    _sql(path, "DELETE FROM audit WHERE seq = 1")
    assert (verify(path).bad_seq, verify(path).damage) == (1, "deleted")


def test_a_deletion_hidden_by_renumbering_is_named(path: Path) -> None:
    """Deleting an entry and renumbering the later ones fails at the first renumbered one."""
    _sql(
        path,
        "DELETE FROM audit WHERE seq = 5",
        "UPDATE audit SET seq = seq + 1000 WHERE seq > 5",
        "UPDATE audit SET seq = seq - 1001 WHERE seq > 1000",
    )
    verdict = verify(path)
    assert (verdict.bad_seq, verdict.damage) == (5, "deleted")


def test_truncated_newest_entries_are_caught_by_the_head_file(path: Path) -> None:
    """Cutting off the newest entries leaves the chain whole, but the head file names them."""
    _sql(path, "DELETE FROM audit WHERE seq >= 9")
    verdict = verify(path)
    assert (verdict.bad_seq, verdict.damage) == (9, "deleted")
    head_path(path).unlink()  # without the head file, truncation cannot be seen
    assert verify(path).intact


def test_a_forged_entry_inserted_in_the_middle_is_named(path: Path) -> None:
    """A forged entry slipped in (later ones renumbered), even correctly hashed, is named."""
    db = sqlite3.connect(path)
    prev = db.execute("SELECT hash FROM audit WHERE seq = 3").fetchone()[0]
    forged = (1_700_000_003_500, "XX", "query_request", 1.0)
    with db:
        db.execute("UPDATE audit SET seq = seq + 1000 WHERE seq >= 4")
        db.execute("UPDATE audit SET seq = seq - 999 WHERE seq > 1000")
        db.execute(
            f"INSERT INTO audit (seq, {FIELDS}) VALUES (4, ?, ?, ?, ?, ?, ?)",
            (*forged, prev, entry_hash(prev, 4, forged)),
        )
    db.close()
    verdict = verify(path)
    assert (verdict.bad_seq, verdict.damage) == (4, "inserted")


def test_a_forged_entry_inserted_in_a_gap_is_named(path: Path) -> None:
    """A forged row put in place of a deleted one, with a made-up hash, is named as inserted."""
    forged = (1_700_000_004_000, "XX", "query_request", 1.0)
    _sql(path, "DELETE FROM audit WHERE seq = 5")
    db = sqlite3.connect(path)
    with db:
        db.execute(
            f"INSERT INTO audit (seq, {FIELDS}) VALUES (5, ?, ?, ?, ?, ?, ?)",
            (*forged, b"\1" * 32, b"\2" * 32),
        )
    db.close()
    verdict = verify(path)
    assert (verdict.bad_seq, verdict.damage) == (5, "inserted")


def test_an_appended_forgery_is_named(path: Path) -> None:
    """A row appended at the end that does not link to the last entry is named."""
    forged = (1_700_000_099_000, "XX", "query_request", 1.0)
    _sql(
        path,
        f"INSERT INTO audit (seq, {FIELDS}) VALUES "
        f"(11, {forged[0]}, 'XX', 'query_request', 1.0, zeroblob(32), zeroblob(32))",
    )
    verdict = verify(path)
    assert (verdict.bad_seq, verdict.damage) == (11, "inserted")


def test_swapped_entries_are_named(path: Path) -> None:
    """Two entries that trade places fail at the first of them, as reordered."""
    db = sqlite3.connect(path)
    a = db.execute(f"SELECT {FIELDS} FROM audit WHERE seq = 3").fetchone()
    b = db.execute(f"SELECT {FIELDS} FROM audit WHERE seq = 4").fetchone()
    assign = ", ".join(f"{c} = ?" for c in FIELDS.split(", "))
    with db:
        db.execute(f"UPDATE audit SET {assign} WHERE seq = 3", b)
        db.execute(f"UPDATE audit SET {assign} WHERE seq = 4", a)
    db.close()
    verdict = verify(path)
    assert (verdict.bad_seq, verdict.damage) == (3, "reordered")
    assert "written as seq=4" in verdict.detail


def test_reopening_continues_the_chain(tmp_path: Path) -> None:
    """A restarted writer resumes from the last stored entry: one chain, no gap."""
    path = tmp_path / "audit.sqlite"
    _write(path, 5)
    _write(path, 5, start=5)
    verdict = verify(path)
    assert verdict.intact, verdict.describe()
    assert verdict.entries == verdict.head_seq == 10


def test_concurrent_records_are_all_chained(tmp_path: Path) -> None:
    """Rows from several threads, racing the writer's batches, all land once in one chain."""
    path = tmp_path / "audit.sqlite"
    log = ChainedLog(path, COLUMNS, batch_wait_s=0.001)

    def produce(k: int) -> None:
        for i in range(k * 1000, k * 1000 + 1000):
            log.record(_row(i, sender=f"{k}"))

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    verdict = verify(path)
    assert verdict.intact
    assert verdict.entries == 4000
    _, rows = search(path, Query())
    assert sorted(r[1] for r in rows) == sorted(_row(i)[0] for i in range(4000))


def test_an_int_in_a_real_column_is_hashed_as_stored(tmp_path: Path) -> None:
    """An integer given for a REAL column is hashed as the float SQLite stores."""
    path = tmp_path / "audit.sqlite"
    log = ChainedLog(path, COLUMNS)
    log.record((1, "FR", "query_request", 2))
    log.close()
    assert verify(path).intact


def test_search_filters(tmp_path: Path) -> None:
    """Search filters by sender, kind (exact or prefix) and time, oldest first."""
    path = tmp_path / "audit.sqlite"
    log = ChainedLog(path, COLUMNS)
    for i in range(6):
        log.record(_row(i, sender="FR" if i < 4 else "DE"))
    log.close()
    columns, rows = search(path, Query(sender="FR", kind="query", since_ms=_row(1)[0]))
    assert columns == ["seq", "at_ms", "sender", "kind", "elapsed_ms", "hash"]
    assert [r[0] for r in rows] == [2, 3, 4]
    _, rows = search(path, Query(kind="query_request"))
    assert [r[0] for r in rows] == [2, 4, 6]
    _, rows = search(path, Query(kind="quer"))  # a prefix must end at an underscore
    assert rows == []
    _, rows = search(path, Query(until_ms=_row(2)[0], limit=1))
    assert [r[0] for r in rows] == [1]


def test_what_is_not_an_audit_log_is_refused(tmp_path: Path) -> None:
    """A missing file, a non-database and a database without a chain are clear errors."""
    with pytest.raises(NcbsimError, match="no audit log"):
        verify(tmp_path / "missing.sqlite")
    (tmp_path / "text").write_text("hello")
    with pytest.raises(NcbsimError, match="not an SQLite audit log"):
        verify(tmp_path / "text")
    _sql(tmp_path / "other.sqlite", "CREATE TABLE audit (seq INTEGER PRIMARY KEY, x TEXT)")
    with pytest.raises(NcbsimError, match="not a hash-chained audit log"):
        search(tmp_path / "other.sqlite", Query())


def test_opening_with_other_columns_is_refused(tmp_path: Path) -> None:
    """A log cannot be reopened with a different schema (that would break its chain)."""
    path = tmp_path / "audit.sqlite"
    _write(path, 1)
    with pytest.raises(NcbsimError, match="other columns"):
        ChainedLog(path, (("at_ms", "INTEGER"),))
