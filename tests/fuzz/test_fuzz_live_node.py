"""Fuzzing a live node's RPC handlers (Handle, Deliver) and the one-way Post path through
the gateway: a real gateway and four real nodes over mTLS on loopback.

Raw bytes go through generic gRPC methods (no serializer), so the servers' own
deserializers see exactly what a hostile peer could send. Every call must come back
within its deadline with a status from the expected set; never UNKNOWN or INTERNAL,
which would mean an exception escaped a handler. The last test checks that every
process is still alive, still answers a normal query correctly, and logged no
traceback.
"""

from __future__ import annotations

import time

import grpc
import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st
from live_wire import (
    DELIVER,
    GATEWAY,
    HANDLE,
    POSTED_INTACT,
    POSTED_TAMPERED,
    Code,
    Wire,
    _call,
    _diffusion,
    _intact,
    _mutated_envelope,
    _repeated,
    _seal,
    assert_network_survived,
)

from ncbsim import envelope
from ncbsim.node.inbox import Inbox
from ncbsim.v2 import bureau_pb2, gateway_pb2, query_pb2
from ncbsim.workdir import Workdir

pytestmark = pytest.mark.integration


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


def test_network_survives_the_node_fuzzing(wire: Wire) -> None:
    """Afterwards every process lives, queries are answered correctly, no log has a traceback."""
    assert_network_survived(wire)
