"""What the live fuzz tests share: raw channels into a running network (``Wire``), calls
that assert the expected status set, real envelopes to mutate, the strategies, and the
check that the network survived."""

from __future__ import annotations

import os
import random
import string
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf.message import DecodeError
from hypothesis import strategies as st
from support import document_query

from ncbsim import envelope, messages
from ncbsim.client import open_answer, seal_query
from ncbsim.directory import Peer
from ncbsim.identity import Identity
from ncbsim.node.store import RecordStore
from ncbsim.pki import TlsFiles
from ncbsim.processes import alive
from ncbsim.simulations.network import Network
from ncbsim.v2 import envelope_pb2, gateway_pb2, messages_pb2, query_pb2
from ncbsim.workdir import Workdir

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
    """``data`` with bit flips, truncated, extended, spliced, or replaced by random bytes
    (empty ``data``, such as a format 2 request's signature: random bytes, maybe none)."""
    if not data:
        return draw(st.binary(max_size=512))
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


@st.composite
def _mutated_session_envelope(draw: st.DrawFn, wire_bytes: bytes) -> bytes:
    """A format 2 envelope's wire bytes, mutated as a whole or in one of its four fields
    (a session request has an empty signature and maybe a checkpoint)."""
    original = envelope.Envelope.FromString(wire_bytes)
    part = draw(st.sampled_from(["wire", "header", "sealed", "signature", "checkpoint"]))
    if part == "wire":
        return draw(_mutated(wire_bytes))
    mutated = envelope.Envelope()
    mutated.CopyFrom(original)
    setattr(mutated, part, draw(_mutated(getattr(original, part))))
    return mutated.SerializeToString()


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


def assert_network_survived(wire: Wire) -> None:
    """Every process lives, a query is answered correctly, no log has a traceback; the
    statuses seen so far are printed (shown with -s)."""
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
        document_query(doc.number, "DE"),
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
