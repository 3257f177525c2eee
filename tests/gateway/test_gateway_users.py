"""A bureau's users at the gateway (docs/users.md): who may call, with which certificate,
what its bureau-signed rights let through, and the entries the gateway refuses to serve.

An in-process gateway on a real mTLS socket, with its mailbox and a DE node servicer;
the users' certificates come from their bureau's CA, as `ncbsim user add` issues them."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from pathlib import Path

import grpc
import pytest
from gateway_support import (
    DeliverServicer,
    Gateway,
    audit_of,
    load_identity,
    mailbox_gateway,
    serve_bureau,
    wait_until,
)
from support import document_query

from ncbsim import _crypto, bureau_ca, envelope, pki, transport, users
from ncbsim.client import seal_query
from ncbsim.directory import Directory
from ncbsim.gateway.audit import read_all
from ncbsim.identity import Identity
from ncbsim.v2 import gateway_pb2, gateway_pb2_grpc, users_pb2

INVESTIGATOR = "FR/lyon-inv-3"
BORDER = "FR/cdg-border-12"
PARTNER = "FR/douane-1"
DE_INVESTIGATOR = "DE/bka-7"


def _now() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def user_pki(pki_dir: pki.PkiDir) -> pki.PkiDir:
    """The test's PKI with an investigator, a border officer and a partner under FR, and
    an investigator under DE."""
    for principal, role in (
        (INVESTIGATOR, "investigator"),
        (BORDER, "border"),
        (PARTNER, "partner"),
        (DE_INVESTIGATOR, "investigator"),
    ):
        bureau, _, name = principal.partition("/")
        users.issue_user(pki_dir, bureau, name, role, now_ms=_now())
    return pki_dir


def user_identity(directory: pki.PkiDir, principal: str) -> Identity:
    """A user's E2E keys, as ``Identity.load`` reads them (built here from the files)."""
    folder = directory.party(principal)
    return Identity.from_keys(
        principal,
        _crypto.signing_key_from_pem((folder / "signing.key").read_bytes()),
        _crypto.x25519_from_pem((folder / "encryption.key").read_bytes()),
    )


def post_from(
    directory: pki.PkiDir, sender: str, recipient: str, kind: int = envelope.MESSAGE
) -> envelope.Envelope:
    """A one-way copy sealed by ``sender`` (a bureau or a user) to ``recipient``."""
    keys = Directory.from_pki(directory)
    identity = (
        user_identity(directory, sender) if "/" in sender else load_identity(directory, sender)
    )
    return envelope.seal_message(
        b"case note",
        sender=identity,
        recipient=keys.get(recipient),
        kind=kind,
        post_id=os.urandom(16),
        ttl_ms=60_000,
    )


async def query_as(gateway: Gateway, directory: pki.PkiDir, sender: str) -> grpc.StatusCode:
    """A format 1 query from ``sender`` to DE; the status the gateway ends it with."""
    sealed = seal_query(
        user_identity(directory, sender),
        Directory.from_pki(directory).get("DE"),
        document_query("X1", "DE"),
    )
    try:
        await gateway.stub(sender).Query(
            gateway_pb2.QueryRequest(envelope=sealed.envelope), timeout=5
        )
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _refused(tmp_path: Path, rpc: str, peer: str) -> list[str]:
    return [r.status for r in audit_of(tmp_path, rpc) if r.peer == peer and r.outcome == "refused"]


