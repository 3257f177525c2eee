"""Property-based fuzzing of format 2 session envelopes (docs/protocol.md §15), which a
node and a requester receive from the untrusted gateway.

The contract each test checks: a mutated envelope is taken if and only if what the
protocol authenticates is the original's byte for byte (a request's header and sealed
body, its checkpoint or none; every field of a signed handshake envelope), and is
otherwise refused with the opaque EnvelopeError or the one distinguishable
SessionRefused; never any other exception. Each example gets a fresh session, so one
refusal (a bad checkpoint ends a session) cannot mask another.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import pytest
from fuzz_values import BUREAUS, NOW
from google.protobuf.message import DecodeError
from hypothesis import event, given, settings
from hypothesis import strategies as st

from ncbsim import _crypto, envelope, session
from ncbsim.directory import Peer
from ncbsim.errors import DirectoryError, EnvelopeError, SessionRefused
from ncbsim.identity import Identity
from ncbsim.v2 import query_pb2, session_pb2

QUERY = query_pb2.Query(vehicle=query_pb2.VehicleQuery(plate="AB-123-CD")).SerializeToString()
ANSWER = query_pb2.Answer(hits=query_pb2.Hits()).SerializeToString()
SUITES = st.sampled_from([session.SUITES["classic"], session.SUITES["hybrid"]])
FIELDS = ("header", "sealed", "signature", "checkpoint")


def _identity(bureau: str) -> Identity:
    return Identity.from_keys(bureau, _crypto.ed25519_generate(), _crypto.x25519_generate())


FR, DE, IT = (_identity(b) for b in BUREAUS)


def _senders(bureau: str) -> Peer:
    for identity in (FR, DE, IT):
        if identity.bureau == bureau:
            return identity.as_peer()
    raise DirectoryError(f"no verified directory entry for {bureau}")


@dataclass
class Session:
    """FR's fresh session with DE, both ends."""

    server: session.ServerSessions
    opening: session.Opening
    accept: envelope.Envelope
    client: session.ClientSession


def _session(suite: int) -> Session:
    server = session.ServerSessions(DE, suite=suite)
    opening = session.open_session(FR, DE.as_peer(), suite=suite, now_ms=NOW)
    accept = server.accept(opening.envelope, opening.header, senders=_senders, now_ms=NOW + 1)
    client = session.finish_session(opening, accept, sender=FR, peer=DE.as_peer(), now_ms=NOW + 2)
    return Session(server, opening, accept, client)


