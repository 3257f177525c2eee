"""Envelope recipes: round trips, tampering, wrong keys, replay, time, and known answers.

Known-answer vectors come from tests/vectors/envelope-v1.json (see generate.py there and
docs/protocol.md). ``_Rfc9180`` below is an HPKE base-mode opener written from RFC 9180
with cryptography's X25519, HMAC-SHA256 and ChaCha20-Poly1305 only; it opens ncbsim
envelopes, which shows the wire format is standard HPKE with the header bytes as AAD.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ncbsim import _crypto, envelope
from ncbsim.directory import Directory, Peer
from ncbsim.errors import DirectoryError, EnvelopeError
from ncbsim.identity import Identity
from ncbsim.v2 import envelope_pb2, query_pb2, records_pb2

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "envelope-v1.json").read_text()
)

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z; every call passes now_ms explicitly
HEADER_FIELDS = [field.name for field in envelope_pb2.Header.DESCRIPTOR.fields]
SIGNATURE_CONTEXT = b"ncbsim/v1 envelope\x00"  # spelled out from docs/protocol.md
POSITIONS = {"first": 0, "middle": None, "last": -1}


# ----------------------------------------------------------------------------- helpers


def _identity(bureau: str) -> Identity:
    return Identity.from_keys(bureau, _crypto.ed25519_generate(), _crypto.x25519_generate())


def _senders(*identities: Identity) -> Callable[[str], Peer]:
    """A directory lookup that knows ``identities`` and raises DirectoryError otherwise."""
    peers = {identity.bureau: identity.as_peer() for identity in identities}

    def lookup(bureau: str) -> Peer:
        try:
            return peers[bureau]
        except KeyError:
            raise DirectoryError(f"no verified directory entry for {bureau}") from None

    return lookup


def _signed_message(header: bytes, sealed: bytes) -> bytes:
    return SIGNATURE_CONTEXT + len(header).to_bytes(4, "big") + header + sealed


def _sign(seed: bytes, header: bytes, sealed: bytes) -> bytes:
    """Ed25519 through cryptography (not PyNaCl), from the documented signed message."""
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    return key.sign(_signed_message(header, sealed))


def _resign(
    env: envelope.Envelope,
    signer: Identity,
    *,
    header: bytes | None = None,
    sealed: bytes | None = None,
) -> envelope.Envelope:
    header = env.header if header is None else header
    sealed = env.sealed if sealed is None else sealed
    signature = _sign(bytes(signer.signing_key), header, sealed)
    return envelope.Envelope(header=header, sealed=sealed, signature=signature)


def _flip(value: bytes | str | int) -> bytes | str | int:
    """The value with the lowest bit of its first byte (or of the integer) flipped."""
    if isinstance(value, bytes):
        return bytes([value[0] ^ 1]) + value[1:]
    if isinstance(value, str):
        return chr(ord(value[0]) ^ 1) + value[1:]
    return value ^ 1


def _flip_field(raw: bytes, name: str) -> bytes:
    header = envelope_pb2.Header.FromString(raw)
    setattr(header, name, _flip(getattr(header, name)))
    changed = header.SerializeToString()
    assert changed != raw
    return changed


def _flip_byte(data: bytes, index: int) -> bytes:
    buf = bytearray(data)
    buf[index] ^= 0x01
    return bytes(buf)


def _position(data: bytes, name: str) -> int:
    index = POSITIONS[name]
    return len(data) // 2 if index is None else index


def _assert_rejected(call: Callable[[], object]) -> None:
    """The call raises exactly EnvelopeError, with the one opaque message and no cause."""
    with pytest.raises(EnvelopeError) as caught:
        call()
    error = caught.value
    assert type(error) is EnvelopeError
    assert str(error) == "envelope rejected"
    assert error.__cause__ is None
    assert error.__suppress_context__ or error.__context__ is None


def _request_body(response_public: bytes) -> bytes:
    return query_pb2.Query(
        response_key=response_public,
        document=query_pb2.DocumentQuery(number="X1234567", issuer="FRA"),
    ).SerializeToString()


RESPONSE_BODY = query_pb2.Answer(
    hits=query_pb2.Hits(
        matches=[query_pb2.Match(ref="r-1", kind=records_pb2.RECORD_KIND_DOCUMENT, score=1.0)]
    )
).SerializeToString()


@dataclass(frozen=True)
class Flow:
    """FR asked DE; IT is a third bureau that both know."""

    fr: Identity
    de: Identity
    it: Identity
    sent: envelope.SealedRequest
    response: envelope.Envelope

    def open_request(self, env: envelope.Envelope, *, now_ms: int = NOW + 1) -> envelope.Opened:
        return envelope.open_request(
            env, recipient=self.de, senders=_senders(self.fr, self.de, self.it), now_ms=now_ms
        )

    def open_response(
        self, env: envelope.Envelope, *, request: envelope.SealedRequest | None = None
    ) -> envelope.Opened:
        return envelope.open_response(
            env, request=request or self.sent, sender=self.de.as_peer(), now_ms=NOW + 3
        )


def _ask(fr: Identity, de: Identity, **kwargs: Any) -> envelope.SealedRequest:
    key, public = envelope.new_response_key()
    kwargs.setdefault("now_ms", NOW)
    return envelope.seal_request(
        _request_body(public), sender=fr, recipient=de.as_peer(), response_key=key, **kwargs
    )


def _answer(
    de: Identity, sent: envelope.SealedRequest, *, now_ms: int = NOW + 2
) -> envelope.Envelope:
    public = _crypto.x25519_public_bytes(sent.response_key)
    return envelope.seal_response(
        RESPONSE_BODY, sender=de, request=sent.header, response_key=public, now_ms=now_ms
    )


@pytest.fixture
def flow() -> Flow:
    fr, de, it = _identity("FR"), _identity("DE"), _identity("IT")
    sent = _ask(fr, de)
    return Flow(fr=fr, de=de, it=it, sent=sent, response=_answer(de, sent))


@dataclass(frozen=True)
class Leg:
    """One direction of the flow: envelope, signer, opener, and the HPKE key and info used."""

    envelope: envelope.Envelope
    signer: Identity
    open: Callable[[envelope.Envelope], envelope.Opened]
    sealed_to: x25519.X25519PublicKey
    info: bytes

    def craft(self, header: bytes) -> envelope.Envelope:
        """What a sender could build: ``header`` as AAD, sealed and signed correctly."""
        sealed = _crypto.hpke_seal(self.sealed_to, info=self.info, aad=header, plaintext=b"hi")
        return _resign(self.envelope, self.signer, header=header, sealed=sealed)


@pytest.fixture(params=["request", "response"])
def leg(request: pytest.FixtureRequest, flow: Flow) -> Leg:
    if request.param == "request":
        return Leg(
            flow.sent.envelope,
            flow.fr,
            flow.open_request,
            flow.de.encryption_key.public_key(),
            envelope.REQUEST_INFO,
        )
    return Leg(
        flow.response,
        flow.de,
        flow.open_response,
        flow.sent.response_key.public_key(),
        envelope.RESPONSE_INFO + flow.sent.header.message_id,
    )


# ----------------------------------------------------------------------------- round trip


def test_request_and_response_round_trip(flow: Flow) -> None:
    """A request and its response survive the wire and open to their plaintexts."""
    wire = envelope.Envelope.FromString(flow.sent.envelope.SerializeToString())
    opened = flow.open_request(wire)
    response_public = _crypto.x25519_public_bytes(flow.sent.response_key)
    assert opened.plaintext == _request_body(response_public)
    assert (opened.header.sender, opened.header.recipient) == ("FR", "DE")
    assert opened.header.kind == envelope.QUERY_REQUEST

    query = query_pb2.Query.FromString(opened.plaintext)
    reply = envelope.seal_response(
        RESPONSE_BODY,
        sender=flow.de,
        request=opened.header,
        response_key=query.response_key,
        now_ms=NOW + 2,
    )
    answer = flow.open_response(envelope.Envelope.FromString(reply.SerializeToString()))
    assert answer.plaintext == RESPONSE_BODY
    assert (answer.header.sender, answer.header.recipient) == ("DE", "FR")
    assert answer.header.kind == envelope.QUERY_RESPONSE
    assert answer.header.correlation_id == flow.sent.header.message_id


def test_seal_draws_fresh_ids_and_encapsulation(flow: Flow) -> None:
    """Two seals of one body get distinct 16-byte message ids and a fresh HPKE enc."""
    body = _request_body(_crypto.x25519_public_bytes(flow.sent.response_key))
    first, second = (
        envelope.seal_request(
            body,
            sender=flow.fr,
            recipient=flow.de.as_peer(),
            response_key=flow.sent.response_key,
            now_ms=NOW,
        )
        for _ in range(2)
    )
    assert len(first.header.message_id) == len(second.header.message_id) == 16
    assert first.header.message_id != second.header.message_id
    assert first.header.correlation_id != second.header.correlation_id
    assert first.envelope.sealed[:32] != second.envelope.sealed[:32]


def test_untampered_and_resigned_envelopes_open(leg: Leg) -> None:
    """An untouched envelope opens, and so does one re-signed by its sender in this test."""
    assert leg.open(leg.envelope).plaintext
    resigned = _resign(leg.envelope, leg.signer)
    assert resigned.signature == leg.envelope.signature  # Ed25519 is deterministic
    assert leg.open(resigned).plaintext == leg.open(leg.envelope).plaintext


# ----------------------------------------------------------------------------- tampering


@pytest.mark.attack(
    "flip one bit of a header field, keeping the original signature",
    adversary="network attacker",
    expect="EnvelopeError (opaque), for every field, request and response",
)
@pytest.mark.parametrize("field", HEADER_FIELDS)
def test_header_field_flip_rejected(leg: Leg, field: str) -> None:
    """Flipping one bit of any header field under the original signature is rejected."""
    header = _flip_field(leg.envelope.header, field)
    env = envelope.Envelope(
        header=header, sealed=leg.envelope.sealed, signature=leg.envelope.signature
    )
    _assert_rejected(lambda: leg.open(env))


@pytest.mark.attack(
    "change a header field and re-sign with a key not in the directory",
    adversary="network attacker",
    expect="EnvelopeError (opaque)",
)
@pytest.mark.parametrize("field", HEADER_FIELDS)
def test_header_field_flip_signed_by_attacker_rejected(leg: Leg, field: str) -> None:
    """A header with one field changed and re-signed by a key not in the directory is rejected."""
    attacker = replace(leg.signer, signing_key=_crypto.ed25519_generate())
    env = _resign(leg.envelope, attacker, header=_flip_field(leg.envelope.header, field))
    _assert_rejected(lambda: leg.open(env))


@pytest.mark.attack(
    "change a header field after sealing and re-sign with the sender's own key",
    adversary="leaked key",
    expect="EnvelopeError: the header is the HPKE AAD, so decryption fails",
)
@pytest.mark.parametrize("field", HEADER_FIELDS)
def test_header_field_flip_signed_by_sender_rejected(leg: Leg, field: str) -> None:
    """Even the genuine sender cannot change a header field after sealing: it is the AAD."""
    env = _resign(leg.envelope, leg.signer, header=_flip_field(leg.envelope.header, field))
    _assert_rejected(lambda: leg.open(env))


CHECKED_FIELDS = ["version", "sender", "recipient", "kind", "sender_key_id", "recipient_key_id"]


def test_crafted_envelope_with_unchanged_header_opens(leg: Leg) -> None:
    """Control for the next test: a correctly sealed and signed copy of the header opens."""
    assert leg.open(leg.craft(leg.envelope.header)).plaintext == b"hi"


@pytest.mark.attack(
    "a wrong version, party, kind or key id under a valid seal and signature",
    adversary="rogue bureau",
    expect="EnvelopeError (opaque)",
)
@pytest.mark.parametrize("field", CHECKED_FIELDS)
def test_checked_field_wrong_under_valid_crypto_rejected(leg: Leg, field: str) -> None:
    """A wrong version, party, kind or key id is rejected even when sealed and signed well."""
    env = leg.craft(_flip_field(leg.envelope.header, field))
    _assert_rejected(lambda: leg.open(env))


@pytest.mark.attack(
    "flip the low bit of any byte of the raw header",
    adversary="network attacker",
    expect="EnvelopeError (opaque) for every byte",
)
def test_header_any_bit_flip_rejected(leg: Leg) -> None:
    """Flipping the low bit of any byte of the raw header bytes is rejected."""
    raw = leg.envelope.header
    for index in range(len(raw)):
        env = envelope.Envelope(
            header=_flip_byte(raw, index),
            sealed=leg.envelope.sealed,
            signature=leg.envelope.signature,
        )
        _assert_rejected(lambda env=env: leg.open(env))


@pytest.mark.attack(
    "flip a bit of the sealed body (first, middle, last byte)",
    adversary="network attacker",
    expect="EnvelopeError (opaque)",
)
@pytest.mark.parametrize("position", POSITIONS)
def test_sealed_bit_flip_rejected(leg: Leg, position: str) -> None:
    """Flipping a bit of the sealed body (first, middle, last byte) is rejected."""
    sealed = leg.envelope.sealed
    env = envelope.Envelope(
        header=leg.envelope.header,
        sealed=_flip_byte(sealed, _position(sealed, position)),
        signature=leg.envelope.signature,
    )
    _assert_rejected(lambda: leg.open(env))


@pytest.mark.attack(
    "flip a bit of the sealed body and re-sign with the sender's key",
    adversary="leaked key",
    expect="EnvelopeError: HPKE open fails",
)
@pytest.mark.parametrize("position", POSITIONS)
def test_sealed_bit_flip_signed_by_sender_rejected(leg: Leg, position: str) -> None:
    """A flipped sealed byte re-signed by the genuine sender still fails HPKE open."""
    sealed = leg.envelope.sealed
    env = _resign(leg.envelope, leg.signer, sealed=_flip_byte(sealed, _position(sealed, position)))
    _assert_rejected(lambda: leg.open(env))


@pytest.mark.attack(
    "flip a bit of the signature (first, middle, last byte)",
    adversary="network attacker",
    expect="EnvelopeError (opaque)",
)
@pytest.mark.parametrize("position", POSITIONS)
def test_signature_bit_flip_rejected(leg: Leg, position: str) -> None:
    """Flipping a bit of the signature (first, middle, last byte) is rejected."""
    signature = leg.envelope.signature
    env = envelope.Envelope(
        header=leg.envelope.header,
        sealed=leg.envelope.sealed,
        signature=_flip_byte(signature, _position(signature, position)),
    )
    _assert_rejected(lambda: leg.open(env))


@pytest.mark.attack(
    "truncate or extend the signature (0, 63, 65 bytes)",
    adversary="network attacker",
    expect="EnvelopeError (opaque)",
)
@pytest.mark.parametrize("length", [0, 63, 65])
def test_signature_of_wrong_length_rejected(leg: Leg, length: int) -> None:
    """A signature that is not exactly 64 bytes is rejected."""
    signature = (leg.envelope.signature * 2)[:length]
    env = envelope.Envelope(
        header=leg.envelope.header, sealed=leg.envelope.sealed, signature=signature
    )
    _assert_rejected(lambda: leg.open(env))


@pytest.mark.attack(
    "a validly signed sealed body shorter than enc plus tag",
    adversary="rogue bureau",
    expect="EnvelopeError (opaque)",
)
def test_sealed_shorter_than_enc_and_tag_rejected(leg: Leg) -> None:
    """A sealed body shorter than enc (32) plus tag (16), validly signed, is rejected."""
    env = _resign(leg.envelope, leg.signer, sealed=leg.envelope.sealed[:47])
    _assert_rejected(lambda: leg.open(env))


@pytest.mark.attack(
    "header bytes that are not a protobuf Header (bad varint, truncated, bad UTF-8)",
    adversary="any caller",
    expect="EnvelopeError (opaque)",
)
@pytest.mark.parametrize(
    "header",
    [b"\xff", b"\x0a\x05ab", b"\x1a\x02\xff\xfe"],
    ids=["bad-varint", "truncated", "bad-utf8"],
)
def test_undecodable_header_rejected(flow: Flow, header: bytes) -> None:
    """Header bytes that are not a valid protobuf Header are rejected."""
    env = _resign(flow.sent.envelope, flow.fr, header=header)
    _assert_rejected(lambda: flow.open_request(env))


@pytest.mark.attack(
    "an empty envelope",
    adversary="any caller",
    expect="EnvelopeError (opaque)",
)
def test_empty_envelope_rejected(flow: Flow) -> None:
    """An empty envelope is rejected."""
    _assert_rejected(lambda: flow.open_request(envelope.Envelope()))


@pytest.mark.attack(
    "a request whose message id is not 16 bytes",
    adversary="rogue bureau",
    expect="EnvelopeError (opaque)",
)
def test_message_id_of_wrong_length_rejected(flow: Flow) -> None:
    """A request whose message id is not 16 bytes is rejected."""
    sent = _ask(flow.fr, flow.de, message_id=b"\x01" * 15)
    _assert_rejected(lambda: flow.open_request(sent.envelope))


def test_open_request_reuses_only_the_envelopes_own_header(flow: Flow) -> None:
    """A header passed to open_request is used only if it is this envelope's, byte for byte."""
    own = envelope.unverified_header(flow.sent.envelope)
    senders = _senders(flow.fr, flow.de, flow.it)
    opened = envelope.open_request(
        flow.sent.envelope, recipient=flow.de, senders=senders, now_ms=NOW + 1, header=own
    )
    assert opened.header == own
    other = _ask(flow.fr, flow.de)
    opened = envelope.open_request(
        flow.sent.envelope, recipient=flow.de, senders=senders, now_ms=NOW + 1, header=other.header
    )
    assert opened.header == own  # another envelope's header is parsed afresh, not trusted
    tampered = _resign(flow.sent.envelope, flow.fr, header=_flip_byte(own.raw, 5))
    _assert_rejected(
        lambda: envelope.open_request(
            tampered, recipient=flow.de, senders=senders, now_ms=NOW + 1, header=own
        )
    )


