"""Gateway admission: every malformed, misaddressed or unauthorised call gets a clear status.

The gateway runs in-process here, on a real mTLS socket on loopback; no bureau node is
needed because every call below is refused before it would be relayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from support import document_query, with_bureaus

from ncbsim import _crypto, envelope, pki, transport
from ncbsim.directory import Directory
from ncbsim.errors import ConfigError, DirectoryError
from ncbsim.gateway.audit import AuditLog, read_all
from ncbsim.gateway.config import GatewayConfig
from ncbsim.gateway.directory_files import DirectoryFiles
from ncbsim.gateway.parts import GatewayParts
from ncbsim.gateway.relay import reply_timeout
from ncbsim.gateway.router import Router
from ncbsim.gateway.server import GatewayService, add_to_server
from ncbsim.identity import Identity
from ncbsim.peers import Peers
from ncbsim.serving import start_server
from ncbsim.v2 import directory_pb2, gateway_pb2, gateway_pb2_grpc, query_pb2
from ncbsim.workdir import GatewayFiles

Call = Callable[[gateway_pb2_grpc.GatewayServiceStub], Awaitable[object]]


@contextlib.asynccontextmanager
async def _gateway(directory: pki.PkiDir, config: GatewayConfig) -> AsyncIterator[str]:
    """An in-process gateway on a real mTLS loopback socket; yields its address."""
    audit = AuditLog(config.files.audit)
    router = Router(directory.tls("gateway"))
    service = GatewayService(GatewayParts(config, router, audit))
    served = await start_server(
        directory.tls("gateway"),
        "127.0.0.1:0",
        [],
        register=lambda s: add_to_server(service, s),
    )
    try:
        yield served.address
    finally:
        await served.server.stop(0)
        await router.close()
        audit.close()


def _run(directory: pki.PkiDir, caller: str, call: Call) -> tuple[grpc.StatusCode, str]:
    """Start a gateway, make one call as ``caller``, return its status and detail. The audit
    trail is ``audit.sqlite`` beside the PKI's folder (in ``tmp_path``, for ``pki_dir``)."""

    async def main() -> tuple[grpc.StatusCode, str]:
        audit = directory.root.parent / "audit.sqlite"
        config = GatewayConfig(pki=directory, files=GatewayFiles.beside(audit))
        async with _gateway(directory, config) as address:
            channel = transport.gateway_channel(address, directory.tls(caller))
            try:
                await call(gateway_pb2_grpc.GatewayServiceStub(channel))
            except grpc.aio.AioRpcError as exc:
                return exc.code(), exc.details() or ""
            finally:
                await channel.close()
        return grpc.StatusCode.OK, ""

    return asyncio.run(main())


def _query(item: envelope.Envelope) -> Call:
    """A call of Query with ``item``."""
    return lambda stub: stub.Query(gateway_pb2.QueryRequest(envelope=item), timeout=5)


def _sealed(directory: pki.PkiDir, sender: str, recipient: str) -> envelope.SealedRequest:
    now = int(time.time() * 1000)
    me = Identity.load(directory, sender, now_ms=now)
    known = recipient if recipient in ("FR", "DE", "IT") else "IT"
    # For an unknown recipient, borrow a real key and relabel it: the gateway must refuse
    # by the header's recipient alone.
    peer = dataclasses.replace(
        Identity.load(directory, known, now_ms=now).as_peer(), bureau=recipient
    )
    key, public = envelope.new_response_key()
    body = document_query("X", "DE", response_key=public)
    return envelope.seal_request(
        body.SerializeToString(), sender=me, recipient=peer, response_key=key
    )


def test_malformed_header_is_invalid_argument(pki_dir: pki.PkiDir) -> None:
    """An envelope whose header is not a protobuf Header is refused as INVALID_ARGUMENT."""
    bad = envelope.Envelope(header=b"\xff\xff\xff", sealed=b"x", signature=b"y")
    code, detail = _run(pki_dir, "FR", _query(bad))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert detail == "envelope rejected"


def test_unknown_recipient_is_not_found(pki_dir: pki.PkiDir) -> None:
    """A recipient with no directory entry is refused as NOT_FOUND, naming only the code."""
    sealed = _sealed(pki_dir, "FR", "ZZ")
    code, detail = _run(pki_dir, "FR", _query(sealed.envelope))
    assert code == grpc.StatusCode.NOT_FOUND
    assert "ZZ" in detail


