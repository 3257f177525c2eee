"""The control plane (gateway/control.py) and every RPC's parsing, in-process over real
mTLS: garbage to every Gateway RPC, the control calls' own bucket, Register's addresses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from gateway_support import audit_rows, query_request, raw_call, relay_gateway, seal_query_for

from ncbsim import pki, transport
from ncbsim.v2 import gateway_pb2

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
    pki_dir: pki.PkiDir, tmp_path: Path, method: str
) -> None:
    """Each RPC parses its own request: garbage is INVALID_ARGUMENT (not UNKNOWN) + a row."""
    garbage = b"\xff\xff\xff\xff\x00garbage"

    async def main() -> tuple[grpc.StatusCode, str]:
        async with relay_gateway(pki_dir) as address:
            channel = transport.gateway_channel(address, pki_dir.tls("FR"))
            try:
                code, detail, _ = await raw_call(channel, method, garbage)
            finally:
                await channel.close()
        return code, detail

    code, detail = asyncio.run(main())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert detail in ("envelope rejected", "malformed request")
    assert [
        (r.rpc, r.peer, r.request_bytes, r.outcome, r.status) for r in audit_rows(tmp_path)
    ] == [(method, "FR", len(garbage), "refused", "INVALID_ARGUMENT")]


@pytest.mark.attack(
    "a bureau floods the control plane (GetDirectory, Register, Routes)",
    adversary="rogue bureau",
    expect="RESOURCE_EXHAUSTED + retry-after-ms + audit entry; queries, other bureaus unaffected",
)
def test_control_calls_have_a_bucket_of_their_own(pki_dir: pki.PkiDir, tmp_path: Path) -> None:
    """Past its control burst a bureau's GetDirectory is refused with a retry hint and
    audited, while its own queries and another bureau's control calls still pass."""
    request = gateway_pb2.GetDirectoryRequest(bureaus=["DE"]).SerializeToString()

    async def main() -> list[tuple[str, grpc.StatusCode, dict[str, str]]]:
        results = []
        async with relay_gateway(pki_dir, control_burst=2, control_rate_per_s=0.01) as address:
            for bureau, method, payload in [
                ("FR", "GetDirectory", request),
                ("FR", "Routes", b""),
                ("FR", "GetDirectory", request),  # third control call: over the burst
                ("IT", "GetDirectory", request),  # another bureau: its own bucket
                ("FR", "Query", query_request(seal_query_for(pki_dir, "FR", "DE").envelope)),
            ]:
                channel = transport.gateway_channel(address, pki_dir.tls(bureau))
                try:
                    code, _, trailers = await raw_call(channel, method, payload)
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
    refused = [(r.rpc, r.peer, r.status) for r in audit_rows(tmp_path) if r.outcome == "refused"]
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
def test_register_accepts_only_ip_and_port(
    pki_dir: pki.PkiDir, tmp_path: Path, address: str, accepted: bool
) -> None:
    """A route is an IP literal and a real port; anything else is refused and audited."""
    request = gateway_pb2.RegisterRequest(address=address).SerializeToString()

    async def main() -> grpc.StatusCode:
        async with relay_gateway(pki_dir) as gateway_address:
            channel = transport.gateway_channel(gateway_address, pki_dir.tls("FR"))
            try:
                code, _, _ = await raw_call(channel, "Register", request)
            finally:
                await channel.close()
        return code

    code = asyncio.run(main())
    refused = [(r.rpc, r.peer, r.status) for r in audit_rows(tmp_path) if r.outcome == "refused"]
    if accepted:
        assert (code, refused) == (grpc.StatusCode.OK, [])
    else:
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert refused == [("Register", "FR", "INVALID_ARGUMENT")]
