"""Transport attacks on the mTLS layer, against a real gateway and real nodes on loopback.

Every hop demands a client certificate from the pinned root, and every client demands a
server certificate from that root under the expected name. These tests try each way
round that and check both ends: what the attacker sees (the gRPC status) and what the
server did (its audit log, which the handler writes for every call it runs).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from support import document_query

from ncbsim import auditread, envelope, pki, transport
from ncbsim.gateway.audit import read_all
from ncbsim.identity import Identity
from ncbsim.pki import GATEWAY_NAME, PkiDir, TlsFiles, bureau_dns_name
from ncbsim.simulations.network import Network
from ncbsim.v2 import bureau_pb2, gateway_pb2
from ncbsim.workdir import Workdir

pytestmark = pytest.mark.integration

Code = grpc.StatusCode
QUERY_METHOD = "/ncbsim.v2.GatewayService/Query"
HANDLE_METHOD = "/ncbsim.v2.BureauService/Handle"
AUDIT_WAIT_S = 5.0


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def real(network: Network) -> PkiDir:
    """The running network's PKI."""
    return PkiDir(network.workdir)


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> PkiDir:
    """A throwaway PKI from another root, with the same names: FR, DE, gateway, operator."""
    return pki.init(tmp_path_factory.mktemp("other-ca") / "pki", ["FR", "DE"])


def _mixed(trust: PkiDir, holder: PkiDir, party: str) -> TlsFiles:
    """``party``'s certificate and key from ``holder``, trusting ``trust``'s root."""
    theirs = holder.tls(party)
    return TlsFiles(root=trust.tls(party).root, cert=theirs.cert, key=theirs.key)


def _envelope(real: PkiDir, *, sender: str = "FR", claims: str | None = None) -> envelope.Envelope:
    """A well-sealed request from ``sender`` to DE; its header may claim another sender."""
    now = int(time.time() * 1000)
    identity = Identity.load(real, sender, now_ms=now)
    if claims is not None:
        identity = Identity.from_keys(claims, identity.signing_key, identity.encryption_key)
    key, public = envelope.new_response_key()
    body = document_query("X1", "DE", response_key=public)
    recipient = Identity.load(real, "DE", now_ms=now).as_peer()
    return envelope.seal_request(
        body.SerializeToString(), sender=identity, recipient=recipient, response_key=key
    ).envelope


def _query(env: envelope.Envelope) -> bytes:
    """The bytes of a QueryRequest holding ``env``."""
    return gateway_pb2.QueryRequest(envelope=env).SerializeToString()


def _handle(env: envelope.Envelope) -> bytes:
    """The bytes of a HandleRequest holding ``env``."""
    return bureau_pb2.HandleRequest(envelope=env).SerializeToString()


async def _raw_call(
    address: str,
    credentials: grpc.ChannelCredentials,
    peer_name: str,
    method: str,
    payload: bytes,
) -> Code:
    options = [("grpc.ssl_target_name_override", peer_name)]
    async with grpc.aio.secure_channel(address, credentials, options=options) as channel:
        rpc = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            await rpc(payload, timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return Code.OK


def _call(
    address: str, tls: TlsFiles | None, root: bytes, peer_name: str, method: str, payload: bytes
) -> Code:
    """Call ``method`` with ``tls`` as the client certificate (None: no certificate)."""
    if tls is None:
        credentials = grpc.ssl_channel_credentials(root_certificates=root)
    else:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=root, private_key=tls.key, certificate_chain=tls.cert
        )
    return asyncio.run(_raw_call(address, credentials, peer_name, method, payload))


