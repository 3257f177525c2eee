"""The gateway's audit trail: metadata only, every record kept, readable by tools."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ncbsim.auditread import verify
from ncbsim.gateway.audit import COLUMNS, AuditLog, AuditRecord, read_all


def _record(i: int) -> AuditRecord:
    return AuditRecord(
        at_ms=1_700_000_000_000 + i,
        rpc="Query",
        peer="FR",
        message_id=f"{i:032x}",
        correlation_id="c" * 32,
        sender="FR",
        recipient="DE",
        kind="query_request",
        issued_at_ms=1,
        expires_at_ms=2,
        request_bytes=300,
        response_bytes=200,
        outcome="delivered",
        status="OK",
        elapsed_ms=1.5,
    )


def test_close_writes_every_queued_record_in_order(tmp_path: Path) -> None:
    """Records queued just before close are all on disk afterwards, in order."""
    log = AuditLog(tmp_path / "audit.sqlite")
    for i in range(500):
        log.record(_record(i))
    log.close()
    rows = read_all(tmp_path / "audit.sqlite")
    assert [r.message_id for r in rows] == [f"{i:032x}" for i in range(500)]
    assert rows[0] == _record(0)


def test_audit_record_has_no_field_for_content() -> None:
    """The audit schema can hold ids, parties, sizes and times, but no payload or key."""
    names = set(AuditRecord._fields)
    assert not names & {"payload", "body", "sealed", "plaintext", "signature", "key", "header"}
    assert {"message_id", "sender", "recipient", "request_bytes", "outcome"} <= names


def test_reopening_appends(tmp_path: Path) -> None:
    """A restarted gateway appends to the existing trail, continuing its hash chain."""
    for batch in range(2):
        log = AuditLog(tmp_path / "audit.sqlite")
        log.record(_record(batch))
        log.close()
    assert len(read_all(tmp_path / "audit.sqlite")) == 2
    assert verify(tmp_path / "audit.sqlite").describe().startswith("intact: 2 entries")


def test_record_fields_are_the_table_columns() -> None:
    """The record's fields are the chained table's columns, in order (they are hashed so)."""
    assert AuditRecord._fields == tuple(name for name, _ in COLUMNS)


def test_records_reach_disk_without_close(tmp_path: Path) -> None:
    """A running gateway's records are written within a batch period, not only at close."""
    log = AuditLog(tmp_path / "audit.sqlite", batch_wait_s=0.01)
    try:
        log.record(_record(1))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not read_all(tmp_path / "audit.sqlite"):
            time.sleep(0.01)
        assert [r.message_id for r in read_all(tmp_path / "audit.sqlite")] == [f"{1:032x}"]
        log.record(_record(2))  # the writer wakes again for a later batch
        while time.monotonic() < deadline and len(read_all(tmp_path / "audit.sqlite")) < 2:
            time.sleep(0.01)
        assert len(read_all(tmp_path / "audit.sqlite")) == 2
    finally:
        log.close()


def test_no_record_is_lost_while_the_writer_is_busy(tmp_path: Path) -> None:
    """Records from several threads, racing the writer's batches, all end up on disk once."""
    log = AuditLog(tmp_path / "audit.sqlite", batch_wait_s=0.001)

    def produce(start: int) -> None:
        for i in range(start, start + 2000):
            log.record(_record(i))
            if i % 97 == 0:
                time.sleep(0.0005)  # let batches be cut at varying points

    threads = [threading.Thread(target=produce, args=(k * 2000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    ids = sorted(r.message_id for r in read_all(tmp_path / "audit.sqlite"))
    assert ids == sorted(f"{i:032x}" for i in range(8000))
    assert verify(tmp_path / "audit.sqlite").intact
