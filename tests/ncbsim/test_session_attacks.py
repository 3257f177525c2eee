"""Attacks on query sessions (protocol.md §15): every check of §15.3-15.7 refuses a
tampered, misdirected, replayed or forged envelope, with the opaque EnvelopeError or, where
the protocol says so, SessionRefused; a bad checkpoint ends the session."""

from __future__ import annotations

import pytest
from session_helpers import NOW, Pair, identity, make_pair, senders

from ncbsim import _crypto, session
from ncbsim.checkpoints import sign_checkpoint
from ncbsim.envelope import Envelope, Header
from ncbsim.errors import EnvelopeError, Replayed, SessionRefused
from ncbsim.v2 import envelope_pb2, session_pb2

SESSION_FIELDS = ("sender", "session_id")
"""Header fields that name the session: a change makes it one B does not hold."""


@pytest.fixture(params=["classic", "hybrid"])
def pair(request: pytest.FixtureRequest) -> Pair:
    return make_pair(session.SUITES[request.param])


def _flip_byte(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def _with_header(env: Envelope, **changes: object) -> Envelope:
    header = envelope_pb2.Header.FromString(env.header)
    for name, value in changes.items():
        setattr(header, name, value)
    out = Envelope()
    out.CopyFrom(env)
    out.header = header.SerializeToString()
    return out


def _flipped(value: object) -> object:
    if isinstance(value, bytes):
        return bytes([value[0] ^ 1]) + value[1:] if value else b"\x01"
    if isinstance(value, str):
        return chr(ord(value[0]) ^ 1) + value[1:]
    assert isinstance(value, int)
    return value ^ 1


def _refused(pair: Pair, env: Envelope, *, at: int = 0) -> type[Exception]:
    with pytest.raises((EnvelopeError, SessionRefused, Replayed)) as caught:
        pair.receive(env, at=at)
    return caught.type


# ----------------------------------------------------------------------------- requests


@pytest.mark.attack(
    "flip one bit of any header field of a session request",
    adversary="malicious gateway",
    expect="EnvelopeError; a changed sender or session id: SessionRefused (session unknown)",
)
@pytest.mark.parametrize("name", [f.name for f in envelope_pb2.Header.DESCRIPTOR.fields])
def test_request_header_field_flip_refused(pair: Pair, name: str) -> None:
    """A request whose header was changed in any field is refused and nothing opens."""
    sent = pair.send()
    original = getattr(envelope_pb2.Header.FromString(sent.envelope.header), name)
    tampered = _with_header(sent.envelope, **{name: _flipped(original)})
    expected = SessionRefused if name in SESSION_FIELDS else EnvelopeError
    if name == "sender":  # B looks the named bureau up, which holds no session with B
        named = identity(str(_flipped("FR"))).as_peer()
        with pytest.raises(SessionRefused):
            pair.registry.open_request(
                tampered, Header.parse(tampered.header), sender=named, now_ms=NOW
            )
        return
    assert _refused(pair, tampered) is expected
    assert pair.receive(sent.envelope)[0].plaintext == b"query"  # the original still opens


@pytest.mark.attack(
    "flip any bit of a session request's ciphertext, or truncate or extend it",
    adversary="malicious gateway",
    expect="EnvelopeError (opaque): the AEAD tag fails",
)
def test_request_sealed_tampering_refused(pair: Pair) -> None:
    """Every flipped byte, a truncation and an extension of the ciphertext fail the AEAD."""
    sent = pair.send(b"a query of some length")
    sealed = sent.envelope.sealed
    variants = [_flip_byte(sealed, i) for i in range(len(sealed))]
    variants += [sealed[:-1], sealed + b"\x00", b""]
    for variant in variants:
        tampered = Envelope(header=sent.envelope.header, sealed=variant)
        assert _refused(pair, tampered) is EnvelopeError
    assert pair.receive(sent.envelope)[0].plaintext == b"a query of some length"


@pytest.mark.attack(
    "deliver a session request twice",
    adversary="replayer",
    expect="Replayed (ALREADY_EXISTS, seq already taken); after the session ends, SessionRefused",
)
def test_request_replay_refused(pair: Pair) -> None:
    """A seq opens once; the same request again is refused, and after the end of the session
    (or a node restart: a fresh registry) it is session unknown."""
    sent = pair.send()
    pair.receive(sent.envelope)
    assert _refused(pair, sent.envelope) is Replayed
    restarted = session.ServerSessions(pair.de, suite=pair.suite)
    with pytest.raises(SessionRefused):
        restarted.open_request(sent.envelope, sent.header, sender=pair.peer("FR"), now_ms=NOW)
    pair.registry.end_peer("FR")
    assert _refused(pair, sent.envelope) is SessionRefused


@pytest.mark.attack(
    "deliver a session request to another bureau, or with a wrong suite or seq",
    adversary="malicious gateway",
    expect="EnvelopeError (opaque)",
)
def test_request_redirected_or_renumbered_refused(pair: Pair) -> None:
    """A request handed to IT, or with its suite or seq changed, is refused."""
    sent = pair.send()
    it_sessions = session.ServerSessions(pair.it, suite=pair.suite)
    with pytest.raises(EnvelopeError):
        it_sessions.open_request(sent.envelope, sent.header, sender=pair.peer("FR"), now_ms=NOW)
    for changes in ({"suite": 3 - pair.suite}, {"seq": 0}, {"seq": 2}, {"version": 1}):
        assert _refused(pair, _with_header(sent.envelope, **changes)) is EnvelopeError


@pytest.mark.attack(
    "sign a format 2 request, or replace a request's body with a forged one",
    adversary="rogue bureau",
    expect="EnvelopeError: requests are authenticated by the epoch key, which only FR and DE hold",
)
def test_request_forged_without_the_epoch_key_refused(pair: Pair) -> None:
    """IT cannot make a request of FR's session: neither a signature nor a guessed body works."""
    sent = pair.send()
    signed = Envelope(
        header=sent.envelope.header,
        sealed=sent.envelope.sealed,
        signature=_crypto.ed25519_sign(pair.it.signing_key, b"x"),
    )
    assert _refused(pair, signed) is EnvelopeError
    forged = Envelope(header=sent.envelope.header, sealed=b"\x00" * len(sent.envelope.sealed))
    assert _refused(pair, forged) is EnvelopeError


@pytest.mark.attack(
    "send a session request past 60 s or past seq 10,000",
    adversary="replayer",
    expect="SessionRefused: session unknown past 60 s; a seq rewritten past 10,000: EnvelopeError",
)
def test_request_beyond_the_epoch_refused(pair: Pair) -> None:
    """The epoch's bounds hold on B's side whatever the requester or gateway does."""
    sent = pair.send(at=59_999)
    assert _refused(pair, sent.envelope, at=60_000) is SessionRefused
    # A seq past 10,000 written into a genuine header: the AEAD fails first (opaque).
    assert _refused(pair, _with_header(sent.envelope, seq=10_001), at=59_999) is EnvelopeError


# ----------------------------------------------------------------------------- responses


@pytest.mark.attack(
    "swap the responses of two session requests, replay a response, or reflect a request",
    adversary="malicious gateway",
    expect="EnvelopeError (opaque): correlation id, seq and key bind a response to its request",
)
def test_response_swapped_replayed_or_reflected_refused(pair: Pair) -> None:
    """A response opens for its own request, once; not for another, not twice."""
    first, second = pair.send(b"one"), pair.send(b"two")
    replies = []
    for sent in (first, second):
        opened, held, _ = pair.receive(sent.envelope)
        replies.append(
            held.seal_response(b"re:" + opened.plaintext, request=opened.header, now_ms=NOW)
        )
    with pytest.raises(EnvelopeError):
        pair.client.open_response(first, replies[1], now_ms=NOW)
    with pytest.raises(EnvelopeError):
        pair.client.open_response(first, first.envelope, now_ms=NOW)
    assert pair.client.open_response(first, replies[0], now_ms=NOW).plaintext == b"re:one"
    with pytest.raises(EnvelopeError):
        pair.client.open_response(first, replies[0], now_ms=NOW)


@pytest.mark.attack(
    "flip one bit of any byte of a session response",
    adversary="malicious gateway",
    expect="EnvelopeError (opaque)",
)
def test_response_tampering_refused(pair: Pair) -> None:
    """Any changed byte of the header or ciphertext of a response is refused."""
    sent = pair.send()
    opened, held, _ = pair.receive(sent.envelope)
    reply = held.seal_response(b"answer", request=opened.header, now_ms=NOW)
    for part in ("header", "sealed"):
        data = getattr(reply, part)
        for index in range(len(data)):
            tampered = Envelope()
            tampered.CopyFrom(reply)
            setattr(tampered, part, _flip_byte(data, index))
            with pytest.raises(EnvelopeError):
                pair.client.open_response(sent, tampered, now_ms=NOW)
    assert pair.client.open_response(sent, reply, now_ms=NOW).plaintext == b"answer"


def test_second_response_to_one_request_is_never_sealed(pair: Pair) -> None:
    """B refuses to seal two responses to one seq (that would reuse an AEAD nonce)."""
    sent = pair.send()
    opened, held, _ = pair.receive(sent.envelope)
    held.seal_response(b"first", request=opened.header, now_ms=NOW)
    with pytest.raises(EnvelopeError):
        held.seal_response(b"second", request=opened.header, now_ms=NOW)


# ----------------------------------------------------------------------------- handshake


@pytest.mark.attack(
    "tamper with a SESSION_OPEN, forge one for another bureau, or replay one",
    adversary="malicious gateway",
    expect="EnvelopeError (opaque); a replayed OPEN opens no second session",
)
def test_open_tampered_forged_or_replayed_refused(pair: Pair) -> None:
    """B accepts only an OPEN signed by its sender, for itself, in its suite, once."""
    lookup = senders(pair.fr, pair.de, pair.it)
    registry = session.ServerSessions(pair.de, suite=pair.suite)
    opening = session.open_session(pair.fr, pair.peer("DE"), suite=pair.suite, now_ms=NOW)
    env = opening.envelope
    bad_key = session_pb2.SessionOpen(ephemeral_key=b"\x01" * 31).SerializeToString()
    variants = [
        Envelope(header=env.header, sealed=env.sealed, signature=_flip_byte(env.signature, 0)),
        Envelope(header=_flip_byte(env.header, -1), sealed=env.sealed, signature=env.signature),
        Envelope(header=env.header, sealed=bad_key, signature=env.signature),
        Envelope(
            header=env.header,
            sealed=env.sealed,
            signature=_crypto.ed25519_sign(
                pair.it.signing_key, session.signed_bytes_v2(env.header, env.sealed)
            ),
        ),
    ]
    for variant in variants:
        with pytest.raises(EnvelopeError):
            registry.accept(variant, Header.parse(variant.header), senders=lookup, now_ms=NOW)
    other_suite = session.ServerSessions(pair.de, suite=3 - pair.suite)
    to_it = session.ServerSessions(pair.it, suite=pair.suite)
    for wrong in (other_suite, to_it):
        with pytest.raises(EnvelopeError):
            wrong.accept(env, opening.header, senders=lookup, now_ms=NOW)
    with pytest.raises(EnvelopeError):  # expired
        registry.accept(env, opening.header, senders=lookup, now_ms=NOW + 30_000)
    registry.accept(env, opening.header, senders=lookup, now_ms=NOW)
    registry.end_peer("FR")
    with pytest.raises(EnvelopeError):  # the same OPEN again, even after the session ended
        registry.accept(env, opening.header, senders=lookup, now_ms=NOW + 1)
    assert len(registry) == 0


@pytest.mark.attack(
    "tamper with a SESSION_ACCEPT, or answer an OPEN with another session's or bureau's ACCEPT",
    adversary="malicious gateway",
    expect="EnvelopeError (opaque); the requester sets up no session",
)
def test_accept_tampered_or_misdirected_refused(pair: Pair) -> None:
    """FR takes only DE's signed ACCEPT of its own OPEN."""
    lookup = senders(pair.fr, pair.de, pair.it)
    opening = session.open_session(pair.fr, pair.peer("DE"), suite=pair.suite, now_ms=NOW)
    accept = pair.registry.accept(opening.envelope, opening.header, senders=lookup, now_ms=NOW)
    variants = [
        Envelope(
            header=accept.header, sealed=_flip_byte(accept.sealed, -1), signature=accept.signature
        ),
        Envelope(
            header=_flip_byte(accept.header, -1), sealed=accept.sealed, signature=accept.signature
        ),
        pair.accept,  # the ACCEPT of another session
    ]
    for variant in variants:
        with pytest.raises(EnvelopeError):
            session.finish_session(
                opening, variant, sender=pair.fr, peer=pair.peer("DE"), now_ms=NOW
            )
    it_registry = session.ServerSessions(pair.it, suite=pair.suite)
    to_it = session.open_session(pair.fr, pair.peer("IT"), suite=pair.suite, now_ms=NOW)
    it_accept = it_registry.accept(to_it.envelope, to_it.header, senders=lookup, now_ms=NOW)
    with pytest.raises(EnvelopeError):
        session.finish_session(opening, it_accept, sender=pair.fr, peer=pair.peer("DE"), now_ms=NOW)
    finished = session.finish_session(
        opening, accept, sender=pair.fr, peer=pair.peer("DE"), now_ms=NOW
    )
    assert finished.session_id == opening.header.session_id
    with pytest.raises(EnvelopeError):  # the ephemeral key is gone: no second session from it
        session.finish_session(opening, accept, sender=pair.fr, peer=pair.peer("DE"), now_ms=NOW)


@pytest.mark.attack(
    "open a session as another bureau with a key not in the directory",
    adversary="rogue bureau",
    expect="EnvelopeError (opaque)",
)
def test_open_by_an_impostor_refused() -> None:
    """An OPEN claiming to be FR but made with other keys is refused."""
    fr, de = identity("FR"), identity("DE")
    impostor = identity("FR")
    registry = session.ServerSessions(de, suite=1)
    opening = session.open_session(impostor, de.as_peer(), suite=1, now_ms=NOW)
    with pytest.raises(EnvelopeError):
        registry.accept(opening.envelope, opening.header, senders=senders(fr, de), now_ms=NOW)


# ----------------------------------------------------------------------------- checkpoints


def _carrier(pair: Pair) -> session.SessionRequest:
    """Send 32 requests, and return the 33rd (the one carrying the first checkpoint)."""
    for _ in range(32):
        pair.receive(pair.send().envelope)
    carrier = pair.send()
    assert carrier.envelope.checkpoint
    return carrier


def _resigned(pair: Pair, signed: bytes, signer: _crypto.SigningKey, **changes: object) -> bytes:
    checkpoint = session_pb2.Checkpoint.FromString(
        session_pb2.SignedCheckpoint.FromString(signed).checkpoint
    )
    for name, value in changes.items():
        if name == "leaves":
            del checkpoint.leaves[:]
            checkpoint.leaves.extend(value)  # type: ignore[arg-type]
        else:
            setattr(checkpoint, name, value)
    return sign_checkpoint(signer, checkpoint)


@pytest.mark.attack(
    "tamper with a checkpoint, or forge one with a wrong leaf, session, commitment or range",
    adversary="malicious gateway",
    expect="EnvelopeError, and the session ends (its next request: session unknown)",
)
@pytest.mark.parametrize(
    "how",
    ["flip", "other signer", "wrong leaf", "other session", "commitment", "range", "ahead"],
)
def test_bad_checkpoint_ends_the_session(how: str) -> None:
    """Every bad checkpoint refuses the request carrying it and ends the session."""
    pair = make_pair(1)
    carrier = _carrier(pair)
    signed = carrier.envelope.checkpoint
    fr = pair.fr.signing_key
    leaves = list(
        session_pb2.Checkpoint.FromString(
            session_pb2.SignedCheckpoint.FromString(signed).checkpoint
        ).leaves
    )
    bad = {
        "flip": lambda: _flip_byte(signed, len(signed) // 2),
        "other signer": lambda: _resigned(pair, signed, pair.it.signing_key),
        "wrong leaf": lambda: _resigned(pair, signed, fr, leaves=[b"\x00" * 32, *leaves[1:]]),
        "other session": lambda: _resigned(pair, signed, fr, session_id=b"\x09" * 16),
        "commitment": lambda: _resigned(pair, signed, fr, key_commitment=b"\x00" * 32),
        "range": lambda: _resigned(pair, signed, fr, first_seq=2),  # would cover seq 33 itself
        "ahead": lambda: _resigned(pair, signed, fr, first_seq=0),
    }[how]()
    tampered = Envelope(
        header=carrier.envelope.header, sealed=carrier.envelope.sealed, checkpoint=bad
    )
    with pytest.raises(EnvelopeError):
        pair.receive(tampered)
    assert pair.registry.get("FR", pair.client.session_id) is None
    assert _refused(pair, pair.send().envelope) is SessionRefused


@pytest.mark.attack(
    "present a checkpoint that covers seqs already covered",
    adversary="replayer",
    expect="EnvelopeError, and the session ends",
)
def test_checkpoint_covering_twice_ends_the_session() -> None:
    """A checkpoint replayed on a later request (same range) is refused."""
    pair = make_pair(1)
    carrier = _carrier(pair)
    pair.receive(carrier.envelope)
    later = pair.send()
    replayed = Envelope(
        header=later.envelope.header,
        sealed=later.envelope.sealed,
        checkpoint=carrier.envelope.checkpoint,
    )
    with pytest.raises(EnvelopeError):
        pair.receive(replayed)
    assert pair.registry.get("FR", pair.client.session_id) is None


@pytest.mark.attack(
    "tamper with a SESSION_CLOSE, or send one for another bureau's session",
    adversary="malicious gateway",
    expect="EnvelopeError; the session stays until a valid close",
)
def test_close_tampered_refused(pair: Pair) -> None:
    """A close with a bad signature or another sender's session does not end the session."""
    pair.ask()
    close = pair.client.close(now_ms=NOW)
    header = Header.parse(close.header)
    bad = Envelope(
        header=close.header, signature=_flip_byte(close.signature, 3), checkpoint=close.checkpoint
    )
    with pytest.raises(EnvelopeError):
        pair.registry.close(bad, header, sender=pair.peer("FR"), now_ms=NOW)
    assert len(pair.registry) == 1
    with pytest.raises((EnvelopeError, SessionRefused)):
        pair.registry.close(close, header, sender=pair.peer("IT"), now_ms=NOW)
    closed, covered = pair.registry.close(close, header, sender=pair.peer("FR"), now_ms=NOW)
    assert covered is not None
    assert len(pair.registry) == 0
    pair.client.check_closed(close, closed, peer=pair.peer("DE"), now_ms=NOW)
