"""Delivery of stored one-way envelopes to a bureau (gateway/delivery.py), in-process on
real mTLS sockets.

The gateway service, its mailbox (a real SQLite file) and its deliverer run in the test's
event loop; the bureau is gateway_support.DeliverServicer, which opens each envelope and
signs receipts as a node does (the real node is tested in tests/node)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway_support import (
    DeliverServicer,
    audit_of,
    delivered_check,
    load_identity,
    mailbox_gateway,
    now_ms,
    receipt_states,
    seal_post,
    serve_bureau,
    wait_until,
)

from ncbsim import envelope, pki, receipts, transport
from ncbsim.gateway.delivery import Deliverer
from ncbsim.v2 import bureau_pb2, gateway_pb2

# ----------------------------------------------------------------------------- delivery


def test_delivery_is_in_order_with_verifiable_receipts(
    tmp_path: Path, gateway_pki: pki.PkiDir
) -> None:
    """Copies reach the bureau in the order they were posted, once each, and the sender
    lists them delivered with receipts that verify against the recipient's entry."""
    bureau = DeliverServicer(gateway_pki)
    items = [seal_post(gateway_pki, s, "DE") for s in ("FR", "IT", "FR", "GS", "FR")]

    async def main() -> list[gateway_pb2.PostedMessage]:
        served = await serve_bureau(bureau)
        try:
            async with mailbox_gateway(tmp_path, gateway_pki) as gateway:
                await gateway.register("DE", served.address)
                for item in items:
                    await gateway.post(envelope.unverified_header(item).sender, item)
                await wait_until(delivered_check(gateway, "FR", 3))
                await wait_until(delivered_check(gateway, "IT", 1))
                await wait_until(delivered_check(gateway, "GS", 1))
                return list((await gateway.receipts("FR")).messages)
        finally:
            await served.server.stop(0)

    fr = asyncio.run(main())
    assert bureau.processed == [envelope.unverified_header(i).message_id for i in items]
    de = load_identity(gateway_pki, "DE").as_peer()
    for message in fr:
        receipt = receipts.verify(message.receipt, signer=de, now_ms=now_ms())
        assert receipt.message_id == message.message_id
        assert message.attempts == 1
    rows = audit_of(tmp_path, "Deliver")
    assert sorted((r.sender, r.outcome, r.status) for r in rows) == sorted(
        [(s, "delivered", "OK") for s in ("FR", "IT", "FR", "GS", "FR")]
    )


def test_delivery_retries_after_the_bureau_was_down(
    tmp_path: Path, gateway_pki: pki.PkiDir
) -> None:
    """Copies posted while the bureau's node is down stay queued (attempts counted) and are
    delivered, in order, once it registers again."""
    bureau = DeliverServicer(gateway_pki)
    items = [seal_post(gateway_pki, "FR", "DE") for _ in range(3)]

    async def main() -> list[gateway_pb2.PostedMessage]:
        down = await serve_bureau(bureau)
        await down.server.stop(0)  # registered, then gone: every call fails
        async with mailbox_gateway(tmp_path, gateway_pki) as gateway:
            await gateway.register("DE", down.address)
            await gateway.post("FR", *items)

            async def attempted() -> bool:
                messages = (await gateway.receipts("FR")).messages
                return all(m.attempts >= 2 for m in messages)

            await wait_until(attempted)
            assert await receipt_states(gateway, "FR") == [gateway_pb2.MESSAGE_STATE_QUEUED] * 3
            up = await serve_bureau(bureau)
            try:
                await gateway.register("DE", up.address)
                await wait_until(delivered_check(gateway, "FR", 3))
            finally:
                await up.server.stop(0)
            return list((await gateway.receipts("FR")).messages)

    messages = asyncio.run(main())
    assert bureau.processed == [envelope.unverified_header(i).message_id for i in items]
    assert all(m.attempts >= 3 for m in messages)


