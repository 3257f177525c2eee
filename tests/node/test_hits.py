"""Hit notifications: recorded for flagged records hit by others, metadata only, owner-readable."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from support import (
    document_query,
    fetch_query,
    generate_records,
    query_for,
    uncontrolled_documents,
)

from ncbsim.auditread import verify
from ncbsim.cli import records
from ncbsim.node import admin
from ncbsim.node.answer import answer
from ncbsim.node.hits import HitEvent, HitLog, read_hits
from ncbsim.node.store import RecordStore
from ncbsim.v2 import query_pb2
from ncbsim.workdir import Workdir

OWNER = "DE"
NOW = 1_750_000_000.0


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return generate_records(
        tmp_path, OWNER, seed=5, documents=150, persons=40, vehicles=40, workers=1
    )


@pytest.fixture
def store(db: Path, open_store: Callable[[Path], RecordStore]) -> RecordStore:
    return open_store(db)


def _ask(
    store: RecordStore, query: query_pb2.Query, requester: str, events: list[HitEvent]
) -> query_pb2.Answer:
    return answer(
        store,
        query,
        requester=requester,
        message_id=f"mid-{requester}-{len(events)}",
        on_hit=events.append,
        clock=lambda: NOW,
    )


def test_hit_on_flagged_record_is_notified_at_both_steps(db: Path, store: RecordStore) -> None:
    """FR's check and fetch of a notify-flagged record give two events: who, ref, kind, id."""
    (doc,) = uncontrolled_documents(store, 1, sample=150, seed=2)
    admin.restrict(db, doc.ref, admin.ControlChange(notify=True))
    events: list[HitEvent] = []
    _ask(store, query_for(doc), "FR", events)
    _ask(store, fetch_query(doc.ref), "FR", events)
    assert events == [
        HitEvent(int(NOW * 1000), "FR", doc.ref, "document", "document", "hit", "mid-FR-0"),
        HitEvent(int(NOW * 1000), "FR", doc.ref, "document", "fetch", "released", "mid-FR-1"),
    ]


def test_no_notification_for_unflagged_records_or_the_owner(db: Path, store: RecordStore) -> None:
    """An unflagged record's hit, the owner's own hit and a no-hit notify nobody."""
    flagged, plain = uncontrolled_documents(store, 2, sample=150, seed=2)
    admin.restrict(db, flagged.ref, admin.ControlChange(notify=True))
    events: list[HitEvent] = []
    _ask(store, query_for(plain), "FR", events)
    _ask(store, fetch_query(plain.ref), "FR", events)
    _ask(store, query_for(flagged), OWNER, events)
    _ask(store, fetch_query(flagged.ref), OWNER, events)
    miss = document_query("Q00000000", OWNER)
    _ask(store, miss, "FR", events)
    _ask(store, fetch_query("nosuchreference00000"), "FR", events)
    assert events == []


@pytest.mark.attack(
    "a deny-listed bureau looks for a record hidden from it, hoping to go unnoticed",
    adversary="rogue bureau",
    expect="no-hit and NotFound; the owner records withheld hit notifications",
)
def test_withheld_hits_are_notified_to_the_owner(db: Path, store: RecordStore) -> None:
    """RU sees nothing of a record denied to it, but DE learns that RU looked for it."""
    (doc,) = uncontrolled_documents(store, 1, sample=150, seed=2)
    admin.restrict(
        db, doc.ref, admin.ControlChange(access="deny", bureaus=frozenset({"RU"}), notify=True)
    )
    events: list[HitEvent] = []
    assert _ask(store, query_for(doc), "RU", events).hits.matches == []
    assert _ask(store, fetch_query(doc.ref), "RU", events).HasField("not_found")
    assert [(e.requester, e.query_kind, e.outcome) for e in events] == [
        ("RU", "document", "withheld"),
        ("RU", "fetch", "withheld"),
    ]


