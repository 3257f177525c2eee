"""Gateway input limits: the rate limiter with a fake clock, its TOML overrides, the config,
and (in-process, over real mTLS) the statuses and audit rows the gateway answers with."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

from ncbsim import envelope, pki, transport
from ncbsim.client import seal_query
from ncbsim.errors import ConfigError, NcbsimError
from ncbsim.gateway.audit import AuditLog, AuditRecord, read_all
from ncbsim.gateway.config import GatewayConfig
from ncbsim.gateway.limits import (
    DAY_MS,
    BureauLimit,
    LimitExceeded,
    RateLimiter,
    check_size,
    load_overrides,
    wrapped_size,
)
from ncbsim.gateway.router import Router
from ncbsim.gateway.server import GatewayService, add_to_server
from ncbsim.identity import Identity
from ncbsim.serving import start_server
from ncbsim.v2 import envelope_pb2, gateway_pb2, gateway_pb2_grpc, query_pb2
from ncbsim.workdir import GatewayFiles

# 2026-11-27 23:59:58.500 UTC: a day boundary 1.5 s away.
NEAR_MIDNIGHT_MS = int(datetime(2026, 11, 27, 23, 59, 58, 500_000, tzinfo=UTC).timestamp() * 1000)
NOON_MS = int(datetime(2026, 11, 27, 12, tzinfo=UTC).timestamp() * 1000)


class FakeClock:
    """Monotonic seconds and wall-clock milliseconds that move only when told."""

    def __init__(self, wall_ms: int = NOON_MS) -> None:
        self.mono = 1_000.0
        self.wall = wall_ms

    def monotonic(self) -> float:
        return self.mono

    def wall_ms(self) -> int:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += round(seconds * 1000)


def _limiter(
    clock: FakeClock,
    *,
    rate: float = 10.0,
    burst: int = 5,
    quota: int = 1_000,
    overrides: dict[str, BureauLimit] | None = None,
) -> RateLimiter:
    default = BureauLimit(rate_per_s=rate, burst=burst, daily_quota=quota)
    return RateLimiter(default, overrides, monotonic=clock.monotonic, wall_ms=clock.wall_ms)


def _refusal(limiter: RateLimiter, bureau: str, count: int = 1) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as caught:
        limiter.take(bureau, count)
    return caught.value


# ----------------------------------------------------------------------------- token bucket


def test_a_full_bucket_serves_the_burst_then_says_when_to_retry() -> None:
    """`burst` envelopes pass at once; the next is refused with the wait for one token."""
    clock = FakeClock()
    limiter = _limiter(clock, rate=10.0, burst=5)
    for _ in range(5):
        limiter.take("FR")
    refused = _refusal(limiter, "FR")
    assert refused.retry_after_ms == 100  # one token at 10/s
    assert str(refused) == "rate limit for FR: retry after 100 ms"
    assert refused.trailing_metadata() == (
        ("retry-after-ms", "100"),
        ("grpc-retry-pushback-ms", "100"),
    )


def test_the_bucket_refills_at_the_rate_and_never_beyond_the_burst() -> None:
    """After the advertised wait one more passes; a long idle time refills only `burst`."""
    clock = FakeClock()
    limiter = _limiter(clock, rate=10.0, burst=5)
    for _ in range(5):
        limiter.take("FR")
    wait_ms = _refusal(limiter, "FR").retry_after_ms
    assert wait_ms is not None
    clock.advance(wait_ms / 1000 / 2)
    assert _refusal(limiter, "FR").retry_after_ms == wait_ms // 2  # half a token back
    clock.advance(wait_ms / 1000 / 2)
    limiter.take("FR")
    clock.advance(3600)  # an hour idle
    for _ in range(5):
        limiter.take("FR")
    _refusal(limiter, "FR")


def test_a_refused_call_counts_nothing() -> None:
    """A MultiQuery of 4 with 3 tokens left is refused whole; 3 single envelopes then pass."""
    clock = FakeClock()
    limiter = _limiter(clock, rate=1.0, burst=5)
    limiter.take("FR", 2)
    refused = _refusal(limiter, "FR", 4)
    assert refused.retry_after_ms == 1000  # one token short at 1/s
    for _ in range(3):
        limiter.take("FR")
    _refusal(limiter, "FR")


def test_a_multi_query_counts_one_per_envelope() -> None:
    """Five envelopes in one call take five tokens and five of the daily quota."""
    clock = FakeClock()
    limiter = _limiter(clock, rate=1.0, burst=5, quota=7)
    limiter.take("FR", 5)
    _refusal(limiter, "FR")
    clock.advance(2)  # two tokens back
    limiter.take("FR", 2)
    clock.advance(60)
    refused = _refusal(limiter, "FR")
    assert str(refused).startswith("daily quota of 7 queries for FR used")


def test_a_call_larger_than_the_burst_is_never_retried() -> None:
    """More envelopes in one call than the burst can never fit: pushback -1, no retry-after."""
    clock = FakeClock()
    limiter = _limiter(clock, burst=5)
    refused = _refusal(limiter, "FR", 6)
    assert refused.retry_after_ms is None
    assert refused.trailing_metadata() == (("grpc-retry-pushback-ms", "-1"),)
    limiter.take("FR", 5)  # and it took nothing


def test_the_bucket_ignores_wall_clock_steps() -> None:
    """Setting the wall clock forward a day refills no tokens (the bucket is monotonic)."""
    clock = FakeClock()
    limiter = _limiter(clock, rate=1.0, burst=2)
    limiter.take("FR", 2)
    clock.wall += DAY_MS
    _refusal(limiter, "FR")


# ----------------------------------------------------------------------------- daily quota


def test_the_daily_quota_says_when_it_resets_and_resets_at_utc_midnight() -> None:
    """Quota used: refused until 00:00 UTC, with the time left; at midnight it counts anew."""
    clock = FakeClock(NEAR_MIDNIGHT_MS)
    limiter = _limiter(clock, rate=1_000.0, burst=100, quota=3)
    limiter.take("FR", 3)
    refused = _refusal(limiter, "FR")
    assert refused.retry_after_ms == 1_500
    assert str(refused) == (
        "daily quota of 3 queries for FR used; resets 2026-11-28T00:00:00Z (retry after 2 s)"
    )
    clock.advance(1.499)
    _refusal(limiter, "FR")
    clock.advance(0.001)  # 00:00:00.000 UTC
    limiter.take("FR", 3)
    _refusal(limiter, "FR")


def test_the_quota_names_what_is_left_when_a_call_does_not_fit() -> None:
    """Two left and three asked: refused whole, the detail says both; the two still pass."""
    clock = FakeClock()
    limiter = _limiter(clock, burst=10, quota=5)
    limiter.take("FR", 3)
    refused = _refusal(limiter, "FR", 3)
    assert "has 2 left, 3 asked" in str(refused)
    assert refused.retry_after_ms == DAY_MS // 2  # noon to midnight
    limiter.take("FR", 2)


def test_a_wall_clock_stepped_back_does_not_restore_the_quota() -> None:
    """Quota used at 00:00:01; the clock goes back to the day before: still refused."""
    clock = FakeClock(NEAR_MIDNIGHT_MS + 2_500)
    limiter = _limiter(clock, burst=10, quota=2)
    limiter.take("FR", 2)
    clock.wall -= 10_000
    _refusal(limiter, "FR")


# ----------------------------------------------------------------------------- per bureau


def test_bureaus_are_limited_separately_and_overrides_apply_to_theirs() -> None:
    """FR's override is tight and used up; DE, on the defaults, is served all along."""
    clock = FakeClock()
    tight = BureauLimit(rate_per_s=1.0, burst=2, daily_quota=100)
    limiter = _limiter(clock, rate=100.0, burst=50, overrides={"FR": tight})
    assert limiter.limit("FR") == tight
    assert limiter.limit("DE").burst == 50
    limiter.take("FR", 2)
    _refusal(limiter, "FR")
    limiter.take("DE", 50)
    _refusal(limiter, "DE")
    assert _refusal(limiter, "FR").retry_after_ms == 1000