def test_rejected_copy_is_settled_and_the_rest_delivered(
    tmp_path: Path, gateway_pki: pki.PkiDir
) -> None:
    """A copy the bureau cannot open is REJECTED (with its reason, envelope dropped) and
    never sent again; the copies around it are delivered."""
    bureau = DeliverServicer(gateway_pki)
    good = seal_post(gateway_pki, "FR", "DE")
    # Sealed to IT's key but addressed to DE: it passes the gateway, DE cannot open it.
    wrong_key = dataclasses.replace(load_identity(gateway_pki, "IT").as_peer(), bureau="DE")
    bad = envelope.seal_message(
        b"x",
        sender=load_identity(gateway_pki, "FR"),
        recipient=wrong_key,
        kind=envelope.MESSAGE,
        post_id=os.urandom(16),
    )
    after = seal_post(gateway_pki, "FR", "DE")

    async def main() -> list[gateway_pb2.PostedMessage]:
        served = await serve_bureau(bureau)
        try:
            async with mailbox_gateway(tmp_path, gateway_pki) as gateway:
                await gateway.post("FR", good, bad, after)
                await gateway.register("DE", served.address)
                await wait_until(delivered_check(gateway, "FR", 2))
                await asyncio.sleep(0.3)  # a few back-off periods: nothing is sent again
                return list((await gateway.receipts("FR")).messages)
        finally:
            await served.server.stop(0)

    messages = asyncio.run(main())
    assert [(m.state, m.detail) for m in messages] == [
        (gateway_pb2.MESSAGE_STATE_DELIVERED, ""),
        (gateway_pb2.MESSAGE_STATE_REJECTED, "unverified"),
        (gateway_pb2.MESSAGE_STATE_DELIVERED, ""),
    ]
    assert bureau.calls == 1
    assert not messages[1].HasField("receipt")
    rows = audit_of(tmp_path, "Deliver")
    assert [r.outcome for r in rows] == ["delivered", "rejected", "delivered"]


def test_a_receipt_that_does_not_match_keeps_the_copy_queued(
    tmp_path: Path, gateway_pki: pki.PkiDir
) -> None:
    """A receipt naming another digest is not accepted: the copy stays queued and is sent
    again; once the bureau answers with a true receipt (DUPLICATE) it is delivered."""
    bureau = DeliverServicer(gateway_pki, corrupt_receipts=True)
    item = seal_post(gateway_pki, "FR", "DE")

    async def main() -> list[gateway_pb2.PostedMessage]:
        served = await serve_bureau(bureau)
        try:
            async with mailbox_gateway(tmp_path, gateway_pki) as gateway:
                await gateway.register("DE", served.address)
                await gateway.post("FR", item)
                await wait_until(lambda: _calls_at_least(bureau, 3))
                assert await receipt_states(gateway, "FR") == [gateway_pb2.MESSAGE_STATE_QUEUED]
                bureau.corrupt_receipts = False
                await wait_until(delivered_check(gateway, "FR", 1))
                return list((await gateway.receipts("FR")).messages)
        finally:
            await served.server.stop(0)

    [message] = asyncio.run(main())
    assert bureau.processed == [envelope.unverified_header(item).message_id]  # once only
    receipt = receipts.parse(message.receipt)
    assert receipt.envelope_sha256 == envelope.envelope_digest(item)
    assert message.attempts >= 4


async def _calls_at_least(bureau: DeliverServicer, n: int) -> bool:
    return bureau.calls >= n


def test_a_partial_reply_leaves_the_rest_queued_in_order(
    tmp_path: Path, gateway_pki: pki.PkiDir
) -> None:
    """A node that answers only part of a batch gets the rest again, in order."""
    bureau = DeliverServicer(gateway_pki, stop_after=2)
    items = [seal_post(gateway_pki, "FR", "DE") for _ in range(5)]

    async def main() -> None:
        served = await serve_bureau(bureau)
        try:
            async with mailbox_gateway(tmp_path, gateway_pki) as gateway:
                await gateway.post("FR", *items)
                await gateway.register("DE", served.address)
                await wait_until(delivered_check(gateway, "FR", 5))
        finally:
            await served.server.stop(0)

    asyncio.run(main())
    assert bureau.processed == [envelope.unverified_header(i).message_id for i in items]
    assert bureau.calls >= 3