def test_a_failing_notification_does_not_change_the_answer(db: Path, store: RecordStore) -> None:
    """If recording fails, the requester still gets the very same answer."""
    (doc,) = uncontrolled_documents(store, 1, sample=150, seed=2)
    admin.restrict(db, doc.ref, admin.ControlChange(notify=True))

    def broken(_event: HitEvent) -> None:
        raise OSError("disk full")

    for query in (query_for(doc), fetch_query(doc.ref)):
        quiet = answer(store, query, requester="FR")
        assert answer(store, query, requester="FR", on_hit=broken) == quiet


def test_hit_log_writes_a_verifiable_chain_without_query_terms(
    db: Path, store: RecordStore, tmp_path: Path
) -> None:
    """Events land in hits.sqlite, in a hash chain, with the ref but not the document number."""
    (doc,) = uncontrolled_documents(store, 1, sample=150, seed=2)
    admin.restrict(db, doc.ref, admin.ControlChange(notify=True))
    path = Workdir(tmp_path).bureau(OWNER).hits
    hits = HitLog(path, batch_wait_s=0.0)
    try:
        with capture_logs() as logs:
            answer(store, query_for(doc), requester="FR", message_id="ab" * 16, on_hit=hits.record)
            answer(
                store,
                fetch_query(doc.ref),
                requester="NL",
                message_id="cd" * 16,
                on_hit=hits.record,
            )
    finally:
        hits.close()
    listed = read_hits(path)
    assert [(e.requester, e.ref, e.query_kind, e.outcome, e.message_id) for e in listed] == [
        ("FR", doc.ref, "document", "hit", "ab" * 16),
        ("NL", doc.ref, "fetch", "released", "cd" * 16),
    ]
    assert read_hits(path, requester="nl") == listed[1:]
    assert read_hits(path, ref="other") == []
    assert verify(path).intact
    for name in (path.name, path.name + "-wal"):
        file = path.with_name(name)
        if file.exists():
            assert doc.number.encode() not in file.read_bytes()
    lines = [entry for entry in logs if entry["event"] == "record_hit"]
    assert [(e["requester"], e["ref"], e["log_level"]) for e in lines] == [
        ("FR", doc.ref, "info"),
        ("NL", doc.ref, "info"),
    ]
    assert all(doc.number not in json.dumps(e) for e in lines)


def test_hit_log_list_and_reopen(tmp_path: Path) -> None:
    """HitLog.list reads what was written; a reopened log continues the same chain."""
    path = tmp_path / "hits.sqlite"
    event = HitEvent(1, "FR", "ref1", "person", "person", "hit", "00")
    first = HitLog(path, batch_wait_s=0.0)
    first.record(event)
    first.close()
    second = HitLog(path, batch_wait_s=0.0)
    second.record(HitEvent(2, "IT", "ref1", "person", "fetch", "released", "01"))
    second.close()
    assert [e.at_ms for e in second.list()] == [1, 2]
    assert second.list(since_ms=2, limit=5)[0].requester == "IT"
    assert verify(path).intact
    assert read_hits(tmp_path / "none.sqlite") == []


def test_hits_command_prints_json_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ncbsim hits --as DE --json` prints one object per notification, oldest first."""
    hits = HitLog(Workdir(tmp_path).bureau(OWNER).hits, batch_wait_s=0.0)
    with capture_logs():
        hits.record(HitEvent(5, "FR", "r1", "vehicle", "vehicle", "hit", "aa"))
        hits.record(HitEvent(6, "RU", "r2", "document", "fetch", "withheld", "bb"))
    hits.close()
    parser = argparse.ArgumentParser(prog="ncbsim")
    records.add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["hits", "--workdir", str(tmp_path), "--as", "de", "--json"])
    assert args.func(args) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(p["requester"], p["ref"], p["outcome"]) for p in printed] == [
        ("FR", "r1", "hit"),
        ("RU", "r2", "withheld"),
    ]
    args = parser.parse_args(["hits", "--workdir", str(tmp_path), "--as", "DE"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "withheld" in out
    assert "2 hit notifications" in out