# ------------------------------------------------------------------------ wrong parties and keys


@pytest.mark.attack(
    "deliver a request for DE to IT (wrong recipient)",
    adversary="malicious gateway",
    expect="EnvelopeError (opaque)",
)
def test_wrong_recipient_identity_rejected(flow: Flow) -> None:
    """A request for DE cannot be opened by IT."""
    senders = _senders(flow.fr, flow.de, flow.it)
    _assert_rejected(
        lambda: envelope.open_request(
            flow.sent.envelope, recipient=flow.it, senders=senders, now_ms=NOW + 1
        )
    )


@pytest.mark.attack(
    "open a request with DE's name but another X25519 private key",
    adversary="network attacker",
    expect="EnvelopeError (opaque)",
)
def test_wrong_private_key_rejected(flow: Flow) -> None:
    """DE's name with a different X25519 private key cannot open the request."""
    impostor = Identity.from_keys("DE", flow.de.signing_key, _crypto.x25519_generate())
    senders = _senders(flow.fr, flow.de)
    _assert_rejected(
        lambda: envelope.open_request(
            flow.sent.envelope, recipient=impostor, senders=senders, now_ms=NOW + 1
        )
    )


@pytest.mark.attack(
    "open a response without the request's ephemeral key",
    adversary="malicious gateway",
    expect="EnvelopeError (opaque)",
)
def test_wrong_response_key_rejected(flow: Flow) -> None:
    """The response cannot be opened with another ephemeral key."""
    other = replace(flow.sent, response_key=_crypto.x25519_generate())
    _assert_rejected(lambda: flow.open_response(flow.response, request=other))