def test_registered_bureau_without_node_is_unavailable(pki_dir: pki.PkiDir, tmp_path: Path) -> None:
    """A known bureau whose node never registered answers UNAVAILABLE, and is audited."""
    sealed = _sealed(pki_dir, "FR", "DE")
    code, _ = _run(pki_dir, "FR", _query(sealed.envelope))
    assert code == grpc.StatusCode.UNAVAILABLE
    rows = read_all(tmp_path / "audit.sqlite")
    assert [(r.sender, r.recipient, r.outcome) for r in rows] == [("FR", "DE", "no_answer")]


def test_operator_certificate_cannot_send_queries(pki_dir: pki.PkiDir) -> None:
    """Only a bureau certificate may send: the operator's is refused as PERMISSION_DENIED."""
    sealed = _sealed(pki_dir, "FR", "DE")
    code, _ = _run(pki_dir, "operator", _query(sealed.envelope))
    assert code == grpc.StatusCode.PERMISSION_DENIED


def test_operator_certificate_cannot_register_a_route(pki_dir: pki.PkiDir) -> None:
    """Register names the bureau by the caller's certificate, so the operator cannot."""
    request = gateway_pb2.RegisterRequest(address="127.0.0.1:1")
    code, _ = _run(pki_dir, "operator", lambda stub: stub.Register(request, timeout=5))
    assert code == grpc.StatusCode.PERMISSION_DENIED


def test_register_with_a_malformed_address_is_refused(pki_dir: pki.PkiDir) -> None:
    """A bureau registering a route that is not host:port gets INVALID_ARGUMENT."""
    request = gateway_pb2.RegisterRequest(address="no-port-here")
    code, detail = _run(pki_dir, "FR", lambda stub: stub.Register(request, timeout=5))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "host:port" in detail


@pytest.mark.parametrize(
    "envelopes",
    [[], "duplicate"],
    ids=["empty", "duplicate-recipient"],
)
def test_bad_multi_query_is_invalid_argument(pki_dir: pki.PkiDir, envelopes: object) -> None:
    """A multi-bureau query with no envelopes, or two to one bureau, is INVALID_ARGUMENT."""
    items = []
    if envelopes == "duplicate":
        items = [_sealed(pki_dir, "FR", "DE").envelope, _sealed(pki_dir, "FR", "DE").envelope]
    request = gateway_pb2.MultiQueryRequest(envelopes=items)
    code, _ = _run(pki_dir, "FR", lambda stub: stub.MultiQuery(request, timeout=5))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_multi_query_lists_unregistered_bureaus_as_no_answer(pki_dir: pki.PkiDir) -> None:
    """Bureaus with no registered node come back as NO_ANSWER, each of them listed."""
    request = gateway_pb2.MultiQueryRequest(
        envelopes=[_sealed(pki_dir, "FR", b).envelope for b in ("DE", "IT")]
    )
    replies: list[gateway_pb2.MultiQueryResponse] = []

    async def call(stub: gateway_pb2_grpc.GatewayServiceStub) -> None:
        replies.append(await stub.MultiQuery(request, timeout=5))

    assert _run(pki_dir, "FR", call)[0] == grpc.StatusCode.OK
    deliveries = {d.bureau: d.status for d in replies[0].deliveries}
    assert deliveries == {
        "DE": gateway_pb2.DELIVERY_STATUS_NO_ANSWER,
        "IT": gateway_pb2.DELIVERY_STATUS_NO_ANSWER,
    }


def test_directory_serves_every_root_signed_entry(pki_dir: pki.PkiDir) -> None:
    """GetDirectory returns each bureau's entry exactly as the PKI signed it."""
    replies: list[gateway_pb2.GetDirectoryResponse] = []

    async def call(stub: gateway_pb2_grpc.GatewayServiceStub) -> None:
        replies.append(await stub.GetDirectory(gateway_pb2.GetDirectoryRequest(), timeout=5))

    assert _run(pki_dir, "FR", call)[0] == grpc.StatusCode.OK
    on_disk = sorted(pki_dir.directory.glob("*.entry"))
    assert sorted(e.SerializeToString() for e in replies[0].entries) == sorted(
        p.read_bytes() for p in on_disk
    )