@pytest.mark.parametrize(
    "fields",
    [
        {"rate_per_s": 0.0},
        {"rate_per_s": float("nan")},
        {"rate_per_s": float("inf")},
        {"burst": 0},
        {"daily_quota": 0},
    ],
)
def test_a_limit_must_be_positive(fields: dict[str, float]) -> None:
    """Zero, NaN or infinite rates, an empty burst or quota are configuration errors."""
    values: dict[str, float] = {"rate_per_s": 1.0, "burst": 1, "daily_quota": 1, **fields}
    with pytest.raises(ConfigError):
        BureauLimit(**values)  # type: ignore[arg-type]


def test_check_size_refuses_above_the_maximum_only() -> None:
    """A request of exactly the maximum passes; one byte more is refused, never to retry."""
    check_size(4096, 4096)
    with pytest.raises(LimitExceeded) as caught:
        check_size(4097, 4096)
    assert caught.value.retry_after_ms is None
    assert "4097" in str(caught.value)
    assert "4096" in str(caught.value)


# ----------------------------------------------------------------------------- TOML overrides

DEFAULT = BureauLimit(rate_per_s=1000.0, burst=2000, daily_quota=10_000_000)


def test_overrides_file_sets_only_the_keys_it_names(tmp_path: Path) -> None:
    """Keys left out of a bureau's table keep the gateway-wide value."""
    path = tmp_path / "limits.toml"
    path.write_text(
        "[bureaus.FR]\nrate = 2.5\nburst = 10\ndaily_quota = 500\n\n[bureaus.DE]\ndaily_quota = 7\n"
    )
    assert load_overrides(path, DEFAULT) == {
        "FR": BureauLimit(rate_per_s=2.5, burst=10, daily_quota=500),
        "DE": BureauLimit(rate_per_s=1000.0, burst=2000, daily_quota=7),
    }


