"""Input limits through real processes over mTLS: a gateway with tight limits and DE's node.

The gateway runs with ``--burst 5 --rate 1 --daily-quota 20 --max-envelope-bytes 4096``
and a ``--limits`` file giving NL a daily quota of 3. Each test sends as its own bureau,
so the buckets of one test do not drain another's.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from support import document_query

from ncbsim import auditread, envelope, transport
from ncbsim.client import BureauClient, Outcome, seal_query
from ncbsim.node import datagen
from ncbsim.pki import PkiDir
from ncbsim.v2 import envelope_pb2, gateway_pb2, query_pb2

pytestmark = pytest.mark.integration

BURST = 5
QUERY = document_query("ZZ0000000", "DE")
GARBAGE = b"\xff\xff\xff\xff\x00not a protobuf"
ANSWERED = (Outcome.HIT, Outcome.NO_HIT)
Trailers = dict[str, str]


@dataclass(frozen=True)
class Net:
    workdir: Path
    gateway: str
    node: str
    procs: tuple[subprocess.Popen[bytes], ...]

    @property
    def gateway_audit(self) -> Path:
        return self.workdir / "gateway" / "audit.sqlite"

    @property
    def node_audit(self) -> Path:
        return self.workdir / "bureaus" / "DE" / "audit.sqlite"


def _ncbsim(*args: str) -> list[str]:
    return [sys.executable, "-m", "ncbsim", *args]


def _start(args: list[str], log: Path, ready: Path) -> tuple[subprocess.Popen[bytes], str]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
        )
    deadline = time.monotonic() + 30
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            raise AssertionError(f"{args[3]} did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    return proc, str(json.loads(ready.read_text())["address"])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    """`pki init`, a gateway with tight limits, and DE's node (small generated records)."""
    workdir = tmp_path_factory.mktemp("limits")
    subprocess.run(
        _ncbsim("pki", "init", "--dir", str(workdir), "--bureaus", "DE,FR,IT,ES,NL,PT"),
        check=True,
        capture_output=True,
        timeout=60,
    )
    db = workdir / "bureaus" / "DE" / "records.sqlite"
    datagen.generate(db, "DE", seed=1, documents=50, persons=20, vehicles=20)
    limits = workdir / "limits.toml"
    limits.write_text("[bureaus.NL]\nburst = 10\nrate = 100\ndaily_quota = 3\n")
    run = workdir / "run"
    run.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        gateway, address = _start(
            _ncbsim(
                "gateway",
                "--dir",
                str(workdir),
                "--listen",
                "127.0.0.1:0",
                "--ready-file",
                str(run / "gateway.json"),
                "--burst",
                str(BURST),
                "--rate",
                "1",
                "--daily-quota",
                "20",
                "--max-envelope-bytes",
                "4096",
                "--limits",
                str(limits),
            ),
            workdir / "gateway" / "gateway.log",
            run / "gateway.json",
        )
        procs.append(gateway)
        node, node_address = _start(
            _ncbsim(
                "node",
                "--dir",
                str(workdir),
                "--bureau",
                "DE",
                "--gateway",
                address,
                "--listen",
                "127.0.0.1:0",
                "--db",
                str(db),
                "--ready-file",
                str(run / "node-DE.json"),
            ),
            workdir / "bureaus" / "DE" / "node.log",
            run / "node-DE.json",
        )
        procs.append(node)
        yield Net(workdir, address, node_address, (gateway, node))
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _client(net: Net, bureau: str) -> BureauClient:
    return BureauClient.open(PkiDir(net.workdir), bureau, net.gateway)


async def _seal(client: BureauClient, query: query_pb2.Query = QUERY) -> envelope.Envelope:
    await client.peers.resolve(["DE"])
    return seal_query(client.identity, client.peers.get("DE"), query).envelope


async def _send(
    client: BureauClient, request: envelope.Envelope | bytes, method: str = "Query"
) -> tuple[grpc.StatusCode, str, Trailers]:
    """Send ``request`` (raw bytes as they are, an envelope in a QueryRequest); its status,
    detail and trailers."""
    if isinstance(request, bytes):
        raw = request
    else:
        raw = gateway_pb2.QueryRequest(envelope=request).SerializeToString()
    call = client._channel.unary_unary(
        f"/ncbsim.v2.GatewayService/{method}", request_serializer=None, response_deserializer=None
    )
    try:
        await call(raw, timeout=5)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or "", dict(exc.trailing_metadata() or ())
    return grpc.StatusCode.OK, "", {}


async def _answered(net: Net, bureau: str) -> Outcome:
    async with _client(net, bureau) as client:
        return (await client.query(QUERY, "DE", timeout=5)).outcome


def _rows(path: Path, expected: int, **match: object) -> list[dict[str, object]]:
    """Audit rows whose columns equal ``match``, waiting briefly for ``expected`` of them."""
    deadline = time.monotonic() + 5
    while True:
        columns, rows = auditread.search(path, auditread.Query())
        found = [dict(zip(columns, row, strict=True)) for row in rows]
        found = [r for r in found if all(r[k] == v for k, v in match.items())]
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


# ----------------------------------------------------------------------------- rate limit


