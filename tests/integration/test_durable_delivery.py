"""Durable delivery through crashes, on real processes: nothing lost, nothing processed twice.

A network of real processes (gateway, one host process per bureau, mTLS on loopback,
SQLite files) and a sender in this process stream diffusions and case messages while the
gateway, or a recipient, is SIGKILLed mid-stream and restarted. Afterwards every copy the
gateway accepted is in its recipient's inbox exactly once, in the order it was sent, with
a receipt the sender can verify, and no message text is anywhere under the gateway's files.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ncbsim import envelope, messages, transport
from ncbsim.client import BureauClient
from ncbsim.directory import Directory
from ncbsim.identity import Identity
from ncbsim.mail import Mailer
from ncbsim.node.inbox import Inbox
from ncbsim.pki import PkiDir
from ncbsim.posts import Delivered, PostOutcome
from ncbsim.simulations.network import Network
from ncbsim.simulations.scenario import Records, Scenario
from ncbsim.v2 import envelope_pb2, gateway_pb2, gateway_pb2_grpc, messages_pb2
from ncbsim.workdir import Workdir

pytestmark = pytest.mark.integration

CANARY = "canary-7Q2X-durable"
POSTS = 36
KILL_AFTER = 12
DELIVERY_TIMEOUT_S = 40.0
SCENARIO = Scenario(
    name="durable",
    bureaus=("FR", "DE", "IT", "GS"),
    records=Records(documents=20, persons=20, vehicles=20, planted=1),
)


@pytest.fixture
def durable_network(tmp_path: Path) -> Iterator[Network]:
    """A test's own network of FR, DE, IT and GS (not conftest's shared ``network``), each
    bureau in a host process of its own; always stopped."""
    net = Network.start(tmp_path / "net", SCENARIO)
    try:
        yield net
    finally:
        net.stop()


def _host_of(network: Network, bureau: str) -> int:
    (index,) = [i for i, h in enumerate(network.hosts) if bureau in h.bureaus]
    return index


async def _stream(network: Network, crash: asyncio.Event) -> list[PostOutcome]:
    """FR posts POSTS one after another (two case messages to DE, then a diffusion to DE
    and IT); sets ``crash`` after KILL_AFTER. Each post is retried, with the same
    envelopes, until the gateway stores it."""
    outcomes = []
    async with BureauClient.open(PkiDir(network.workdir), "FR", network.gateway.address) as c:
        mailer = Mailer(c)
        for i in range(POSTS):
            if i == KILL_AFTER:
                crash.set()
            text = f"{CANARY} #{i}"
            if i % 3 == 2:
                outcome = await mailer.diffuse(["DE", "IT"], f"alert {i}", text, timeout_s=60)
            else:
                outcome = await mailer.message("DE", text, thread="case-1", timeout_s=60)
            outcomes.append(outcome)
            await asyncio.sleep(0.02)
    return outcomes


def _inbox(network: Network, bureau: str) -> list[bytes]:
    """Message ids FR's copies arrived with at ``bureau``, in processing order."""
    path = Workdir(network.workdir).bureau(bureau).inbox
    if not path.exists():
        return []
    inbox = Inbox.read(path)
    try:
        return [item.message_id for item in inbox.items() if item.sender == "FR"]
    finally:
        inbox.close()


def _duplicates(network: Network, bureau: str) -> int:
    inbox = Inbox.read(Workdir(network.workdir).bureau(bureau).inbox)
    try:
        return inbox.duplicates_processed()
    finally:
        inbox.close()


def _sent(outcomes: list[PostOutcome], bureau: str) -> list[bytes]:
    """Message ids of FR's copies to ``bureau``, in sending order."""
    return [c.message_id for o in outcomes for c in o.copies if c.recipient == bureau]


def _assert_exactly_once_in_order(network: Network, outcomes: list[PostOutcome]) -> None:
    """Wait for delivery, then check every inbox, the receipts and the gateway's files."""
    assert all(o.stored for o in outcomes), [c for o in outcomes for c in o.copies if not c.stored]
    expected = {b: _sent(outcomes, b) for b in ("DE", "IT", "GS")}
    assert len(expected["DE"]) == POSTS
    assert len(expected["GS"]) == POSTS // 3  # every diffusion, and nothing else
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    got = {b: _inbox(network, b) for b in expected}
    while got != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        got = {b: _inbox(network, b) for b in expected}
    for bureau, ids in expected.items():
        assert got[bureau] == ids, f"{bureau}: lost, doubled or out of order"
        assert _duplicates(network, bureau) == 0
    delivered = asyncio.run(_receipts(network))
    copies = sum(len(ids) for ids in expected.values())
    assert len(delivered) == copies
    assert all(d.state == "delivered" and d.verified for d in delivered), delivered
    for path in Workdir(network.workdir).gateway.root.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), f"message text in {path}"


async def _receipts(network: Network) -> list[Delivered]:
    async with BureauClient.open(PkiDir(network.workdir), "FR", network.gateway.address) as c:
        return list(await Mailer(c).receipts())