def test_users_post_within_their_rights_and_are_audited_by_principal(
    tmp_path: Path, user_pki: pki.PkiDir
) -> None:
    """An investigator's MESSAGE to DE is accepted and its rows name FR/lyon-inv-3; a border
    officer (sends nothing) and a partner posting a DIFFUSION are PERMISSION_DENIED."""

    async def main() -> tuple[int, grpc.StatusCode, grpc.StatusCode]:
        async with mailbox_gateway(tmp_path, user_pki, deliver=False) as gateway:
            reply = await gateway.post(INVESTIGATOR, post_from(user_pki, INVESTIGATOR, "DE"))
            codes = []
            for sender, kind in ((BORDER, envelope.MESSAGE), (PARTNER, envelope.DIFFUSION)):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await gateway.post(sender, post_from(user_pki, sender, "DE", kind))
                codes.append(caught.value.code())
            return reply.results[0].status, codes[0], codes[1]

    status, border, partner = asyncio.run(main())
    assert status == gateway_pb2.POST_STATUS_ACCEPTED
    assert (border, partner) == (grpc.StatusCode.PERMISSION_DENIED,) * 2
    accepted = [r for r in audit_of(tmp_path, "Post") if r.outcome == "accepted"]
    assert [(r.peer, r.sender, r.recipient) for r in accepted] == [
        (INVESTIGATOR, INVESTIGATOR, "DE")
    ]
    assert _refused(tmp_path, "Post", BORDER) == ["PERMISSION_DENIED"]
    assert _refused(tmp_path, "Post", PARTNER) == ["PERMISSION_DENIED"]


def test_a_partner_may_not_query_and_a_border_officer_may(
    tmp_path: Path, user_pki: pki.PkiDir
) -> None:
    """A partner (no query kinds) is PERMISSION_DENIED and audited; a border officer's
    query is admitted (DE runs no node here, so it ends UNAVAILABLE, past admission)."""

    async def main() -> tuple[grpc.StatusCode, grpc.StatusCode]:
        async with mailbox_gateway(tmp_path, user_pki, deliver=False) as gateway:
            return await query_as(gateway, user_pki, PARTNER), await query_as(
                gateway, user_pki, BORDER
            )

    partner, border = asyncio.run(main())
    assert partner == grpc.StatusCode.PERMISSION_DENIED
    assert border == grpc.StatusCode.UNAVAILABLE
    assert _refused(tmp_path, "Query", PARTNER) == ["PERMISSION_DENIED"]
    rows = [r for r in audit_of(tmp_path, "Query") if r.peer == BORDER]
    assert [(r.sender, r.recipient, r.outcome) for r in rows] == [(BORDER, "DE", "no_answer")]


def test_a_revoked_user_is_refused_while_its_bureau_and_colleagues_pass(
    tmp_path: Path, user_pki: pki.PkiDir
) -> None:
    """After `user revoke` the user's next call is UNAUTHENTICATED (revoked, as a revoked
    bureau's) without a gateway restart; FR itself and FR's investigator still post."""

    async def main() -> list[int | grpc.StatusCode]:
        async with mailbox_gateway(
            tmp_path, user_pki, deliver=False, directory_refresh_ms=0
        ) as gateway:
            await gateway.receipts(BORDER)  # known and admitted before the revocation
            users.revoke_user(user_pki, "FR", "cdg-border-12", now_ms=_now())
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await gateway.receipts(BORDER)
            fr = await gateway.post("FR", post_from(user_pki, "FR", "DE"))
            inv = await gateway.post(INVESTIGATOR, post_from(user_pki, INVESTIGATOR, "DE"))
            return [caught.value.code(), fr.results[0].status, inv.results[0].status]

    refused, fr, inv = asyncio.run(main())
    assert refused == grpc.StatusCode.UNAUTHENTICATED
    assert fr == inv == gateway_pb2.POST_STATUS_ACCEPTED
    assert _refused(tmp_path, "Receipts", BORDER) == ["UNAUTHENTICATED"]


def test_a_certificate_its_entry_does_not_bind_is_refused(
    tmp_path: Path, user_pki: pki.PkiDir
) -> None:
    """Re-adding a user replaces its certificate: the old one, though FR's CA issued it,
    no longer gets in (its entry binds the new one)."""
    old = user_pki.tls(BORDER)
    users.issue_user(user_pki, "FR", "cdg-border-12", "border", now_ms=_now())

    async def main() -> grpc.StatusCode:
        async with mailbox_gateway(tmp_path, user_pki, deliver=False) as gateway:
            channel = transport.gateway_channel(gateway.address, old)
            try:
                stub = gateway_pb2_grpc.GatewayServiceStub(channel)
                await stub.Receipts(gateway_pb2.ReceiptsRequest(), timeout=5)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            finally:
                await channel.close()
            return grpc.StatusCode.OK

    assert asyncio.run(main()) == grpc.StatusCode.PERMISSION_DENIED