def test_an_empty_overrides_file_overrides_nothing(tmp_path: Path) -> None:
    """A file with no [bureaus] tables is valid and changes no limit."""
    path = tmp_path / "limits.toml"
    path.write_text("# nothing yet\n")
    assert load_overrides(path, DEFAULT) == {}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[bureaus.FR\nrate = 1\n", "not valid TOML"),
        ("[defaults]\nrate = 1\n", "defaults"),
        ("bureaus = 3\n", "bureaus"),
        ("[bureaus.fr]\nrate = 1\n", "bureaus.fr"),
        ("[bureaus.FRA]\nrate = 1\n", "bureaus.FRA"),
        ("[bureaus]\nFR = 5\n", "bureaus.FR"),
        ("[bureaus.FR]\nrates = 1\n", "bureaus.FR.rates"),
        ('[bureaus.FR]\nrate = "fast"\n', "bureaus.FR.rate"),
        ("[bureaus.FR]\nburst = true\n", "bureaus.FR.burst"),
        ("[bureaus.FR]\nburst = 2.5\n", "bureaus.FR.burst"),
        ("[bureaus.FR]\ndaily_quota = 0\n", "bureaus.FR"),
        ("[bureaus.FR]\nrate = -1\n", "bureaus.FR"),
        ("[bureaus.FR]\nrate = nan\n", "bureaus.FR"),
    ],
)
def test_a_bad_overrides_file_names_the_file_and_the_key(
    tmp_path: Path, text: str, named: str
) -> None:
    """Every mistake is one ConfigError that names the file and where in it."""
    path = tmp_path / "limits.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_overrides(path, DEFAULT)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert named in message