def test_gateway_sigkill_mid_stream_loses_and_doubles_nothing(durable_network: Network) -> None:
    """SIGKILL the gateway while FR streams posts; restart it on its port with its mailbox."""

    async def main() -> list[PostOutcome]:
        crash = asyncio.Event()
        sending = asyncio.create_task(_stream(durable_network, crash))
        await crash.wait()
        await asyncio.to_thread(durable_network.kill_gateway)
        await asyncio.sleep(0.5)  # posts meanwhile find no gateway and are retried
        await asyncio.to_thread(durable_network.restart_gateway)
        return await sending

    outcomes = asyncio.run(main())
    retried = [o for o in outcomes if o.attempts > 1]
    assert retried, "no post was in flight while the gateway was down"
    _assert_exactly_once_in_order(durable_network, outcomes)


def test_recipient_sigkill_queues_then_delivers_once(durable_network: Network) -> None:
    """SIGKILL DE's node mid-stream: its copies queue at the gateway and arrive once, in
    order, when it comes back."""
    host = durable_network.hosts[_host_of(durable_network, "DE")]

    async def main() -> tuple[list[PostOutcome], int]:
        crash = asyncio.Event()
        sending = asyncio.create_task(_stream(durable_network, crash))
        await crash.wait()
        await asyncio.to_thread(durable_network.kill_host, host)
        held = len(_inbox(durable_network, "DE"))
        outcomes = await sending
        queued_while_down = len(_sent(outcomes, "DE")) - held
        await asyncio.to_thread(durable_network.restart_host, host)
        return outcomes, queued_while_down

    outcomes, queued_while_down = asyncio.run(main())
    assert queued_while_down > 0
    assert len(_inbox(durable_network, "IT")) > 0  # the others were served meanwhile
    _assert_exactly_once_in_order(durable_network, outcomes)


def test_an_expired_copy_is_reported_to_the_sender(durable_network: Network) -> None:
    """A copy for a bureau that stays down past its TTL expires, and the sender sees it."""
    host = durable_network.hosts[_host_of(durable_network, "IT")]
    durable_network.kill_host(host)

    async def main() -> tuple[PostOutcome, list[Delivered]]:
        async with BureauClient.open(
            PkiDir(durable_network.workdir), "FR", durable_network.gateway.address
        ) as client:
            mailer = Mailer(client)
            outcome = await mailer.message("IT", f"{CANARY} short-lived", ttl_ms=1500)
            await asyncio.sleep(3.0)  # the TTL passes, and the gateway's sweeper runs
            return outcome, list(await mailer.receipts())

    outcome, delivered = asyncio.run(main())
    assert outcome.stored
    (copy,) = [d for d in delivered if d.message_id == outcome.copies[0].message_id]
    assert copy.state == "expired"
    durable_network.restart_host(host)
    time.sleep(1.0)
    assert _inbox(durable_network, "IT") == []  # never processed late


def _inbox_from(network: Network, bureau: str, sender: str) -> list[bytes]:
    """Message ids ``bureau`` processed from ``sender``, in processing order."""
    inbox = Inbox.read(Workdir(network.workdir).bureau(bureau).inbox)
    try:
        return [item.message_id for item in inbox.items() if item.sender == sender]
    finally:
        inbox.close()


@pytest.mark.attack(
    "a bureau posts a copy to DE under a signing key id that no directory entry names, so "
    "DE's node cannot check it and stops its batch there, to stall DE's whole queue",
    adversary="rogue bureau",
    expect="only that sender's copies to DE wait (in order, until their TTL); other "
    "bureaus' copies to DE, posted after it, are delivered",
)
def test_a_copy_nobody_can_check_holds_back_only_its_sender(durable_network: Network) -> None:
    """Order is promised per sender and recipient, so the gateway holds back only the
    sender of a copy the node stops at; IT's copies to DE do not wait behind FR's."""
    pki = PkiDir(durable_network.workdir)
    fr = Identity.load(pki, "FR", now_ms=int(time.time() * 1000))
    bad = envelope.seal_message(
        messages.pack(messages_pb2.CaseMessage(text=f"{CANARY} unverifiable")),
        sender=fr,
        recipient=Directory.from_pki(pki).get("DE"),
        kind=envelope.MESSAGE,
        post_id=b"s" * 16,
    )
    header = envelope_pb2.Header.FromString(bad.header)
    header.sender_key_id = b"\x00" * len(header.sender_key_id)  # a key no entry names
    bad.header = header.SerializeToString()

    async def main() -> tuple[PostOutcome, list[PostOutcome]]:
        address = durable_network.gateway.address
        async with transport.gateway_channel(address, pki.tls("FR")) as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            [stored] = (
                await stub.Post(gateway_pb2.PostRequest(envelopes=[bad]), timeout=5)
            ).results
            assert stored.status == gateway_pb2.POST_STATUS_ACCEPTED
        async with BureauClient.open(pki, "FR", address) as client:
            behind = await Mailer(client).message("DE", f"{CANARY} after the bad one")
        async with BureauClient.open(pki, "IT", address) as client:
            mailer = Mailer(client)
            others = [await mailer.message("DE", f"{CANARY} from IT {i}") for i in range(3)]
        return behind, others

    behind, others = asyncio.run(main())
    expected = [o.copies[0].message_id for o in others]
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while _inbox_from(durable_network, "DE", "IT") != expected:
        assert time.monotonic() < deadline, "IT's copies waited behind FR's"
        time.sleep(0.2)
    assert _inbox_from(durable_network, "DE", "FR") == []  # FR's copies wait, in order
    states = {d.message_id: d.state for d in asyncio.run(_receipts(durable_network))}
    assert states[behind.copies[0].message_id] == "queued"
    assert states[header.message_id] == "queued"
