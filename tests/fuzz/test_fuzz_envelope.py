"""Property-based fuzzing of the envelope and directory-entry parsers, which see what an
untrusted gateway sends.

Each test states the one contract a caller relies on: the parser either returns a
well-formed result or raises its documented error, never anything else. The envelope
tests go further: a mutated envelope opens if and only if its three fields are the
original's byte for byte, and otherwise fails with the one opaque EnvelopeError.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fuzz_values import BUREAUS, INT32, INT64, NOW, UINT32
from google.protobuf.message import DecodeError
from hypothesis import event, given, settings
from hypothesis import strategies as st
from support import document_query

from ncbsim import _crypto, envelope
from ncbsim.directory import Peer, verify_entry
from ncbsim.errors import DirectoryError, EnvelopeError
from ncbsim.identity import Identity
from ncbsim.pki import sign_entry
from ncbsim.v2 import directory_pb2, envelope_pb2, query_pb2

# ----------------------------------------------------------------------------- helpers


def _identity(bureau: str) -> Identity:
    return Identity.from_keys(bureau, _crypto.ed25519_generate(), _crypto.x25519_generate())


@dataclass(frozen=True)
class Flow:
    """FR asked DE and DE answered; IT is a third bureau both know. Built once per module."""

    fr: Identity
    de: Identity
    it: Identity
    sent: envelope.SealedRequest
    response: envelope.Envelope

    def senders(self, bureau: str) -> Peer:
        for identity in (self.fr, self.de, self.it):
            if identity.bureau == bureau:
                return identity.as_peer()
        raise DirectoryError(f"no verified directory entry for {bureau}")

    def open_request(self, env: envelope.Envelope) -> envelope.Opened:
        return envelope.open_request(env, recipient=self.de, senders=self.senders, now_ms=NOW + 1)

    def open_response(self, env: envelope.Envelope) -> envelope.Opened:
        return envelope.open_response(
            env, request=self.sent, sender=self.de.as_peer(), now_ms=NOW + 3
        )


def _make_flow() -> Flow:
    fr, de, it = (_identity(b) for b in BUREAUS)
    key, public = envelope.new_response_key()
    body = document_query("X1234567", "DE", response_key=public).SerializeToString()
    sent = envelope.seal_request(
        body, sender=fr, recipient=de.as_peer(), response_key=key, now_ms=NOW
    )
    reply = query_pb2.Answer(not_found=query_pb2.NotFound()).SerializeToString()
    response = envelope.seal_response(
        reply, sender=de, request=sent.header, response_key=public, now_ms=NOW + 2
    )
    return Flow(fr=fr, de=de, it=it, sent=sent, response=response)


FLOW = _make_flow()
LEGS = {"request": FLOW.sent.envelope, "response": FLOW.response}
OPENERS = {"request": FLOW.open_request, "response": FLOW.open_response}
SIGNERS = {"request": FLOW.fr, "response": FLOW.de}
PARTS = ("header", "sealed", "signature")


def _parts(env: envelope.Envelope) -> tuple[bytes, bytes, bytes]:
    return env.header, env.sealed, env.signature


def _sign(signer: Identity, header: bytes, sealed: bytes) -> bytes:
    return _crypto.ed25519_sign(
        signer.signing_key,
        envelope.SIGNATURE_CONTEXT + len(header).to_bytes(4, "big") + header + sealed,
    )


def _assert_opens_iff_unchanged(leg: str, mutated: envelope.Envelope) -> None:
    """The contract of open_*: the original opens, anything else is the opaque error."""
    original = LEGS[leg]
    if _parts(mutated) == _parts(original):
        assert OPENERS[leg](mutated).plaintext
        return
    with pytest.raises(EnvelopeError) as caught:
        OPENERS[leg](mutated)
    assert type(caught.value) is EnvelopeError
    assert str(caught.value) == "envelope rejected"
    assert caught.value.__cause__ is None


# ------------------------------------------------------------------------ mutation strategies


@st.composite
def _byte_mutation(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with one of: bit flips, truncation, extension, a splice, or random bytes."""
    how = draw(st.sampled_from(["flip", "truncate", "extend", "splice", "replace"]))
    if how == "flip" and data:
        buf = bytearray(data)
        for index in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=4)):
            buf[index] ^= 1 << draw(st.integers(0, 7))
        return bytes(buf)
    if how == "truncate":
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    if how == "extend":
        return data + draw(st.binary(min_size=1, max_size=64))
    if how == "splice" and data:
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(max_size=16)) + data[at + draw(st.integers(0, 8)) :]
    return draw(st.binary(max_size=256))


