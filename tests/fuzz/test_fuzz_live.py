"""Fuzzing the live RPC handlers: a real gateway and four real nodes over mTLS on loopback.

Raw bytes go through generic gRPC methods (no serializer), so the servers' own
deserializers see exactly what a hostile peer could send. Every call must come back
within its deadline with a status from the expected set; never UNKNOWN or INTERNAL,
which would mean an exception escaped a handler. The last test checks that every
process is still alive, still answers a normal query correctly, and logged no
traceback.
"""

from __future__ import annotations

import os
import random
import string
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from ncbsim import _crypto, envelope, messages
from ncbsim.client import open_answer, seal_query
from ncbsim.directory import Directory, Peer
from ncbsim.identity import Identity
from ncbsim.node.inbox import Inbox
from ncbsim.node.store import RecordStore
from ncbsim.pki import GATEWAY_NAME, PkiDir, TlsFiles, bureau_dns_name
from ncbsim.simulations.network import Network, alive
from ncbsim.v2 import bureau_pb2, envelope_pb2, gateway_pb2, messages_pb2, query_pb2
from ncbsim.workdir import Workdir

pytestmark = pytest.mark.integration

DEADLINE_S = 5.0
GATEWAY = "/ncbsim.v2.GatewayService/"
HANDLE = "/ncbsim.v2.BureauService/Handle"
DELIVER = "/ncbsim.v2.BureauService/Deliver"
Code = grpc.StatusCode

REFUSALS = {
    Code.INVALID_ARGUMENT,
    Code.NOT_FOUND,
    Code.PERMISSION_DENIED,
    Code.FAILED_PRECONDITION,
    Code.RESOURCE_EXHAUSTED,
    Code.ALREADY_EXISTS,
}
EXPECTED = {Code.OK, *REFUSALS}
"""Every call ends in one of these. UNAVAILABLE and DEADLINE_EXCEEDED are not in it: no
route is missing and no node is down during the run, so either would mean a hung or
crashed handler. UNKNOWN and INTERNAL would mean an exception escaped a handler."""

POSTED_INTACT: set[bytes] = set()
"""Message ids of the copies the Post fuzzing sent unchanged: the only ones DE may process."""
POSTED_TAMPERED: set[bytes] = set()
"""Message ids of the tampered copies the gateway accepted: DE must reject every one."""

SEEN: Counter[tuple[str, str]] = Counter()
"""(method, status) of every call, printed by the last test as a record of coverage."""


@dataclass(frozen=True)
class Wire:
    """Raw channels into the running network, and the key material to seal real envelopes."""

    gateway_as_fr: grpc.Channel
    gateway_as_nl: grpc.Channel
    node_de_as_gateway: grpc.Channel
    fr: Identity
    nl: Identity
    de: Peer
    network: Network


def _channel(address: str, tls: TlsFiles, peer_name: str) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.root, private_key=tls.key, certificate_chain=tls.cert
    )
    return grpc.secure_channel(
        address, credentials, options=[("grpc.ssl_target_name_override", peer_name)]
    )


@pytest.fixture(scope="module")
def wire(network: Network) -> Iterator[Wire]:
    pki = PkiDir(network.workdir)
    now = int(time.time() * 1000)
    channels = (
        _channel(network.gateway.address, pki.tls("FR"), GATEWAY_NAME),
        _channel(network.gateway.address, pki.tls("NL"), GATEWAY_NAME),
        _channel(network.node("DE").address, pki.tls("gateway"), bureau_dns_name("DE")),
    )
    try:
        yield Wire(
            *channels,
            fr=Identity.load(pki, "FR", now_ms=now),
            nl=Identity.load(pki, "NL", now_ms=now),
            de=Directory.from_pki(pki).get("DE"),
            network=network,
        )
    finally:
        for channel in channels:
            channel.close()


def _call(channel: grpc.Channel, method: str, payload: bytes) -> tuple[Code, bytes | None]:
    """Send ``payload`` as is; the status and the raw response. Asserts the expected set."""
    rpc = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        response: bytes = rpc(payload, timeout=DEADLINE_S)
        code, result = Code.OK, response
    except grpc.RpcError as exc:
        code, result = exc.code(), None  # type: ignore[attr-defined]
    SEEN[method.rsplit("/", 1)[-1], code.name] += 1
    assert code in EXPECTED, f"{method} answered {code.name} to {payload[:64].hex()}"
    return code, result


