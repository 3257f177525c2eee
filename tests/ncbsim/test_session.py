"""Query sessions (protocol.md §15): round trips in both suites, the canonical header writer,
checkpoint cadence and coverage, bounds, closing, rotation, revocation, sweeping and key
erasure. The attacks are in test_session_attacks.py."""

from __future__ import annotations

import hashlib
from pathlib import Path

import grpc
import pytest
from session_helpers import NOW, Pair, held_bytes, identity, make_pair, senders

from ncbsim import _crypto, envelope, session
from ncbsim._session_wire import HeaderTemplate
from ncbsim.envelope import Header
from ncbsim.errors import EnvelopeError, SessionRefused, reason_for, status_for
from ncbsim.v2 import envelope_pb2, session_pb2


@pytest.fixture(params=["classic", "hybrid"])
def pair(request: pytest.FixtureRequest) -> Pair:
    return make_pair(session.SUITES[request.param])


# ----------------------------------------------------------------------------- round trips


def test_handshake_and_queries_round_trip(pair: Pair) -> None:
    """OPEN, ACCEPT, then requests and responses open to their plaintexts, in both suites."""
    for number in range(1, 6):
        answer, _ = pair.ask(b"query %d" % number, at=number)
        assert answer == b"answer:query %d" % number
    assert pair.client.sent == 5
    assert len(pair.registry) == 1
    held = pair.registry.get("FR", pair.client.session_id)
    assert held is not None
    assert (held.sender, held.suite, held.session_id) == ("FR", pair.suite, pair.client.session_id)
    assert held.sender_key_id == pair.fr.signing_key_id
    assert held.recipient_key_id == pair.de.encryption_key_id
    assert held.own_key_id == pair.de.signing_key_id
    assert pair.client.peer_signing_key_id == pair.de.signing_key_id
    assert pair.client.peer_encryption_key_id == pair.de.encryption_key_id


def test_handshake_wire_form(pair: Pair) -> None:
    """The OPEN carries the suite's ephemeral key in clear; the ACCEPT is sealed to it and
    both are signed; the ephemeral private key is gone once the session is set up."""
    open_header = pair.opening.header
    assert (open_header.version, open_header.kind, open_header.seq) == (2, session.SESSION_OPEN, 0)
    assert open_header.suite == pair.suite
    assert len(open_header.session_id) == 16
    ek = session_pb2.SessionOpen.FromString(pair.opening.envelope.sealed).ephemeral_key
    assert len(ek) == _crypto.KEM_PUBLIC_LEN[pair.suite]
    accept = Header.parse(pair.accept.header)
    assert accept.kind == session.SESSION_ACCEPT
    assert accept.correlation_id == open_header.message_id
    assert accept.recipient_key_id == _crypto.key_id(ek)
    assert len(pair.accept.signature) == 64
    assert len(pair.opening.envelope.signature) == 64
    assert pair.opening._ek is None


def test_request_and_response_wire_form(pair: Pair) -> None:
    """Requests and responses carry no signature, number their seq, and respond in kind."""
    sent = pair.send(b"q")
    assert sent.envelope.signature == b""
    assert sent.envelope.checkpoint == b""
    assert len(sent.envelope.sealed) == 1 + 16
    header = Header.parse(sent.envelope.header)
    assert header == sent.header
    assert (header.version, header.kind, header.seq, header.suite) == (2, 1, 1, pair.suite)
    assert header.recipient_key_id == pair.de.encryption_key_id
    opened, held, _ = pair.receive(sent.envelope)
    reply = Header.parse(held.seal_response(b"a", request=opened.header, now_ms=NOW).header)
    assert (reply.kind, reply.seq, reply.correlation_id) == (2, 1, header.message_id)
    assert reply.recipient_key_id == b""