def test_a_missing_overrides_file_is_a_config_error(tmp_path: Path) -> None:
    """A file that cannot be read is named, without a traceback-worthy exception."""
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError, match="cannot read"):
        load_overrides(path, DEFAULT)


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "fields",
    [
        {"max_envelope_bytes": 0},
        {"max_envelope_bytes": transport.MAX_MESSAGE_BYTES + 1},
        {"rate_per_s": 0.0},
        {"burst": 0},
        {"daily_quota": 0},
        {"mailbox_retention_h": -1.0},
        {"mailbox_retention_h": float("nan")},
    ],
)
def test_gateway_config_refuses_bad_limits(tmp_path: Path, fields: dict[str, float]) -> None:
    """An envelope maximum outside 1..4 MiB, a non-positive limit, or a negative or NaN
    retention, is refused."""
    with pytest.raises(ConfigError):
        GatewayConfig(
            pki=pki.PkiDir(tmp_path),
            files=GatewayFiles.beside(tmp_path / "a.sqlite"),
            **fields,  # type: ignore[arg-type]
        )


def test_gateway_config_refuses_an_override_for_a_non_code(tmp_path: Path) -> None:
    """Overrides are keyed by bureau code."""
    limit = BureauLimit(rate_per_s=1.0, burst=1, daily_quota=1)
    with pytest.raises(NcbsimError):
        GatewayConfig(
            pki=pki.PkiDir(tmp_path),
            files=GatewayFiles.beside(tmp_path / "a.sqlite"),
            bureau_limits={"fr": limit},
        )


def test_default_limits_leave_room_for_load_and_bench(tmp_path: Path) -> None:
    """`ncbsim load` (10 bureaus x ~10/s) and `ncbsim bench` (one bureau as fast as the
    plain relay's 1,230 calls/s at most) are never limited by the defaults."""
    config = GatewayConfig(
        pki=pki.PkiDir(tmp_path), files=GatewayFiles.beside(tmp_path / "a.sqlite")
    )
    floor_calls_per_s = 1_230  # the plain relay: ncbsim's gateway does not exceed it
    bench_goal_calls_per_s = 1_000  # 0.8 x the floor, rounded up
    assert config.rate_per_s >= 5 * floor_calls_per_s
    assert config.burst >= 10 * floor_calls_per_s
    assert config.daily_quota >= bench_goal_calls_per_s * 86_400  # a whole day of bench
    assert config.max_envelope_bytes >= 16 * 250  # a query envelope is about 250 bytes


# ----------------------------------------------------------------------------- in-process gateway


@contextlib.asynccontextmanager
async def _gateway(
    tmp_path: Path, limiter: RateLimiter | None = None, **fields: int
) -> AsyncIterator[tuple[pki.PkiDir, str]]:
    directory = pki.PkiDir(tmp_path / "pki")
    if not directory.ca_key.exists():
        pki.init(directory.root, ["FR", "DE", "IT"])
    config = GatewayConfig(
        pki=directory,
        files=GatewayFiles.beside(tmp_path / "audit.sqlite"),
        **fields,  # type: ignore[arg-type]
    )
    audit = AuditLog(config.files.audit, batch_wait_s=0.0)
    router = Router(directory.tls("gateway"))
    service = GatewayService(config, router, audit, limiter=limiter)
    served = await start_server(
        directory.tls("gateway"), "127.0.0.1:0", [], register=lambda s: add_to_server(service, s)
    )
    try:
        yield directory, served.address
    finally:
        await served.server.stop(0)
        await router.close()
        audit.close()


def _seal(directory: pki.PkiDir, sender: str, recipient: str) -> envelope.SealedRequest:
    now = int(time.time() * 1000)
    me = Identity.load(directory, sender, now_ms=now)
    peer = Identity.load(directory, recipient, now_ms=now).as_peer()
    query = query_pb2.Query(document=query_pb2.DocumentQuery(number="X1", issuer="DE"))
    return seal_query(me, peer, query)


def _query(item: envelope.Envelope) -> bytes:
    """The bytes of a QueryRequest holding ``item``."""
    return gateway_pb2.QueryRequest(envelope=item).SerializeToString()