def test_a_key_substituted_at_the_gateway_is_refused_by_bureaus(pki_dir: pki.PkiDir) -> None:
    """If the gateway serves DE's entry with another encryption key, FR never uses it."""
    entry_path = pki_dir.entry_path("DE")
    signed = directory_pb2.SignedDirectoryEntry.FromString(entry_path.read_bytes())
    entry = directory_pb2.DirectoryEntry.FromString(signed.entry)
    entry.encryption_key = _crypto.x25519_public_bytes(_crypto.x25519_generate())
    signed.entry = entry.SerializeToString()  # the root's signature no longer matches
    entry_path.write_bytes(signed.SerializeToString())
    errors: list[Exception] = []

    async def call(stub: gateway_pb2_grpc.GatewayServiceStub) -> None:
        peers = Peers(Directory(pki_dir.root_public_key()), stub)
        try:
            await peers.resolve(["DE"])
        except DirectoryError as exc:
            errors.append(exc)
        assert "IT" in await peers.load_all()  # the honest entries still verify

    assert _run(pki_dir, "FR", call)[0] == grpc.StatusCode.OK
    assert len(errors) == 1


# ----------------------------------------------------------------------------- admission limits


@pytest.mark.parametrize("recipient", ["de", "DEU", "D", "X" * 10_000])
def test_malformed_recipient_is_refused_and_kept_out_of_the_trail(
    pki_dir: pki.PkiDir, tmp_path: Path, recipient: str
) -> None:
    """A recipient that is not a bureau code is INVALID_ARGUMENT, and never copied to audit."""
    sealed = _sealed(pki_dir, "FR", recipient)
    code, detail = _run(pki_dir, "FR", _query(sealed.envelope))
    assert (code, detail) == (grpc.StatusCode.INVALID_ARGUMENT, "envelope rejected")
    rows = read_all(tmp_path / "audit.sqlite")
    assert [(r.sender, r.recipient, r.outcome) for r in rows] == [("FR", "", "refused")]


def test_overlong_sender_is_refused_and_kept_out_of_the_trail(
    pki_dir: pki.PkiDir, tmp_path: Path
) -> None:
    """A sender that is not the caller (here not even a code) is refused, and not audited."""
    me = Identity.load(pki_dir, "FR", now_ms=int(time.time() * 1000))
    forged = Identity.from_keys("F" * 10_000, me.signing_key, me.encryption_key)
    de = Identity.load(pki_dir, "DE", now_ms=int(time.time() * 1000)).as_peer()
    key, public = envelope.new_response_key()
    body = query_pb2.Query(response_key=public)
    sealed = envelope.seal_request(
        body.SerializeToString(), sender=forged, recipient=de, response_key=key
    )
    code, _ = _run(pki_dir, "FR", _query(sealed.envelope))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    rows = read_all(tmp_path / "audit.sqlite")
    assert [(r.peer, r.sender, r.recipient, r.outcome) for r in rows] == [
        ("FR", "", "DE", "refused")
    ]


# ----------------------------------------------------------------------------- relay outcomes


def test_unreachable_node_is_no_answer_for_query_and_multi_query(
    pki_dir: pki.PkiDir, tmp_path: Path
) -> None:
    """A registered node that does not answer is "no answer" in Query and NO_ANSWER in fan-out."""
    query = _sealed(pki_dir, "FR", "DE")
    multi = gateway_pb2.MultiQueryRequest(envelopes=[_sealed(pki_dir, "FR", "DE").envelope])
    results: list[object] = []

    async def main() -> None:
        config = GatewayConfig(
            pki=pki_dir,
            files=GatewayFiles.beside(tmp_path / "audit.sqlite"),
            default_deadline_ms=2_000,
        )
        async with _gateway(pki_dir, config) as address:
            as_de = transport.gateway_channel(address, pki_dir.tls("DE"))
            as_fr = transport.gateway_channel(address, pki_dir.tls("FR"))
            try:
                # Port 1 on loopback: nothing listens, so every relay fails to connect.
                register = gateway_pb2.RegisterRequest(address="127.0.0.1:1")
                await gateway_pb2_grpc.GatewayServiceStub(as_de).Register(register, timeout=5)
                stub = gateway_pb2_grpc.GatewayServiceStub(as_fr)
                try:
                    await stub.Query(gateway_pb2.QueryRequest(envelope=query.envelope), timeout=5)
                except grpc.aio.AioRpcError as exc:
                    results.append((exc.code(), exc.details()))
                results.append(await stub.MultiQuery(multi, timeout=5))
            finally:
                await as_de.close()
                await as_fr.close()

    asyncio.run(main())
    assert results[0] == (grpc.StatusCode.UNAVAILABLE, "no answer from DE")
    reply = results[1]
    assert isinstance(reply, gateway_pb2.MultiQueryResponse)
    assert [(d.bureau, d.status, d.detail) for d in reply.deliveries] == [
        ("DE", gateway_pb2.DELIVERY_STATUS_NO_ANSWER, "UNAVAILABLE")
    ]
    rows = read_all(tmp_path / "audit.sqlite")
    assert [(r.rpc, r.recipient, r.outcome, r.status) for r in rows] == [
        ("Query", "DE", "no_answer", "UNAVAILABLE"),
        ("MultiQuery", "DE", "no_answer", "UNAVAILABLE"),
    ]