@pytest.mark.parametrize(
    "values",
    [
        (b"\x01" * 16, 1, 2, b"\x02" * 16, 1),
        (b"\xff" * 16, 0, 0, b"", 0),
        (b"\x00" * 16, -5, 2**63 - 1, b"c" * 16, 10_000),
        (b"m" * 16, NOW, NOW + 30_000, b"\x00" * 16, 127),
        (b"m" * 16, 2**35, 2**42 - 1, b"c" * 16, 128),
        (b"m" * 16, 2**35 - 1, 2**42, b"c" * 16, 16_384),
        (b"m" * 16, 16_383, 1, b"c" * 16, 2**64 - 1),
    ],
)
def test_header_template_writes_protobufs_canonical_bytes(
    values: tuple[bytes, int, int, bytes, int],
) -> None:
    """The hand-written header encoder gives exactly protobuf's serialization."""
    message_id, issued, expires, correlation, seq = values
    fixed = {
        "sender": "FR",
        "recipient": "DE",
        "sender_key_id": b"\x11" * 8,
        "recipient_key_id": b"",
        "suite": 2,
        "session_id": b"\x22" * 16,
    }
    for kind in (1, 2, 7, 10):
        raw = HeaderTemplate(kind=kind, **fixed).render(  # type: ignore[arg-type]
            message_id, issued, expires, correlation, seq
        )
        expected = envelope_pb2.Header(
            version=2,
            message_id=message_id,
            kind=kind,  # type: ignore[arg-type]
            issued_at_ms=issued,
            expires_at_ms=expires,
            correlation_id=correlation,
            seq=seq,
            **fixed,  # type: ignore[arg-type]
        ).SerializeToString()
        assert raw == expected


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_every_32_requests_covers_them_all() -> None:
    """Seq 33 carries a checkpoint over 1-32, seq 65 over 33-64; B returns what it got."""
    pair = make_pair(1)
    carried = {}
    for number in range(1, 70):
        _, covered = pair.ask(at=0)
        if covered is not None:
            carried[number] = (covered.first_seq, covered.last_seq, len(covered.requests))
    assert carried == {33: (1, 32, 32), 65: (33, 64, 32)}


def test_checkpoint_after_one_second_covers_the_slow_trickle() -> None:
    """A request sent more than 1 s after the oldest uncovered one carries a checkpoint."""
    pair = make_pair(1)
    pair.ask(at=0)
    pair.ask(at=500)
    assert pair.send(at=1_000).envelope.checkpoint == b""
    sent = pair.send(at=1_001)
    assert sent.envelope.checkpoint
    checkpoint = session_pb2.Checkpoint.FromString(
        session_pb2.SignedCheckpoint.FromString(sent.envelope.checkpoint).checkpoint
    )
    assert (checkpoint.first_seq, len(checkpoint.leaves)) == (1, 3)
    assert checkpoint.signed_at_ms == NOW + 1_001


def test_covered_requests_carry_their_headers_and_digests() -> None:
    """A Covered names each request by seq, message id, header and SHA-256 of its ciphertext,
    and the signed checkpoint verifies with FR's key alone."""
    pair = make_pair(1)
    sent = [pair.send(b"q%d" % n) for n in range(32)]
    for one in sent:
        pair.receive(one.envelope)
    carrier = pair.send(b"last")
    _, _, covered = pair.receive(carrier.envelope)
    assert covered is not None
    assert covered.sender == "FR"
    assert covered.session_id == pair.client.session_id
    assert [r.seq for r in covered.requests] == list(range(1, 33))
    first = covered.requests[0]
    assert first.message_id == sent[0].header.message_id
    assert first.header == sent[0].envelope.header
    assert first.sealed_sha256 == hashlib.sha256(sent[0].envelope.sealed).digest()
    checkpoint = session.verify_checkpoint(
        covered.signed_checkpoint, pair.fr.signing_key.verify_key
    )
    assert next(iter(checkpoint.leaves)) == session.leaf(first.header, first.sealed_sha256)
    with pytest.raises(EnvelopeError):
        session.verify_checkpoint(covered.signed_checkpoint, pair.it.signing_key.verify_key)


