"""What ``ncbsim bench`` (ncbsim.load.bench) times: calls on each side, and the crypto alone.

A side is what one batch of calls goes through: **ncbsim** (the real client, gateway
and node) or the **floor** (a plain gRPC relay and server, ncbsim.load.floor). A batch times
each call and reads the CPU each process of the side spent from ``/proc``. The
per-query crypto is timed in process, at the size of a real request.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ncbsim.load.bench_report import Batch

if TYPE_CHECKING:
    import asyncio

    import grpc

    from ncbsim.client import Answer, BureauClient
    from ncbsim.load.floor import FloorProcesses
    from ncbsim.pki import PkiDir
    from ncbsim.v2 import envelope_pb2, gateway_pb2, gateway_pb2_grpc, query_pb2

REQUESTER = "FR"
RESPONDER = "DE"
CALL_TIMEOUT_S = 5.0
CRYPTO_REPEATS = 5


class Side(Protocol):
    """One side of the benchmark: a name, the pids doing its work, and one call."""

    name: str
    pids: dict[str, int]

    async def call(self) -> bool:
        """Make one call; True if it succeeded."""
        ...


@dataclass(slots=True)
class NcbsimSide:
    """Document checks from FR to DE through the gateway, through the real client."""

    client: BureauClient
    queries: list[tuple[query_pb2.Query, str]]  # (query, the outcome it must get)
    pids: dict[str, int]
    name: str = "ncbsim"
    envelope_format: int = 2
    """2: ``BureauClient.query`` (query sessions); 1: :func:`query_format1`."""
    outcomes: dict[str, int] = field(default_factory=dict)
    _next: int = 0

    async def call(self) -> bool:
        """Send the next query; it succeeds if it hits exactly when it should."""
        query, expected = self.queries[self._next % len(self.queries)]
        self._next += 1
        if self.envelope_format == 1:
            answer, _request, _response = await query_format1(self.client, query)
        else:
            answer = await self.client.query(query, RESPONDER, timeout=CALL_TIMEOUT_S)
        outcome = answer.outcome.value
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        return outcome == expected


async def query_format1(
    client: BureauClient, query: query_pb2.Query
) -> tuple[Answer, envelope_pb2.Envelope, envelope_pb2.Envelope | None]:
    """One query from FR to DE in envelope format 1 (protocol.md §6): sealed with HPKE to
    DE's directory key and signed, answered to a fresh response key, on the client's
    channel. What ``BureauClient.query`` did before query sessions, kept for comparing
    the two formats in one build; returns the answer and the envelopes each way."""
    import time

    import grpc

    from ncbsim.client import Answer, failure_detail, failure_outcome, open_answer, seal_query
    from ncbsim.v2 import gateway_pb2

    started = time.perf_counter()
    await client.peers.resolve([RESPONDER], timeout=CALL_TIMEOUT_S)
    peer = client.peers.get(RESPONDER)
    sealed = seal_query(client.identity, peer, query)
    try:
        reply = await client.stub.Query(
            gateway_pb2.QueryRequest(envelope=sealed.envelope), timeout=CALL_TIMEOUT_S
        )
    except grpc.aio.AioRpcError as exc:
        failed = Answer(RESPONDER, failure_outcome(exc.code()), None, failure_detail(exc))
        return failed, sealed.envelope, None
    latency = (time.perf_counter() - started) * 1000
    return open_answer(sealed, reply.envelope, peer, latency), sealed.envelope, reply.envelope


@dataclass(slots=True)
class FloorSide:
    """Canned envelopes through the floor relay to the floor server, on one channel."""

    channel: grpc.aio.Channel
    stub: gateway_pb2_grpc.GatewayServiceStub
    request: envelope_pb2.Envelope
    pids: dict[str, int]
    response: envelope_pb2.Envelope  # the first answer, to report its size
    wire: gateway_pb2.QueryRequest  # the request as sent, built once
    name: str = "floor"

    @classmethod
    async def connect(
        cls, floor: FloorProcesses, pki: PkiDir, request: envelope_pb2.Envelope
    ) -> FloorSide:
        """Connect to the floor relay as FR and make a first call."""
        from ncbsim import transport
        from ncbsim.v2 import gateway_pb2, gateway_pb2_grpc

        channel = transport.gateway_channel(floor.relay, pki.tls(REQUESTER))
        wire = gateway_pb2.QueryRequest(envelope=request)
        try:
            await channel.channel_ready()
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            reply = await stub.Query(wire, timeout=CALL_TIMEOUT_S)
        except BaseException:
            await channel.close()
            raise
        pids = {"client": os.getpid(), **floor.pids}
        return cls(channel, stub, request, pids, reply.envelope, wire)

    async def call(self) -> bool:
        """Send the canned request; it succeeds if any envelope comes back."""
        import grpc

        try:
            await self.stub.Query(self.wire, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError:
            return False
        return True


@dataclass(slots=True)
class Observers:
    """The operator watching the ``observed`` side (``ncbsim bench --observe``): one
    ``Observe`` stream to the gateway and one to DE's node, each read to the end by a
    task of this process, attached for the observed side's batches only."""

    targets: list[tuple[str, str]]
    """(address, TLS server name) of each server to watch."""
    pki: PkiDir
    events: int = 0
    """Events received over every attachment."""
    dropped: int = 0
    """Events the streams lost (a full buffer): none, if the reader kept up."""
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _channels: list[grpc.aio.Channel] = field(default_factory=list)
    _seen: set[int] = field(default_factory=set)

    async def attach(self, side: Side) -> None:
        """Open the streams, then call ``side`` (untimed) until each stream has had an
        event: only then is each surely subscribed."""
        import asyncio

        from ncbsim import transport

        tls = self.pki.tls("operator")
        self._seen.clear()
        for index, (address, name) in enumerate(self.targets):
            channel = transport.secure_channel(address, tls, peer_name=name)
            self._channels.append(channel)
            self._tasks.append(asyncio.create_task(self._read(index, channel)))
        deadline = time.monotonic() + CALL_TIMEOUT_S * 6
        while len(self._seen) < len(self.targets):
            if time.monotonic() > deadline:
                raise TimeoutError("an Observe stream never started")
            await side.call()
            await asyncio.sleep(0.01)

    async def _read(self, index: int, channel: grpc.aio.Channel) -> None:
        from ncbsim.observe import observe

        lost = 0  # the stream's dropped count so far, as its last event said
        try:
            async for _, dropped in observe(channel):
                self.events += 1
                self._seen.add(index)
                lost = dropped
        finally:
            self.dropped += lost

    async def detach(self) -> None:
        """Cancel the streams and close their channels."""
        import asyncio
        import contextlib

        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for channel in self._channels:
            await channel.close()
        self._tasks.clear()
        self._channels.clear()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` and all its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_batch(side: Side, mode: str, round_index: int, calls: int, workers: int) -> Batch:
    """``calls`` calls on ``side`` from ``workers`` concurrent callers, each call timed."""
    import asyncio

    latencies: list[float] = []
    failures = 0
    todo = iter(range(calls))

    async def worker() -> None:
        nonlocal failures
        for _ in todo:
            started = time.perf_counter()
            ok = await side.call()
            latencies.append((time.perf_counter() - started) * 1000)
            failures += not ok

    cpu_before = {role: cpu_seconds(pid) for role, pid in side.pids.items()}
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    wall = time.perf_counter() - started
    cpu = {role: cpu_seconds(pid) - cpu_before[role] for role, pid in side.pids.items()}
    return Batch(side.name, mode, round_index, latencies, wall, failures, cpu)


def _per_op_us(operation: Callable[[], object], iterations: int) -> float:
    """Median over a few repeats of the mean time of one call of ``operation``, in µs."""
    samples = []
    for _ in range(CRYPTO_REPEATS):
        started = time.perf_counter()
        for _ in range(iterations):
            operation()
        samples.append((time.perf_counter() - started) / iterations * 1e6)
    return sorted(samples)[len(samples) // 2]


def crypto_costs(
    request: envelope_pb2.Envelope, iterations: int, ops: Iterable[str] | None = None
) -> dict[str, float]:
    """Time each primitive a query uses, in process, at the size of a real request (µs).

    ``ops`` names the operations to time (default: every one known here): format 1's
    public-key operations, and the AEAD seal and open of format 2's sessions, with a
    key set up once as a session holds it.
    """
    from ncbsim import _crypto, envelope

    recipient = _crypto.x25519_generate()
    public = recipient.public_key()
    signer = _crypto.ed25519_generate()
    header = request.header
    # Format 1 adds enc (32 bytes) and a tag (16) to the plaintext; format 2 the tag only.
    overhead = 48 if request.signature else 16
    plaintext = os.urandom(max(len(request.sealed) - overhead, 0))
    info = envelope.REQUEST_INFO
    sealed = _crypto.hpke_seal(public, info=info, aad=header, plaintext=plaintext)
    signed = envelope.SIGNATURE_CONTEXT + len(header).to_bytes(4, "big") + header + sealed
    signature = _crypto.ed25519_sign(signer, signed)
    aead = _crypto.AeadKey(os.urandom(_crypto.AEAD_KEY_LEN))
    nonce = os.urandom(12)
    aead_sealed = aead.seal(nonce, header, plaintext)
    operations: dict[str, Callable[[], object]] = {
        "x25519_keygen": envelope.new_response_key,
        "hpke_seal": lambda: _crypto.hpke_seal(public, info=info, aad=header, plaintext=plaintext),
        "ed25519_sign": lambda: _crypto.ed25519_sign(signer, signed),
        "ed25519_verify": lambda: _crypto.ed25519_verify(signer.verify_key, signed, signature),
        "hpke_open": lambda: _crypto.hpke_open(recipient, info=info, aad=header, sealed=sealed),
        "aead_seal": lambda: aead.seal(nonce, header, plaintext),
        "aead_open": lambda: aead.open(nonce, header, aead_sealed),
    }
    wanted = list(operations) if ops is None else list(ops)
    unknown = set(wanted) - operations.keys()
    if unknown:
        raise ValueError(f"no timing for {sorted(unknown)}")
    return {name: _per_op_us(operations[name], iterations) for name in wanted}
