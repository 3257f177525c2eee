"""Gateway admission: every malformed, misaddressed or unauthorised call gets a clear status.

The gateway runs in-process here, on a real mTLS socket on loopback; no bureau node is
needed because every call below is refused before it would be relayed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest

from gateway.audit import AuditLog, read_all
from gateway.router import Router
from gateway.server import GatewayService
from ncbsim import _crypto, envelope, pki, transport
from ncbsim.config import GatewayConfig
from ncbsim.directory import Directory
from ncbsim.errors import DirectoryError
from ncbsim.identity import Identity
from ncbsim.peers import Peers
from ncbsim.serving import start_server
from ncbsim.v1 import directory_pb2, gateway_pb2, gateway_pb2_grpc, query_pb2

Call = Callable[[gateway_pb2_grpc.GatewayStub], Awaitable[object]]


def _run(tmp_path: Path, caller: str, call: Call) -> tuple[grpc.StatusCode, str]:
    """Start a gateway, make one call as ``caller``, return its status and detail."""
    directory = pki.PkiDir(tmp_path / "pki")
    if not directory.ca_key.exists():
        pki.init(directory.root, ["FR", "DE", "IT"])

    async def main() -> tuple[grpc.StatusCode, str]:
        config = GatewayConfig(pki=directory, audit_path=tmp_path / "audit.sqlite")
        audit = AuditLog(config.audit_path)
        router = Router(directory.tls("gateway"))
        service = GatewayService(config, router, audit)
        served = await start_server(
            directory.tls("gateway"),
            "127.0.0.1:0",
            [],
            register=lambda s: gateway_pb2_grpc.add_GatewayServicer_to_server(service, s),
        )
        channel = transport.gateway_channel(served.address, directory.tls(caller))
        try:
            await call(gateway_pb2_grpc.GatewayStub(channel))
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
        finally:
            await channel.close()
            await served.server.stop(0)
            await router.close()
            audit.close()
        return grpc.StatusCode.OK, ""

    return asyncio.run(main())


def _sealed(tmp_path: Path, sender: str, recipient: str) -> envelope.SealedRequest:
    directory = pki.PkiDir(tmp_path / "pki")
    if not directory.ca_key.exists():
        pki.init(directory.root, ["FR", "DE", "IT"])
    now = int(time.time() * 1000)
    me = Identity.load(directory, sender, now_ms=now)
    known = recipient if recipient in ("FR", "DE", "IT") else "IT"
    # For an unknown recipient, borrow a real key and relabel it: the gateway must refuse
    # by the header's recipient alone.
    peer = dataclasses.replace(
        Identity.load(directory, known, now_ms=now).as_peer(), bureau=recipient
    )
    key, public = envelope.new_response_key()
    body = query_pb2.QueryRequest(
        response_key=public, document=query_pb2.DocumentQuery(number="X", issuer="DE")
    )
    return envelope.seal_request(
        body.SerializeToString(), sender=me, recipient=peer, response_key=key
    )


def test_malformed_header_is_invalid_argument(tmp_path: Path) -> None:
    """An envelope whose header is not a protobuf Header is refused as INVALID_ARGUMENT."""
    bad = envelope.Envelope(header=b"\xff\xff\xff", sealed=b"x", signature=b"y")
    code, detail = _run(tmp_path, "FR", lambda stub: stub.Query(bad, timeout=5))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert detail == "envelope rejected"


def test_unknown_recipient_is_not_found(tmp_path: Path) -> None:
    """A recipient with no directory entry is refused as NOT_FOUND, naming only the code."""
    sealed = _sealed(tmp_path, "FR", "ZZ")
    code, detail = _run(tmp_path, "FR", lambda stub: stub.Query(sealed.envelope, timeout=5))
    assert code == grpc.StatusCode.NOT_FOUND
    assert "ZZ" in detail


def test_registered_bureau_without_node_is_unavailable(tmp_path: Path) -> None:
    """A known bureau whose node never registered answers UNAVAILABLE, and is audited."""
    sealed = _sealed(tmp_path, "FR", "DE")
    code, _ = _run(tmp_path, "FR", lambda stub: stub.Query(sealed.envelope, timeout=5))
    assert code == grpc.StatusCode.UNAVAILABLE
    rows = read_all(tmp_path / "audit.sqlite")
    assert [(r.sender, r.recipient, r.outcome) for r in rows] == [("FR", "DE", "no_answer")]


def test_operator_certificate_cannot_send_queries(tmp_path: Path) -> None:
    """Only a bureau certificate may send: the operator's is refused as PERMISSION_DENIED."""
    sealed = _sealed(tmp_path, "FR", "DE")
    code, _ = _run(tmp_path, "operator", lambda stub: stub.Query(sealed.envelope, timeout=5))
    assert code == grpc.StatusCode.PERMISSION_DENIED


