"""GS's outbox poster (node/outbox.py): the copies of its decisions survive a restart and
are posted, the same bytes, through outages, full queues and refusals; batched by bytes."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from support import (
    NoticeNet,
    no_sleep,
    notice_net,
    publish,
    request_notice,
    withdraw,
)

from ncbsim import envelope
from ncbsim.directory import Directory
from ncbsim.node.outbox import OutboxPoster
from ncbsim.protocol import MAX_BATCH_BYTES


@pytest.fixture
def net(tmp_path: Path) -> Iterator[NoticeNet]:
    """A notice network in tmp_path (tests/support.py)."""
    with notice_net(tmp_path) as network:
        yield network


def test_the_outbox_survives_a_restart_and_posts_the_same_bytes_until_accepted(
    net: NoticeNet,
) -> None:
    """GS decides, then 'crashes' before posting: reopened, its poster posts the copies;
    through a gateway outage and a full queue it resends the very same envelopes until
    each is accepted, then the outbox is empty."""
    request_notice(net, "FR", publish())
    before = [r.envelope for r in net.node("GS").inbox.outbox()]
    assert len(before) == 3
    net.close("GS")
    gs = net.node("GS")  # the restarted node finds the decision's copies waiting
    assert gs.inbox.outbox_size() == 3
    net.gateway.script = ["down", "down", "full:1", "dup"]
    assert gs.outbox is not None

    async def post() -> None:
        task = asyncio.create_task(gs.outbox.run())  # type: ignore[union-attr]
        try:
            for _ in range(200):
                await asyncio.sleep(0)
                if gs.inbox.outbox_size() == 0:
                    return
        finally:
            task.cancel()

    asyncio.run(post())
    assert gs.inbox.outbox_size() == 0
    posts = net.gateway.posts
    assert posts[:3] == [before, before, before]
    assert posts[3] == [before[1]]  # only the one the full queue refused, same bytes
    assert len(posts) == 4


def test_the_poster_drops_expired_and_size_refused_copies(net: NoticeNet) -> None:
    """A copy the gateway refuses for its size (RESOURCE_EXHAUSTED, no retry-after) is
    dropped alone (its batch is retried one by one); an expired copy is dropped without
    being posted."""
    gs = net.node("GS")
    with gs.inbox.transaction():
        gs.inbox.add_outbox([("DE", b"1" * 16, 1, b"")])  # expired long ago
    request_notice(net, "FR", publish())
    live = [r.envelope for r in gs.inbox.outbox()][1:]
    size = grpc.StatusCode.RESOURCE_EXHAUSTED
    net.gateway.script = [size, "ok", size]
    assert gs.outbox is not None
    assert asyncio.run(gs.outbox.post_pending()) is True
    assert net.gateway.posts == [live, [live[0]], [live[1]], [live[2]]]
    assert gs.inbox.outbox_size() == 0


@pytest.mark.parametrize("code", [grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT])
def test_a_transient_refusal_holds_back_one_recipient_until_it_passes(
    net: NoticeNet, code: grpc.StatusCode
) -> None:
    """A gateway refusing DE's copies (its directory behind: NOT_FOUND; INVALID_ARGUMENT)
    keeps them in the outbox, while the other copies are posted; once the gateway takes
    them, the same bytes are accepted."""
    gs = net.node("GS")
    request_notice(net, "FR", publish())
    request_notice(net, "FR", withdraw())
    de_copies = [r.envelope for r in gs.inbox.outbox() if r.recipient == "DE"]
    net.gateway.refuse["DE"] = code
    assert gs.outbox is not None
    assert asyncio.run(gs.outbox.post_pending()) is False
    assert [r.envelope for r in gs.inbox.outbox()] == de_copies
    del net.gateway.refuse["DE"]
    assert asyncio.run(gs.outbox.post_pending()) is True
    assert net.gateway.posts[-1] == de_copies


def test_a_full_queue_holds_back_only_its_recipient(net: NoticeNet) -> None:
    """DE's queue is full: DE's copies stay (in order) and every other copy is posted,
    even when DE's copies come first; posting again once DE has room empties the outbox."""
    gs = net.node("GS")
    gs.outbox = OutboxPoster(gs.inbox, net.gateway, sleep=no_sleep, batch=2)
    request_notice(net, "FR", publish())
    request_notice(net, "FR", withdraw())
    de_copies = [r.envelope for r in gs.inbox.outbox() if r.recipient == "DE"]
    others = {r.envelope for r in gs.inbox.outbox() if r.recipient != "DE"}
    net.gateway.full.add("DE")
    assert asyncio.run(gs.outbox.post_pending()) is False
    assert [r.envelope for r in gs.inbox.outbox()] == de_copies
    assert others <= {e for post in net.gateway.posts for e in post}
    net.gateway.full.clear()
    assert asyncio.run(gs.outbox.post_pending()) is True
    assert net.gateway.posts[-1] == de_copies


def test_posts_are_batched_by_bytes_under_grpc_message_limit(net: NoticeNet) -> None:
    """256 copies of about 20 KiB (over 4 MiB together) go in Posts of at most
    MAX_BATCH_BYTES of envelopes each, all of them accepted."""
    gs = net.node("GS")
    copy = envelope.seal_message(
        b"x" * 20_000,
        sender=net.identity("GS"),
        recipient=Directory.from_pki(net.pki).get("DE"),
        kind=envelope.NOTICE,
        post_id=b"p" * 16,
    )
    header = envelope.unverified_header(copy)
    data = copy.SerializeToString()
    with gs.inbox.transaction():
        gs.inbox.add_outbox([("DE", header.message_id, header.expires_at_ms, data)] * 256)
    assert gs.outbox is not None
    assert asyncio.run(gs.outbox.post_pending()) is True
    sizes = [sum(len(e) for e in post) for post in net.gateway.posts]
    print("post sizes", sizes)
    assert sum(len(post) for post in net.gateway.posts) == 256
    assert all(size <= MAX_BATCH_BYTES for size in sizes)
    assert len(sizes) == 2


def test_the_poster_task_survives_errors_and_keeps_posting(
    net: NoticeNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run() outlives a gateway outage and an inbox that fails while it handles it: it
    logs, backs off and posts once both work again."""
    gs = net.node("GS")
    request_notice(net, "FR", publish())
    real_outbox = gs.inbox.outbox
    failures = [sqlite3.OperationalError("disk I/O error")]

    def flaky_outbox(*args: object, **kwargs: object) -> list[object]:
        if failures:
            raise failures.pop()
        return real_outbox(*args, **kwargs)  # type: ignore[arg-type]

    def broken_size() -> int:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(gs.inbox, "outbox", flaky_outbox)
    monkeypatch.setattr(gs.inbox, "outbox_size", broken_size)
    net.gateway.script = ["down"]
    assert gs.outbox is not None

    async def post() -> bool:
        task = asyncio.create_task(gs.outbox.run())  # type: ignore[union-attr]
        try:
            for _ in range(200):
                await asyncio.sleep(0)
                if task.done() or not real_outbox():
                    break
            return task.done()
        finally:
            task.cancel()

    assert asyncio.run(post()) is False  # still running
    assert real_outbox() == []
    assert len(net.gateway.posts) == 2  # the outage, then the accepted post
