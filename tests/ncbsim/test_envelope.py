"""Envelope recipes: a request and its response round-trip, and any tampering with the
header, the sealed body or the signature is rejected with one opaque error."""

from __future__ import annotations

from dataclasses import replace

import pytest
from envelope_helpers import (
    HEADER_FIELDS,
    NOW,
    POSITIONS,
    RESPONSE_BODY,
    Flow,
    Leg,
    _ask,
    _assert_rejected,
    _flip_byte,
    _flip_field,
    _position,
    _request_body,
    _resign,
    _senders,
)

from ncbsim import _crypto, envelope
from ncbsim.v2 import query_pb2

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