def _header_message(
    *,
    version: st.SearchStrategy[int],
    parties: st.SearchStrategy[str],
    kind: st.SearchStrategy[int],
    times: st.SearchStrategy[int],
    ids: st.SearchStrategy[bytes],
) -> st.SearchStrategy[envelope_pb2.Header]:
    return st.builds(
        envelope_pb2.Header,
        version=version,
        message_id=ids,
        sender=parties,
        recipient=parties,
        kind=kind,
        issued_at_ms=times,
        expires_at_ms=times,
        correlation_id=ids,
        sender_key_id=ids,
        recipient_key_id=ids,
    )


RANDOM_HEADERS = _header_message(
    version=UINT32,
    parties=st.text(max_size=12),
    kind=INT32,
    times=INT64,
    ids=st.binary(max_size=40),
)
"""Headers with arbitrary field values."""

PLAUSIBLE_HEADERS = _header_message(
    version=st.sampled_from([0, 1, 2]),
    parties=st.sampled_from([*BUREAUS, "NL", "", "fr", "F"]),
    kind=st.sampled_from([0, 1, 2, 3]),
    times=st.integers(NOW - 100_000, NOW + 100_000),
    ids=st.one_of(
        st.binary(min_size=8, max_size=8),
        st.binary(min_size=16, max_size=16),
        st.sampled_from(
            [
                FLOW.fr.signing_key_id,
                FLOW.de.signing_key_id,
                FLOW.de.encryption_key_id,
                FLOW.sent.header.message_id,
            ]
        ),
    ),
)
"""Headers that look valid: known parties, kinds and key ids, times around now."""


_FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "version": st.sampled_from([0, 2, 2**32 - 1]),
    "message_id": st.binary(max_size=20),
    "sender": st.sampled_from(["DE", "IT", "NL", "", "fr"]),
    "recipient": st.sampled_from(["FR", "IT", "", "de", "DEU"]),
    "kind": st.sampled_from([0, 2, 3, -1]),
    "issued_at_ms": st.integers(NOW - 100_000, NOW + 100_000) | INT64,
    "expires_at_ms": st.integers(NOW - 100_000, NOW + envelope.MAX_TTL_MS + 100_000) | INT64,
    "correlation_id": st.binary(max_size=20),
    "sender_key_id": st.binary(min_size=8, max_size=8),
    "recipient_key_id": st.binary(min_size=8, max_size=8),
}


@st.composite
def _near_valid_header(draw: st.DrawFn) -> envelope_pb2.Header:
    """A header valid for FR to DE at NOW, with up to two fields changed to other values."""
    header = envelope_pb2.Header(
        version=1,
        message_id=draw(st.binary(min_size=16, max_size=16)),
        sender="FR",
        recipient="DE",
        kind=envelope.QUERY_REQUEST,
        issued_at_ms=NOW,
        expires_at_ms=NOW + envelope.DEFAULT_TTL_MS,
        correlation_id=draw(st.binary(min_size=16, max_size=16)),
        sender_key_id=FLOW.fr.signing_key_id,
        recipient_key_id=FLOW.de.encryption_key_id,
    )
    for name in draw(st.lists(st.sampled_from(sorted(_FIELD_VALUES)), max_size=2, unique=True)):
        setattr(header, name, draw(_FIELD_VALUES[name]))
    return header


NEAR_VALID_HEADERS = _near_valid_header()