def test_a_copy_the_node_cannot_take_yet_holds_back_only_its_sender(
    tmp_path: Path, gateway_pki: pki.PkiDir
) -> None:
    """The node stops its batch at FR's copy (it cannot check FR's key yet). FR's copies
    wait, in order, but IT's copies to the same bureau, queued after FR's, are delivered
    meanwhile: one sender's stuck copy does not block a recipient's whole queue."""
    bureau = DeliverServicer(gateway_pki, stall_senders={"FR"})
    fr = [seal_post(gateway_pki, "FR", "DE") for _ in range(2)]
    it = [seal_post(gateway_pki, "IT", "DE") for _ in range(3)]

    async def main() -> list[int]:
        served = await serve_bureau(bureau)
        try:
            async with mailbox_gateway(tmp_path, gateway_pki) as gateway:
                await gateway.post("FR", fr[0])
                await gateway.post("IT", it[0], it[1])
                await gateway.post("FR", fr[1])
                await gateway.post("IT", it[2])
                await gateway.register("DE", served.address)
                await wait_until(delivered_check(gateway, "IT", 3))
                stuck = await receipt_states(gateway, "FR")
                bureau.stall_senders.clear()  # DE's directory caught up
                await wait_until(delivered_check(gateway, "FR", 2))
                return stuck
        finally:
            await served.server.stop(0)

    stuck = asyncio.run(main())
    assert stuck == [gateway_pb2.MESSAGE_STATE_QUEUED] * 2
    ids = [envelope.unverified_header(i).message_id for i in (*it, *fr)]
    assert bureau.processed == ids  # IT's first, then FR's, each sender in its own order


def test_expired_copies_are_settled_and_the_sender_told(
    tmp_path: Path, gateway_pki: pki.PkiDir
) -> None:
    """A copy whose TTL passes while its bureau is down expires: EXPIRED in Receipts, an
    expired audit row, and it is never delivered."""
    item = seal_post(gateway_pki, "FR", "DE", ttl_ms=5_000)

    async def main() -> list[gateway_pb2.PostedMessage]:
        async with mailbox_gateway(tmp_path, gateway_pki) as gateway:
            await gateway.post("FR", item)
            assert gateway.deliverer is not None
            await gateway.deliverer.sweep(now_ms=now_ms() + 6_000)
            assert gateway.mailbox.queued() == 0
            return list((await gateway.receipts("FR")).messages)

    [message] = asyncio.run(main())
    assert message.state == gateway_pb2.MESSAGE_STATE_EXPIRED
    assert message.settled_at_ms > 0
    rows = audit_of(tmp_path, "Deliver")
    assert [(r.sender, r.recipient, r.outcome, r.status) for r in rows] == [
        ("FR", "DE", "expired", "DEADLINE_EXCEEDED")
    ]


def test_settled_copies_are_listed_until_the_retention_passes(
    tmp_path: Path, gateway_pki: pki.PkiDir
) -> None:
    """The sweeper deletes a settled copy's row once ``mailbox_retention_h`` has passed
    since it settled, and not before: until then the sender still lists it."""
    item = seal_post(gateway_pki, "FR", "DE", ttl_ms=5_000)
    hour = 3_600_000

    async def main() -> tuple[int, int]:
        async with mailbox_gateway(tmp_path, gateway_pki, mailbox_retention_h=1) as gateway:
            assert gateway.deliverer is not None
            await gateway.post("FR", item)
            now = now_ms()
            await gateway.deliverer.sweep(now_ms=now + 6_000)  # expires it
            await gateway.deliverer.sweep(now_ms=now + 6_000 + hour - 1_000)
            within = len((await gateway.receipts("FR")).messages)
            await gateway.deliverer.sweep(now_ms=now + 6_000 + hour + 60_000)
            return within, len((await gateway.receipts("FR")).messages)

    assert asyncio.run(main()) == (1, 0)
    assert _rows_left(tmp_path) == 0


