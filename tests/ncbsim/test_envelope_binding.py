"""Envelope recipes bind each envelope to its parties, its request and its time: wrong
recipients and keys, replayed or reflected envelopes, and expired ones are rejected."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from envelope_helpers import (
    NOW,
    RESPONSE_BODY,
    Flow,
    _answer,
    _ask,
    _assert_rejected,
    _flip_field,
    _resign,
    _senders,
)

from ncbsim import _crypto, envelope
from ncbsim.directory import Directory
from ncbsim.errors import DirectoryError
from ncbsim.identity import Identity
from ncbsim.v2 import envelope_pb2

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