def test_reordered_checkpoints_and_late_requests_are_taken() -> None:
    """A checkpoint arriving before an earlier one, and a request arriving after the
    checkpoint that covers it, are both accepted and still proven."""
    pair = make_pair(1)
    sent = [pair.send(b"q%d" % n) for n in range(1, 66)]  # 33 covers 1-32, 65 covers 33-64
    for one in sent[:64]:
        if one.seq not in (5, 33):
            pair.receive(one.envelope)
    *_, ahead = pair.receive(sent[64].envelope)
    assert ahead is not None
    assert (ahead.first_seq, ahead.last_seq) == (33, 64)
    assert len(ahead.requests) == 31  # 33 itself has not arrived
    *_, earlier = pair.receive(sent[32].envelope)  # carries 1-32, and 33 was covered by 65
    assert earlier is not None
    assert (earlier.first_seq, len(earlier.requests)) == (1, 31)
    late = pair.registry.drain_covered()
    assert [(c.first_seq, [r.seq for r in c.requests]) for c in late] == [(33, [33])]
    *_, five = pair.receive(sent[4].envelope)
    assert five is not None
    assert [r.seq for r in five.requests] == [5]
    assert (five.first_seq, five.last_seq) == (1, 32)


def test_more_than_128_uncovered_requires_a_checkpoint() -> None:
    """With its checkpoints stripped, B takes seq 128 and refuses seq 129 until one arrives."""
    pair = make_pair(1)
    for _ in range(129):
        sent = pair.send()
        stripped = envelope.Envelope(header=sent.envelope.header, sealed=sent.envelope.sealed)
        if sent.seq <= 128:
            pair.receive(stripped)
            continue
        with pytest.raises(SessionRefused) as refused:
            pair.receive(stripped)
        assert refused.value.reason == "checkpoint_required"
        assert status_for(refused.value) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "checkpoint required",
        )
    # Its own checkpoint (over 97-128) does not help: nothing covers 1-96, and the stripped
    # requests that carried those checkpoints cannot be sent again. The requester rekeys.
    assert sent.envelope.checkpoint
    with pytest.raises(SessionRefused):
        pair.receive(sent.envelope)
    assert pair.registry.get("FR", pair.client.session_id) is not None


# ----------------------------------------------------------------------------- bounds


def test_epoch_time_bound_on_both_sides(pair: Pair) -> None:
    """At 50 s the client wants a rekey; at 60 s neither side takes a request."""
    assert not pair.client.due_for_rekey(NOW + 49_999)
    assert pair.client.due_for_rekey(NOW + 50_000)
    sent = pair.send(at=59_999)
    assert pair.client.usable(NOW + 59_999)
    assert not pair.client.usable(NOW + 60_000)
    with pytest.raises(SessionRefused):
        pair.send(at=60_000)
    with pytest.raises(SessionRefused) as refused:
        pair.receive(sent.envelope, at=60_000)
    assert refused.value.reason == "session_unknown"


def test_epoch_count_bound_10000_requests() -> None:
    """9,000 requests ask for a rekey, 10,000 is the last; B refuses a seq beyond it."""
    pair = make_pair(1)
    for _ in range(10_000):
        sent = pair.send()
        if sent.seq == 9_000:
            assert pair.client.due_for_rekey(NOW)
        pair.receive(sent.envelope)
    assert not pair.client.usable(NOW)
    with pytest.raises(SessionRefused):
        pair.send()
    raw = envelope_pb2.Header.FromString(sent.envelope.header)
    raw.seq = 10_001
    beyond = envelope.Envelope(header=raw.SerializeToString(), sealed=sent.envelope.sealed)
    with pytest.raises(SessionRefused) as refused:
        pair.receive(beyond)
    assert refused.value.reason == "session_unknown"


# ----------------------------------------------------------------------------- close, end


