"""Gateway.Post and Gateway.Receipts, in-process on real mTLS sockets (gateway/posts.py).

The gateway service and its mailbox (a real SQLite file) run in the test's event loop
(gateway_support.mailbox_gateway); delivery is tested in test_delivery.py."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from gateway_support import (
    SEND_ONLY,
    audit_of,
    forged_post,
    load_identity,
    mailbox_gateway,
    now_ms,
    seal_post,
)

from ncbsim import envelope, pki
from ncbsim.errors import RETRY_AFTER_KEY, is_queue_full
from ncbsim.gateway.audit import AuditRecord
from ncbsim.v2 import gateway_pb2

# ----------------------------------------------------------------------------- Post admission

REFUSALS = {
    "send-only-recipient": (
        lambda d: seal_post(d, "FR", SEND_ONLY),
        grpc.StatusCode.FAILED_PRECONDITION,
        "MC only sends: it runs no node to deliver to",
    ),
    "wrong-sender": (
        lambda d: forged_post(sender="IT"),
        grpc.StatusCode.PERMISSION_DENIED,
        "sender",
    ),
    "query-kind": (
        lambda d: forged_post(kind=envelope.QUERY_REQUEST),
        grpc.StatusCode.INVALID_ARGUMENT,
        "envelope rejected",
    ),
    "15-byte-message-id": (
        lambda d: forged_post(message_id=os.urandom(15)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "envelope rejected",
    ),
    "15-byte-post-id": (
        lambda d: forged_post(correlation_id=os.urandom(15)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "envelope rejected",
    ),
    "notice-not-from-gs": (
        lambda d: forged_post(kind=envelope.NOTICE),
        grpc.StatusCode.PERMISSION_DENIED,
        "only GS",
    ),
    "notice-request-not-to-gs": (
        lambda d: forged_post(kind=envelope.NOTICE_REQUEST),
        grpc.StatusCode.INVALID_ARGUMENT,
        "GS only",
    ),
    "unknown-recipient": (
        lambda d: forged_post(recipient="ZZ"),
        grpc.StatusCode.NOT_FOUND,
        "ZZ",
    ),
    "to-itself": (
        lambda d: forged_post(recipient="FR"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "itself",
    ),
    "expired": (
        lambda d: forged_post(expires_at_ms=now_ms() - 1),
        grpc.StatusCode.INVALID_ARGUMENT,
        "expired",
    ),
    "ttl-over-24h": (
        lambda d: forged_post(expires_at_ms=now_ms() + envelope.MAX_TTL_MS + 60_000),
        grpc.StatusCode.INVALID_ARGUMENT,
        "24 h",
    ),
    "issued-in-the-future": (
        lambda d: forged_post(
            issued_at_ms=now_ms() + envelope.CLOCK_SKEW_MS + 60_000,
            expires_at_ms=now_ms() + envelope.CLOCK_SKEW_MS + 120_000,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "issued in the future",
    ),
    "oversized": (
        lambda d: seal_post(d, "FR", "DE", text=b"x" * 5_000),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "exceeds",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
@pytest.mark.attack(
    "a Post with one envelope that breaks a rule: another bureau as sender, a query kind, "
    "bad ids, a NOTICE not from GS, a send-only or unknown recipient, an expired or "
    "future-dated or oversized envelope",
    adversary="rogue bureau",
    expect="the whole call refused with a clear status (PERMISSION_DENIED, INVALID_ARGUMENT, "
    "NOT_FOUND, FAILED_PRECONDITION or RESOURCE_EXHAUSTED); a refused audit row per "
    "envelope; nothing stored",
)
def test_post_refusal_refuses_the_whole_call_and_audits_each_envelope(
    tmp_path: Path, gateway_pki: pki.PkiDir, case: str
) -> None:
    """One bad envelope refuses the whole Post with a clear status; each envelope gets a
    refused audit row, and nothing is stored."""
    make, code, detail = REFUSALS[case]
    good = seal_post(gateway_pki, "FR", "IT")
    bad = make(gateway_pki)

    async def main() -> tuple[grpc.StatusCode, str, int]:
        async with mailbox_gateway(tmp_path, gateway_pki, max_envelope_bytes=4_096) as gateway:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await gateway.post("FR", good, bad)
            return caught.value.code(), caught.value.details() or "", gateway.mailbox.queued()

    got_code, got_detail, queued = asyncio.run(main())
    assert got_code == code
    assert detail in got_detail
    assert queued == 0
    rows = audit_of(tmp_path, "Post")
    assert [(r.peer, r.outcome, r.status) for r in rows] == [("FR", "refused", code.name)] * 2
    assert rows[0].recipient == "IT"


def test_post_accepts_and_a_retry_is_a_duplicate_with_the_same_sequence(
    tmp_path: Path, gateway_pki: pki.PkiDir
) -> None:
    """Post stores each copy (ACCEPTED, a sequence); the same envelopes again are DUPLICATE
    with the original sequences, and both calls are audited per envelope."""
    items = [seal_post(gateway_pki, "FR", "DE"), seal_post(gateway_pki, "FR", "IT")]

    async def main() -> tuple[gateway_pb2.PostResponse, gateway_pb2.PostResponse]:
        async with mailbox_gateway(tmp_path, gateway_pki, deliver=False) as gateway:
            return await gateway.post("FR", *items), await gateway.post("FR", *items)

    first, again = asyncio.run(main())
    assert [(r.recipient, r.status, r.sequence) for r in first.results] == [
        ("DE", gateway_pb2.POST_STATUS_ACCEPTED, 1),
        ("IT", gateway_pb2.POST_STATUS_ACCEPTED, 2),
    ]
    assert [(r.status, r.sequence) for r in again.results] == [
        (gateway_pb2.POST_STATUS_DUPLICATE, 1),
        (gateway_pb2.POST_STATUS_DUPLICATE, 2),
    ]
    assert [r.accepted_at_ms for r in again.results] == [r.accepted_at_ms for r in first.results]
    rows = audit_of(tmp_path, "Post")
    assert [(r.recipient, r.outcome, r.kind) for r in rows] == [
        ("DE", "accepted", "diffusion"),
        ("IT", "accepted", "diffusion"),
        ("DE", "duplicate", "diffusion"),
        ("IT", "duplicate", "diffusion"),
    ]


def test_full_queue_is_resource_exhausted_with_a_retry_hint(
    tmp_path: Path, gateway_pki: pki.PkiDir
) -> None:
    """Over max_queue a Post to that bureau alone is RESOURCE_EXHAUSTED with retry-after-ms;
    a Post that also reaches another bureau is OK with QUEUE_FULL for the full one."""

    async def main() -> tuple[grpc.aio.AioRpcError, gateway_pb2.PostResponse]:
        async with mailbox_gateway(tmp_path, gateway_pki, deliver=False, max_queue=1) as gateway:
            await gateway.post("FR", seal_post(gateway_pki, "FR", "DE"))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await gateway.post("FR", seal_post(gateway_pki, "FR", "DE"))
            mixed = await gateway.post(
                "FR", seal_post(gateway_pki, "FR", "DE"), seal_post(gateway_pki, "FR", "IT")
            )
            return caught.value, mixed

    error, mixed = asyncio.run(main())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "queue for DE is full" in (error.details() or "")
    assert dict(error.trailing_metadata() or ())[RETRY_AFTER_KEY] == "1000"
    assert is_queue_full(error)  # told apart from a rate limit by its trailer, not its text
    assert [(r.recipient, r.status, r.sequence) for r in mixed.results] == [
        ("DE", gateway_pb2.POST_STATUS_QUEUE_FULL, 0),
        ("IT", gateway_pb2.POST_STATUS_ACCEPTED, 2),
    ]
    rows = audit_of(tmp_path, "Post")
    assert [(r.recipient, r.outcome, r.status) for r in rows] == [
        ("DE", "accepted", "OK"),
        ("DE", "queue_full", "RESOURCE_EXHAUSTED"),
        ("DE", "queue_full", "RESOURCE_EXHAUSTED"),
        ("IT", "accepted", "OK"),
    ]


def test_one_sender_cannot_fill_a_recipients_queue_and_notices_still_get_in(
    tmp_path: Path, gateway_pki: pki.PkiDir
) -> None:
    """Over max_queue_per_sender FR's copies to DE are QUEUE_FULL naming that bound, while
    IT still gets in; once DE's total is full, GS's notice still gets in."""

    async def main() -> tuple[str, list[int], list[int]]:
        async with mailbox_gateway(
            tmp_path, gateway_pki, deliver=False, max_queue=3, max_queue_per_sender=2
        ) as gateway:
            await gateway.post(
                "FR", seal_post(gateway_pki, "FR", "DE"), seal_post(gateway_pki, "FR", "DE")
            )
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await gateway.post("FR", seal_post(gateway_pki, "FR", "DE"))
            it = await gateway.post(
                "IT", seal_post(gateway_pki, "IT", "DE"), seal_post(gateway_pki, "IT", "DE")
            )
            notice = await gateway.post(
                "GS", seal_post(gateway_pki, "GS", "DE", kind=envelope.NOTICE)
            )
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert it.results[1].detail == "queue for DE is full (3 messages waiting)"
            return (
                caught.value.details() or "",
                [r.status for r in it.results],
                [r.status for r in notice.results],
            )

    detail, it, notice = asyncio.run(main())
    assert detail == "queue from FR to DE is full (2 of FR's messages waiting); retry later"
    assert it == [gateway_pb2.POST_STATUS_ACCEPTED, gateway_pb2.POST_STATUS_QUEUE_FULL]
    assert notice == [gateway_pb2.POST_STATUS_ACCEPTED]


def test_a_message_id_reused_by_another_envelope_refuses_the_whole_call(
    tmp_path: Path, gateway_pki: pki.PkiDir
) -> None:
    """A different envelope under a stored message id is INVALID_ARGUMENT for the whole
    call (nothing of it stored, each envelope audited refused); a byte-identical retry is
    still DUPLICATE."""
    first = seal_post(gateway_pki, "FR", "DE")
    forged = envelope.Envelope(header=first.header, sealed=b"other", signature=first.signature)
    fresh = seal_post(gateway_pki, "FR", "IT")

    async def main() -> tuple[grpc.aio.AioRpcError, gateway_pb2.PostResponse, int]:
        async with mailbox_gateway(tmp_path, gateway_pki, deliver=False) as gateway:
            await gateway.post("FR", first)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await gateway.post("FR", fresh, forged)
            retry = await gateway.post("FR", first)
            return caught.value, retry, len((await gateway.receipts("FR")).messages)

    error, retry, stored = asyncio.run(main())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "message id reused by a different envelope"
    assert [(r.status, r.sequence) for r in retry.results] == [
        (gateway_pb2.POST_STATUS_DUPLICATE, 1)
    ]
    assert stored == 1
    rows = audit_of(tmp_path, "Post")
    assert [(r.recipient, r.outcome, r.status) for r in rows] == [
        ("DE", "accepted", "OK"),
        ("IT", "refused", "INVALID_ARGUMENT"),
        ("DE", "refused", "INVALID_ARGUMENT"),
        ("DE", "duplicate", "OK"),
    ]


def test_receipts_after_the_largest_sequence_lists_nothing(
    tmp_path: Path, gateway_pki: pki.PkiDir
) -> None:
    """An after_sequence at or above 2**63 (past SQLite's integers) is an empty page."""

    async def main() -> list[tuple[int, bool]]:
        async with mailbox_gateway(tmp_path, gateway_pki, deliver=False) as gateway:
            await gateway.post("FR", seal_post(gateway_pki, "FR", "DE"))
            pages = []
            for after in (2**63 - 1, 2**63, 2**64 - 1):
                page = await gateway.receipts("FR", after=after)
                pages.append((len(page.messages), page.more))
            return pages

    assert asyncio.run(main()) == [(0, False)] * 3


def test_a_failing_mailbox_call_ends_unavailable_and_is_audited(
    tmp_path: Path, gateway_pki: pki.PkiDir
) -> None:
    """Any error of the mailbox (not only SQLite's) ends Post and Receipts UNAVAILABLE,
    never UNKNOWN, with a refused audit row per envelope (one for Receipts)."""

    async def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the mailbox is closed")

    async def main() -> list[grpc.StatusCode]:
        async with mailbox_gateway(tmp_path, gateway_pki, deliver=False) as gateway:
            gateway.mailbox.accept = boom  # type: ignore[method-assign]
            gateway.mailbox.posted = boom  # type: ignore[method-assign]
            codes = []
            with pytest.raises(grpc.aio.AioRpcError) as post:
                await gateway.post(
                    "FR", seal_post(gateway_pki, "FR", "DE"), seal_post(gateway_pki, "FR", "IT")
                )
            codes.append(post.value.code())
            with pytest.raises(grpc.aio.AioRpcError) as listing:
                await gateway.receipts("FR")
            codes.append(listing.value.code())
            return codes

    assert asyncio.run(main()) == [grpc.StatusCode.UNAVAILABLE] * 2
    assert [(r.recipient, r.outcome, r.status) for r in audit_of(tmp_path, "Post")] == [
        ("DE", "refused", "UNAVAILABLE"),
        ("IT", "refused", "UNAVAILABLE"),
    ]
    assert [(r.peer, r.outcome, r.status) for r in audit_of(tmp_path, "Receipts")][-1] == (
        "FR",
        "refused",
        "UNAVAILABLE",
    )


def test_a_post_stored_but_not_audited_is_held_back_and_a_retry_audits_it(
    tmp_path: Path, gateway_pki: pki.PkiDir
) -> None:
    """If the copies are stored but their rows cannot be committed, Post answers no
    receipts (UNAVAILABLE, saying it could not audit them, not that nothing was stored),
    writes no refused rows for stored copies, and the sender's retry gets the original
    sequences as duplicates, audited."""
    items = [seal_post(gateway_pki, "FR", "DE"), seal_post(gateway_pki, "FR", "IT")]

    def accepted_rows_refused(on: bool) -> None:
        db = sqlite3.connect(tmp_path / "audit.sqlite")
        with db:
            if on:  # only the accepted rows: a refused row would still get in
                db.execute(
                    "CREATE TRIGGER full BEFORE INSERT ON audit WHEN NEW.outcome = 'accepted' "
                    "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
                )
            else:
                db.execute("DROP TRIGGER full")
        db.close()

    async def main() -> tuple[grpc.aio.AioRpcError, int, list[AuditRecord], Any]:
        async with mailbox_gateway(tmp_path, gateway_pki, deliver=False) as gateway:
            accepted_rows_refused(True)
            with pytest.raises(grpc.aio.AioRpcError) as held:
                await gateway.post("FR", *items)
            queued = gateway.mailbox.queued()
            rows = audit_of(tmp_path, "Post")
            accepted_rows_refused(False)
            return held.value, queued, rows, await gateway.post("FR", *items)

    held, queued, rows_then, retry = asyncio.run(main())
    assert held.code() == grpc.StatusCode.UNAVAILABLE
    assert "could not audit" in (held.details() or "")
    assert "could not store" not in (held.details() or "")
    assert queued == 2
    assert rows_then == []
    assert [(r.status, r.sequence) for r in retry.results] == [
        (gateway_pb2.POST_STATUS_DUPLICATE, 1),
        (gateway_pb2.POST_STATUS_DUPLICATE, 2),
    ]
    assert [(r.recipient, r.outcome) for r in audit_of(tmp_path, "Post")] == [
        ("DE", "duplicate"),
        ("IT", "duplicate"),
    ]


def test_receipts_lists_only_the_callers_messages_in_pages(
    tmp_path: Path, gateway_pki: pki.PkiDir
) -> None:
    """Receipts pages through the caller's own copies by sequence, with ``more`` set until
    the last page; another bureau sees none of them, and the operator is refused."""

    async def main() -> tuple[list[list[int]], list[bool], int, grpc.StatusCode]:
        async with mailbox_gateway(tmp_path, gateway_pki, deliver=False) as gateway:
            await gateway.post("FR", *(seal_post(gateway_pki, "FR", "DE") for _ in range(3)))
            await gateway.post("IT", seal_post(gateway_pki, "IT", "DE"))
            await gateway.post(
                "FR", seal_post(gateway_pki, "FR", "IT"), seal_post(gateway_pki, "FR", "GS")
            )
            pages, more, after = [], [], 0
            while True:
                page = await gateway.receipts("FR", after=after, limit=2)
                pages.append([m.sequence for m in page.messages])
                more.append(page.more)
                if not page.more:
                    break
                after = page.messages[-1].sequence
            it = len((await gateway.receipts("IT")).messages)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await gateway.receipts("operator")
            return pages, more, it, caught.value.code()

    pages, more, it, operator = asyncio.run(main())
    assert pages == [[1, 2], [3, 5], [6]]
    assert more == [True, True, False]
    assert it == 1
    assert operator == grpc.StatusCode.PERMISSION_DENIED


def test_measure_post_throughput(tmp_path: Path, gateway_pki: pki.PkiDir) -> None:
    """Prints accepted copies a second through Gateway.Post (client in the same process)."""
    fr = load_identity(gateway_pki, "FR")
    to = [load_identity(gateway_pki, code).as_peer() for code in ("DE", "IT")]
    copies = [
        envelope.seal_message(
            b"alert", sender=fr, recipient=to[i % 2], kind=envelope.DIFFUSION, post_id=bytes(16)
        )
        for i in range(2_048)
    ]
    singles = copies[:512]
    batches = [copies[i : i + 64] for i in range(512, len(copies), 64)]

    async def main() -> dict[str, float]:
        async with mailbox_gateway(
            tmp_path, gateway_pki, deliver=False, max_queue_per_sender=10_000
        ) as gateway:
            figures: dict[str, float] = {}
            await gateway.post("FR", seal_post(gateway_pki, "FR", "DE"))  # connect first
            gate = asyncio.Semaphore(32)

            async def one(*items: envelope.Envelope) -> None:
                async with gate:
                    await gateway.post("FR", *items)

            started = time.perf_counter()
            await asyncio.gather(*(one(item) for item in singles))
            figures["1 copy per call, 32 calls in flight"] = len(singles) / (
                time.perf_counter() - started
            )
            started = time.perf_counter()
            await asyncio.gather(*(one(*batch) for batch in batches))
            figures["64 copies per call, up to 32 calls in flight"] = sum(map(len, batches)) / (
                time.perf_counter() - started
            )
            assert gateway.mailbox.queued() == len(copies) + 1
            return figures

    figures = asyncio.run(main())
    print()
    for name, rate in figures.items():
        print(f"gateway Post, {name}: {rate:,.0f} accepted copies/s")