def _seal(wire: Wire, body: query_pb2.Query) -> envelope.SealedRequest:
    return seal_query(wire.fr, wire.de, body)


def _diffusion(wire: Wire, sender: Identity | None = None) -> envelope.Envelope:
    """A real diffusion to DE: sealed to DE's key, signed by ``sender`` (FR)."""
    body = messages_pb2.Diffusion(subject="Fuzz", text="Armed robbery", distribution=["DE"])
    return envelope.seal_message(
        messages.pack(body),
        sender=sender or wire.fr,
        recipient=wire.de,
        kind=envelope.DIFFUSION,
        post_id=os.urandom(16),
    )


def _repeated(raw: bytes) -> bytes:
    """``raw`` as field 1 (the ``envelope`` of a QueryRequest or a HandleRequest, the one
    element of ``envelopes`` of a PostRequest or a DeliverRequest), byte for byte, even
    when it is not a valid Envelope."""
    size, length = bytearray(), len(raw)
    while True:
        size.append((length & 0x7F) | (0x80 if length > 0x7F else 0))
        length >>= 7
        if not length:
            return b"\x0a" + bytes(size) + raw


def _query(item: envelope.Envelope) -> bytes:
    """The bytes of a QueryRequest holding ``item``."""
    return gateway_pb2.QueryRequest(envelope=item).SerializeToString()


def _intact(raw: bytes, original: envelope.Envelope) -> bool | None:
    """Whether ``raw`` decodes to ``original``'s three fields; None if it does not decode."""
    try:
        received = envelope.Envelope.FromString(raw)
    except DecodeError:
        return None
    return (received.header, received.sealed, received.signature) == (
        original.header,
        original.sealed,
        original.signature,
    )


# ----------------------------------------------------------------------------- strategies


@st.composite
def _mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with bit flips, truncated, extended, spliced, or replaced by random bytes."""
    how = draw(st.sampled_from(["flip", "truncate", "extend", "splice", "replace"]))
    if how == "flip":
        buf = bytearray(data)
        for index in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=4)):
            buf[index] ^= 1 << draw(st.integers(0, 7))
        return bytes(buf)
    if how == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    if how == "extend":
        return data + draw(st.binary(min_size=1, max_size=64))
    if how == "splice":
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(max_size=16)) + data[at + draw(st.integers(0, 8)) :]
    return draw(st.binary(max_size=512))


@st.composite
def _mutated_envelope(draw: st.DrawFn, wire_bytes: bytes) -> bytes:
    """A valid envelope's wire bytes, mutated as a whole or in one of its three fields."""
    original = envelope.Envelope.FromString(wire_bytes)
    part = draw(st.sampled_from(["wire", "header", "sealed", "signature"]))
    if part == "wire":
        return draw(_mutated(wire_bytes))
    fields = {"header": original.header, "sealed": original.sealed, "signature": original.signature}
    fields[part] = draw(_mutated(fields[part]))
    return envelope.Envelope(**fields).SerializeToString()


TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=string.ascii_uppercase + string.digits, max_size=12),
    st.sampled_from(["", "DE", "1980-02-03", "2020-02-30", "X" * 65]),
    st.text(min_size=2000, max_size=5000),
)
QUERIES = st.one_of(
    st.builds(
        query_pb2.Query,
        document=st.builds(query_pb2.DocumentQuery, number=TEXT, issuer=TEXT),
    ),
    st.builds(
        query_pb2.Query,
        person=st.builds(query_pb2.PersonQuery, surname=TEXT, given_names=TEXT, date_of_birth=TEXT),
    ),
    st.builds(query_pb2.Query, vehicle=st.builds(query_pb2.VehicleQuery, vin=TEXT, plate=TEXT)),
    st.builds(query_pb2.Query, fetch=st.builds(query_pb2.FetchQuery, ref=TEXT)),
    st.just(query_pb2.Query()),  # no query at all
)