def test_close_covers_the_rest_and_erases_both_sides(pair: Pair) -> None:
    """SESSION_CLOSE carries the final checkpoint; CLOSED checks out; both sides forget."""
    for _ in range(5):
        pair.ask()
    close = pair.client.close(now_ms=NOW + 10)
    with pytest.raises(SessionRefused):
        pair.send(at=10)
    closed, covered = pair.registry.close(
        close, Header.parse(close.header), sender=pair.peer("FR"), now_ms=NOW + 10
    )
    assert covered is not None
    assert (covered.first_seq, covered.last_seq) == (1, 5)
    assert len(pair.registry) == 0
    pair.client.check_closed(close, closed, peer=pair.peer("DE"), now_ms=NOW + 10)
    assert pair.client.erased
    header = Header.parse(closed.header)
    assert (header.kind, header.correlation_id, header.seq) == (
        session.SESSION_CLOSED,
        Header.parse(close.header).message_id,
        5,
    )


def test_request_after_close_is_session_unknown() -> None:
    """A request of a closed session (held back by the gateway) is refused as unknown."""
    pair = make_pair(1)
    held_back = pair.send()
    close = pair.client.close(now_ms=NOW)
    pair.registry.close(close, Header.parse(close.header), sender=pair.peer("FR"), now_ms=NOW)
    with pytest.raises(SessionRefused):
        pair.receive(held_back.envelope)


def test_check_closed_erases_even_when_closed_is_forged(pair: Pair) -> None:
    """A CLOSED that fails its checks raises, and the client's keys are gone anyway."""
    close = pair.client.close(now_ms=NOW)
    forged = envelope.Envelope(header=close.header, sealed=b"", signature=close.signature)
    with pytest.raises(EnvelopeError):
        pair.client.check_closed(close, forged, peer=pair.peer("DE"), now_ms=NOW)
    assert pair.client.erased


def test_use_identity_ends_every_session() -> None:
    """DE's own rotation ends all its sessions: their requests become session unknown."""
    pair = make_pair(1)
    sent = pair.send()
    pair.registry.use_identity(identity("DE"))
    assert len(pair.registry) == 0
    with pytest.raises(SessionRefused):
        pair.receive(sent.envelope)


def test_sender_key_rotated_out_ends_its_sessions() -> None:
    """When FR's directory entry no longer signs with the session's key, the session ends."""
    pair = make_pair(1)
    sent = pair.send()
    rotated = identity("FR").as_peer()
    with pytest.raises(SessionRefused):
        pair.registry.open_request(sent.envelope, sent.header, sender=rotated, now_ms=NOW)
    assert pair.registry.get("FR", pair.client.session_id) is None


def test_end_peer_ends_that_peers_sessions_only() -> None:
    """Revoking FR ends FR's sessions and counts them; IT's stay."""
    pair = make_pair(1)
    second = session.open_session(pair.fr, pair.peer("DE"), suite=1, now_ms=NOW)
    lookup = senders(pair.fr, pair.de, pair.it)
    pair.registry.accept(second.envelope, second.header, senders=lookup, now_ms=NOW)
    other = session.open_session(pair.it, pair.peer("DE"), suite=1, now_ms=NOW)
    pair.registry.accept(other.envelope, other.header, senders=lookup, now_ms=NOW)
    assert len(pair.registry) == 3
    assert pair.registry.end_peer("FR") == 2
    assert len(pair.registry) == 1
    assert pair.client.usable(NOW)
    with pytest.raises(SessionRefused):
        pair.receive(pair.send().envelope)


def test_sweep_erases_expired_sessions() -> None:
    """sweep erases sessions past 60 s and counts them."""
    pair = make_pair(1)
    held = pair.registry.get("FR", pair.client.session_id)
    assert held is not None
    assert pair.registry.sweep(NOW + 59_999) == 0
    assert pair.registry.sweep(NOW + 60_000) == 1
    assert len(pair.registry) == 0
    assert held.erased


def test_ninth_session_of_a_peer_ends_its_oldest() -> None:
    """At most 8 sessions per requester: a new one ends the oldest."""
    pair = make_pair(1)
    lookup = senders(pair.fr, pair.de)
    for _ in range(8):
        more = session.open_session(pair.fr, pair.peer("DE"), suite=1, now_ms=NOW)
        pair.registry.accept(more.envelope, more.header, senders=lookup, now_ms=NOW)
    assert len(pair.registry) == 8
    assert pair.registry.get("FR", pair.client.session_id) is None