@st.composite
def _mutated_envelope(draw: st.DrawFn, leg: str) -> envelope.Envelope:
    original = LEGS[leg]
    _, sealed, signature = _parts(original)
    how = draw(st.sampled_from(["part", "swap", "header", "resigned-header", "wire"]))
    if how == "part":
        which = draw(st.sampled_from(PARTS))
        values = dict(zip(PARTS, _parts(original), strict=True))
        values[which] = draw(_byte_mutation(values[which]))
        return envelope.Envelope(**values)
    if how == "swap":
        order = draw(st.permutations(_parts(original)))
        return envelope.Envelope(**dict(zip(PARTS, order, strict=True)))
    if how in ("header", "resigned-header"):
        headers = st.one_of(RANDOM_HEADERS, PLAUSIBLE_HEADERS, NEAR_VALID_HEADERS)
        raw = draw(headers).SerializeToString()
        if how == "resigned-header":  # even the genuine sender cannot change the AAD
            return envelope.Envelope(
                header=raw, sealed=sealed, signature=_sign(SIGNERS[leg], raw, sealed)
            )
        return envelope.Envelope(header=raw, sealed=sealed, signature=signature)
    wire = draw(_byte_mutation(original.SerializeToString()))
    try:
        return envelope.Envelope.FromString(wire)
    except DecodeError:  # the gRPC layer's problem, not the opener's: try the bytes as a header
        return envelope.Envelope(header=wire, sealed=sealed, signature=signature)


# ----------------------------------------------------------------------------- envelope


@given(st.binary(max_size=512))
def test_header_parse_returns_a_header_or_envelope_error(raw: bytes) -> None:
    """Any bytes parse to a Header that keeps them verbatim, or raise EnvelopeError."""
    try:
        header = envelope.Header.parse(raw)
    except EnvelopeError:
        return
    assert header.raw == raw
    assert isinstance(header.sender, str)
    assert isinstance(header.recipient, str)


@given(st.one_of(RANDOM_HEADERS, PLAUSIBLE_HEADERS))
def test_header_parse_reads_back_every_field(message: envelope_pb2.Header) -> None:
    """A serialized Header with any field values parses back to exactly those values."""
    header = envelope.Header.parse(message.SerializeToString())
    for field in envelope_pb2.Header.DESCRIPTOR.fields:
        assert getattr(header, field.name) == getattr(message, field.name), field.name


@pytest.mark.attack(
    "mutated requests: bit flips, truncation, extension, part swaps, random or re-signed headers",
    adversary="network attacker",
    expect="EnvelopeError (one opaque message) for every mutation; only the original opens",
)
@settings(max_examples=300)
@given(_mutated_envelope("request"))
def test_mutated_request_opens_only_if_unchanged(mutated: envelope.Envelope) -> None:
    """open_request raises only EnvelopeError for any mutation of a valid request."""
    _assert_opens_iff_unchanged("request", mutated)


@pytest.mark.attack(
    "mutated responses: bit flips, truncation, extension, part swaps, random or re-signed headers",
    adversary="malicious gateway",
    expect="EnvelopeError (one opaque message) for every mutation; only the original opens",
)
@settings(max_examples=300)
@given(_mutated_envelope("response"))
def test_mutated_response_opens_only_if_unchanged(mutated: envelope.Envelope) -> None:
    """open_response raises only EnvelopeError for any mutation of a valid response."""
    _assert_opens_iff_unchanged("response", mutated)


@pytest.mark.attack(
    "a random header, correctly sealed and signed by a bureau in the directory",
    adversary="rogue bureau",
    expect="EnvelopeError unless every checked field is right for the recipient",
)
@given(st.one_of(NEAR_VALID_HEADERS, PLAUSIBLE_HEADERS, RANDOM_HEADERS))
def test_random_header_under_valid_crypto_is_checked(message: envelope_pb2.Header) -> None:
    """With a valid seal and signature, the header checks alone decide; only EnvelopeError."""
    raw = message.SerializeToString()
    sealed = _crypto.hpke_seal(
        FLOW.de.encryption_key.public_key(), info=envelope.REQUEST_INFO, aad=raw, plaintext=b"hi"
    )
    signer = FLOW.it if message.sender == "IT" else FLOW.fr
    env = envelope.Envelope(header=raw, sealed=sealed, signature=_sign(signer, raw, sealed))
    valid = (
        message.version == 1
        and message.recipient == "DE"
        and message.kind == envelope.QUERY_REQUEST
        and message.sender == signer.bureau
        and len(message.message_id) == 16
        and message.issued_at_ms <= NOW + 1 + envelope.CLOCK_SKEW_MS
        and message.expires_at_ms > NOW + 1
        and message.expires_at_ms - message.issued_at_ms <= envelope.MAX_TTL_MS
        and message.sender_key_id == signer.signing_key_id
        and message.recipient_key_id == FLOW.de.encryption_key_id
    )
    event("valid" if valid else "invalid")
    if valid:
        assert FLOW.open_request(env).plaintext == b"hi"
    else:
        with pytest.raises(EnvelopeError):
            FLOW.open_request(env)