def test_operator_certificate_cannot_register_a_route(tmp_path: Path) -> None:
    """Register names the bureau by the caller's certificate, so the operator cannot."""
    request = gateway_pb2.RegisterRequest(address="127.0.0.1:1")
    code, _ = _run(tmp_path, "operator", lambda stub: stub.Register(request, timeout=5))
    assert code == grpc.StatusCode.PERMISSION_DENIED


def test_register_with_a_malformed_address_is_refused(tmp_path: Path) -> None:
    """A bureau registering a route that is not host:port gets INVALID_ARGUMENT."""
    request = gateway_pb2.RegisterRequest(address="no-port-here")
    code, detail = _run(tmp_path, "FR", lambda stub: stub.Register(request, timeout=5))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "host:port" in detail


@pytest.mark.parametrize(
    "envelopes",
    [[], "duplicate"],
    ids=["empty", "duplicate-recipient"],
)
def test_bad_multi_query_is_invalid_argument(tmp_path: Path, envelopes: object) -> None:
    """A multi-bureau query with no envelopes, or two to one bureau, is INVALID_ARGUMENT."""
    items = []
    if envelopes == "duplicate":
        items = [_sealed(tmp_path, "FR", "DE").envelope, _sealed(tmp_path, "FR", "DE").envelope]
    request = gateway_pb2.MultiQueryRequest(envelopes=items)
    code, _ = _run(tmp_path, "FR", lambda stub: stub.MultiQuery(request, timeout=5))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_multi_query_lists_unregistered_bureaus_as_no_answer(tmp_path: Path) -> None:
    """Bureaus with no registered node come back as NO_ANSWER, each of them listed."""
    request = gateway_pb2.MultiQueryRequest(
        envelopes=[_sealed(tmp_path, "FR", b).envelope for b in ("DE", "IT")]
    )
    replies: list[gateway_pb2.MultiQueryReply] = []

    async def call(stub: gateway_pb2_grpc.GatewayStub) -> None:
        replies.append(await stub.MultiQuery(request, timeout=5))

    assert _run(tmp_path, "FR", call)[0] == grpc.StatusCode.OK
    deliveries = {d.bureau: d.status for d in replies[0].deliveries}
    assert deliveries == {
        "DE": gateway_pb2.DELIVERY_STATUS_NO_ANSWER,
        "IT": gateway_pb2.DELIVERY_STATUS_NO_ANSWER,
    }


def test_directory_serves_every_root_signed_entry(tmp_path: Path) -> None:
    """GetDirectory returns each bureau's entry exactly as the PKI signed it."""
    replies: list[gateway_pb2.Directory] = []

    async def call(stub: gateway_pb2_grpc.GatewayStub) -> None:
        replies.append(await stub.GetDirectory(gateway_pb2.DirectoryRequest(), timeout=5))

    assert _run(tmp_path, "FR", call)[0] == grpc.StatusCode.OK
    on_disk = sorted((tmp_path / "pki" / "directory").glob("*.entry"))
    assert sorted(e.SerializeToString() for e in replies[0].entries) == sorted(
        p.read_bytes() for p in on_disk
    )


def test_a_key_substituted_at_the_gateway_is_refused_by_bureaus(tmp_path: Path) -> None:
    """If the gateway serves DE's entry with another encryption key, FR never uses it."""
    directory = pki.PkiDir(tmp_path / "pki")
    pki.init(directory.root, ["FR", "DE", "IT"])
    entry_path = directory.entry_path("DE")
    signed = directory_pb2.SignedDirectoryEntry.FromString(entry_path.read_bytes())
    entry = directory_pb2.DirectoryEntry.FromString(signed.entry)
    entry.encryption_key = _crypto.x25519_public_bytes(_crypto.x25519_generate())
    signed.entry = entry.SerializeToString()  # the root's signature no longer matches
    entry_path.write_bytes(signed.SerializeToString())
    errors: list[Exception] = []

    async def call(stub: gateway_pb2_grpc.GatewayStub) -> None:
        peers = Peers(Directory(directory.root_public_key()), stub)
        try:
            await peers.resolve(["DE"])
        except DirectoryError as exc:
            errors.append(exc)
        assert "IT" in await peers.load_all()  # the honest entries still verify

    assert _run(tmp_path, "FR", call)[0] == grpc.StatusCode.OK
    assert len(errors) == 1