NOW_MS = int(time.time() * 1000)
HEADERS = st.builds(
    envelope_pb2.Header,
    version=st.sampled_from([0, 1, 1, 1, 2]),
    message_id=st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=20)),
    sender=st.sampled_from(["FR", "FR", "FR", "DE", "", "fr"]),
    recipient=st.sampled_from(["DE", "DE", "DE", "IT", "NL", "FR", "ZZ", "", "de"]),
    kind=st.sampled_from([1, 1, 1, 0, 2, 7]),
    issued_at_ms=st.integers(NOW_MS - 120_000, NOW_MS + 120_000),
    expires_at_ms=st.integers(NOW_MS, NOW_MS + 600_000),
    correlation_id=st.binary(max_size=16),
    sender_key_id=st.binary(min_size=8, max_size=8),
    recipient_key_id=st.binary(min_size=8, max_size=8),
)
"""Headers that look valid. ``issued``/``expires`` are drawn around the module's import
time; whether one is still valid when sent does not matter, only the status set does."""


# ----------------------------------------------------------------------------- gateway


@pytest.mark.attack(
    "random bytes to every Gateway RPC, as an authenticated bureau",
    adversary="rogue bureau",
    expect="INVALID_ARGUMENT (undecodable) or a refusal; never INTERNAL/UNKNOWN; no crash",
)
@settings(max_examples=120)
@given(
    st.sampled_from(["Query", "MultiQuery", "GetDirectory", "Routes", "Post", "Receipts"]),
    st.binary(max_size=2048),
)
def test_gateway_rpcs_survive_random_bytes(wire: Wire, method: str, payload: bytes) -> None:
    """Any bytes get an expected status; an undecodable request is INVALID_ARGUMENT."""
    code, _ = _call(wire.gateway_as_fr, GATEWAY + method, payload)
    undecodable = {
        "Query": gateway_pb2.QueryRequest,
        "MultiQuery": gateway_pb2.MultiQueryRequest,
        "GetDirectory": gateway_pb2.GetDirectoryRequest,
        "Routes": gateway_pb2.RoutesRequest,
        "Post": gateway_pb2.PostRequest,
        "Receipts": gateway_pb2.ReceiptsRequest,
    }[method]
    try:
        undecodable.FromString(payload)
    except DecodeError:
        assert code == Code.INVALID_ARGUMENT


@pytest.mark.attack(
    "mutated valid envelopes to Gateway Query and MultiQuery",
    adversary="rogue bureau",
    expect="INVALID_ARGUMENT/PERMISSION_DENIED/NOT_FOUND, or relayed and refused by the node",
)
@settings(max_examples=80)
@given(st.data())
def test_gateway_survives_mutated_envelopes(wire: Wire, data: st.DataObject) -> None:
    """A mutated envelope is refused or relayed; MultiQuery reports every delivery."""
    query = query_pb2.Query(document=query_pb2.DocumentQuery(number="X1", issuer="DE"))
    raw = data.draw(_mutated_envelope(_seal(wire, query).envelope.SerializeToString()))
    if data.draw(st.booleans()):
        _call(wire.gateway_as_fr, GATEWAY + "Query", _repeated(raw))
        return
    multi = b"\x0a" + _varint(len(raw)) + raw  # MultiQueryRequest.envelopes[0], by hand
    code, reply = _call(wire.gateway_as_fr, GATEWAY + "MultiQuery", multi)
    if code == Code.OK:
        assert reply is not None
        for delivery in gateway_pb2.MultiQueryResponse.FromString(reply).deliveries:
            assert delivery.status != gateway_pb2.DELIVERY_STATUS_NO_ANSWER, delivery.detail
            if delivery.status == gateway_pb2.DELIVERY_STATUS_REFUSED:
                assert Code[delivery.detail] in REFUSALS


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


@pytest.mark.attack(
    "properly sealed and signed queries with random field values",
    adversary="rogue bureau",
    expect="OK with a verifiable Answer (hits, record, not_found or error)",
)
@settings(max_examples=60)
@given(QUERIES)
def test_sealed_random_queries_are_answered(wire: Wire, query: query_pb2.Query) -> None:
    """Through the gateway, DE answers any well-sealed query; the answer verifies and opens."""
    sealed = _seal(wire, query)
    code, raw = _call(wire.gateway_as_fr, GATEWAY + "Query", _query(sealed.envelope))
    assert code == Code.OK
    assert raw is not None
    answer = open_answer(sealed, gateway_pb2.QueryResponse.FromString(raw).envelope, wire.de)
    assert answer.response is not None, answer.detail
    assert answer.response.WhichOneof("result") in ("hits", "record", "not_found", "error")