def _rows_left(tmp_path: Path) -> int:
    conn = sqlite3.connect(tmp_path / "mailbox.sqlite")
    try:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
    finally:
        conn.close()


def test_a_copy_the_node_finds_expired_is_expired_for_the_sender(
    tmp_path: Path, gateway_pki: pki.PkiDir
) -> None:
    """REJECTED with reason "expired" (the node's clock is ahead) settles the copy as
    EXPIRED, so the sender is told it expired, and it is audited so."""
    bureau = DeliverServicer(gateway_pki, reject_all="expired")

    async def main() -> list[gateway_pb2.PostedMessage]:
        served = await serve_bureau(bureau)
        try:
            async with mailbox_gateway(tmp_path, gateway_pki) as gateway:
                await gateway.register("DE", served.address)
                await gateway.post("FR", seal_post(gateway_pki, "FR", "DE"))

                async def settled() -> bool:
                    return await receipt_states(gateway, "FR") != [gateway_pb2.MESSAGE_STATE_QUEUED]

                await wait_until(settled)
                return list((await gateway.receipts("FR")).messages)
        finally:
            await served.server.stop(0)

    [message] = asyncio.run(main())
    assert (message.state, message.detail) == (gateway_pb2.MESSAGE_STATE_EXPIRED, "expired")
    rows = audit_of(tmp_path, "Deliver")
    assert [(r.outcome, r.status) for r in rows] == [("expired", "DEADLINE_EXCEEDED")]


def test_a_batch_refused_as_too_large_is_halved_until_it_fits(
    tmp_path: Path, gateway_pki: pki.PkiDir
) -> None:
    """A Deliver refused RESOURCE_EXHAUSTED is sent again at once with half the copies,
    so the queue drains in order instead of blocking on one batch forever."""
    bureau = DeliverServicer(gateway_pki, max_envelopes=3)
    items = [seal_post(gateway_pki, "FR", "DE") for _ in range(8)]

    async def main() -> None:
        served = await serve_bureau(bureau)
        try:
            async with mailbox_gateway(tmp_path, gateway_pki, delivery_batch=8) as gateway:
                await gateway.post("FR", *items)
                await gateway.register("DE", served.address)
                await wait_until(delivered_check(gateway, "FR", 8))
        finally:
            await served.server.stop(0)

    asyncio.run(main())
    assert bureau.processed == [envelope.unverified_header(i).message_id for i in items]
    assert bureau.batches == [8, 4, 2, 2, 2, 2]
    print("batches", bureau.batches)


def test_a_batch_of_large_copies_stays_under_the_grpc_message_limit(
    tmp_path: Path, gateway_pki: pki.PkiDir
) -> None:
    """64 copies of 64 KiB (over gRPC's 4 MiB in one call) go in more than one Deliver call,
    each under the byte budget so none is refused (one attempt each), and a copy queued
    behind them from another sender is delivered."""
    bureau = DeliverServicer(gateway_pki)
    overhead = seal_post(gateway_pki, "FR", "DE", text=b"").ByteSize()
    size = 64 * 1024 - overhead - 2  # 2: the longer length prefix of the sealed bytes
    items = [seal_post(gateway_pki, "FR", "DE", text=b"x" * size) for _ in range(64)]
    assert {i.ByteSize() for i in items} == {64 * 1024}  # the largest taken by default
    total = bureau_pb2.DeliverRequest(envelopes=items).ByteSize()
    assert total > transport.MAX_MESSAGE_BYTES  # one batch of all would never go

    async def main() -> set[int]:
        served = await serve_bureau(bureau)
        try:
            async with mailbox_gateway(tmp_path, gateway_pki) as gateway:
                for start in range(0, 64, 16):
                    await gateway.post("FR", *items[start : start + 16])
                await gateway.post("IT", seal_post(gateway_pki, "IT", "DE"))
                await gateway.register("DE", served.address)
                await wait_until(delivered_check(gateway, "IT", 1))
                await wait_until(delivered_check(gateway, "FR", 64))
                return {m.attempts for m in (await gateway.receipts("FR")).messages}
        finally:
            await served.server.stop(0)

    assert asyncio.run(main()) == {1}
    assert len(bureau.processed) == 65
    assert len(bureau.batches) >= 2
    assert bureau.batches[0] < 64
    print("envelopes", total, "bytes; batches", bureau.batches)