@pytest.mark.attack(
    "a bureau sends more than its burst at once",
    adversary="rogue bureau",
    expect="RESOURCE_EXHAUSTED + retry-after-ms + audit entry; other bureaus still served",
)
def test_burst_exceeded_is_refused_with_a_retry_hint_and_others_are_served(net: Net) -> None:
    """FR's 6th envelope at once is refused (retry-after-ms); IT is answered at that moment,
    and FR is answered again once the advertised wait is over."""

    async def burst() -> tuple[list[tuple[grpc.StatusCode, str, Trailers]], Outcome]:
        async with _client(net, "FR") as fr:
            sealed = [await _seal(fr) for _ in range(BURST + 1)]
            results = await asyncio.gather(*(_send(fr, s) for s in sealed))
        return results, await _answered(net, "IT")

    results, other = asyncio.run(burst())
    codes = sorted(code.name for code, _, _ in results)
    assert codes == ["OK"] * BURST + ["RESOURCE_EXHAUSTED"], codes
    [(_, detail, trailers)] = [r for r in results if r[0] == grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert detail.startswith("rate limit for FR: retry after ")
    wait_ms = int(trailers["retry-after-ms"])
    assert 0 < wait_ms <= 1000  # one token at 1/s
    assert trailers["grpc-retry-pushback-ms"] == str(wait_ms)
    assert other in ANSWERED  # IT, at the same moment

    time.sleep(wait_ms / 1000)

    async def again() -> grpc.StatusCode:
        async with _client(net, "FR") as fr:  # one envelope, as the refused one was
            return (await _send(fr, await _seal(fr)))[0]

    assert asyncio.run(again()) == grpc.StatusCode.OK

    refused = _rows(net.gateway_audit, 1, sender="FR", status="RESOURCE_EXHAUSTED")
    assert [(r["rpc"], r["peer"], r["recipient"], r["outcome"]) for r in refused] == [
        ("Query", "FR", "DE", "refused")
    ]
    assert len(_rows(net.gateway_audit, BURST + 1, sender="FR", outcome="delivered")) == BURST + 1


@pytest.mark.attack(
    "a bureau sends more than its daily quota",
    adversary="rogue bureau",
    expect="RESOURCE_EXHAUSTED naming the reset time + retry-after-ms until 00:00 UTC + audit",
)
def test_daily_quota_from_the_limits_file_is_refused_until_midnight(net: Net) -> None:
    """NL's quota of 3 envelopes (from --limits): its session's SESSION_OPEN and two
    queries use it, the third query fails, and the client's answer says when the quota
    resets; the wait advertised runs to the next 00:00 UTC."""
    day = datetime.now(UTC).date()

    async def four() -> tuple[list[Outcome], str, tuple[grpc.StatusCode, str, Trailers]]:
        async with _client(net, "NL") as nl:
            outcomes = [(await nl.query(QUERY, "DE", timeout=5)).outcome for _ in range(2)]
            fourth = await nl.query(QUERY, "DE", timeout=5)
            outcomes.append(fourth.outcome)
            return outcomes, fourth.detail, await _send(nl, await _seal(nl))

    outcomes, detail, (code, _, trailers) = asyncio.run(four())
    now = datetime.now(UTC)
    if now.date() != day:
        pytest.skip("the UTC day changed during the test, so the quota was reset")
    assert all(o in ANSWERED for o in outcomes[:2]), outcomes
    assert outcomes[2] == Outcome.FAILED
    tomorrow = datetime(now.year, now.month, now.day, tzinfo=UTC).timestamp() + 86_400
    assert detail.startswith("RESOURCE_EXHAUSTED: daily quota of 3 queries for NL used; resets ")
    assert datetime.fromtimestamp(tomorrow, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") in detail
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    expected_ms = tomorrow * 1000 - time.time() * 1000
    assert abs(int(trailers["retry-after-ms"]) - expected_ms) < 10_000
    # The third query, the envelope sent after it, and the session's SESSION_CLOSE.
    refused = _rows(net.gateway_audit, 3, sender="NL", status="RESOURCE_EXHAUSTED")
    assert sorted(str(r["kind"]) for r in refused) == [
        "query_request",
        "query_request",
        "session_close",
    ]


# ----------------------------------------------------------------------------- size


@pytest.mark.attack(
    "an envelope over the gateway's configured maximum size",
    adversary="rogue bureau",
    expect="RESOURCE_EXHAUSTED + audit entry",
)
def test_oversized_envelope_is_refused_and_the_next_query_is_served(net: Net) -> None:
    """An envelope of about 5 KB against --max-envelope-bytes 4096: RESOURCE_EXHAUSTED with
    pushback -1 (never retry), one audit row; IT's next normal query is answered."""
    big_query = document_query("X" * 5_000, "DE")

    async def send() -> tuple[int, tuple[grpc.StatusCode, str, Trailers]]:
        async with _client(net, "IT") as it:
            big = await _seal(it, big_query)
            return big.ByteSize(), await _send(it, big)

    size, (code, detail, trailers) = asyncio.run(send())
    assert size > 4096
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert detail == f"request of {size} bytes exceeds the gateway's limit of 4096 bytes"
    assert trailers == {"grpc-retry-pushback-ms": "-1"}
    rows = _rows(net.gateway_audit, 1, peer="IT", status="RESOURCE_EXHAUSTED")
    assert [(r["rpc"], r["request_bytes"], r["outcome"], r["message_id"]) for r in rows] == [
        ("Query", size, "refused", "")
    ]
    assert asyncio.run(_answered(net, "IT")) in ANSWERED


# ----------------------------------------------------------------------------- malformed input


@pytest.mark.attack(
    "bytes that are not a protobuf, sent to Gateway.Query and Gateway.MultiQuery",
    adversary="any caller",
    expect="INVALID_ARGUMENT + audit entry",
)
def test_garbage_to_the_gateway_is_invalid_argument_and_audited(net: Net) -> None:
    """Garbage to Query and MultiQuery: INVALID_ARGUMENT "envelope rejected", one row each."""

    async def send() -> list[tuple[grpc.StatusCode, str, Trailers]]:
        async with _client(net, "ES") as es:
            return [await _send(es, GARBAGE, m) for m in ("Query", "MultiQuery")]

    results = asyncio.run(send())
    assert [(code, detail) for code, detail, _ in results] == [
        (grpc.StatusCode.INVALID_ARGUMENT, "envelope rejected")
    ] * 2
    rows = _rows(net.gateway_audit, 2, peer="ES", request_bytes=len(GARBAGE))
    assert [(r["rpc"], r["outcome"], r["status"]) for r in rows] == [
        ("Query", "refused", "INVALID_ARGUMENT"),
        ("MultiQuery", "refused", "INVALID_ARGUMENT"),
    ]


@pytest.mark.attack(
    "bytes that are not an Envelope, sent to a node's Bureau.Handle with the gateway's certificate",
    adversary="malicious gateway",
    expect="INVALID_ARGUMENT + node audit entry (undecodable)",
)
def test_garbage_to_the_node_is_invalid_argument_and_audited(net: Net) -> None:
    """Only the gateway may call Handle, so this uses its certificate: INVALID_ARGUMENT, and
    DE's node audits it with reason `undecodable`."""
    tls = PkiDir(net.workdir).tls("gateway")

    async def send() -> tuple[grpc.StatusCode, str]:
        channel = transport.bureau_channel(net.node, tls, "DE")
        call = channel.unary_unary(
            "/ncbsim.v2.BureauService/Handle", request_serializer=None, response_deserializer=None
        )
        try:
            await call(GARBAGE, timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
        finally:
            await channel.close()
        return grpc.StatusCode.OK, ""

    assert asyncio.run(send()) == (grpc.StatusCode.INVALID_ARGUMENT, "envelope rejected")
    rows = _rows(net.node_audit, 1, reason="undecodable", request_bytes=len(GARBAGE))
    assert [(r["outcome"], r["status"], r["sender"], r["message_id"]) for r in rows] == [
        ("refused", "INVALID_ARGUMENT", "", "")
    ]


@pytest.mark.attack(
    "a header with a 17-byte message id",
    adversary="rogue bureau",
    expect="INVALID_ARGUMENT + audit entry without the id",
)
def test_a_17_byte_message_id_is_refused(net: Net) -> None:
    """The id is not 16 bytes: INVALID_ARGUMENT, and the audit row carries no message id."""

    async def send() -> tuple[grpc.StatusCode, str, Trailers]:
        async with _client(net, "PT") as pt:
            sealed = await _seal(pt)
            header = envelope_pb2.Header.FromString(sealed.header)
            header.message_id = os.urandom(17)
            sealed.header = header.SerializeToString()
            return await _send(pt, sealed)

    code, detail, _ = asyncio.run(send())
    assert (code, detail) == (grpc.StatusCode.INVALID_ARGUMENT, "envelope rejected")
    rows = _rows(net.gateway_audit, 1, peer="PT", status="INVALID_ARGUMENT")
    assert [(r["sender"], r["recipient"], r["message_id"], r["outcome"]) for r in rows] == [
        ("PT", "DE", "", "refused")
    ]


# ----------------------------------------------------------------------------- afterwards


def test_processes_survive_and_the_audit_chains_verify(net: Net) -> None:
    """After every refusal above both processes still run, PT (refused above) is answered,
    and both audit logs verify."""
    assert all(proc.poll() is None for proc in net.procs)
    assert asyncio.run(_answered(net, "PT")) in ANSWERED
    assert auditread.verify(net.gateway_audit).intact
    assert auditread.verify(net.node_audit).intact


def test_a_bad_limits_file_stops_the_gateway_with_a_clear_error(tmp_path: Path) -> None:
    """`--limits` naming a bad key: exit 2, the file and key named, no traceback."""
    limits = tmp_path / "limits.toml"
    limits.write_text("[bureaus.FR]\nburst = 0\nspeed = 3\n")
    out = subprocess.run(
        _ncbsim("gateway", "--dir", str(tmp_path), "--limits", str(limits)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert f"{limits}: bureaus.FR.speed: unknown key" in out.stderr
    assert "Traceback" not in out.stderr
