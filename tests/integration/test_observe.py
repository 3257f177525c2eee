"""The event stream of a real network, watched over Observe by the operator (mTLS).

One query's events tie up by message id across the client (DE), the gateway and the
answering node (FR); a bureau's certificate is refused and audited; a canary sent as a
query term and as a message text appears in no event; and a subscriber that stalls
loses the oldest events, counts exactly what it lost and does not slow the queries.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from support import document_query, metric_total

from ncbsim.auditlog import TABLE
from ncbsim.client import BureauClient, Outcome
from ncbsim.eventbus import EventBus
from ncbsim.events import Event, from_json
from ncbsim.gateway.audit import read_all
from ncbsim.mail import Mailer
from ncbsim.observe import observe
from ncbsim.pki import GATEWAY_NAME, PkiDir, bureau_dns_name
from ncbsim.simulations.network import Network
from ncbsim.workdir import Workdir

pytestmark = pytest.mark.integration

N = 20
"""Queries DE sends FR while everyone watches."""
CANARY = "CANARYQ7ZX3"
"""Sent as a document number and in a message text: it must reach no event."""
DEADLINE_S = 60.0
"""Generous: only a hung network would need it."""
STALLED_BUFFER = 4
LATENCY_QUERIES = 150
# The stalled subscriber's channel accepts little before it stops reading, so most events
# stay with the server, whose bounded buffer must then drop them (and count them).
SMALL_WINDOW = [("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)]


def _channel(
    network: Network, target: str, who: str = "operator", options: list[tuple[str, int]] = ()
) -> grpc.aio.Channel:
    """An mTLS channel as ``who`` to the gateway or to a bureau's node."""
    tls = PkiDir(network.workdir).tls(who)
    if target == "gateway":
        address, name = network.gateway.address, GATEWAY_NAME
    else:
        address, name = network.node(target).address, bureau_dns_name(target)
    credentials = grpc.ssl_channel_credentials(tls.root, tls.key, tls.cert)
    return grpc.aio.secure_channel(
        address, credentials, options=[("grpc.ssl_target_name_override", name), *options]
    )


@dataclass
class Watcher:
    """One Observe stream, read into ``events`` (until paused) by a task of its own."""

    channel: grpc.aio.Channel
    buffer: int = 0
    events: list[Event] = field(default_factory=list)
    dropped: int = 0
    reading: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def start(self) -> Watcher:
        self.reading.set()
        self.task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for event, dropped in observe(self.channel, buffer=self.buffer):
            self.events.append(event)
            self.dropped = dropped
            await self.reading.wait()

    def of(self, kind: str) -> dict[str, Event]:
        """This stream's events of ``kind`` by message id."""
        return {e.message_id: e for e in self.events if e.kind == kind}

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await self.task
        await self.channel.close()


async def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _clients(network: Network, bus: EventBus | None) -> AsyncIterator[BureauClient]:
    pki = PkiDir(network.workdir)
    async with BureauClient.open(pki, "DE", network.gateway.address, bus=bus) as de:
        yield de


async def _attach(network: Network, watchers: dict[str, Watcher]) -> None:
    """Start each watcher and query until every one of them has seen an event: then
    each is surely subscribed (an Observe stream sends nothing until there is one)."""
    for w in watchers.values():
        w.start()
    pki = PkiDir(network.workdir)
    async with (
        BureauClient.open(pki, "DE", network.gateway.address) as de,
        BureauClient.open(pki, "FR", network.gateway.address) as fr,
    ):
        deadline = time.monotonic() + DEADLINE_S
        while not all(w.events for w in watchers.values()):
            assert time.monotonic() < deadline, "a watcher never saw an event"
            await de.query(document_query("WARMUP1", "FR"), "FR")
            await fr.query(document_query("WARMUP2", "DE"), "DE")
            await asyncio.sleep(0.1)