@pytest.mark.attack(
    "a third bureau seals and signs an answer in DE's place",
    adversary="rogue bureau",
    expect="EnvelopeError (opaque)",
)
def test_response_from_another_bureau_rejected(flow: Flow) -> None:
    """A response sealed and signed by IT is refused whether FR expects DE or IT."""
    forged = _answer(flow.it, flow.sent)
    _assert_rejected(lambda: flow.open_response(forged))
    _assert_rejected(
        lambda: envelope.open_response(
            forged, request=flow.sent, sender=flow.it.as_peer(), now_ms=NOW + 3
        )
    )


@pytest.mark.attack(
    "a bureau claims another bureau's sealed request as its own",
    adversary="rogue bureau",
    expect="EnvelopeError: the sender is bound in as AAD",
)
def test_request_reattributed_by_another_bureau_rejected(flow: Flow) -> None:
    """IT cannot claim FR's sealed request as its own: the sender is bound in as AAD."""
    header = envelope_pb2.Header.FromString(flow.sent.envelope.header)
    header.sender, header.sender_key_id = "IT", flow.it.signing_key_id
    env = _resign(flow.sent.envelope, flow.it, header=header.SerializeToString())
    _assert_rejected(lambda: flow.open_request(env))


@pytest.mark.attack(
    "a request from a bureau the directory does not know",
    adversary="any caller",
    expect="EnvelopeError (opaque)",
)
def test_unknown_sender_rejected(flow: Flow) -> None:
    """A request from a bureau the directory does not know is rejected."""
    empty = Directory(ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(DirectoryError):
        empty.get("FR")
    _assert_rejected(
        lambda: envelope.open_request(
            flow.sent.envelope, recipient=flow.de, senders=empty.get, now_ms=NOW + 1
        )
    )


def test_bad_response_key_refused_when_sealing(flow: Flow) -> None:
    """Sealing a response to a response key that is not 32 bytes raises EnvelopeError."""
    _assert_rejected(
        lambda: envelope.seal_response(
            RESPONSE_BODY, sender=flow.de, request=flow.sent.header, response_key=b"\x01" * 31
        )
    )


# ------------------------------------------------------------------------- replay and reflection


@pytest.mark.attack(
    "replay a response against a different request",
    adversary="replayer",
    expect="EnvelopeError (opaque)",
)
def test_response_to_another_request_rejected(flow: Flow) -> None:
    """A response replayed against a different request is rejected."""
    other = _ask(flow.fr, flow.de)
    _assert_rejected(lambda: flow.open_response(flow.response, request=other))


@pytest.mark.attack(
    "replay a response onto a request that reused its response key",
    adversary="replayer",
    expect="EnvelopeError: the correlation id binds the response",
)
def test_response_replayed_onto_request_sharing_its_key_rejected(flow: Flow) -> None:
    """Even if two requests reused one response key, the correlation id binds the response."""
    other = _ask(flow.fr, flow.de)
    other = replace(other, response_key=flow.sent.response_key)  # same key, new message id
    _assert_rejected(lambda: flow.open_response(flow.response, request=other))


@pytest.mark.attack(
    "relabel a response sealed for one request with another request's id",
    adversary="leaked key",
    expect="EnvelopeError: the HPKE info binds the request id",
)
def test_response_info_binds_request_id(flow: Flow) -> None:
    """A response sealed for one request id but labelled with another fails HPKE open."""
    other = replace(_ask(flow.fr, flow.de), response_key=flow.sent.response_key)
    header = envelope_pb2.Header.FromString(flow.response.header)
    header.correlation_id = other.header.message_id
    raw = header.SerializeToString()
    sealed = _crypto.hpke_seal(
        flow.sent.response_key.public_key(),
        info=envelope.RESPONSE_INFO + flow.sent.header.message_id,
        aad=raw,
        plaintext=RESPONSE_BODY,
    )
    env = _resign(flow.response, flow.de, header=raw, sealed=sealed)
    _assert_rejected(lambda: flow.open_response(env, request=other))


@pytest.mark.attack(
    "a response sealed for the request but carrying another correlation id",
    adversary="leaked key",
    expect="EnvelopeError (opaque)",
)
def test_response_with_other_correlation_id_rejected(flow: Flow) -> None:
    """A response sealed for the request but carrying another correlation id is rejected."""
    header = _flip_field(flow.response.header, "correlation_id")
    sealed = _crypto.hpke_seal(
        flow.sent.response_key.public_key(),
        info=envelope.RESPONSE_INFO + flow.sent.header.message_id,
        aad=header,
        plaintext=RESPONSE_BODY,
    )
    env = _resign(flow.response, flow.de, header=header, sealed=sealed)
    _assert_rejected(lambda: flow.open_response(env))


@pytest.mark.attack(
    "reflect the requester's own request back as the response",
    adversary="malicious gateway",
    expect="EnvelopeError (opaque)",
)
def test_request_reflected_as_response_rejected(flow: Flow) -> None:
    """FR's own request sent back to it as the response is rejected."""
    _assert_rejected(lambda: flow.open_response(flow.sent.envelope))
    _assert_rejected(
        lambda: envelope.open_response(
            flow.sent.envelope, request=flow.sent, sender=flow.fr.as_peer(), now_ms=NOW + 3
        )
    )


@pytest.mark.attack(
    "deliver a response to its requester as a request",
    adversary="malicious gateway",
    expect="EnvelopeError (opaque)",
)
def test_response_presented_as_request_rejected(flow: Flow) -> None:
    """DE's response cannot be delivered to FR as a request."""
    _assert_rejected(
        lambda: envelope.open_request(
            flow.response, recipient=flow.fr, senders=_senders(flow.de), now_ms=NOW + 3
        )
    )


# ----------------------------------------------------------------------------- time


@pytest.mark.attack(
    "replay an envelope at or after expires_at_ms",
    adversary="replayer",
    expect="EnvelopeError from the first expired millisecond",
)
def test_expired_envelope_rejected(flow: Flow) -> None:
    """An envelope is accepted until the millisecond before expires_at_ms, then rejected."""
    expires = flow.sent.header.expires_at_ms
    assert flow.open_request(flow.sent.envelope, now_ms=expires - 1).plaintext
    _assert_rejected(lambda: flow.open_request(flow.sent.envelope, now_ms=expires))


@pytest.mark.attack(
    "a pre-dated envelope issued beyond the clock skew, to replay later",
    adversary="replayer",
    expect="EnvelopeError one millisecond past the skew",
)
def test_issued_too_far_in_future_rejected(flow: Flow) -> None:
    """issued_at_ms may lead the receiver's clock by CLOCK_SKEW_MS, not one millisecond more."""
    sent = _ask(flow.fr, flow.de, now_ms=NOW + envelope.CLOCK_SKEW_MS)
    assert flow.open_request(sent.envelope, now_ms=NOW).plaintext
    ahead = _ask(flow.fr, flow.de, now_ms=NOW + envelope.CLOCK_SKEW_MS + 1)
    _assert_rejected(lambda: flow.open_request(ahead.envelope, now_ms=NOW))


@pytest.mark.attack(
    "a pre-dated envelope against a node's configured clock skew",
    adversary="replayer",
    expect="EnvelopeError one millisecond past the configured skew",
)
@pytest.mark.parametrize("skew_ms", [0, 5_000, 120_000])
def test_configured_clock_skew_bounds_issued_at(flow: Flow, skew_ms: int) -> None:
    """With clock_skew_ms set, issued_at_ms may lead by exactly that much, not 1 ms more."""
    senders = _senders(flow.fr, flow.de)

    def open_at_now(sent: envelope.SealedRequest) -> envelope.Opened:
        return envelope.open_request(
            sent.envelope, recipient=flow.de, senders=senders, now_ms=NOW, clock_skew_ms=skew_ms
        )

    assert open_at_now(_ask(flow.fr, flow.de, now_ms=NOW + skew_ms)).plaintext
    _assert_rejected(lambda: open_at_now(_ask(flow.fr, flow.de, now_ms=NOW + skew_ms + 1)))


@pytest.mark.attack(
    "replay an expired envelope to a node with a large clock skew",
    adversary="replayer",
    expect="EnvelopeError: expiry gets no allowance",
)
def test_configured_clock_skew_gives_no_allowance_on_expiry(flow: Flow) -> None:
    """A larger clock_skew_ms does not extend validity: expired is still refused."""
    expires = flow.sent.header.expires_at_ms
    _assert_rejected(
        lambda: envelope.open_request(
            flow.sent.envelope,
            recipient=flow.de,
            senders=_senders(flow.fr, flow.de),
            now_ms=expires,
            clock_skew_ms=3_600_000,
        )
    )


@pytest.mark.attack(
    "an envelope whose lifetime exceeds MAX_TTL_MS, to widen the replay window",
    adversary="replayer",
    expect="EnvelopeError one millisecond past MAX_TTL_MS",
)
def test_lifetime_above_max_ttl_rejected(flow: Flow) -> None:
    """A lifetime of MAX_TTL_MS is accepted and one millisecond more is rejected."""
    sent = _ask(flow.fr, flow.de, ttl_ms=envelope.MAX_TTL_MS)
    assert flow.open_request(sent.envelope).plaintext
    long = _ask(flow.fr, flow.de, ttl_ms=envelope.MAX_TTL_MS + 1)
    _assert_rejected(lambda: flow.open_request(long.envelope))


# ----------------------------------------------------------------------------- known answers


def _vector_identity(bureau: str) -> Identity:
    keys = VECTORS["keys"][bureau]
    return Identity.from_keys(
        bureau,
        _crypto.ed25519_from_seed(bytes.fromhex(keys["ed25519_seed"])),
        _crypto.x25519_private_from_bytes(bytes.fromhex(keys["x25519_private"])),
    )


def _vector_envelope(leg_name: str) -> envelope.Envelope:
    return envelope.Envelope.FromString(bytes.fromhex(VECTORS[leg_name]["envelope"]))


def _vector_request() -> envelope.SealedRequest:
    private = bytes.fromhex(VECTORS["keys"]["response_key"]["x25519_private"])
    return envelope.SealedRequest(
        envelope=_vector_envelope("request"),
        header=envelope.Header.parse(bytes.fromhex(VECTORS["request"]["header"])),
        response_key=_crypto.x25519_private_from_bytes(private),
    )


def test_vector_request_opens_to_expected_plaintext() -> None:
    """The committed request opens with DE's fixed key to the committed Query."""
    fr, de = _vector_identity("FR"), _vector_identity("DE")
    vector = VECTORS["request"]
    opened = envelope.open_request(
        _vector_envelope("request"),
        recipient=de,
        senders=_senders(fr, de),
        now_ms=vector["now_ms"],
    )
    assert opened.plaintext == bytes.fromhex(vector["plaintext"])
    query = query_pb2.Query.FromString(opened.plaintext)
    assert query.response_key.hex() == VECTORS["keys"]["response_key"]["x25519_public"]
    assert query.WhichOneof("query") == "document"


def test_vector_response_opens_to_expected_plaintext() -> None:
    """The committed response opens with the fixed ephemeral key to the committed answer."""
    vector = VECTORS["response"]
    answer = envelope.open_response(
        _vector_envelope("response"),
        request=_vector_request(),
        sender=_vector_identity("DE").as_peer(),
        now_ms=vector["now_ms"],
    )
    assert answer.plaintext == bytes.fromhex(vector["plaintext"])
    matches = query_pb2.Answer.FromString(answer.plaintext).hits.matches
    assert [(m.ref, m.kind, m.score) for m in matches] == [
        (m["ref"], m["kind"], m["score"]) for m in vector["plaintext_fields"]["hits"]["matches"]
    ]


def test_vector_key_ids_are_sha256_prefixes() -> None:
    """Public keys follow from the fixed private keys; key ids are SHA-256(public)[:8]."""
    for bureau in ("FR", "DE"):
        keys = VECTORS["keys"][bureau]
        signing = ed25519.Ed25519PrivateKey.from_private_bytes(
            bytes.fromhex(keys["ed25519_seed"])
        ).public_key()
        encryption = x25519.X25519PrivateKey.from_private_bytes(
            bytes.fromhex(keys["x25519_private"])
        ).public_key()
        assert signing.public_bytes_raw().hex() == keys["ed25519_public"]
        assert encryption.public_bytes_raw().hex() == keys["x25519_public"]
        assert hashlib.sha256(signing.public_bytes_raw()).hexdigest()[:16] == keys["signing_key_id"]
        assert (
            hashlib.sha256(encryption.public_bytes_raw()).hexdigest()[:16]
            == keys["encryption_key_id"]
        )
    ephemeral = VECTORS["keys"]["response_key"]
    public = bytes.fromhex(ephemeral["x25519_public"])
    assert hashlib.sha256(public).hexdigest()[:16] == ephemeral["key_id"]
    assert (
        VECTORS["request"]["header_fields"]["recipient_key_id"]
        == VECTORS["keys"]["DE"]["encryption_key_id"]
    )
    assert VECTORS["response"]["header_fields"]["recipient_key_id"] == ephemeral["key_id"]


@pytest.mark.parametrize("leg_name", ["request", "response"])
def test_vector_header_rebuilds_from_fields(leg_name: str) -> None:
    """Serializing the documented header fields with protobuf gives the committed bytes."""
    f = VECTORS[leg_name]["header_fields"]
    rebuilt = envelope_pb2.Header(
        version=f["version"],
        message_id=bytes.fromhex(f["message_id"]),
        sender=f["sender"],
        recipient=f["recipient"],
        kind=f["kind"],
        issued_at_ms=f["issued_at_ms"],
        expires_at_ms=f["expires_at_ms"],
        correlation_id=bytes.fromhex(f["correlation_id"]),
        sender_key_id=bytes.fromhex(f["sender_key_id"]),
        recipient_key_id=bytes.fromhex(f["recipient_key_id"]),
    ).SerializeToString()
    assert rebuilt.hex() == VECTORS[leg_name]["header"]
    assert f["kind"] == envelope_pb2.MessageKind.Value(f["kind_name"])


def test_vector_plaintexts_rebuild_from_fields() -> None:
    """Serializing the documented query and answer with protobuf gives the committed bytes,
    and each "type" is the full name of the message its plaintext is."""
    asked = VECTORS["request"]["plaintext_fields"]
    assert asked["type"] == query_pb2.Query.DESCRIPTOR.full_name
    assert VECTORS["response"]["plaintext_fields"]["type"] == query_pb2.Answer.DESCRIPTOR.full_name
    request = query_pb2.Query(
        response_key=bytes.fromhex(asked["response_key"]),
        document=query_pb2.DocumentQuery(**asked["document"]),
    )
    assert request.SerializeToString().hex() == VECTORS["request"]["plaintext"]
    matches = VECTORS["response"]["plaintext_fields"]["hits"]["matches"]
    response = query_pb2.Answer(
        hits=query_pb2.Hits(matches=[query_pb2.Match(**m) for m in matches])
    )
    assert response.SerializeToString().hex() == VECTORS["response"]["plaintext"]


@pytest.mark.parametrize(("leg_name", "signer"), [("request", "FR"), ("response", "DE")])
def test_vector_signature_recomputes(leg_name: str, signer: str) -> None:
    """Ed25519 over context || u32be(len) || header || sealed, with the fixed seed, matches."""
    vector = VECTORS[leg_name]
    header, sealed = bytes.fromhex(vector["header"]), bytes.fromhex(vector["sealed"])
    assert _signed_message(header, sealed).hex() == vector["signed_message"]
    seed = bytes.fromhex(VECTORS["keys"][signer]["ed25519_seed"])
    assert _sign(seed, header, sealed).hex() == vector["signature"]


@pytest.mark.parametrize("leg_name", ["request", "response"])
def test_vector_envelope_is_header_sealed_signature(leg_name: str) -> None:
    """The envelope is the protobuf of header, sealed (enc || ciphertext) and signature."""
    vector = VECTORS[leg_name]
    rebuilt = envelope_pb2.Envelope(
        header=bytes.fromhex(vector["header"]),
        sealed=bytes.fromhex(vector["sealed"]),
        signature=bytes.fromhex(vector["signature"]),
    )
    assert rebuilt.SerializeToString().hex() == vector["envelope"]
    assert vector["sealed"].startswith(vector["enc"])
    assert len(bytes.fromhex(vector["sealed"])) == 32 + len(bytes.fromhex(vector["plaintext"])) + 16


# ----------------------------------------------------------------------------- independent HPKE


class _Rfc9180:
    """HPKE base mode, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20-Poly1305, from RFC 9180.

    Only the receiving side, single-shot (sequence number 0). Independent of ncbsim._crypto.
    """

    KEM_SUITE_ID = b"KEM" + (0x0020).to_bytes(2, "big")
    SUITE_ID = b"HPKE" + b"".join(i.to_bytes(2, "big") for i in (0x0020, 0x0001, 0x0003))
    MODE_BASE = b"\x00"

    @staticmethod
    def extract(salt: bytes, ikm: bytes) -> bytes:
        return hmac.new(salt, ikm, hashlib.sha256).digest()

    @staticmethod
    def expand(prk: bytes, info: bytes, length: int) -> bytes:
        out, block, counter = b"", b"", 1
        while len(out) < length:
            block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
            out, counter = out + block, counter + 1
        return out[:length]

    @classmethod
    def labeled_extract(cls, suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
        return cls.extract(salt, b"HPKE-v1" + suite_id + label + ikm)

    @classmethod
    def labeled_expand(
        cls, suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int
    ) -> bytes:
        labeled_info = length.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info
        return cls.expand(prk, labeled_info, length)

    @classmethod
    def context(cls, sk_r: bytes, enc: bytes, info: bytes) -> dict[str, bytes]:
        """Decap and KeySchedule: the intermediate values RFC 9180 Appendix A lists."""
        recipient = x25519.X25519PrivateKey.from_private_bytes(sk_r)
        dh = recipient.exchange(x25519.X25519PublicKey.from_public_bytes(enc))
        kem_context = enc + recipient.public_key().public_bytes_raw()
        eae_prk = cls.labeled_extract(cls.KEM_SUITE_ID, b"", b"eae_prk", dh)
        shared_secret = cls.labeled_expand(
            cls.KEM_SUITE_ID, eae_prk, b"shared_secret", kem_context, 32
        )
        psk_id_hash = cls.labeled_extract(cls.SUITE_ID, b"", b"psk_id_hash", b"")
        info_hash = cls.labeled_extract(cls.SUITE_ID, b"", b"info_hash", info)
        key_schedule_context = cls.MODE_BASE + psk_id_hash + info_hash
        secret = cls.labeled_extract(cls.SUITE_ID, shared_secret, b"secret", b"")
        return {
            "shared_secret": shared_secret,
            "key_schedule_context": key_schedule_context,
            "secret": secret,
            "key": cls.labeled_expand(cls.SUITE_ID, secret, b"key", key_schedule_context, 32),
            "base_nonce": cls.labeled_expand(
                cls.SUITE_ID, secret, b"base_nonce", key_schedule_context, 12
            ),
        }

    @classmethod
    def open(cls, sk_r: bytes, sealed: bytes, *, info: bytes, aad: bytes) -> bytes:
        """Open enc (32 bytes) || ciphertext; the nonce is base_nonce XOR 0 (sequence 0)."""
        enc, ciphertext = sealed[:32], sealed[32:]
        ctx = cls.context(sk_r, enc, info)
        return ChaCha20Poly1305(ctx["key"]).decrypt(ctx["base_nonce"], ciphertext, aad)


# RFC 9180 Appendix A.2.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305, base.
RFC_A21 = {
    "info": "4f6465206f6e2061204772656369616e2055726e",
    "skRm": "8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb",
    "enc": "1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a",
    "shared_secret": "0bbe78490412b4bbea4812666f7916932b828bba79942424abb65244930d69a7",
    "key_schedule_context": "00431df6cd95e11ff49d7013563baf7f11588c75a6611ee2a4404a49306ae4cf"
    "c5b69c5718a60cc5876c358d3f7fc31ddb598503f67be58ea1e798c0bb19eb9796",
    "secret": "5b9cd775e64b437a2335cf499361b2e0d5e444d5cb41a8a53336d8fe402282c6",
    "key": "ad2744de8e17f4ebba575b3f5f5a8fa1f69c2a07f6e7500bc60ca6e3e3ec1c91",
    "base_nonce": "5c4d98150661b848853b547f",
    "pt": "4265617574792069732074727574682c20747275746820626561757479",
    "aad": "436f756e742d30",
    "ct": "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db"
    "21993c62ce81883d2dd1b51a28",
}


def test_independent_hpke_matches_rfc9180_vector() -> None:
    """The test's own RFC 9180 opener reproduces Appendix A.2.1 and opens its sequence-0 ct."""
    v = {name: bytes.fromhex(value) for name, value in RFC_A21.items()}
    ctx = _Rfc9180.context(v["skRm"], v["enc"], v["info"])
    for name in ("shared_secret", "key_schedule_context", "secret", "key", "base_nonce"):
        assert ctx[name] == v[name], name
    opened = _Rfc9180.open(v["skRm"], v["enc"] + v["ct"], info=v["info"], aad=v["aad"])
    assert opened == v["pt"]


def test_ncbsim_hpke_opens_rfc9180_vector() -> None:
    """ncbsim's HPKE open accepts RFC 9180 Appendix A.2.1 (enc || ct, info, aad) as is."""
    v = {name: bytes.fromhex(value) for name, value in RFC_A21.items()}
    key = _crypto.x25519_private_from_bytes(v["skRm"])
    assert (
        _crypto.hpke_open(key, info=v["info"], aad=v["aad"], sealed=v["enc"] + v["ct"]) == (v["pt"])
    )


@pytest.mark.parametrize(
    ("leg_name", "private_key"),
    [("request", ("DE", "x25519_private")), ("response", ("response_key", "x25519_private"))],
)
def test_independent_hpke_opens_vectors(leg_name: str, private_key: tuple[str, str]) -> None:
    """The RFC 9180 opener opens the committed vectors with header bytes as AAD, and only so."""
    vector = VECTORS[leg_name]
    sk_r = bytes.fromhex(VECTORS["keys"][private_key[0]][private_key[1]])
    header, sealed = bytes.fromhex(vector["header"]), bytes.fromhex(vector["sealed"])
    info = bytes.fromhex(vector["hpke_info"])
    assert _Rfc9180.open(sk_r, sealed, info=info, aad=header).hex() == vector["plaintext"]
    with pytest.raises(InvalidTag):
        _Rfc9180.open(sk_r, sealed, info=info, aad=_flip_byte(header, -1))


def test_vector_info_strings() -> None:
    """Request info is "ncbsim/v1 request"; response info appends the request message id."""
    assert bytes.fromhex(VECTORS["request"]["hpke_info"]) == b"ncbsim/v1 request"
    request_id = bytes.fromhex(VECTORS["request"]["header_fields"]["message_id"])
    assert bytes.fromhex(VECTORS["response"]["hpke_info"]) == b"ncbsim/v1 response" + request_id


def test_independent_hpke_opens_fresh_envelopes(flow: Flow) -> None:
    """Freshly sealed requests and responses open with the RFC 9180 opener."""
    de_key = _crypto.x25519_private_bytes(flow.de.encryption_key)
    request = flow.sent.envelope
    assert (
        _Rfc9180.open(de_key, request.sealed, info=b"ncbsim/v1 request", aad=request.header)
        == flow.open_request(request).plaintext
    )

    ephemeral = _crypto.x25519_private_bytes(flow.sent.response_key)
    info = b"ncbsim/v1 response" + flow.sent.header.message_id
    opened = _Rfc9180.open(ephemeral, flow.response.sealed, info=info, aad=flow.response.header)
    assert opened == RESPONSE_BODY