@pytest.mark.attack(
    "properly sealed and signed envelopes whose body is random bytes",
    adversary="rogue bureau",
    expect="INVALID_ARGUMENT (envelope rejected), never INTERNAL",
)
@settings(max_examples=40)
@given(st.binary(max_size=600))
def test_sealed_random_bodies_are_refused(wire: Wire, body: bytes) -> None:
    """A verified envelope whose body is no usable Query is refused, not crashed on."""
    key, _ = envelope.new_response_key()
    sealed = envelope.seal_request(body, sender=wire.fr, recipient=wire.de, response_key=key)
    code, raw = _call(wire.gateway_as_fr, GATEWAY + "Query", _query(sealed.envelope))
    try:
        request = query_pb2.Query.FromString(body)
        usable = len(request.response_key) == 32
    except DecodeError:
        usable = False
    assert code == (Code.OK if usable else Code.INVALID_ARGUMENT)
    assert (raw is not None) == usable


@pytest.mark.attack(
    "valid-looking random headers, sealed to DE and signed with FR's real key",
    adversary="rogue bureau",
    expect="PERMISSION_DENIED/NOT_FOUND/INVALID_ARGUMENT at the gateway, or a node refusal",
)
@settings(max_examples=60)
@given(HEADERS, QUERIES)
def test_signed_random_headers_get_expected_statuses(
    wire: Wire, header: envelope_pb2.Header, query: query_pb2.Query
) -> None:
    """Sealed and signed with real keys, a header with random fields is checked, not crashed on."""
    _, public = envelope.new_response_key()
    body = query_pb2.Query()
    body.CopyFrom(query)
    body.response_key = public
    raw = header.SerializeToString()
    sealed = _crypto.hpke_seal(
        wire.de.encryption_key,
        info=envelope.REQUEST_INFO,
        aad=raw,
        plaintext=body.SerializeToString(),
    )
    signature = _crypto.ed25519_sign(
        wire.fr.signing_key,
        envelope.SIGNATURE_CONTEXT + len(raw).to_bytes(4, "big") + raw + sealed,
    )
    env = envelope.Envelope(header=raw, sealed=sealed, signature=signature)
    code, _ = _call(wire.gateway_as_fr, GATEWAY + "Query", _query(env))
    if header.sender != "FR":
        assert code == Code.PERMISSION_DENIED


# ----------------------------------------------------------------------------- node


@pytest.mark.attack(
    "random bytes to a node's Bureau/Handle with the gateway's certificate",
    adversary="malicious gateway",
    expect="INVALID_ARGUMENT (envelope rejected), never INTERNAL/UNKNOWN; node stays up",
)
@settings(max_examples=100)
@given(st.binary(max_size=2048))
def test_node_handle_survives_random_bytes(wire: Wire, payload: bytes) -> None:
    """Random bytes from the gateway are refused as INVALID_ARGUMENT."""
    code, _ = _call(wire.node_de_as_gateway, HANDLE, payload)
    assert code == Code.INVALID_ARGUMENT


@pytest.mark.attack(
    "mutated valid envelopes to a node's Bureau/Handle with the gateway's certificate",
    adversary="malicious gateway",
    expect="INVALID_ARGUMENT, or OK/ALREADY_EXISTS only when the three fields are intact",
)
@settings(max_examples=80)
@given(st.data())
def test_node_handle_survives_mutated_envelopes(wire: Wire, data: st.DataObject) -> None:
    """A node answers a mutated envelope only if header, sealed and signature are intact."""
    query = query_pb2.Query(vehicle=query_pb2.VehicleQuery(plate="AB-123-CD"))
    sealed = _seal(wire, query)
    raw = data.draw(_mutated_envelope(sealed.envelope.SerializeToString()))
    code, _ = _call(wire.node_de_as_gateway, HANDLE, _repeated(raw))
    intact = _intact(raw, sealed.envelope)
    if intact is None:
        assert code == Code.INVALID_ARGUMENT
        return
    assert code == (Code.OK if intact else Code.INVALID_ARGUMENT)


# ----------------------------------------------------------------------------- one-way


def _send_mutated(
    wire: Wire, data: st.DataObject, channel: grpc.Channel, method: str
) -> tuple[Code, bytes | None, bool | None]:
    """A fresh diffusion from FR to DE, mutated, sent as the one envelope of a Post or a
    Deliver: the status, the reply, and whether its three fields stayed intact (None: it
    does not decode, and was refused as INVALID_ARGUMENT)."""
    original = _diffusion(wire)
    raw = data.draw(_mutated_envelope(original.SerializeToString()))
    code, reply = _call(channel, method, _repeated(raw))
    intact = _intact(raw, original)
    if intact is None:
        assert code == Code.INVALID_ARGUMENT
    return code, reply, intact


