"""The gateway's audit trail: metadata only, every record kept, readable by tools."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gateway.audit import AuditLog, AuditRecord, read_all


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
    names = {f.name for f in dataclasses.fields(AuditRecord)}
    assert not names & {"payload", "body", "sealed", "plaintext", "signature", "key", "header"}
    assert {"message_id", "sender", "recipient", "request_bytes", "outcome"} <= names


def test_reopening_appends(tmp_path: Path) -> None:
    """A restarted gateway appends to the existing trail instead of replacing it."""
    for batch in range(2):
        log = AuditLog(tmp_path / "audit.sqlite")
        log.record(_record(batch))
        log.close()
    assert len(read_all(tmp_path / "audit.sqlite")) == 2