async def _raw_call(
    channel: grpc.aio.Channel, method: str, payload: bytes
) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    call = channel.unary_unary(
        f"/ncbsim.v2.GatewayService/{method}", request_serializer=None, response_deserializer=None
    )
    try:
        await call(payload, timeout=5)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or "", dict(exc.trailing_metadata() or ())
    return grpc.StatusCode.OK, "", {}


def _rows(tmp_path: Path) -> list[AuditRecord]:
    return read_all(tmp_path / "audit.sqlite")


GATEWAY_METHODS = [
    m.name for m in gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].methods
]


@pytest.mark.attack(
    "bytes that are not a protobuf, sent to every Gateway RPC",
    adversary="any caller",
    expect="INVALID_ARGUMENT + audit entry",
)
@pytest.mark.parametrize("method", GATEWAY_METHODS)
def test_garbage_to_every_gateway_rpc_is_invalid_argument_and_audited(
    tmp_path: Path, method: str
) -> None:
    """Each RPC parses its own request: garbage is INVALID_ARGUMENT (not UNKNOWN) + a row."""
    garbage = b"\xff\xff\xff\xff\x00garbage"

    async def main() -> tuple[grpc.StatusCode, str]:
        async with _gateway(tmp_path) as (directory, address):
            channel = transport.gateway_channel(address, directory.tls("FR"))
            try:
                code, detail, _ = await _raw_call(channel, method, garbage)
            finally:
                await channel.close()
        return code, detail

    code, detail = asyncio.run(main())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert detail in ("envelope rejected", "malformed request")
    assert [(r.rpc, r.peer, r.request_bytes, r.outcome, r.status) for r in _rows(tmp_path)] == [
        (method, "FR", len(garbage), "refused", "INVALID_ARGUMENT")
    ]


@pytest.mark.attack(
    "header ids of the wrong length or an unknown version, to be hex-logged by the gateway",
    adversary="rogue bureau",
    expect="INVALID_ARGUMENT + audit entry without the ids",
)
@pytest.mark.parametrize(
    "change",
    [
        {"message_id": b"\x01" * 17},
        {"message_id": b""},
        {"correlation_id": b"\x02" * 15},
        {"correlation_id": b"\x02" * 4000},
        {"version": 2},
    ],
    ids=["message-id-17", "message-id-empty", "correlation-15", "correlation-4000", "version-2"],
)
def test_header_out_of_bounds_is_refused_before_it_is_audited(
    tmp_path: Path, change: dict[str, object]
) -> None:
    """Bad id lengths or version: INVALID_ARGUMENT, and the row keeps no id from the header."""

    async def main() -> grpc.StatusCode:
        async with _gateway(tmp_path) as (directory, address):
            sealed = _seal(directory, "FR", "DE")
            header = envelope_pb2.Header.FromString(sealed.envelope.header)
            for field, value in change.items():
                setattr(header, field, value)
            forged = envelope.Envelope()
            forged.CopyFrom(sealed.envelope)
            forged.header = header.SerializeToString()
            channel = transport.gateway_channel(address, directory.tls("FR"))
            try:
                stub = gateway_pb2_grpc.GatewayServiceStub(channel)
                await stub.Query(gateway_pb2.QueryRequest(envelope=forged), timeout=5)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            finally:
                await channel.close()
        return grpc.StatusCode.OK

    assert asyncio.run(main()) == grpc.StatusCode.INVALID_ARGUMENT
    rows = _rows(tmp_path)
    assert [(r.sender, r.recipient, r.outcome, r.status) for r in rows] == [
        ("FR", "DE", "refused", "INVALID_ARGUMENT")
    ]
    for column in ("message_id", "correlation_id"):
        value = getattr(rows[0], column)
        assert len(value) in (0, 2 * envelope.MESSAGE_ID_LEN), column
    if "message_id" in change:
        assert rows[0].message_id == ""


