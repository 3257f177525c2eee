"""The query relay's refusals (gateway/relay.py), in-process over real mTLS: the
statuses and audit rows Query and MultiQuery answer oversized, malformed or over-limit
requests with."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
from gateway_support import (
    FakeClock,
    audit_rows,
    fake_limiter,
    query_request,
    raw_call,
    relay_gateway,
    seal_query_for,
)

from ncbsim import envelope, pki, transport
from ncbsim.gateway import relay
from ncbsim.v2 import envelope_pb2, gateway_pb2, gateway_pb2_grpc


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
        {"version": 3},  # 1 and 2 (sessions) are relayed
    ],
    ids=["message-id-17", "message-id-empty", "correlation-15", "correlation-4000", "version-3"],
)
def test_header_out_of_bounds_is_refused_before_it_is_audited(
    pki_dir: pki.PkiDir, tmp_path: Path, change: dict[str, object]
) -> None:
    """Bad id lengths or version: INVALID_ARGUMENT, and the row keeps no id from the header."""

    async def main() -> grpc.StatusCode:
        async with relay_gateway(pki_dir) as address:
            sealed = seal_query_for(pki_dir, "FR", "DE")
            header = envelope_pb2.Header.FromString(sealed.envelope.header)
            for field, value in change.items():
                setattr(header, field, value)
            forged = envelope.Envelope()
            forged.CopyFrom(sealed.envelope)
            forged.header = header.SerializeToString()
            channel = transport.gateway_channel(address, pki_dir.tls("FR"))
            try:
                stub = gateway_pb2_grpc.GatewayServiceStub(channel)
                await stub.Query(gateway_pb2.QueryRequest(envelope=forged), timeout=5)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            finally:
                await channel.close()
        return grpc.StatusCode.OK

    assert asyncio.run(main()) == grpc.StatusCode.INVALID_ARGUMENT
    rows = audit_rows(tmp_path)
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
def test_multi_query_that_does_not_fit_is_refused_whole(
    pki_dir: pki.PkiDir, tmp_path: Path
) -> None:
    """Burst 3: a MultiQuery of 2 passes (counts 2); the next of 2 is refused, nothing relayed."""
    clock = FakeClock()
    limiter = fake_limiter(clock, rate=1.0, burst=3)
    results: list[object] = []

    async def main() -> None:
        async with relay_gateway(pki_dir, limiter) as address:
            channel = transport.gateway_channel(address, pki_dir.tls("FR"))
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            try:
                for _ in range(2):
                    request = gateway_pb2.MultiQueryRequest(
                        envelopes=[seal_query_for(pki_dir, "FR", b).envelope for b in ("DE", "IT")]
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
    rows = audit_rows(tmp_path)
    assert [(r.rpc, r.recipient, r.outcome, r.status) for r in rows[2:]] == [
        ("MultiQuery", "DE", "refused", "RESOURCE_EXHAUSTED"),
        ("MultiQuery", "IT", "refused", "RESOURCE_EXHAUSTED"),
    ]


def _parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Note the size of every request the gateway parses (the list it returns)."""
    parsed: list[int] = []
    parse = relay.parse

    def noted(raw: bytes, message: Any, *, max_bytes: int | None) -> Any:
        parsed.append(len(raw))
        return parse(raw, message, max_bytes=max_bytes)

    monkeypatch.setattr(relay, "parse", noted)
    return parsed


def test_a_huge_query_is_refused_before_it_is_parsed(
    pki_dir: pki.PkiDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Query of a megabyte against a 1024-byte limit is refused RESOURCE_EXHAUSTED without
    being parsed, naming (and auditing) the envelope's size; one that is not a single
    envelope is refused on the request's size, unparsed too."""
    parsed = _parses(monkeypatch)

    async def main() -> tuple[list[tuple[grpc.StatusCode, str]], int, int]:
        async with relay_gateway(pki_dir, max_envelope_bytes=1024) as address:
            big = seal_query_for(pki_dir, "FR", "DE").envelope
            big.sealed = b"\x00" * 1_000_000
            odd = query_request(seal_query_for(pki_dir, "FR", "DE").envelope) + query_request(
                big
            )  # two envelopes
            channel = transport.gateway_channel(address, pki_dir.tls("FR"))
            try:
                results = []
                for payload in (query_request(big), odd):
                    code, detail, _ = await raw_call(channel, "Query", payload)
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
    assert [(r.rpc, r.request_bytes, r.outcome) for r in audit_rows(tmp_path)] == [
        ("Query", size, "refused"),
        ("Query", odd_size, "refused"),
    ]


def test_a_query_envelope_of_exactly_the_limit_is_not_refused_for_its_size(
    pki_dir: pki.PkiDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limit is on the envelope, not on the request that wraps it: an envelope of
    exactly max_envelope_bytes goes on to be routed (DE has no node here), one byte more is
    RESOURCE_EXHAUSTED."""
    parsed = _parses(monkeypatch)

    async def main(extra: int) -> tuple[grpc.StatusCode, str]:
        async with relay_gateway(pki_dir, max_envelope_bytes=1024) as address:
            item = seal_query_for(pki_dir, "FR", "DE").envelope
            item.sealed += b"\x00" * (1024 + extra - item.ByteSize())
            assert item.ByteSize() == 1024 + extra
            assert len(query_request(item)) > 1024
            channel = transport.gateway_channel(address, pki_dir.tls("FR"))
            try:
                code, detail, _ = await raw_call(channel, "Query", query_request(item))
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
def test_an_oversized_envelope_inside_a_multi_query_is_refused(
    pki_dir: pki.PkiDir, tmp_path: Path
) -> None:
    """Each envelope of a MultiQuery is held to max_envelope_bytes; the call is refused."""

    async def main() -> tuple[grpc.StatusCode, str]:
        async with relay_gateway(pki_dir, max_envelope_bytes=1024) as address:
            big = seal_query_for(pki_dir, "FR", "IT").envelope
            big.signature = b"\x00" * 2000  # the gateway checks sizes before signatures
            request = gateway_pb2.MultiQueryRequest(
                envelopes=[seal_query_for(pki_dir, "FR", "DE").envelope, big]
            )
            channel = transport.gateway_channel(address, pki_dir.tls("FR"))
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
    assert [(r.recipient, r.outcome, r.status) for r in audit_rows(tmp_path)] == [
        ("DE", "refused", "RESOURCE_EXHAUSTED"),
        ("IT", "refused", "RESOURCE_EXHAUSTED"),
    ]


@pytest.mark.attack(
    "a MultiQuery of thousands of tiny envelopes, to flood the audit trail",
    adversary="rogue bureau",
    expect="INVALID_ARGUMENT + a single audit entry",
)
def test_an_oversized_fan_out_is_audited_once(pki_dir: pki.PkiDir, tmp_path: Path) -> None:
    """5,000 envelopes (over the 256 fan-out): refused with one row, not 5,000."""
    request = gateway_pb2.MultiQueryRequest(envelopes=[envelope.Envelope(header=b"x")] * 5_000)

    async def main() -> grpc.StatusCode:
        async with relay_gateway(pki_dir) as address:
            channel = transport.gateway_channel(address, pki_dir.tls("FR"))
            try:
                code, _, _ = await raw_call(channel, "MultiQuery", request.SerializeToString())
            finally:
                await channel.close()
        return code

    assert asyncio.run(main()) == grpc.StatusCode.INVALID_ARGUMENT
    assert [(r.rpc, r.outcome, r.status) for r in audit_rows(tmp_path)] == [
        ("MultiQuery", "refused", "INVALID_ARGUMENT")
    ]
