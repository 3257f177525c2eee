"""Helpers for the attacks of a bureau's users on a running network (test_user_attacks.py
and test_biometric_attacks.py): issue users into the network's PKI while it runs, call
the gateway (or a node) over real mTLS as any principal, read the audit trails the
refusals must leave, and check that a refusal's detail gives nothing away."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from ncbsim import _crypto, auditread, envelope, transport, users
from ncbsim.client import Answer, Outcome, open_answer, seal_query
from ncbsim.directory import Directory
from ncbsim.gateway.audit import AuditRecord, read_all
from ncbsim.identity import Identity
from ncbsim.pki import PkiDir, TlsFiles, bureau_dns_name
from ncbsim.simulations.network import Network
from ncbsim.v2 import bureau_pb2, bureau_pb2_grpc, gateway_pb2, gateway_pb2_grpc, query_pb2
from ncbsim.workdir import Workdir

Code = grpc.StatusCode
WAIT_S = 30.0


def now_ms() -> int:
    return int(time.time() * 1000)


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


# ----------------------------------------------------------------------------- identities


def issue(
    network: Network, user: str, role: str, *, rights: users.Rights | None = None
) -> users.User:
    """Issue ``user`` (``FR/x``) into the running network's PKI, as ``ncbsim user add``."""
    bureau, _, name = user.partition("/")
    return users.issue_user(
        PkiDir(network.workdir), bureau, name, role, rights=rights, now_ms=now_ms()
    )


def identity(network: Network, principal: str) -> Identity:
    """The E2E keys of a bureau or a user, read from its folder."""
    folder = PkiDir(network.workdir).party(principal)
    return Identity.from_keys(
        principal,
        _crypto.signing_key_from_pem((folder / "signing.key").read_bytes()),
        _crypto.x25519_from_pem((folder / "encryption.key").read_bytes()),
    )


def secrets_of(network: Network, principal: str) -> list[str]:
    """What a refusal's detail must never show of ``principal``: its public keys and key
    ids in hex, and its private key files' contents."""
    me = identity(network, principal)
    folder = PkiDir(network.workdir).party(principal)
    out = [
        me.signing_key_id.hex(),
        me.encryption_key_id.hex(),
        bytes(me.signing_key.verify_key).hex(),
        _crypto.x25519_public_bytes(me.encryption_key).hex(),
    ]
    for name in ("signing.key", "encryption.key", "tls.key"):
        pem = (folder / name).read_text().splitlines()
        out.extend(line for line in pem if line and not line.startswith("-----"))
    return out


def assert_discreet(detail: str, *secrets: str) -> None:
    """A refusal's detail names no record, no query term and no key."""
    lowered = detail.lower()
    for secret in secrets:
        assert secret, "an empty secret proves nothing"
        assert secret.lower() not in lowered, f"the detail leaks {secret!r}: {detail!r}"


# ----------------------------------------------------------------------------- calls


@dataclass(frozen=True)
class Result:
    """How one call ended: its status and detail, and its reply (None unless OK)."""

    code: Code
    detail: str
    reply: Any = None