@pytest.mark.attack(
    "a MultiQuery larger than the bureau's remaining tokens",
    adversary="rogue bureau",
    expect="RESOURCE_EXHAUSTED for the whole call + one audit entry per envelope",
)
def test_multi_query_that_does_not_fit_is_refused_whole(tmp_path: Path) -> None:
    """Burst 3: a MultiQuery of 2 passes (counts 2); the next of 2 is refused, nothing relayed."""
    clock = FakeClock()
    limiter = _limiter(clock, rate=1.0, burst=3)
    results: list[object] = []

    async def main() -> None:
        async with _gateway(tmp_path, limiter) as (directory, address):
            channel = transport.gateway_channel(address, directory.tls("FR"))
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            try:
                for _ in range(2):
                    request = gateway_pb2.MultiQueryRequest(
                        envelopes=[_seal(directory, "FR", b).envelope for b in ("DE", "IT")]
                    )
                    try:
                        results.append(await stub.MultiQuery(request, timeout=5))
                    except grpc.aio.AioRpcError as exc:
                        results.append((exc.code(), exc.details(), exc.trailing_metadata()))
            finally:
                await channel.close()

    asyncio.run(main())
    assert isinstance(results[0], gateway_pb2.MultiQueryResponse)  # relayed (no nodes: no answer)
    code, detail, trailers = results[1]  # type: ignore[misc]
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert detail == "rate limit for FR: retry after 1000 ms"
    assert dict(trailers) == {"retry-after-ms": "1000", "grpc-retry-pushback-ms": "1000"}
    rows = _rows(tmp_path)
    assert [(r.rpc, r.recipient, r.outcome, r.status) for r in rows[2:]] == [
        ("MultiQuery", "DE", "refused", "RESOURCE_EXHAUSTED"),
        ("MultiQuery", "IT", "refused", "RESOURCE_EXHAUSTED"),
    ]


@pytest.mark.parametrize("size", [0, 1, 127, 128, 16_383, 16_384, 1_000_000])
def test_wrapped_size_reads_the_envelope_size_protobuf_wrote(size: int) -> None:
    """For a serialized QueryRequest, wrapped_size is its envelope's size, whatever the
    length of the varint that frames it."""
    item = envelope.Envelope(sealed=b"s" * size) if size else envelope.Envelope()
    assert wrapped_size(_query(item)) == item.ByteSize()


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x0a", b"\x0a\x05abc", b"\x0a\x02abc", b"\x12\x01a", b"\x0a" + b"\xff" * 11],
    ids=["empty", "tag-only", "short", "long", "other-field", "endless-varint"],
)
def test_wrapped_size_is_none_for_anything_but_one_framed_envelope(raw: bytes) -> None:
    """Bytes that are not exactly one field-1 envelope have no wrapped size."""
    assert wrapped_size(raw) is None


def _parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Note the size of every request the gateway parses (the list it returns)."""
    parsed: list[int] = []
    parse = GatewayService._parse

    def noted(raw: bytes, message: Any, *, max_bytes: int | None) -> Any:
        parsed.append(len(raw))
        return parse(raw, message, max_bytes=max_bytes)

    monkeypatch.setattr(GatewayService, "_parse", staticmethod(noted))
    return parsed


def test_a_huge_query_is_refused_before_it_is_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Query of a megabyte against a 1024-byte limit is refused RESOURCE_EXHAUSTED without
    being parsed, naming (and auditing) the envelope's size; one that is not a single
    envelope is refused on the request's size, unparsed too."""
    parsed = _parses(monkeypatch)

    async def main() -> tuple[list[tuple[grpc.StatusCode, str]], int, int]:
        async with _gateway(tmp_path, max_envelope_bytes=1024) as (directory, address):
            big = _seal(directory, "FR", "DE").envelope
            big.sealed = b"\x00" * 1_000_000
            odd = _query(_seal(directory, "FR", "DE").envelope) + _query(big)  # two envelopes
            channel = transport.gateway_channel(address, directory.tls("FR"))
            try:
                results = []
                for payload in (_query(big), odd):
                    code, detail, _ = await _raw_call(channel, "Query", payload)
                    results.append((code, detail))
            finally:
                await channel.close()
        return results, big.ByteSize(), len(odd)

    results, size, odd_size = asyncio.run(main())
    assert parsed == []
    limit = "exceeds the gateway's limit of 1024 bytes"
    assert results == [
        (grpc.StatusCode.RESOURCE_EXHAUSTED, f"request of {size} bytes {limit}"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, f"request of {odd_size} bytes {limit}"),
    ]
    assert [(r.rpc, r.request_bytes, r.outcome) for r in _rows(tmp_path)] == [
        ("Query", size, "refused"),
        ("Query", odd_size, "refused"),
    ]