# ----------------------------------------------------------------------------- directory


ROOT_KEY = ec.generate_private_key(ec.SECP256R1())
ROOT = ROOT_KEY.public_key()
_ENTRY = directory_pb2.DirectoryEntry(
    version=1,
    bureau="FR",
    signing_key=bytes(FLOW.fr.signing_key.verify_key),
    encryption_key=_crypto.x25519_public_bytes(FLOW.fr.encryption_key),
    not_before_ms=NOW - 300_000,
    not_after_ms=NOW + 86_400_000,
    serial=1,
)
SIGNED_ENTRY = sign_entry(ROOT_KEY, _ENTRY)


def _verify(signed: bytes) -> Peer | None:
    """The peer, or None for DirectoryError; anything else propagates and fails the test."""
    try:
        return verify_entry(ROOT, signed, now_ms=NOW)
    except DirectoryError:
        return None


@pytest.mark.attack(
    "mutated or random signed directory entries",
    adversary="malicious gateway",
    expect="DirectoryError unless entry and root signature are the original's",
)
@settings(max_examples=200)
@given(st.one_of(_byte_mutation(SIGNED_ENTRY), st.binary(max_size=300)))
def test_verify_entry_accepts_only_the_root_signed_entry(signed: bytes) -> None:
    """verify_entry raises only DirectoryError, and accepts only the entry the root signed."""
    peer = _verify(signed)
    original = directory_pb2.SignedDirectoryEntry.FromString(SIGNED_ENTRY)
    try:
        outer = directory_pb2.SignedDirectoryEntry.FromString(signed)
    except DecodeError:
        assert peer is None
        return
    same = (outer.entry, outer.signature) == (original.entry, original.signature)
    event("accepted" if same else "refused")
    assert (peer is not None) == same
    if peer is not None:
        assert (peer.bureau, peer.signing_key_id) == ("FR", FLOW.fr.signing_key_id)


@given(
    st.builds(
        directory_pb2.DirectoryEntry,
        version=st.sampled_from([0, 1, 1, 2, 2**32 - 1]),
        bureau=st.one_of(st.sampled_from(["FR", "DE", "fr", "F", "FRA", ""]), st.text(max_size=4)),
        signing_key=st.binary(min_size=30, max_size=34),
        encryption_key=st.binary(min_size=30, max_size=34),
        not_before_ms=st.one_of(st.integers(NOW - 10, NOW + 10), INT64),
        not_after_ms=st.one_of(st.integers(NOW - 10, NOW + 10), INT64),
        serial=st.integers(0, 2**64 - 1),
    )
)
def test_root_signed_entry_with_random_fields_is_checked(
    entry: directory_pb2.DirectoryEntry,
) -> None:
    """Even under a valid root signature, bad fields give DirectoryError, good ones a Peer."""
    peer = _verify(sign_entry(ROOT_KEY, entry))
    valid = (
        entry.version == 1
        and len(entry.bureau) == 2
        and all(c in string.ascii_uppercase for c in entry.bureau)
        and len(entry.signing_key) == 32
        and len(entry.encryption_key) == 32
        and entry.not_before_ms <= NOW < entry.not_after_ms
    )
    if peer is None:  # a valid-looking entry may still hold a key the crypto refuses
        return
    assert valid
    assert peer.bureau == entry.bureau
    assert peer.serial == entry.serial