def test_one_query_ties_up_across_parties_and_no_canary_leaks(network: Network) -> None:
    """Every query DE sends FR has query.sealed and query.returned at the client,
    query.relayed at the gateway and query.opened and query.answered at FR, all under its
    message id; a canary sent as a term and as a message text is in no event."""

    async def main() -> tuple[dict[str, Watcher], list[Event], list[str], list[str]]:
        watchers = {t: Watcher(_channel(network, t)) for t in ("gateway", "FR", "DE")}
        client_bus = EventBus("client:DE")
        client_events = client_bus.subscribe(buffer=65536)
        try:
            await _attach(network, watchers)
            async with _clients(network, client_bus) as de:
                answers = [
                    await de.query(document_query(f"{CANARY}{i}", "FR"), "FR") for i in range(N)
                ]
                assert all(a.outcome == Outcome.NO_HIT for a in answers), answers
                outcome = await Mailer(de).message("FR", f"the canary {CANARY} sings")
                assert all(c.stored for c in outcome.copies), outcome
                post_ids = [outcome.post_hex]
            ids = [a.message_id for a in answers]
            gateway, fr = watchers["gateway"], watchers["FR"]
            await _until(lambda: set(ids) <= set(fr.of("query.answered")), "FR's answers")
            await _until(lambda: set(ids) <= set(gateway.of("query.relayed")), "relays")
            await _until(
                lambda: (
                    any(e.correlation_id in post_ids for e in gateway.of("post.delivered").values())
                    and any(e.correlation_id in post_ids for e in fr.of("post.delivered").values())
                ),
                "the message's delivery",
            )
            return watchers, client_events.drain(), ids, post_ids
        finally:
            for w in watchers.values():
                await w.close()

    watchers, client, ids, post_ids = asyncio.run(main())
    gateway, fr, de = watchers["gateway"], watchers["FR"], watchers["DE"]
    sealed = {e.message_id: e for e in client if e.kind == "query.sealed"}
    returned = {e.message_id: e for e in client if e.kind == "query.returned"}
    relayed, opened, answered = (
        gateway.of("query.relayed"),
        fr.of("query.opened"),
        fr.of("query.answered"),
    )
    for mid in ids:
        assert sealed[mid].view["recipient"] == "FR"
        assert returned[mid].view["outcome"] == "no_hit"
        assert relayed[mid].view["outcome"] == "delivered"
        assert (relayed[mid].view["sender"], relayed[mid].view["recipient"]) == ("DE", "FR")
        assert relayed[mid].view["bytes"] == sealed[mid].view["bytes"]
        assert answered[mid].view["response_bytes"] == relayed[mid].view["response_bytes"]
        assert opened[mid].view["sender"] == "DE"
        assert answered[mid].correlation_id == relayed[mid].correlation_id
    assert {e.party for e in client} == {"client:DE"}
    assert {e.party for e in gateway.events} == {"gateway"}
    assert {e.party for e in fr.events} == {"FR"}
    posts = [e for e in client if e.kind == "post.sealed"]
    assert [e.correlation_id for e in posts] == post_ids
    everything = [*client, *gateway.events, *fr.events, *de.events]
    for event in everything:
        assert CANARY not in event.to_json(), event
        assert "canary" not in event.to_json().lower(), event
    for w in watchers.values():  # read as they came: no gap, nothing dropped
        seqs = [e.seq for e in w.events]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert w.dropped == 0