async def _unary(
    channel: grpc.aio.Channel, call: Callable[[Any], Any], request: Any, timeout: float
) -> Result:
    try:
        reply = await call(request, timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        return Result(exc.code(), exc.details() or "")
    finally:
        await channel.close()
    return Result(Code.OK, "", reply)


def gateway_call(
    network: Network,
    tls: TlsFiles,
    method: str,
    request: Any,
    *,
    timeout: float = 20.0,
) -> Result:
    """Call the gateway's ``method`` (``Query``, ``Post``, ...) with ``tls``'s certificate."""

    async def run() -> Result:
        channel = transport.gateway_channel(network.gateway.address, tls)
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        return await _unary(channel, getattr(stub, method), request, timeout)

    return asyncio.run(run())


def as_principal(network: Network, principal: str, method: str, request: Any) -> Result:
    """Call the gateway as ``principal`` with its own certificate."""
    return gateway_call(network, PkiDir(network.workdir).tls(principal), method, request)


def handle_as_gateway(network: Network, bureau: str, item: envelope.Envelope) -> Result:
    """Hand ``item`` to ``bureau``'s node with the gateway's certificate (a relay that does
    not check what the real gateway checks)."""

    async def run() -> Result:
        channel = transport.bureau_channel(
            network.node(bureau).address, PkiDir(network.workdir).tls("gateway"), bureau
        )
        stub = bureau_pb2_grpc.BureauServiceStub(channel)
        return await _unary(channel, stub.Handle, bureau_pb2.HandleRequest(envelope=item), 20.0)

    assert bureau_dns_name(bureau)  # the node's name the channel pins
    return asyncio.run(run())


def sealed_query(
    network: Network, sender: Identity, recipient: str, query: query_pb2.Query
) -> envelope.SealedRequest:
    """A format 1 query sealed and signed by ``sender`` (whatever its header claims)."""
    peer = Directory.from_pki(PkiDir(network.workdir)).get(recipient)
    return seal_query(sender, peer, query)


def query_as(network: Network, principal: str, to: str, query: query_pb2.Query) -> Result:
    """``principal`` (bureau or user) asks ``to`` with its own keys and certificate."""
    sealed = sealed_query(network, identity(network, principal), to, query)
    return as_principal(
        network, principal, "Query", gateway_pb2.QueryRequest(envelope=sealed.envelope)
    )


def ask(network: Network, principal: str, to: str, query: query_pb2.Query) -> Answer:
    """``principal`` asks ``to`` (format 1, its own keys and certificate); the answer,
    verified and opened. The call must succeed: this is the check that it still works."""
    directory = Directory.from_pki(PkiDir(network.workdir))
    sealed = seal_query(identity(network, principal), directory.get(to), query)
    done = as_principal(
        network, principal, "Query", gateway_pb2.QueryRequest(envelope=sealed.envelope)
    )
    assert done.code == Code.OK, f"{principal} -> {to}: {done.code} {done.detail}"
    answer = open_answer(sealed, done.reply.envelope, directory.get(to))
    assert answer.outcome in (Outcome.HIT, Outcome.NO_HIT, Outcome.RECORD), answer
    return answer


def post_envelope(
    network: Network, sender: Identity, recipient: str, kind: int, text: bytes = b"case note"
) -> envelope.Envelope:
    """A one-way copy of ``kind`` sealed by ``sender`` to ``recipient`` (bureau or user)."""
    peer = Directory.from_pki(PkiDir(network.workdir)).get(recipient)
    return envelope.seal_message(
        text, sender=sender, recipient=peer, kind=kind, post_id=os.urandom(16), ttl_ms=600_000
    )


def post_as(network: Network, principal: str, recipient: str, kind: int) -> Result:
    """``principal`` posts one copy of ``kind`` to ``recipient`` with its own keys."""
    item = post_envelope(network, identity(network, principal), recipient, kind)
    return as_principal(network, principal, "Post", gateway_pb2.PostRequest(envelopes=[item]))


def admitted(network: Network, principal: str) -> bool:
    """Whether the gateway lets ``principal`` in (a Receipts call it answers OK)."""
    return as_principal(network, principal, "Receipts", gateway_pb2.ReceiptsRequest()).code == (
        Code.OK
    )


# ----------------------------------------------------------------------------- audit trails


def gateway_rows(network: Network, match: Callable[[AuditRecord], bool]) -> list[AuditRecord]:
    """The gateway's audit rows that ``match``, oldest first."""
    path = Workdir(network.workdir).gateway.audit
    return [r for r in read_all(path) if match(r)] if path.exists() else []


def wait_gateway_rows(
    network: Network, match: Callable[[AuditRecord], bool], count: int = 1
) -> list[AuditRecord]:
    """The gateway's matching rows, once at least ``count`` are written."""
    wait_for("the gateway's audit row", lambda: len(gateway_rows(network, match)) >= count)
    return gateway_rows(network, match)


def node_rows(network: Network, bureau: str, **where: Any) -> list[dict[str, Any]]:
    """``bureau``'s node audit rows matching ``where`` (auditread.Query fields)."""
    path = network.workdir / "bureaus" / bureau / "audit.sqlite"
    if not path.exists():
        return []
    columns, rows = auditread.search(path, auditread.Query(**where))
    return [dict(zip(columns, row, strict=True)) for row in rows]


def wait_node_rows(
    network: Network, bureau: str, count: int = 1, **where: Any
) -> list[dict[str, Any]]:
    """``bureau``'s matching node audit rows, once at least ``count`` are written."""
    wait_for(
        f"{bureau}'s node audit row", lambda: len(node_rows(network, bureau, **where)) >= count
    )
    return node_rows(network, bureau, **where)


def still_served(network: Network, principals: Sequence[str]) -> None:
    """Each of ``principals`` is still let in by the gateway."""
    for who in principals:
        assert admitted(network, who), f"{who} is no longer admitted"