def test_a_query_envelope_of_exactly_the_limit_is_not_refused_for_its_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limit is on the envelope, not on the request that wraps it: an envelope of
    exactly max_envelope_bytes goes on to be routed (DE has no node here), one byte more is
    RESOURCE_EXHAUSTED."""
    parsed = _parses(monkeypatch)

    async def main(extra: int) -> tuple[grpc.StatusCode, str]:
        async with _gateway(tmp_path, max_envelope_bytes=1024) as (directory, address):
            item = _seal(directory, "FR", "DE").envelope
            item.sealed += b"\x00" * (1024 + extra - item.ByteSize())
            assert item.ByteSize() == 1024 + extra
            assert len(_query(item)) > 1024
            channel = transport.gateway_channel(address, directory.tls("FR"))
            try:
                code, detail, _ = await _raw_call(channel, "Query", _query(item))
            finally:
                await channel.close()
        return code, detail

    assert asyncio.run(main(0)) == (
        grpc.StatusCode.UNAVAILABLE,
        "bureau DE has no registered node",
    )
    assert len(parsed) == 1  # it had to be parsed to be routed
    assert asyncio.run(main(1)) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "request of 1025 bytes exceeds the gateway's limit of 1024 bytes",
    )


@pytest.mark.attack(
    "a MultiQuery with one envelope over the size limit",
    adversary="rogue bureau",
    expect="RESOURCE_EXHAUSTED + audit entry",
)
def test_an_oversized_envelope_inside_a_multi_query_is_refused(tmp_path: Path) -> None:
    """Each envelope of a MultiQuery is held to max_envelope_bytes; the call is refused."""

    async def main() -> tuple[grpc.StatusCode, str]:
        async with _gateway(tmp_path, max_envelope_bytes=1024) as (directory, address):
            big = _seal(directory, "FR", "IT").envelope
            big.signature = b"\x00" * 2000  # the gateway checks sizes before signatures
            request = gateway_pb2.MultiQueryRequest(
                envelopes=[_seal(directory, "FR", "DE").envelope, big]
            )
            channel = transport.gateway_channel(address, directory.tls("FR"))
            try:
                await gateway_pb2_grpc.GatewayServiceStub(channel).MultiQuery(request, timeout=5)
            except grpc.aio.AioRpcError as exc:
                return exc.code(), exc.details() or ""
            finally:
                await channel.close()
        return grpc.StatusCode.OK, ""

    code, detail = asyncio.run(main())
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit of 1024 bytes" in detail
    assert [(r.recipient, r.outcome, r.status) for r in _rows(tmp_path)] == [
        ("DE", "refused", "RESOURCE_EXHAUSTED"),
        ("IT", "refused", "RESOURCE_EXHAUSTED"),
    ]


@pytest.mark.attack(
    "a MultiQuery of thousands of tiny envelopes, to flood the audit trail",
    adversary="rogue bureau",
    expect="INVALID_ARGUMENT + a single audit entry",
)
def test_an_oversized_fan_out_is_audited_once(tmp_path: Path) -> None:
    """5,000 envelopes (over the 256 fan-out): refused with one row, not 5,000."""
    request = gateway_pb2.MultiQueryRequest(envelopes=[envelope.Envelope(header=b"x")] * 5_000)

    async def main() -> grpc.StatusCode:
        async with _gateway(tmp_path) as (directory, address):
            channel = transport.gateway_channel(address, directory.tls("FR"))
            try:
                code, _, _ = await _raw_call(channel, "MultiQuery", request.SerializeToString())
            finally:
                await channel.close()
        return code

    assert asyncio.run(main()) == grpc.StatusCode.INVALID_ARGUMENT
    assert [(r.rpc, r.outcome, r.status) for r in _rows(tmp_path)] == [
        ("MultiQuery", "refused", "INVALID_ARGUMENT")
    ]


@pytest.mark.attack(
    "a bureau floods the control plane (GetDirectory, Register, Routes)",
    adversary="rogue bureau",
    expect="RESOURCE_EXHAUSTED + retry-after-ms + audit entry; queries, other bureaus unaffected",
)
def test_control_calls_have_a_bucket_of_their_own(tmp_path: Path) -> None:
    """Past its control burst a bureau's GetDirectory is refused with a retry hint and
    audited, while its own queries and another bureau's control calls still pass."""
    request = gateway_pb2.GetDirectoryRequest(bureaus=["DE"]).SerializeToString()

    async def main() -> list[tuple[str, grpc.StatusCode, dict[str, str]]]:
        results = []
        async with _gateway(tmp_path, control_burst=2, control_rate_per_s=0.01) as (
            directory,
            address,
        ):
            for bureau, method, payload in [
                ("FR", "GetDirectory", request),
                ("FR", "Routes", b""),
                ("FR", "GetDirectory", request),  # third control call: over the burst
                ("IT", "GetDirectory", request),  # another bureau: its own bucket
                ("FR", "Query", _query(_seal(directory, "FR", "DE").envelope)),
            ]:
                channel = transport.gateway_channel(address, directory.tls(bureau))
                try:
                    code, _, trailers = await _raw_call(channel, method, payload)
                finally:
                    await channel.close()
                results.append((method, code, trailers))
        return results

    results = asyncio.run(main())
    codes = [code for _, code, _ in results]
    assert codes[:4] == [
        grpc.StatusCode.OK,
        grpc.StatusCode.OK,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.OK,
    ]
    # The query is not refused by the control bucket (DE has no node here: UNAVAILABLE).
    assert codes[4] == grpc.StatusCode.UNAVAILABLE
    assert int(results[2][2]["retry-after-ms"]) > 0
    refused = [(r.rpc, r.peer, r.status) for r in _rows(tmp_path) if r.outcome == "refused"]
    assert refused == [("GetDirectory", "FR", "RESOURCE_EXHAUSTED")]


