"""Fuzzing a live node's format 2 path (docs/protocol.md §15): mutated session requests
and handshakes sent to ``Bureau.Handle`` with the gateway's certificate, as raw bytes.

Each example opens a fresh session with DE through Handle (so a refusal that ends a
session, a bad checkpoint, cannot mask the next example), sends one mutated envelope,
then closes the session. Every call must end in the expected status set, never UNKNOWN
or INTERNAL; a mutated request is answered only if its header and sealed body are the
original's (and its checkpoint is the original's or none). The last test checks that
the network survived.
"""

from __future__ import annotations

import time

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st
from live_wire import (
    HANDLE,
    Code,
    Wire,
    _call,
    _mutated_session_envelope,
    _repeated,
    assert_network_survived,
)

from ncbsim import envelope, session
from ncbsim.pki import PkiDir
from ncbsim.v2 import bureau_pb2, query_pb2

pytestmark = pytest.mark.integration

QUERY = query_pb2.Query(vehicle=query_pb2.VehicleQuery(plate="AB-123-CD")).SerializeToString()


def _now() -> int:
    return int(time.time() * 1000)


def _handle(wire: Wire, item: envelope.Envelope) -> tuple[Code, envelope.Envelope | None]:
    code, raw = _call(
        wire.node_de_as_gateway,
        HANDLE,
        bureau_pb2.HandleRequest(envelope=item).SerializeToString(),
    )
    if raw is None:
        return code, None
    return code, bureau_pb2.HandleResponse.FromString(raw).envelope


def _open(wire: Wire) -> session.ClientSession:
    """FR's fresh session with DE's node, through Handle."""
    suite = PkiDir(wire.network.workdir).suite
    opening = session.open_session(wire.fr, wire.de, suite=suite, now_ms=_now())
    code, accept = _handle(wire, opening.envelope)
    assert code == Code.OK
    assert accept is not None
    return session.finish_session(opening, accept, sender=wire.fr, peer=wire.de, now_ms=_now())


def _close(wire: Wire, held: session.ClientSession) -> None:
    """End FR's session at DE (refused when a bad checkpoint already ended it)."""
    code, _ = _handle(wire, held.close(now_ms=_now()))
    assert code in {Code.OK, Code.FAILED_PRECONDITION}


def _parts(item: envelope.Envelope) -> tuple[bytes, bytes, bytes]:
    return item.header, item.sealed, item.checkpoint


@pytest.mark.attack(
    "mutated format 2 session requests (header, AEAD body, checkpoint, or the whole wire "
    "bytes) to a node's Bureau/Handle with the gateway's certificate",
    adversary="malicious gateway",
    expect="INVALID_ARGUMENT or FAILED_PRECONDITION; OK only when header and body are intact "
    "and no signature was added; never INTERNAL/UNKNOWN",
)
@settings(max_examples=60)
@given(carrier=st.booleans(), data=st.data())
def test_node_handle_survives_mutated_session_requests(
    wire: Wire, carrier: bool, data: st.DataObject
) -> None:
    """A node answers a mutated session request only if what the AEAD covers is intact."""
    held = _open(wire)
    try:
        request = held.seal_request(QUERY, now_ms=_now())
        while carrier and not request.envelope.checkpoint:
            assert _handle(wire, request.envelope)[0] == Code.OK
            request = held.seal_request(QUERY, now_ms=_now())
        original = request.envelope
        raw = data.draw(_mutated_session_envelope(original.SerializeToString()))
        code, _ = _call(wire.node_de_as_gateway, HANDLE, _repeated(raw))
        try:
            received = envelope.Envelope.FromString(raw)
        except DecodeError:
            assert code == Code.INVALID_ARGUMENT
            return
        same = (received.header, received.sealed, received.signature) == (
            original.header,
            original.sealed,
            original.signature,
        )
        if same and received.checkpoint in {original.checkpoint, b""}:
            assert code == Code.OK
        elif not same:
            assert code in {Code.INVALID_ARGUMENT, Code.FAILED_PRECONDITION}
        else:  # a changed checkpoint is refused, unless it re-encodes the same signed bytes
            assert code in {Code.OK, Code.INVALID_ARGUMENT}
    finally:
        _close(wire, held)


@pytest.mark.attack(
    "mutated SESSION_OPEN envelopes to a node's Bureau/Handle with the gateway's certificate",
    adversary="malicious gateway",
    expect="INVALID_ARGUMENT unless header, body and signature are intact; never INTERNAL/UNKNOWN",
)
@settings(max_examples=40)
@given(data=st.data())
def test_node_handle_survives_mutated_session_opens(wire: Wire, data: st.DataObject) -> None:
    """A node accepts a session only as FR signed its OPEN."""
    suite = PkiDir(wire.network.workdir).suite
    opening = session.open_session(wire.fr, wire.de, suite=suite, now_ms=_now())
    original = opening.envelope
    raw = data.draw(_mutated_session_envelope(original.SerializeToString()))
    code, reply = _call(wire.node_de_as_gateway, HANDLE, _repeated(raw))
    try:
        received = envelope.Envelope.FromString(raw)
    except DecodeError:
        assert code == Code.INVALID_ARGUMENT
        return
    intact = _parts(received) == _parts(original) and received.signature == original.signature
    assert code == (Code.OK if intact else Code.INVALID_ARGUMENT)
    if intact:  # finish and close it, so FR's sessions at DE stay few
        assert reply is not None
        accept = bureau_pb2.HandleResponse.FromString(reply).envelope
        held = session.finish_session(opening, accept, sender=wire.fr, peer=wire.de, now_ms=_now())
        _close(wire, held)


def test_network_survives_the_session_fuzzing(wire: Wire) -> None:
    """Afterwards every process lives, queries are answered correctly, no log has a traceback."""
    assert_network_survived(wire)