def test_an_offline_recipient_costs_no_store_reads(tmp_path: Path, gateway_pki: pki.PkiDir) -> None:
    """A worker whose recipient has no route does not read the store; once it registers,
    its copies are delivered."""
    bureau = DeliverServicer(gateway_pki)
    reads: list[str] = []

    async def main() -> None:
        served = await serve_bureau(bureau)
        try:
            async with mailbox_gateway(tmp_path, gateway_pki) as gateway:
                due = gateway.mailbox.due

                async def counted(recipient: str, *args: Any, **kwargs: Any) -> Any:
                    reads.append(recipient)
                    return await due(recipient, *args, **kwargs)

                gateway.mailbox.due = counted  # type: ignore[method-assign]
                await gateway.post("FR", seal_post(gateway_pki, "FR", "DE"))
                assert gateway.deliverer is not None
                await wait_until(_worker_running(gateway.deliverer, "DE"))
                await asyncio.sleep(0.5)  # several back-off rounds (at most 0.2 s each)
                assert reads == []
                await gateway.register("DE", served.address)
                await wait_until(delivered_check(gateway, "FR", 1))
        finally:
            await served.server.stop(0)

    asyncio.run(main())
    assert reads
    assert set(reads) == {"DE"}


def _worker_running(deliverer: Deliverer, bureau: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bureau in deliverer.running()

    return check


def test_a_copy_expired_while_in_flight_then_delivered_has_both_audit_rows(
    tmp_path: Path, gateway_pki: pki.PkiDir
) -> None:
    """If the sweeper expires a copy while its batch is at the node and the receipt comes
    back, the copy ends delivered (the node did process it) with two audit rows: expired,
    then delivered (docs/delivery.md)."""
    bureau = DeliverServicer(gateway_pki)

    async def main() -> list[gateway_pb2.PostedMessage]:
        served = await serve_bureau(bureau)
        try:
            async with mailbox_gateway(tmp_path, gateway_pki) as gateway:
                deliverer = gateway.deliverer
                assert deliverer is not None

                async def expire_now() -> None:
                    await deliverer.sweep(now_ms=now_ms() + 120_000)

                bureau.on_call = expire_now
                await gateway.post("FR", seal_post(gateway_pki, "FR", "DE"))
                await gateway.register("DE", served.address)
                await wait_until(delivered_check(gateway, "FR", 1))
                return list((await gateway.receipts("FR")).messages)
        finally:
            await served.server.stop(0)

    [message] = asyncio.run(main())
    assert message.state == gateway_pb2.MESSAGE_STATE_DELIVERED
    assert message.HasField("receipt")
    rows = audit_of(tmp_path, "Deliver")
    assert [(r.outcome, r.status) for r in rows] == [
        ("expired", "DEADLINE_EXCEEDED"),
        ("delivered", "OK"),
    ]


def test_a_restarted_gateway_resumes_every_queued_copy(
    tmp_path: Path, gateway_pki: pki.PkiDir
) -> None:
    """Copies accepted before a gateway restart get a worker at start and are delivered."""
    bureau = DeliverServicer(gateway_pki)
    items = [seal_post(gateway_pki, "FR", "DE") for _ in range(3)]

    async def main() -> list[str]:
        async with mailbox_gateway(tmp_path, gateway_pki, deliver=False) as gateway:
            await gateway.post("FR", *items)
        served = await serve_bureau(bureau)
        try:
            async with mailbox_gateway(tmp_path, gateway_pki) as gateway:
                assert gateway.deliverer is not None
                running = gateway.deliverer.running()
                await gateway.register("DE", served.address)
                await wait_until(delivered_check(gateway, "FR", 3))
                return running
        finally:
            await served.server.stop(0)

    assert asyncio.run(main()) == ["DE"]
    assert bureau.processed == [envelope.unverified_header(i).message_id for i in items]