def test_a_certificate_fr_mints_for_a_german_user_fails_the_handshake(
    tmp_path: Path, user_pki: pki.PkiDir
) -> None:
    """FR's CA issuing a certificate for DE/x: the TLS handshake itself refuses it (the
    CA's name constraints), so the call never reaches the gateway's code."""
    cert_path, key_path = user_pki.bureau_ca("FR")
    ca_key, ca_cert = bureau_ca.load_bureau_ca(cert_path.read_bytes(), key_path.read_bytes())
    chain, key = bureau_ca.issue_user_certificate(
        ca_key, ca_cert, "DE", "mallory", now=dt.datetime.now(dt.UTC)
    )
    forged = pki.TlsFiles(root=user_pki.ca_cert.read_bytes(), cert=chain, key=key)

    async def main() -> grpc.StatusCode:
        async with mailbox_gateway(tmp_path, user_pki, deliver=False) as gateway:
            channel = transport.gateway_channel(gateway.address, forged)
            try:
                stub = gateway_pb2_grpc.GatewayServiceStub(channel)
                await stub.Routes(gateway_pb2.RoutesRequest(), timeout=3)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            finally:
                await channel.close()
            return grpc.StatusCode.OK

    assert asyncio.run(main()) == grpc.StatusCode.UNAVAILABLE
    assert not audit_of(tmp_path, "Routes")  # never got past the handshake


def test_an_entry_fr_signs_for_a_german_user_is_refused_and_audited(
    tmp_path: Path, user_pki: pki.PkiDir
) -> None:
    """An FR-signed entry filed as DE/x is refused at load, audited as
    user_entry_refused, and GetDirectory never serves it."""
    signed = user_pki.user_entry_path(INVESTIGATOR).read_bytes()
    entry = users_pb2.UserEntry.FromString(users_pb2.SignedUserEntry.FromString(signed).entry)
    entry.bureau, entry.name = "DE", "mallory"
    key = _crypto.signing_key_from_pem((user_pki.party("FR") / "signing.key").read_bytes())
    body = entry.SerializeToString()
    forged = users_pb2.SignedUserEntry(
        entry=body, signature=_crypto.ed25519_sign(key, users.ENTRY_CONTEXT + body)
    ).SerializeToString()
    user_pki.user_entry_path("DE/mallory").write_bytes(forged)

    async def main() -> gateway_pb2.GetDirectoryResponse:
        async with mailbox_gateway(tmp_path, user_pki, deliver=False) as gateway:
            reply: gateway_pb2.GetDirectoryResponse = await gateway.stub("DE").GetDirectory(
                gateway_pb2.GetDirectoryRequest(), timeout=5
            )
            await gateway.stub("DE").GetDirectory(gateway_pb2.GetDirectoryRequest(), timeout=5)
            return reply

    reply = asyncio.run(main())
    served = sorted(users.entry_principal(u.SerializeToString()) for u in reply.users)
    assert served == sorted([INVESTIGATOR, BORDER, PARTNER, DE_INVESTIGATOR])
    rows = [r for r in read_all(tmp_path / "audit.sqlite") if r.outcome == "user_entry_refused"]
    assert [(r.rpc, r.sender, r.status) for r in rows] == [
        ("LoadUsers", "DE/mallory", "PERMISSION_DENIED")
    ]  # once, though the folder was read again


def test_get_directory_serves_the_users_asked_for_and_every_revocation(
    tmp_path: Path, user_pki: pki.PkiDir
) -> None:
    """Asking for FR/x brings that user's entry (no bureau entries); every verified user
    revocation comes along."""
    users.revoke_user(user_pki, "FR", "douane-1", now_ms=_now())

    async def main() -> gateway_pb2.GetDirectoryResponse:
        async with mailbox_gateway(tmp_path, user_pki, deliver=False) as gateway:
            reply: gateway_pb2.GetDirectoryResponse = await gateway.stub("DE").GetDirectory(
                gateway_pb2.GetDirectoryRequest(bureaus=[BORDER]), timeout=5
            )
            return reply

    reply = asyncio.run(main())
    assert [users.entry_principal(u.SerializeToString()) for u in reply.users] == [BORDER]
    assert not reply.entries
    revoked = [users.revocation_principal(r.SerializeToString()) for r in reply.user_revocations]
    assert revoked == [PARTNER]