@pytest.mark.attack(
    "mutated valid diffusions to Gateway Post: bit flips, truncation, extension, splices in "
    "the header, the sealed body or the signature",
    adversary="rogue bureau",
    expect="a refusal, or stored and then rejected by the recipient (or retried until its "
    "TTL, holding back only the sender's own copies); only an intact copy is ever processed",
)
@settings(max_examples=80)
@given(st.data())
def test_post_survives_mutated_envelopes(wire: Wire, data: st.DataObject) -> None:
    """The gateway refuses what its header checks catch and stores the rest (it cannot
    check a signature it is not trusted with); an intact copy is accepted."""
    code, reply, intact = _send_mutated(wire, data, wire.gateway_as_fr, GATEWAY + "Post")
    if intact is None:
        return
    if intact:
        assert code == Code.OK
    if code == Code.OK:
        assert reply is not None
        [result] = gateway_pb2.PostResponse.FromString(reply).results
        assert result.status == gateway_pb2.POST_STATUS_ACCEPTED
        (POSTED_INTACT if intact else POSTED_TAMPERED).add(result.message_id)


def _fates(channel: grpc.Channel) -> dict[bytes, int]:
    """The caller's posted copies and their states, from Gateway.Receipts."""
    listing = gateway_pb2.ReceiptsRequest(limit=500).SerializeToString()
    code, raw = _call(channel, GATEWAY + "Receipts", listing)
    assert code == Code.OK
    assert raw is not None
    return {m.message_id: m.state for m in gateway_pb2.ReceiptsResponse.FromString(raw).messages}


def test_tampered_posts_are_never_processed_nor_block_other_senders(wire: Wire) -> None:
    """No tampered copy the gateway stored is delivered or processed by DE, and no intact
    one is rejected. A tampered copy DE cannot check yet (a signing key id its directory
    does not name) holds back FR's later copies, in order, until its TTL; NL's copy to DE,
    posted after all of them, is delivered all the same."""
    assert POSTED_TAMPERED, "the gateway stored no tampered copy: nothing to check"
    genuine = _diffusion(wire, sender=wire.nl)
    code, _ = _call(wire.gateway_as_nl, GATEWAY + "Post", _repeated(genuine.SerializeToString()))
    assert code == Code.OK
    nl_id = envelope.unverified_header(genuine).message_id
    deadline = time.monotonic() + 30
    while _fates(wire.gateway_as_nl).get(nl_id) != gateway_pb2.MESSAGE_STATE_DELIVERED:
        assert time.monotonic() < deadline, "NL's copy waited behind FR's"
        time.sleep(0.2)
    fates = _fates(wire.gateway_as_fr)
    assert {fates[m] for m in POSTED_TAMPERED} <= {
        gateway_pb2.MESSAGE_STATE_REJECTED,
        gateway_pb2.MESSAGE_STATE_QUEUED,  # DE cannot check it yet: retried until its TTL
    }
    assert {fates[m] for m in POSTED_INTACT} <= {
        gateway_pb2.MESSAGE_STATE_DELIVERED,
        gateway_pb2.MESSAGE_STATE_QUEUED,  # behind such a copy of FR's
    }
    inbox = Inbox.read(Workdir(wire.network.workdir).bureau("DE").inbox)  # DE's own record
    try:
        processed = {m for m in POSTED_INTACT | POSTED_TAMPERED if inbox.stored("FR", m)}
        assert inbox.stored("NL", nl_id) is not None
    finally:
        inbox.close()
    assert processed <= POSTED_INTACT
    delivered = {m for m, state in fates.items() if state == gateway_pb2.MESSAGE_STATE_DELIVERED}
    assert processed == delivered & POSTED_INTACT