@st.composite
def _bytes_mutation(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with bit flips, truncated, extended, spliced, or replaced by random bytes."""
    how = draw(st.sampled_from(["flip", "truncate", "extend", "splice", "replace"]))
    if how == "flip" and data:
        buf = bytearray(data)
        for index in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=4)):
            buf[index] ^= 1 << draw(st.integers(0, 7))
        return bytes(buf)
    if how == "truncate" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if how == "extend":
        return data + draw(st.binary(min_size=1, max_size=64))
    if how == "splice" and data:
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(max_size=16)) + data[at + draw(st.integers(0, 8)) :]
    return draw(st.binary(max_size=256))


def _mutate(draw: st.DrawFn, original: envelope.Envelope) -> envelope.Envelope | None:
    """One field of ``original`` mutated, or its wire bytes (None: they do not decode)."""
    part = draw(st.sampled_from(["wire", *FIELDS]))
    if part == "wire":
        raw = draw(_bytes_mutation(original.SerializeToString()))
        try:
            return envelope.Envelope.FromString(raw)
        except DecodeError:
            return None
    mutated = envelope.Envelope()
    mutated.CopyFrom(original)
    setattr(mutated, part, draw(_bytes_mutation(getattr(original, part))))
    event(f"mutated {part}")
    return mutated


def _parts(item: envelope.Envelope) -> tuple[bytes, ...]:
    return tuple(getattr(item, name) for name in FIELDS)


def _assert_refused(call: object) -> None:
    """Refused with one of the two documented errors and nothing else."""
    assert callable(call)
    with pytest.raises((EnvelopeError, SessionRefused)) as caught:
        call()
    if type(caught.value) is EnvelopeError:
        assert str(caught.value) == "envelope rejected"
    else:
        assert type(caught.value) is SessionRefused
        assert caught.value.detail in {"session unknown", "checkpoint required"}
    event(type(caught.value).__name__)


@pytest.mark.attack(
    "mutated session requests (bit flips, truncation, extension, splices in the header, the "
    "AEAD body or the checkpoint), with and without a checkpoint",
    adversary="malicious gateway",
    expect="EnvelopeError or SessionRefused; only header and body byte-identical (and no "
    "signature) open, and only with the original checkpoint or none",
)
@settings(max_examples=200)
@given(suite=SUITES, carrier=st.booleans(), data=st.data())
def test_mutated_session_request_opens_only_if_unchanged(
    suite: int, carrier: bool, data: st.DataObject
) -> None:
    """A node opens a session request only if the gateway changed nothing authenticated."""
    held = _session(suite)
    request = held.client.seal_request(QUERY, now_ms=NOW + 10)
    while carrier and not request.envelope.checkpoint:
        held.server.open_request(
            request.envelope, request.header, sender=FR.as_peer(), now_ms=NOW + 11
        )
        request = held.client.seal_request(QUERY, now_ms=NOW + 10)
    original = request.envelope
    mutated = _mutate(data.draw, original)

    def deliver() -> object:
        assert mutated is not None
        header = envelope.unverified_header(mutated)
        return held.server.open_request(mutated, header, sender=FR.as_peer(), now_ms=NOW + 11)

    if mutated is None:
        return
    if _request_intact(mutated, original):
        opened, _, _ = deliver()  # type: ignore[misc]
        assert opened.plaintext == QUERY
    else:
        _assert_refused(deliver)


def _same_checkpoint(mutated: bytes, original: bytes) -> bool:
    """Whether ``mutated`` is ``original``'s SignedCheckpoint (re-encoded or not), or none."""
    if mutated in {original, b""}:
        return True
    try:
        got = session_pb2.SignedCheckpoint.FromString(mutated)
        want = session_pb2.SignedCheckpoint.FromString(original)
    except DecodeError:
        return False
    return bool(original) and (got.checkpoint, got.signature) == (want.checkpoint, want.signature)


def _request_intact(mutated: envelope.Envelope, original: envelope.Envelope) -> bool:
    """What a session request's checks cover: header and body (the AEAD), no signature
    (format 2 requests carry none), and the sender's checkpoint or none."""
    return (
        (mutated.header, mutated.sealed, mutated.signature)
        == (original.header, original.sealed, original.signature)
    ) and _same_checkpoint(mutated.checkpoint, original.checkpoint)


@pytest.mark.attack(
    "mutated session answers to the requester: bit flips, truncation, extension, splices",
    adversary="malicious gateway",
    expect="EnvelopeError for every mutation of header or body, or an added signature or "
    "checkpoint; only the original opens",
)
@settings(max_examples=150)
@given(suite=SUITES, data=st.data())
def test_mutated_session_answer_opens_only_if_unchanged(suite: int, data: st.DataObject) -> None:
    """A requester opens a session answer only if header and body are the node's."""
    held = _session(suite)
    request = held.client.seal_request(QUERY, now_ms=NOW + 10)
    opened, at_de, _ = held.server.open_request(
        request.envelope, request.header, sender=FR.as_peer(), now_ms=NOW + 11
    )
    original = at_de.seal_response(ANSWER, request=opened.header, now_ms=NOW + 12)
    mutated = _mutate(data.draw, original)
    if mutated is None:
        return
    if _parts(mutated)[:3] == _parts(original)[:3] and not mutated.checkpoint:
        assert held.client.open_response(request, mutated, now_ms=NOW + 13).plaintext == ANSWER
        return
    _assert_refused(lambda: held.client.open_response(request, mutated, now_ms=NOW + 13))


@pytest.mark.attack(
    "mutated SESSION_OPEN to a node and mutated SESSION_ACCEPT to the requester",
    adversary="malicious gateway",
    expect="EnvelopeError unless header, body and signature are the original's (and, for an "
    "OPEN, no checkpoint was added)",
)
@settings(max_examples=150)
@given(suite=SUITES, leg=st.sampled_from(["open", "accept"]), data=st.data())
def test_mutated_handshake_is_taken_only_if_unchanged(
    suite: int, leg: str, data: st.DataObject
) -> None:
    """Either half of the handshake is taken only as its sender signed it."""
    server = session.ServerSessions(DE, suite=suite)
    opening = session.open_session(FR, DE.as_peer(), suite=suite, now_ms=NOW)
    if leg == "open":
        original = opening.envelope
        mutated = _mutate(data.draw, original)
        if mutated is None:
            return

        def take() -> object:
            assert mutated is not None
            header = envelope.unverified_header(mutated)
            return server.accept(mutated, header, senders=_senders, now_ms=NOW + 1)

    else:
        original = server.accept(opening.envelope, opening.header, senders=_senders, now_ms=NOW)
        mutated = _mutate(data.draw, original)
        if mutated is None:
            return

        def take() -> object:
            assert mutated is not None
            return session.finish_session(
                opening, mutated, sender=FR, peer=DE.as_peer(), now_ms=NOW + 2
            )

    if _parts(mutated) == _parts(original):
        assert take() is not None
    elif leg == "accept" and _parts(mutated)[:3] == _parts(original)[:3]:
        # A checkpoint field on an ACCEPT is outside what B signed and what the keys
        # derive from: the requester may ignore it or refuse it, never be misled by it.
        with contextlib.suppress(EnvelopeError):
            take()
    else:
        _assert_refused(take)