def _wait_for(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + AUDIT_WAIT_S
    while not check():
        assert time.monotonic() < deadline, "the audit row never appeared"
        time.sleep(0.05)


def _gateway_rows(network: Network, message_id: str) -> list[tuple[str, str, str, str]]:
    return [
        (r.peer, r.sender, r.outcome, r.status)
        for r in read_all(Workdir(network.workdir).gateway.audit)
        if r.message_id == message_id
    ]


def _node_reasons(network: Network, bureau: str) -> list[str]:
    """The ``reason`` of every row in ``bureau``'s node audit log, oldest first."""
    path = network.workdir / "bureaus" / bureau / "audit.sqlite"
    if not path.exists():
        return []
    columns, rows = auditread.search(path, auditread.Query())
    index = columns.index("reason")
    return [str(row[index]) for row in rows]


def _hex(env: envelope.Envelope) -> str:
    return envelope.unverified_header(env).message_hex


def _spoof_control(network: Network, real: PkiDir) -> None:
    """A call the gateway's handler does audit (FR claiming DE); wait until its row is in.

    Audit rows are written in call order, so once this one is in, a row from any earlier
    call whose handler ran would be in too.
    """
    spoofed = _envelope(real, claims="DE")
    code = _call(
        network.gateway.address,
        real.tls("FR"),
        real.tls("FR").root,
        GATEWAY_NAME,
        QUERY_METHOD,
        _query(spoofed),
    )
    assert code == Code.PERMISSION_DENIED
    _wait_for(lambda: bool(_gateway_rows(network, _hex(spoofed))))


def _node_control(network: Network, real: PkiDir, before: int) -> list[str]:
    """A call DE's handler does audit (a bureau calling it); the reasons once it is in."""
    code = _call(
        network.node("DE").address,
        real.tls("IT"),
        real.tls("IT").root,
        bureau_dns_name("DE"),
        HANDLE_METHOD,
        b"",
    )
    assert code == Code.PERMISSION_DENIED
    _wait_for(lambda: len(_node_reasons(network, "DE")) > before)
    return _node_reasons(network, "DE")


# ----------------------------------------------------------------------------- client side


@pytest.mark.attack(
    "connect to the gateway without a client certificate",
    adversary="network attacker",
    expect="TLS handshake fails: UNAVAILABLE; the handler never runs (no audit row)",
)
def test_gateway_refuses_a_client_without_certificate(network: Network, real: PkiDir) -> None:
    """No client certificate: the handshake fails before any handler runs."""
    env = _envelope(real)
    root = real.tls("FR").root
    code = _call(network.gateway.address, None, root, GATEWAY_NAME, QUERY_METHOD, _query(env))
    assert code == Code.UNAVAILABLE
    _spoof_control(network, real)
    assert _gateway_rows(network, _hex(env)) == []


@pytest.mark.attack(
    "connect to a node without a client certificate",
    adversary="network attacker",
    expect="TLS handshake fails: UNAVAILABLE; the node's handler never runs (no audit row)",
)
def test_node_refuses_a_client_without_certificate(network: Network, real: PkiDir) -> None:
    """No client certificate towards a node: UNAVAILABLE, and nothing reaches Handle."""
    before = len(_node_reasons(network, "DE"))
    code = _call(
        network.node("DE").address,
        None,
        real.tls("FR").root,
        bureau_dns_name("DE"),
        HANDLE_METHOD,
        _handle(_envelope(real)),
    )
    assert code == Code.UNAVAILABLE
    after = _node_control(network, real, before)
    assert after[before:] == ["not_gateway"]  # only the control call reached the handler


@pytest.mark.attack(
    "a bureau certificate with the right name (fr.bureau.ncbsim) from another CA, to the gateway",
    adversary="network attacker",
    expect="TLS handshake fails: UNAVAILABLE; no audit row",
)
def test_gateway_refuses_a_certificate_from_another_root(
    network: Network, real: PkiDir, other: PkiDir
) -> None:
    """The same SAN under a root the gateway does not pin is refused in the handshake."""
    env = _envelope(real)
    code = _call(
        network.gateway.address,
        _mixed(real, other, "FR"),
        real.tls("FR").root,
        GATEWAY_NAME,
        QUERY_METHOD,
        _query(env),
    )
    assert code == Code.UNAVAILABLE
    _spoof_control(network, real)
    assert _gateway_rows(network, _hex(env)) == []


@pytest.mark.attack(
    "a gateway certificate (gateway.ncbsim) from another CA, calling a node's Handle",
    adversary="network attacker",
    expect="TLS handshake fails: UNAVAILABLE; the node's handler never runs",
)
def test_node_refuses_a_gateway_certificate_from_another_root(
    network: Network, real: PkiDir, other: PkiDir
) -> None:
    """A forged gateway identity from another root cannot reach a node at all."""
    before = len(_node_reasons(network, "DE"))
    code = _call(
        network.node("DE").address,
        _mixed(real, other, "gateway"),
        real.tls("FR").root,
        bureau_dns_name("DE"),
        HANDLE_METHOD,
        _handle(_envelope(real)),
    )
    assert code == Code.UNAVAILABLE
    after = _node_control(network, real, before)
    assert after[before:] == ["not_gateway"]


# ----------------------------------------------------------------------------- server side


class _FakeGateway(grpc.GenericRpcHandler):  # type: ignore[misc]
    """A gRPC server on loopback that presents ``tls`` and records every call it gets."""

    def __init__(self, tls: TlsFiles) -> None:
        self.calls: list[str] = []
        self._lock = threading.Lock()
        self.server = grpc.server(ThreadPoolExecutor(max_workers=2))
        self.server.add_generic_rpc_handlers((self,))
        credentials = grpc.ssl_server_credentials([(tls.key, tls.cert)])
        self.address = f"127.0.0.1:{self.server.add_secure_port('127.0.0.1:0', credentials)}"

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            with self._lock:
                self.calls.append(details.method)  # type: ignore[attr-defined]
            return b""

        return grpc.unary_unary_rpc_method_handler(handle)


@pytest.fixture
def fake_gateway(
    request: pytest.FixtureRequest, real: PkiDir, other: PkiDir
) -> Iterator[_FakeGateway]:
    """A fake gateway presenting the certificate named by the test's parameter."""
    tls = {
        "other-root": other.tls("gateway"),  # right name, wrong root
        "bureau-cert": real.tls("DE"),  # right root, wrong name (a bureau posing as gateway)
        "real-cert": real.tls("gateway"),  # the control: the genuine gateway certificate
    }[request.param]
    fake = _FakeGateway(tls)
    fake.server.start()
    try:
        yield fake
    finally:
        fake.server.stop(grace=None)


async def _directory_through(address: str, tls: TlsFiles) -> Code:
    """GetDirectory through the real client transport (ncbsim.transport), as FR does."""
    channel = transport.gateway_channel(address, tls)
    try:
        rpc = channel.unary_unary(
            "/ncbsim.v2.GatewayService/GetDirectory",
            request_serializer=None,
            response_deserializer=None,
        )
        await rpc(gateway_pb2.GetDirectoryRequest().SerializeToString(), timeout=5)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    finally:
        await channel.close()
    return Code.OK


@pytest.mark.parametrize("fake_gateway", ["real-cert"], indirect=True)
def test_client_reaches_a_server_with_the_genuine_certificate(
    fake_gateway: _FakeGateway, real: PkiDir
) -> None:
    """Control for the next test: with the genuine gateway certificate the call goes through."""
    assert asyncio.run(_directory_through(fake_gateway.address, real.tls("FR"))) == Code.OK
    assert fake_gateway.calls == ["/ncbsim.v2.GatewayService/GetDirectory"]


@pytest.mark.attack(
    "a fake gateway presenting a certificate from another CA, or a bureau's certificate",
    adversary="network attacker",
    expect="the bureau client refuses the handshake: UNAVAILABLE; nothing is sent",
)
@pytest.mark.parametrize("fake_gateway", ["other-root", "bureau-cert"], indirect=True)
def test_client_refuses_a_server_it_cannot_authenticate(
    fake_gateway: _FakeGateway, real: PkiDir
) -> None:
    """The client pins the root and the gateway's name: a server with neither gets nothing."""
    assert asyncio.run(_directory_through(fake_gateway.address, real.tls("FR"))) == Code.UNAVAILABLE
    assert fake_gateway.calls == []


# ----------------------------------------------------------------------------- wrong roles


@pytest.mark.attack(
    "a bureau's valid certificate calling another bureau's node directly, bypassing the gateway",
    adversary="rogue bureau",
    expect="PERMISSION_DENIED + node audit row with reason not_gateway",
)
def test_bureau_certificate_cannot_call_a_node(network: Network, real: PkiDir) -> None:
    """FR's genuine certificate gets PERMISSION_DENIED from DE's node, which audits it."""
    before = len(_node_reasons(network, "DE"))
    code = _call(
        network.node("DE").address,
        real.tls("FR"),
        real.tls("FR").root,
        bureau_dns_name("DE"),
        HANDLE_METHOD,
        _handle(_envelope(real)),
    )
    assert code == Code.PERMISSION_DENIED
    _wait_for(lambda: len(_node_reasons(network, "DE")) > before)
    assert _node_reasons(network, "DE")[before:] == ["not_gateway"]


@pytest.mark.attack(
    "the operator's (or the gateway's own) certificate calling Gateway/Query",
    adversary="any caller",
    expect="PERMISSION_DENIED + gateway audit row (refused, no peer bureau)",
)
@pytest.mark.parametrize("party", ["operator", "gateway"])
def test_non_bureau_certificate_cannot_query(network: Network, real: PkiDir, party: str) -> None:
    """Only a bureau certificate may send a query; others are refused and audited."""
    env = _envelope(real)
    code = _call(
        network.gateway.address,
        real.tls(party),
        real.tls(party).root,
        GATEWAY_NAME,
        QUERY_METHOD,
        _query(env),
    )
    assert code == Code.PERMISSION_DENIED
    message_id = _hex(env)
    _wait_for(lambda: bool(_gateway_rows(network, message_id)))
    assert _gateway_rows(network, message_id) == [("", "FR", "refused", "PERMISSION_DENIED")]


def test_other_root_really_is_another_root(real: PkiDir, other: PkiDir) -> None:
    """Sanity for the tests above: the throwaway PKI has its own root and the same names."""
    assert real.ca_cert.read_bytes() != other.ca_cert.read_bytes()
    assert (other.party("FR") / "tls.crt").exists()