def _audit_rows(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(f"SELECT outcome, reason FROM {TABLE}").fetchall()
    finally:
        conn.close()


def test_a_bureau_may_not_observe(network: Network) -> None:
    """Observe with a bureau's certificate is PERMISSION_DENIED at the gateway and at a
    node; each writes an audit row, and the operator sees call.refused."""
    workdir = Workdir(network.workdir)

    async def main() -> tuple[list[grpc.StatusCode], Watcher]:
        operator = Watcher(_channel(network, "gateway"))
        await _attach(network, {"gateway": operator})
        codes = []
        for target in ("gateway", "FR"):
            async with _channel(network, target, who="DE") as channel:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    async for _ in observe(channel, timeout=DEADLINE_S):
                        pass
                codes.append(refused.value.code())
        await _until(lambda: bool(operator.of("call.refused")), "call.refused")
        await operator.close()
        return codes, operator

    codes, operator = asyncio.run(main())
    assert codes == [grpc.StatusCode.PERMISSION_DENIED] * 2
    rows = [r for r in read_all(workdir.gateway.audit) if r.rpc == "Observe"]
    assert rows
    assert all(
        (r.outcome, r.status, r.peer) == ("refused", "PERMISSION_DENIED", "DE") for r in rows
    )
    assert ("refused", "not_operator") in _audit_rows(workdir.bureau("FR").audit)
    (event,) = operator.of("call.refused").values()
    assert event.view == {
        "rpc": "Observe",
        "peer": "DE",
        "reason": "not_operator",
        "status": "PERMISSION_DENIED",
    }


async def _latencies(de: BureauClient, n: int) -> list[float]:
    out = []
    for i in range(n):
        answer = await de.query(document_query(f"LAT{i}", "FR"), "FR")
        assert answer.outcome == Outcome.NO_HIT
        out.append(answer.latency_ms)
    return out


def test_a_stalled_subscriber_costs_nothing_and_counts_what_it_missed(network: Network) -> None:
    """A subscriber that stops reading keeps the query path as fast (p50 printed, with
    and without it, from one run); when it reads again its dropped count equals the
    events it missed: the seq numbers the live subscriber got and it did not."""

    async def main() -> tuple[list[float], list[float], Watcher, Watcher]:
        live = Watcher(_channel(network, "gateway"))
        stalled = Watcher(_channel(network, "gateway", options=SMALL_WINDOW), STALLED_BUFFER)
        try:
            await _attach(network, {"live": live, "stalled": stalled})
            async with _clients(network, None) as de:
                plain = await _latencies(de, LATENCY_QUERIES)
                stalled.reading.clear()  # it stops reading
                await asyncio.sleep(0.2)
                with_stalled = await _latencies(de, LATENCY_QUERIES)
                stalled.reading.set()  # it reads again, then one last query
                last = (await de.query(document_query("LAST", "FR"), "FR")).message_id
            await _until(lambda: last in stalled.of("query.relayed"), "the stalled reader")
            await _until(lambda: last in live.of("query.relayed"), "the live reader")
            return plain, with_stalled, live, stalled
        finally:
            await live.close()
            await stalled.close()

    gateway_metrics = network.gateway.metrics
    dropped_before = metric_total(gateway_metrics, "ncbsim_observe_dropped_total")
    plain, with_stalled, live, stalled = asyncio.run(main())
    p50, p50_stalled = statistics.median(plain), statistics.median(with_stalled)
    print(
        f"\nquery p50 over {LATENCY_QUERIES} queries: {p50:.2f} ms without a stalled "
        f"subscriber, {p50_stalled:.2f} ms with one (ratio {p50_stalled / p50:.2f})"
    )
    got = {e.seq for e in stalled.events}
    first, last = min(got), max(got)
    missed = {e.seq for e in live.events if first < e.seq <= last} - got
    print(f"stalled subscriber: {len(got)} events read, {stalled.dropped} dropped")
    assert len(missed) > LATENCY_QUERIES // 2  # it really lost most of them
    assert stalled.dropped == len(missed)
    # The gateway's metrics count the same loss (the live subscriber lost nothing).
    dropped = metric_total(gateway_metrics, "ncbsim_observe_dropped_total") - dropped_before
    assert dropped == stalled.dropped


def test_cli_commands_write_their_own_events(network: Network, tmp_path: Path) -> None:
    """`query --events PATH` and `message send --events -` write the client's events as
    JSON lines (party client:DE, tied by message id), and never the term or the text."""
    path = tmp_path / "events.jsonl"
    base = [sys.executable, "-m", "ncbsim"]
    where = ["--workdir", str(network.workdir), "--as", "DE"]
    query = subprocess.run(
        [*base, "query", *where, "--to", "FR", "--events", str(path), "document",
         "--number", CANARY, "--issuer", "FR"],
        capture_output=True, text=True, timeout=DEADLINE_S, check=False,
    )  # fmt: skip
    assert query.returncode == 0, query.stderr
    events = [from_json(line) for line in path.read_text().splitlines()]
    assert [e.kind for e in events] == ["query.sealed", "query.returned"]
    assert {e.party for e in events} == {"client:DE"}
    assert events[0].message_id == events[1].message_id != ""
    assert events[1].view["outcome"] == "no_hit"
    send = subprocess.run(
        [*base, "message", "send", *where, "--to", "FR", "--text", f"about {CANARY}",
         "--events", "-"],
        capture_output=True, text=True, timeout=DEADLINE_S, check=False,
    )  # fmt: skip
    assert send.returncode == 0, send.stderr
    sealed = [from_json(line) for line in send.stderr.splitlines() if line.startswith('{"ids"')]
    assert [e.kind for e in sealed] == ["post.sealed"]
    assert sealed[0].view["kind"] == "message"
    assert CANARY not in path.read_text() + "".join(e.to_json() for e in sealed)