def test_a_copy_to_a_user_goes_to_its_bureaus_node_if_it_may_receive_it(
    tmp_path: Path, user_pki: pki.PkiDir
) -> None:
    """FR's MESSAGE to DE/bka-7 (an investigator) is queued under DE/bka-7 and delivered to
    DE's node; a MESSAGE to a border officer (receives only diffusions) and a copy to an
    unknown user are refused."""
    bureau = DeliverServicer(user_pki)

    async def main() -> tuple[int, list[grpc.StatusCode]]:
        served = await serve_bureau(bureau)
        try:
            async with mailbox_gateway(tmp_path, user_pki) as gateway:
                await gateway.register("DE", served.address)
                reply = await gateway.post("FR", post_from(user_pki, "FR", DE_INVESTIGATOR))
                await wait_until(_delivered_to(bureau))
                codes = []
                for recipient in (BORDER, "DE/nobody"):
                    item = post_from(user_pki, INVESTIGATOR, BORDER)
                    if recipient != BORDER:
                        item = _readdressed(item, recipient)
                    with pytest.raises(grpc.aio.AioRpcError) as caught:
                        await gateway.post(INVESTIGATOR, item)
                    codes.append(caught.value.code())
                return reply.results[0].status, codes
        finally:
            await served.server.stop(0)

    status, codes = asyncio.run(main())
    assert status == gateway_pb2.POST_STATUS_ACCEPTED
    assert codes == [grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND]
    accepted = [r for r in audit_of(tmp_path, "Post") if r.outcome == "accepted"]
    assert [r.recipient for r in accepted] == [DE_INVESTIGATOR]


def _delivered_to(bureau: DeliverServicer):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return bureau.calls > 0

    return check


def _readdressed(item: envelope.Envelope, recipient: str) -> envelope.Envelope:
    """The same envelope with its header's recipient changed (the gateway reads only the
    header; the signature no longer matters to it)."""
    from ncbsim.v2 import envelope_pb2

    header = envelope_pb2.Header.FromString(item.header)
    header.recipient = recipient
    return envelope.Envelope(
        header=header.SerializeToString(), sealed=item.sealed, signature=item.signature
    )


def test_a_users_rate_is_its_own(tmp_path: Path, user_pki: pki.PkiDir) -> None:
    """A partner (1 a second, a burst of 2) is held to its own rate: its third post at once
    is RESOURCE_EXHAUSTED while its bureau still posts."""

    async def main() -> tuple[list[int], grpc.StatusCode, int]:
        async with mailbox_gateway(tmp_path, user_pki, deliver=False) as gateway:
            statuses = []
            for _ in range(2):
                reply = await gateway.post(PARTNER, post_from(user_pki, PARTNER, "DE"))
                statuses.append(reply.results[0].status)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await gateway.post(PARTNER, post_from(user_pki, PARTNER, "DE"))
            fr = await gateway.post("FR", post_from(user_pki, "FR", "DE"))
            return statuses, caught.value.code(), fr.results[0].status

    statuses, limited, fr = asyncio.run(main())
    assert statuses == [gateway_pb2.POST_STATUS_ACCEPTED] * 2
    assert limited == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert fr == gateway_pb2.POST_STATUS_ACCEPTED


def test_a_user_cannot_register_a_node(tmp_path: Path, user_pki: pki.PkiDir) -> None:
    """Register stays for bureaus: a user calling it is PERMISSION_DENIED."""

    async def main() -> grpc.StatusCode:
        async with mailbox_gateway(tmp_path, user_pki, deliver=False) as gateway:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await gateway.register(INVESTIGATOR, "127.0.0.1:9")
            return caught.value.code()

    assert asyncio.run(main()) == grpc.StatusCode.PERMISSION_DENIED
