"""Fuzzing the live gateway's RPC handlers: a real gateway and four real nodes over mTLS
on loopback.

Raw bytes go through generic gRPC methods (no serializer), so the servers' own
deserializers see exactly what a hostile peer could send. Every call must come back
within its deadline with a status from the expected set; never UNKNOWN or INTERNAL,
which would mean an exception escaped a handler. The last test checks that every
process is still alive, still answers a normal query correctly, and logged no
traceback.
"""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st
from live_wire import (
    GATEWAY,
    HEADERS,
    QUERIES,
    REFUSALS,
    Code,
    Wire,
    _call,
    _mutated_envelope,
    _query,
    _repeated,
    _seal,
    assert_network_survived,
)
from support import document_query

from ncbsim import _crypto, envelope
from ncbsim.client import open_answer
from ncbsim.v2 import envelope_pb2, gateway_pb2, query_pb2

pytestmark = pytest.mark.integration


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
    query = document_query("X1", "DE")
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
    assert_network_survived(wire)