@pytest.mark.parametrize(
    ("remaining", "margin_ms", "expected"),
    [(None, 20, 4.5), (1.0, 20, 0.9), (0.1, 20, 0.08), (0.1, 50, 0.05), (None, 0, 4.5)],
)
def test_query_keeps_the_configured_margin(
    tmp_path: Path, remaining: float | None, margin_ms: int, expected: float
) -> None:
    """Query relays with the caller's deadline less query_margin_ms (or a tenth, if larger)."""
    config = GatewayConfig(
        pki=pki.PkiDir(tmp_path),
        files=GatewayFiles.beside(tmp_path / "a.sqlite"),
        query_margin_ms=margin_ms,
    )
    timeout = reply_timeout(remaining, config.default_deadline_ms, config.query_margin_ms)
    assert timeout == pytest.approx(expected)


@pytest.mark.parametrize(
    "fields",
    [
        {"query_margin_ms": -1},
        {"query_margin_ms": 5_000},
        {"directory_refresh_ms": -1},
    ],
)
def test_gateway_config_refuses_bad_margins(tmp_path: Path, fields: dict[str, int]) -> None:
    """A negative margin, one that eats the whole deadline, or a negative refresh is refused."""
    with pytest.raises(ConfigError):
        GatewayConfig(
            pki=pki.PkiDir(tmp_path), files=GatewayFiles.beside(tmp_path / "a.sqlite"), **fields
        )


# ----------------------------------------------------------------------------- directory files


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _files(directory: pki.PkiDir) -> tuple[DirectoryFiles, _Clock]:
    clock = _Clock()
    return DirectoryFiles(directory, refresh_s=0.25, clock=clock), clock


@with_bureaus("FR", "DE")
def test_directory_files_see_a_new_bureau_at_once(pki_dir: pki.PkiDir) -> None:
    """A bureau added while the gateway runs is known on the next envelope, not after a wait."""
    files, _ = _files(pki_dir)
    assert files.known("FR")
    assert not files.known("IT")
    pki.add_bureau(pki_dir, "IT")
    assert files.known("IT")


@with_bureaus("FR", "DE")
def test_directory_files_pick_up_an_entry_rewritten_in_place(pki_dir: pki.PkiDir) -> None:
    """An entry rewritten in place (same inode, same size) is noticed and served anew."""
    files, _ = _files(pki_dir)
    path = pki_dir.entry_path("DE")
    original = path.read_bytes()
    assert files.entries(["DE"])[0].SerializeToString() == original
    signed = directory_pb2.SignedDirectoryEntry.FromString(original)
    signed.signature = bytes(b ^ 0xFF for b in signed.signature)  # same size, other bytes
    changed = signed.SerializeToString()
    assert len(changed) == len(original)
    with path.open("r+b") as handle:  # in place: same inode
        handle.write(changed)
    # A later write: make sure the modification time moved, whatever the clock's granularity.
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))
    assert files.entries(["DE"])[0].SerializeToString() == changed


@with_bureaus("FR", "DE")
def test_directory_files_drop_a_removed_entry_within_the_interval(pki_dir: pki.PkiDir) -> None:
    """A removed entry stops being routable once refresh_s has passed, and not before."""
    files, clock = _files(pki_dir)
    assert files.known("DE")
    pki_dir.entry_path("DE").unlink()
    clock.now = 0.1
    assert files.known("DE")  # within the interval: the cached answer
    clock.now = 0.3
    assert not files.known("DE")


@with_bureaus("FR", "DE")
def test_directory_files_skip_an_undecodable_entry(pki_dir: pki.PkiDir) -> None:
    """A file that is not a SignedDirectoryEntry is skipped; the other entries are served."""
    files, _ = _files(pki_dir)
    (pki_dir.directory / "ZZ.entry").write_bytes(b"\xff\xff\xff")
    assert {e.SerializeToString() for e in files.entries([])} == {
        pki_dir.entry_path(c).read_bytes() for c in ("FR", "DE")
    }