def test_session_refused_maps_to_failed_precondition() -> None:
    """Both refusals are FAILED_PRECONDITION with their detail and reason code."""
    for detail, reason in (
        ("session unknown", "session_unknown"),
        ("checkpoint required", "checkpoint_required"),
    ):
        exc = SessionRefused(detail)
        assert status_for(exc) == (grpc.StatusCode.FAILED_PRECONDITION, detail)
        assert reason_for(exc) == reason == exc.reason


# ----------------------------------------------------------------------------- erasure


def _epoch_keys(pair: Pair) -> tuple[bytes, bytes]:
    """k_request and k_response, derived here from the handshake and the fixed seed."""
    signed = [
        b"ncbsim/v2 envelope\x00" + len(e.header).to_bytes(4, "big") + e.header + e.sealed
        for e in (pair.opening.envelope, pair.accept)
    ]
    transcript = hashlib.sha256(signed[0] + signed[1]).digest()
    okm = _crypto.hkdf_sha256(
        salt=transcript, ikm=pair.seed, info=b"ncbsim/v2 epoch keys", length=64
    )
    return okm[:32], okm[32:]


@pytest.mark.parametrize("how", ["close", "erase", "end_peer", "sweep"])
def test_no_key_bytes_survive_the_end(how: str) -> None:
    """After close, erase, end_peer or sweep, neither side holds epoch key bytes or a cipher."""
    pair = make_pair(1, seed=b"\x07" * 32)
    keys = _epoch_keys(pair)
    pair.ask()
    held = pair.registry.get("FR", pair.client.session_id)
    assert held is not None
    assert not held.erased
    for side in (pair.client, held):  # the walk below does find live keys
        assert any(isinstance(v, _crypto.AeadKey) and not v.erased for v in _walk(side))
    if how == "close":
        close = pair.client.close(now_ms=NOW)
        closed, _ = pair.registry.close(
            close, Header.parse(close.header), sender=pair.peer("FR"), now_ms=NOW
        )
        pair.client.check_closed(close, closed, peer=pair.peer("DE"), now_ms=NOW)
    elif how == "erase":
        pair.client.erase()
        pair.registry.use_identity(pair.de)
    elif how == "end_peer":
        pair.client.erase()
        pair.registry.end_peer("FR")
    else:
        pair.client.erase()
        pair.registry.sweep(NOW + 60_000)
    for side in (pair.client, held, pair.registry, pair.opening):
        found = held_bytes(side)
        assert not any(key in value for key in keys for value in found)
        assert not any(isinstance(v, _crypto.AeadKey) and not v.erased for v in _walk(side))
    assert pair.client.erased
    assert held.erased


def _walk(obj: object) -> list[object]:
    out = []
    for klass in type(obj).__mro__:
        for name in getattr(klass, "__slots__", ()):
            if hasattr(obj, name):
                out.append(getattr(obj, name))
    return out


def test_epoch_keys_match_the_spec_derivation() -> None:
    """The keys the sides use are HKDF(transcript, seed) as written in §15.4."""
    pair = make_pair(1, seed=b"\x07" * 32)
    k_request, k_response = _epoch_keys(pair)
    sent = pair.send(b"hello")
    nonce = b"\x00" * 4 + (1).to_bytes(8, "big")
    assert _crypto.aead_open(k_request, nonce, sent.envelope.header, sent.envelope.sealed) == (
        b"hello"
    )
    opened, held, _ = pair.receive(sent.envelope)
    reply = held.seal_response(b"world", request=opened.header, now_ms=NOW)
    nonce = b"\x00\x00\x00\x01" + (1).to_bytes(8, "big")
    assert _crypto.aead_open(k_response, nonce, reply.header, reply.sealed) == b"world"


def test_ncbsim_uses_public_cryptography_apis_only() -> None:
    """No module of the package reaches into cryptography's private bindings (the <51 pin
    existed for one such call; protocol.md §5.1)."""
    root = Path(session.__file__).parent
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if "hazmat.bindings" in path.read_text() or "_rust" in path.read_text()
    ]
    assert offenders == []
