"""The gateway's mailbox on a real SQLite file: durable accept, dedup, bound, order, expiry."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from ncbsim import envelope
from ncbsim.gateway.copies import (
    ACCEPTED,
    DELIVERED,
    DUPLICATE,
    EXPIRED,
    QUEUE_FULL,
    QUEUED,
    REJECTED,
    Due,
    Incoming,
    Outcome,
)
from ncbsim.gateway.mailbox import Mailbox, MessageIdReused
from ncbsim.gateway.writer import run_to_end

T = TypeVar("T")
NOW = 1_800_000_000_000


def _incoming(
    sender: str = "FR",
    recipient: str = "DE",
    *,
    message_id: bytes | None = None,
    expires_at_ms: int = NOW + 60_000,
    data: bytes | None = None,
) -> Incoming:
    """A stand-in for an admitted envelope: the mailbox stores bytes and never opens them."""
    message_id = message_id or os.urandom(16)
    header = envelope.Header(
        version=1,
        message_id=message_id,
        sender=sender,
        recipient=recipient,
        kind=envelope.DIFFUSION,
        issued_at_ms=NOW,
        expires_at_ms=expires_at_ms,
        correlation_id=b"P" * 16,
        sender_key_id=b"",
        recipient_key_id=b"",
        raw=b"",
    )
    data = data if data is not None else b"sealed:" + message_id
    return Incoming(header, data, hashlib.sha256(data).digest())


class _Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


def _with_mailbox(
    path: Path,
    body: Callable[[Mailbox], Awaitable[T]],
    *,
    max_queue: int = 100,
    max_queue_per_sender: int | None = None,
    clock: Callable[[], int] | None = None,
) -> T:
    """Open the mailbox at ``path``, run ``body`` with it, always close it."""

    async def main() -> T:
        mailbox = await Mailbox.open(
            path,
            max_queue=max_queue,
            max_queue_per_sender=max_queue_per_sender or max_queue,
            clock=clock or _Clock(),
        )
        try:
            return await body(mailbox)
        finally:
            await mailbox.close()

    return asyncio.run(main())


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_accepted_envelope_survives_a_reopen(tmp_path: Path) -> None:
    """An accepted envelope is on disk: a new Mailbox on the file delivers the same bytes."""
    path = tmp_path / "mailbox.sqlite"
    item = _incoming()
    [result] = _with_mailbox(path, lambda m: m.accept([item]))
    assert (result.status, result.sequence, result.accepted_at_ms) == (ACCEPTED, 1, NOW)

    async def reopened(mailbox: Mailbox) -> list[Due]:
        assert mailbox.queued("DE") == 1
        assert mailbox.recipients() == ["DE"]
        return list(await mailbox.due("DE", 10, NOW))

    [due] = _with_mailbox(path, reopened)
    assert (due.sequence, due.data, due.sha256) == (1, item.data, item.sha256)
    assert _rows(path, "PRAGMA journal_mode") == [("wal",)]


def test_duplicate_is_idempotent_with_the_original_sequence(tmp_path: Path) -> None:
    """The same envelope again is DUPLICATE with the first sequence, stored once; another
    sender may use the same message id."""
    path = tmp_path / "mailbox.sqlite"
    first, other = _incoming(), _incoming()
    retry = _incoming(message_id=first.header.message_id)
    same_id_other_sender = _incoming(sender="IT", message_id=first.header.message_id)

    async def body(mailbox: Mailbox) -> None:
        a = await mailbox.accept([first, other, retry])
        assert [(r.status, r.sequence) for r in a] == [(ACCEPTED, 1), (ACCEPTED, 2), (DUPLICATE, 1)]
        b = await mailbox.accept([retry, same_id_other_sender])
        assert [(r.status, r.sequence, r.detail) for r in b] == [
            (DUPLICATE, 1, ""),
            (ACCEPTED, 3, ""),
        ]
        assert mailbox.queued("DE") == 3

    _with_mailbox(path, body)
    assert _rows(path, "SELECT count(*) FROM messages") == [(3,)]


def test_a_reused_message_id_refuses_the_whole_call(tmp_path: Path) -> None:
    """A different envelope under a stored (sender, message id) raises MessageIdReused and
    nothing of that call is stored, not even its other copies; a byte-identical retry of
    the first is still DUPLICATE, and the counts are untouched."""
    path = tmp_path / "mailbox.sqlite"
    first = _incoming()
    forged = _incoming(message_id=first.header.message_id, data=b"something else")
    fresh = _incoming(recipient="IT")
    same_call_twice = _incoming(recipient="IT")
    twin = _incoming(recipient="IT", message_id=same_call_twice.header.message_id, data=b"y")

    async def body(mailbox: Mailbox) -> None:
        await mailbox.accept([first])
        with pytest.raises(MessageIdReused, match="message id reused by a different envelope"):
            await mailbox.accept([fresh, forged])
        with pytest.raises(MessageIdReused):
            await mailbox.accept([same_call_twice, twin])
        assert [r.status for r in await mailbox.accept([first])] == [DUPLICATE]
        assert (mailbox.queued("DE"), mailbox.queued("IT")) == (1, 0)

    _with_mailbox(path, body)
    assert _rows(path, "SELECT count(*) FROM messages") == [(1,)]


def test_queue_bound_refuses_new_copies_but_not_retries(tmp_path: Path) -> None:
    """At max_queue a recipient's new copies are QUEUE_FULL and not stored; retries and
    other recipients are unaffected, and settling one frees a place."""
    path = tmp_path / "mailbox.sqlite"
    a, b, c, d = (_incoming() for _ in range(4))
    for_it = _incoming(recipient="IT")

    async def body(mailbox: Mailbox) -> None:
        results = await mailbox.accept([a, b, c, for_it])
        assert [r.status for r in results] == [ACCEPTED, ACCEPTED, QUEUE_FULL, ACCEPTED]
        assert results[2].sequence == 0
        assert (await mailbox.accept([a]))[0].status == DUPLICATE
        assert (await mailbox.accept([c]))[0].status == QUEUE_FULL
        await mailbox.settle([Outcome(results[0].sequence, REJECTED, detail="unverified")])
        assert mailbox.queued("DE") == 1
        assert [r.status for r in await mailbox.accept([c, d])] == [ACCEPTED, QUEUE_FULL]

    _with_mailbox(path, body, max_queue=2)
    assert _rows(path, "SELECT count(*) FROM messages WHERE recipient = 'DE'") == [(3,)]


def test_per_sender_bound_and_notices_exempt_from_the_total(tmp_path: Path) -> None:
    """One sender cannot fill a recipient's queue: over max_queue_per_sender its copies are
    QUEUE_FULL naming that bound while others still get in, until the total bound; GS's
    notices are held to their pair bound only. The counts survive a reopen."""
    path = tmp_path / "mailbox.sqlite"
    fr = [_incoming("FR") for _ in range(3)]
    it = [_incoming("IT") for _ in range(2)]
    gs = [_incoming("GS") for _ in range(3)]

    async def body(mailbox: Mailbox) -> None:
        a = await mailbox.accept(fr)
        assert [r.status for r in a] == [ACCEPTED, ACCEPTED, QUEUE_FULL]
        assert a[2].detail == "queue from FR to DE is full (2 of FR's messages waiting)"
        b = await mailbox.accept(it)
        assert [r.status for r in b] == [ACCEPTED, QUEUE_FULL]
        assert b[1].detail == "queue for DE is full (3 messages waiting)"
        c = await mailbox.accept(gs)
        assert [r.status for r in c] == [ACCEPTED, ACCEPTED, QUEUE_FULL]
        assert "from GS to DE" in c[2].detail
        assert (mailbox.queued("DE"), mailbox.queued("DE", sender="GS")) == (5, 2)

    async def reopened(mailbox: Mailbox) -> None:
        assert (mailbox.queued("DE", sender="FR"), mailbox.queued("DE")) == (2, 5)
        assert [r.status for r in await mailbox.accept([_incoming("GS")])] == [QUEUE_FULL]
        await mailbox.settle([Outcome(1, DELIVERED, receipt=b"r")])  # one of FR's
        [again] = await mailbox.accept([fr[2]])  # FR's pair has room; DE's total (4) not
        assert (again.status, again.detail) == (
            QUEUE_FULL,
            "queue for DE is full (3 messages waiting)",
        )
        await mailbox.settle([Outcome(3, DELIVERED, receipt=b"r")])  # IT's: DE's total is 3
        assert [r.status for r in await mailbox.accept([fr[2]])] == [QUEUE_FULL]  # GS's count
        await mailbox.settle([Outcome(4, DELIVERED, receipt=b"r")])  # one of GS's
        assert [r.status for r in await mailbox.accept([fr[2]])] == [ACCEPTED]

    _with_mailbox(path, body, max_queue=3, max_queue_per_sender=2)
    _with_mailbox(path, reopened, max_queue=3, max_queue_per_sender=2)


def test_due_stops_at_the_byte_budget_but_always_takes_one(tmp_path: Path) -> None:
    """due(max_bytes=...) stops before the envelopes' total passes the budget, and takes
    the first copy even if it alone is over it (so a large copy cannot block the queue)."""
    path = tmp_path / "mailbox.sqlite"
    items = [_incoming(data=bytes([i]) * 100) for i in range(4)]

    async def body(mailbox: Mailbox) -> list[list[int]]:
        await mailbox.accept(items)
        return [
            [d.sequence for d in await mailbox.due("DE", 10, NOW, max_bytes=budget)]
            for budget in (None, 400, 399, 250, 50)
        ]

    assert _with_mailbox(path, body) == [[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3], [1, 2], [1]]


def test_due_is_by_sequence_and_skips_expired_and_other_recipients(tmp_path: Path) -> None:
    """due() returns a recipient's oldest queued, unexpired copies in sequence order,
    leaving out the senders it is told to skip."""
    path = tmp_path / "mailbox.sqlite"
    items = [
        _incoming("FR"),
        _incoming("IT"),
        _incoming("FR", "IT"),
        _incoming("FR", expires_at_ms=NOW + 10),
        _incoming("GS"),
        _incoming("FR"),
    ]

    async def body(mailbox: Mailbox) -> None:
        await mailbox.accept(items[:3])
        await mailbox.accept(items[3:])
        due = await mailbox.due("DE", 10, NOW + 100)
        assert [d.sequence for d in due] == [1, 2, 5, 6]
        assert [d.sender for d in due] == ["FR", "IT", "GS", "FR"]
        assert [d.sequence for d in await mailbox.due("DE", 2, NOW + 100)] == [1, 2]
        assert [d.sequence for d in await mailbox.due("DE", 10, NOW)] == [1, 2, 4, 5, 6]
        held = await mailbox.due("DE", 10, NOW + 100, skip=["FR", "GS"])
        assert [d.sequence for d in held] == [2]  # held senders' copies are left out

    _with_mailbox(path, body)


def test_expiry_settles_and_tells_the_sender(tmp_path: Path) -> None:
    """A queued copy past its TTL becomes expired: envelope dropped, sender sees the state."""
    path = tmp_path / "mailbox.sqlite"
    short, long = _incoming(expires_at_ms=NOW + 1_000), _incoming(expires_at_ms=NOW + 60_000)
    clock = _Clock()

    async def body(mailbox: Mailbox) -> None:
        await mailbox.accept([short, long])
        assert await mailbox.expire(NOW + 999) == []
        clock.now = NOW + 1_000
        [expired] = await mailbox.expire(NOW + 1_000)
        assert (expired.sequence, expired.state, expired.sender) == (1, EXPIRED, "FR")
        assert expired.message_id == short.header.message_id
        assert mailbox.queued("DE") == 1
        posted = await mailbox.posted("FR", 0, 10)
        assert [(p.state, p.settled_at_ms) for p in posted] == [
            (EXPIRED, NOW + 1_000),
            (QUEUED, 0),
        ]
        assert await mailbox.expire(NOW + 1_000) == []  # settled once only

    _with_mailbox(path, body, clock=clock)
    assert _rows(path, "SELECT sequence, envelope IS NULL FROM messages") == [(1, 1), (2, 0)]


def test_settlement_drops_the_envelope_and_keeps_the_receipt(tmp_path: Path) -> None:
    """Delivered keeps the receipt, rejected the reason; both delete the sealed bytes; a
    retry outcome only counts the attempt; a late receipt turns expired into delivered."""
    path = tmp_path / "mailbox.sqlite"
    items = [_incoming(expires_at_ms=NOW + 60_000) for _ in range(3)]
    late = _incoming(expires_at_ms=NOW + 5)

    async def body(mailbox: Mailbox) -> None:
        seqs = [r.sequence for r in await mailbox.accept([*items, late])]
        await mailbox.expire(NOW + 5)
        settled = await mailbox.settle(
            [
                Outcome(seqs[0], DELIVERED, receipt=b"signed-receipt"),
                Outcome(seqs[1], REJECTED, detail="unverified"),
                Outcome(seqs[2], QUEUED),
                Outcome(seqs[3], DELIVERED, receipt=b"late-receipt"),
            ]
        )
        assert [(s.sequence, s.state, s.receipt_bytes) for s in settled] == [
            (seqs[0], DELIVERED, 14),
            (seqs[1], REJECTED, 0),
            (seqs[3], DELIVERED, 12),
        ]
        again = await mailbox.settle([Outcome(seqs[1], DELIVERED, receipt=b"x")])
        assert again == []  # a rejected copy stays rejected
        assert mailbox.queued("DE") == 1
        assert [d.sequence for d in await mailbox.due("DE", 10, NOW)] == [seqs[2]]

    _with_mailbox(path, body)
    rows = _rows(
        path,
        "SELECT state, envelope IS NULL, receipt, detail, attempts FROM messages ORDER BY sequence",
    )
    assert rows == [
        (DELIVERED, 1, b"signed-receipt", "", 1),
        (REJECTED, 1, None, "unverified", 1),
        (QUEUED, 0, None, "", 1),
        (DELIVERED, 1, b"late-receipt", "", 1),
    ]


def test_prune_deletes_only_settled_expired_rows_past_retention(tmp_path: Path) -> None:
    """Prune deletes a settled copy's row once it was settled before the cut-off and its
    TTL has passed; a queued copy, one settled later, or one still within its TTL (whose
    row the dedup of a retry needs) stays."""
    path = tmp_path / "mailbox.sqlite"
    clock = _Clock()

    async def body(mailbox: Mailbox) -> None:
        first = _incoming(expires_at_ms=NOW + 1_000)  # delivered at NOW
        late = _incoming(expires_at_ms=NOW + 1_000)  # delivered at NOW + 5_000
        long_ttl = _incoming(expires_at_ms=NOW + 90_000)  # delivered at NOW, expires later
        waiting = _incoming(expires_at_ms=NOW + 1_000)  # never delivered: expires
        stuck = _incoming(expires_at_ms=NOW + 90_000)  # still queued
        seqs = [r.sequence for r in await mailbox.accept([first, late, long_ttl, waiting, stuck])]
        await mailbox.settle([Outcome(seqs[0], DELIVERED, receipt=b"r")])
        await mailbox.settle([Outcome(seqs[2], DELIVERED, receipt=b"r")])
        clock.now = NOW + 5_000
        await mailbox.settle([Outcome(seqs[1], DELIVERED, receipt=b"r")])
        await mailbox.expire(NOW + 5_000)  # settles ``waiting`` at NOW + 5_000
        assert await mailbox.prune(NOW + 1, NOW + 60_000) == 1  # first only
        assert [p.sequence for p in await mailbox.posted("FR", 0, 10)] == seqs[1:]
        assert await mailbox.prune(NOW + 5_001, NOW + 60_000) == 2  # late and waiting
        assert await mailbox.prune(NOW + 5_001, NOW + 90_000) == 1  # long_ttl, now expired
        assert [p.sequence for p in await mailbox.posted("FR", 0, 10)] == [seqs[4]]
        assert mailbox.queued("DE") == 1

    _with_mailbox(path, body, clock=clock)
    assert _rows(path, "SELECT state FROM messages") == [(QUEUED,)]


def test_concurrent_accepts_share_commits(tmp_path: Path) -> None:
    """Many concurrent accepts are written in a few transactions, each answered after its
    commit, and all of them are on disk."""
    path = tmp_path / "mailbox.sqlite"
    calls = 200

    async def body(mailbox: Mailbox) -> tuple[list[int], int]:
        results = await asyncio.gather(*(mailbox.accept([_incoming()]) for _ in range(calls)))
        return [r[0].sequence for r in results], mailbox.commits

    sequences, commits = _with_mailbox(path, body, max_queue=10_000)
    assert sorted(sequences) == list(range(1, calls + 1))
    assert commits <= calls // 10
    assert _rows(path, "SELECT count(*) FROM messages WHERE state = 'queued'") == [(calls,)]


def test_a_failing_operation_fails_alone(tmp_path: Path) -> None:
    """An operation that raises is rolled back by itself; the ones batched with it commit."""
    path = tmp_path / "mailbox.sqlite"

    async def body(mailbox: Mailbox) -> list[object]:
        [stored] = await mailbox.accept([_incoming()])
        return await asyncio.gather(
            mailbox.settle([Outcome(stored.sequence, DELIVERED, b"r"), Outcome(1, "bogus")]),
            mailbox.accept([_incoming()]),
            return_exceptions=True,
        )

    bad, good = _with_mailbox(path, body)
    assert isinstance(bad, ValueError)
    assert isinstance(good, list)
    assert good[0].status == ACCEPTED
    assert _rows(path, "SELECT sequence, state FROM messages") == [(1, QUEUED), (2, QUEUED)]


def test_posted_pages_by_sequence_for_one_sender(tmp_path: Path) -> None:
    """posted() lists only that sender's copies after a sequence, in order, up to a limit."""
    path = tmp_path / "mailbox.sqlite"

    async def body(mailbox: Mailbox) -> None:
        await mailbox.accept([_incoming("FR"), _incoming("IT"), _incoming("FR"), _incoming("FR")])
        assert [p.sequence for p in await mailbox.posted("FR", 0, 2)] == [1, 3]
        assert [p.sequence for p in await mailbox.posted("FR", 3, 10)] == [4]
        assert [p.sequence for p in await mailbox.posted("IT", 0, 10)] == [2]
        assert await mailbox.posted("DE", 0, 10) == []

    _with_mailbox(path, body)