@pytest.mark.attack(
    "random bytes to a node's Bureau/Deliver with the gateway's certificate",
    adversary="malicious gateway",
    expect="INVALID_ARGUMENT for undecodable requests, else OK with every envelope REJECTED; "
    "never INTERNAL/UNKNOWN",
)
@settings(max_examples=100)
@given(st.binary(max_size=2048))
def test_node_deliver_survives_random_bytes(wire: Wire, payload: bytes) -> None:
    """Random bytes from the gateway: undecodable is INVALID_ARGUMENT, anything that
    decodes is answered envelope by envelope, and nothing is processed."""
    code, reply = _call(wire.node_de_as_gateway, DELIVER, payload)
    try:
        request = bureau_pb2.DeliverRequest.FromString(payload)
    except DecodeError:
        assert code == Code.INVALID_ARGUMENT
        return
    assert code == Code.OK
    assert reply is not None
    results = bureau_pb2.DeliverResponse.FromString(reply).results
    assert len(results) <= len(request.envelopes)
    assert {r.status for r in results} <= {bureau_pb2.DELIVER_STATUS_REJECTED}


@pytest.mark.attack(
    "mutated valid diffusions to a node's Bureau/Deliver with the gateway's certificate",
    adversary="malicious gateway",
    expect="REJECTED (did not verify or open), or no result when the node cannot check the "
    "signing key id yet; only an intact copy is PROCESSED, with a receipt",
)
@settings(max_examples=80)
@given(st.data())
def test_node_deliver_survives_mutated_envelopes(wire: Wire, data: st.DataObject) -> None:
    """A node processes a delivered copy only if header, sealed and signature are intact."""
    code, reply, intact = _send_mutated(wire, data, wire.node_de_as_gateway, DELIVER)
    if intact is None:
        return
    assert code == Code.OK
    assert reply is not None
    results = bureau_pb2.DeliverResponse.FromString(reply).results
    if intact:
        assert [r.status for r in results] == [bureau_pb2.DELIVER_STATUS_PROCESSED]
        assert results[0].receipt.ByteSize() > 0
    else:  # no result: the node stopped at a copy under a key id it cannot check yet
        assert [r.status for r in results] in ([bureau_pb2.DELIVER_STATUS_REJECTED], [])


# ----------------------------------------------------------------------------- register


@pytest.mark.attack(
    "random Register requests from an authenticated bureau",
    adversary="rogue bureau",
    expect="INVALID_ARGUMENT for undecodable requests or bad addresses; the route is re-registered",
)
@settings(max_examples=60)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.builds(
            gateway_pb2.RegisterRequest,
            address=st.one_of(
                st.text(max_size=60),
                st.sampled_from(
                    [
                        *("", ":", "127.0.0.1", "127.0.0.1:", "127.0.0.1:99999", "a:-1"),
                        *("127.0.0.1:1", "[::1]:1", "\x00:1", "a b:1", "[:1", "é:1"),
                        *("unix:/nonexistent:1", "dns:///localhost:1", "ipv4:127.0.0.1:1"),
                    ]
                ),
            ),
        ).map(lambda r: r.SerializeToString()),
    )
)
def test_register_survives_random_requests(wire: Wire, payload: bytes) -> None:
    """Register answers OK or INVALID_ARGUMENT; the test restores NL's route afterwards."""
    code, _ = _call(wire.gateway_as_nl, GATEWAY + "Register", payload)
    assert code in (Code.OK, Code.INVALID_ARGUMENT)


def test_network_survives_the_fuzzing(wire: Wire) -> None:
    """Afterwards every process lives, queries are answered correctly, no log has a traceback."""
    net = wire.network
    register = gateway_pb2.RegisterRequest(address=net.node("NL").address).SerializeToString()
    assert _call(wire.gateway_as_nl, GATEWAY + "Register", register)[0] == Code.OK
    assert all(alive(proc.pid) for proc in net.procs), net.procs

    store = RecordStore(Workdir(net.workdir).bureau("DE").records)
    try:
        doc = store.sample("document", 1, random.Random(4))[0]
    finally:
        store.close()
    sealed = _seal(
        wire,
        query_pb2.Query(document=query_pb2.DocumentQuery(number=doc.number, issuer="DE")),
    )
    code, raw = _call(wire.gateway_as_fr, GATEWAY + "Query", _query(sealed.envelope))
    assert code == Code.OK
    assert raw is not None
    answer = open_answer(sealed, gateway_pb2.QueryResponse.FromString(raw).envelope, wire.de)
    assert [m.ref for m in answer.matches] == [doc.ref]

    for proc in net.procs:
        text = Path(proc.log).read_text(errors="replace")
        assert "Traceback" not in text, f"{proc.role} {proc.bureau or ''} logged a traceback"
    print(sorted(SEEN.items()))  # the statuses seen, shown with -s