@pytest.mark.attack(
    "a bureau registers its route as a gRPC target or name (unix:/path, dns:///host)",
    adversary="rogue bureau",
    expect="INVALID_ARGUMENT + audit entry; only IP:port routes are accepted",
)
@pytest.mark.parametrize(
    ("address", "accepted"),
    [
        ("127.0.0.1:7601", True),
        ("[::1]:7601", True),
        ("unix:/tmp/ncbsim.sock:1", False),
        ("dns:///example.org:443", False),
        ("localhost:7601", False),
        ("127.0.0.1:0", False),
    ],
)
def test_register_accepts_only_ip_and_port(tmp_path: Path, address: str, accepted: bool) -> None:
    """A route is an IP literal and a real port; anything else is refused and audited."""
    request = gateway_pb2.RegisterRequest(address=address).SerializeToString()

    async def main() -> grpc.StatusCode:
        async with _gateway(tmp_path) as (directory, gateway_address):
            channel = transport.gateway_channel(gateway_address, directory.tls("FR"))
            try:
                code, _, _ = await _raw_call(channel, "Register", request)
            finally:
                await channel.close()
        return code

    code = asyncio.run(main())
    refused = [(r.rpc, r.peer, r.status) for r in _rows(tmp_path) if r.outcome == "refused"]
    if accepted:
        assert (code, refused) == (grpc.StatusCode.OK, [])
    else:
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert refused == [("Register", "FR", "INVALID_ARGUMENT")]