def test_run_to_end_finishes_the_work_of_a_cancelled_caller(tmp_path: Path) -> None:
    """A caller cancelled while its accept is committing still runs what follows the
    commit (the gateway's audit rows), and only then sees the cancellation."""

    async def body(mailbox: Mailbox) -> list[str]:
        done: list[str] = []

        async def store() -> None:
            [result] = await mailbox.accept([_incoming()])
            done.append(result.status)

        caller = asyncio.create_task(run_to_end(store()))
        await asyncio.sleep(0)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        return done

    assert _with_mailbox(tmp_path / "m.sqlite", body) == [ACCEPTED]


def test_closed_mailbox_refuses_work(tmp_path: Path) -> None:
    """After close() no operation is taken (it could never be committed)."""

    async def main() -> None:
        mailbox = await Mailbox.open(tmp_path / "m.sqlite", max_queue=10)
        await mailbox.close()
        with pytest.raises(RuntimeError):
            await mailbox.accept([_incoming()])

    asyncio.run(main())


def test_measure_group_commit_against_a_commit_per_envelope(tmp_path: Path) -> None:
    """Prints accepted envelopes a second: one commit each, group commit, and 64 a call."""

    async def sequential(mailbox: Mailbox, n: int) -> None:
        for _ in range(n):
            await mailbox.accept([_incoming()])

    async def concurrent(mailbox: Mailbox, n: int) -> None:
        await asyncio.gather(*(mailbox.accept([_incoming()]) for _ in range(n)))

    async def batched(mailbox: Mailbox, n: int) -> None:
        calls = [[_incoming() for _ in range(64)] for _ in range(n // 64)]
        await asyncio.gather(*(mailbox.accept(call) for call in calls))

    figures = {}
    for name, run, n in (
        ("one commit per envelope", sequential, 200),
        ("group commit, 1 envelope per call", concurrent, 2_000),
        ("group commit, 64 envelopes per call", batched, 6_400),
    ):

        async def timed(
            mailbox: Mailbox, run: Callable[..., Awaitable[None]] = run, n: int = n
        ) -> float:
            started = time.perf_counter()
            await run(mailbox, n)
            return time.perf_counter() - started

        elapsed = _with_mailbox(tmp_path / f"{len(figures)}.sqlite", timed, max_queue=100_000)
        figures[name] = n / elapsed
    print()
    for name, rate in figures.items():
        print(f"mailbox accept, {name}: {rate:,.0f} envelopes/s")
    assert all(rate > 0 for rate in figures.values())
