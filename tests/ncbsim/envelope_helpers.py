"""Helpers the envelope tests share: identities, signing and bit flips done by hand, and
the FR -> DE flow (``Flow``) with its two directions (``Leg``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from support import document_query

from ncbsim import _crypto, envelope
from ncbsim.directory import Peer
from ncbsim.errors import DirectoryError, EnvelopeError
from ncbsim.identity import Identity
from ncbsim.v2 import envelope_pb2, query_pb2, records_pb2

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
    """The value with the lowest bit of its first byte (or of the integer) flipped; an
    empty (absent) field becomes one byte, as the format 2 fields are in a format 1 header."""
    if value in (b"", ""):
        return b"\x01" if isinstance(value, bytes) else "A"
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
    return document_query("X1234567", "FRA", response_key=response_public).SerializeToString()


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
