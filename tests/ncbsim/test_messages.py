"""One-way envelopes, delivery receipts and message bodies (protocol.md §14)."""

from __future__ import annotations

import os

import pytest

from ncbsim import _crypto, envelope, messages, receipts
from ncbsim.errors import ConfigError, EnvelopeError
from ncbsim.identity import Identity
from ncbsim.v2 import messages_pb2, query_pb2

NOW = 1_767_225_600_000


def _identity(bureau: str) -> Identity:
    return Identity.from_keys(bureau, _crypto.ed25519_generate(), _crypto.x25519_generate())


FR, DE, IT = _identity("FR"), _identity("DE"), _identity("IT")
PEERS = {i.bureau: i.as_peer() for i in (FR, DE, IT)}


def _diffusion(text: str = "armed and dangerous") -> bytes:
    return messages.pack(messages_pb2.Diffusion(subject="alert", text=text, distribution=["DE"]))


def _seal(kind: int = envelope.DIFFUSION, **kw: object) -> envelope.Envelope:
    args: dict[str, object] = {
        "sender": FR,
        "recipient": PEERS["DE"],
        "kind": kind,
        "post_id": b"p" * 16,
        "now_ms": NOW,
    }
    args.update(kw)
    return envelope.seal_message(_diffusion(), **args)  # type: ignore[arg-type]


def _open(env: envelope.Envelope, recipient: Identity = DE, now_ms: int = NOW) -> envelope.Opened:
    return envelope.open_message(env, recipient=recipient, senders=PEERS.__getitem__, now_ms=now_ms)


@pytest.mark.parametrize(
    "kind", [envelope.DIFFUSION, envelope.NOTICE_REQUEST, envelope.NOTICE, envelope.MESSAGE]
)
def test_one_way_envelope_round_trip(kind: int) -> None:
    """Each one-way kind opens for its recipient, with the post id as correlation id."""
    opened = _open(_seal(kind))
    assert opened.header.kind == kind
    assert opened.header.correlation_id == b"p" * 16
    assert opened.header.expires_at_ms - NOW == envelope.DEFAULT_MESSAGE_TTL_MS
    body = messages.unpack(envelope.DIFFUSION, opened.plaintext)
    assert body == messages_pb2.Diffusion(
        subject="alert", text="armed and dangerous", distribution=["DE"]
    )


def test_one_way_envelope_refuses_the_wrong_reader_and_tampering() -> None:
    """Another bureau cannot open a copy; a flipped byte anywhere fails verification."""
    env = _seal()
    with pytest.raises(EnvelopeError):
        _open(env, recipient=IT)
    for field in ("header", "sealed", "signature"):
        data = bytearray(getattr(env, field))
        data[len(data) // 2] ^= 1
        tampered = envelope.Envelope()
        tampered.CopyFrom(env)
        setattr(tampered, field, bytes(data))
        with pytest.raises(EnvelopeError):
            _open(tampered)


def test_one_way_envelope_expires() -> None:
    """A copy opened after its TTL is refused, so a late delivery is never processed."""
    env = _seal(ttl_ms=1000)
    _open(env, now_ms=NOW + 999)
    with pytest.raises(EnvelopeError):
        _open(env, now_ms=NOW + 1000)


def test_a_query_request_cannot_pass_as_a_message_or_back() -> None:
    """Requests and messages differ in HPKE info and kind: neither opens as the other."""
    key, public = envelope.new_response_key()
    request = envelope.seal_request(
        query_pb2.Query(response_key=public).SerializeToString(),
        sender=FR,
        recipient=PEERS["DE"],
        response_key=key,
        now_ms=NOW,
    )
    with pytest.raises(EnvelopeError):
        _open(request.envelope)
    with pytest.raises(EnvelopeError):
        envelope.open_request(_seal(), recipient=DE, senders=PEERS.__getitem__, now_ms=NOW)


def test_seal_message_refuses_query_kinds_and_short_post_ids() -> None:
    """Only one-way kinds with a 16-byte post id can be sealed as messages."""
    with pytest.raises(EnvelopeError):
        _seal(envelope.QUERY_REQUEST)
    with pytest.raises(EnvelopeError):
        _seal(post_id=b"short")


def test_receipt_verifies_for_its_signer_only() -> None:
    """A receipt names the envelope by digest and verifies only with the recipient's key."""
    env = _seal()
    opened = _open(env)
    digest = envelope.envelope_digest(env)
    signed = receipts.sign(DE, opened.header, digest, NOW + 5)
    receipt = receipts.verify(signed, signer=PEERS["DE"], now_ms=NOW)
    assert (receipt.message_id, receipt.post_id) == (opened.header.message_id, b"p" * 16)
    assert (receipt.sender, receipt.recipient, receipt.processed_at_ms) == ("FR", "DE", NOW + 5)
    assert receipt.envelope_sha256 == digest
    with pytest.raises(EnvelopeError):
        receipts.verify(signed, signer=PEERS["IT"], now_ms=NOW)
    forged = receipts.SignedReceipt(
        receipt=signed.receipt[:-1] + b"\x01", signature=signed.signature
    )
    with pytest.raises(EnvelopeError):
        receipts.verify(forged, signer=PEERS["DE"], now_ms=NOW)


def test_receipt_only_for_envelopes_addressed_to_the_signer() -> None:
    """A bureau cannot sign a receipt for a copy addressed to someone else."""
    opened = _open(_seal())
    with pytest.raises(EnvelopeError):
        receipts.sign(IT, opened.header, os.urandom(32), NOW)


def test_envelope_digest_covers_every_field() -> None:
    """Changing any field, or moving bytes between fields, changes the digest."""
    env = _seal()
    base = envelope.envelope_digest(env)
    moved = envelope.Envelope(
        header=env.header + env.sealed[:1], sealed=env.sealed[1:], signature=env.signature
    )
    assert envelope.envelope_digest(moved) != base
    other = envelope.Envelope(header=env.header, sealed=env.sealed, signature=b"x" * 64)
    assert envelope.envelope_digest(other) != base


def test_bodies_are_padded_to_buckets() -> None:
    """Short and medium texts seal to the same size; the padding is stripped on unpack."""
    short = messages.pack(messages_pb2.CaseMessage(text="x"))
    medium = messages.pack(messages_pb2.CaseMessage(text="x" * 900))
    assert len(short) == len(medium) == messages.MESSAGE_BYTES
    body = messages.unpack(envelope.MESSAGE, short)
    assert body == messages_pb2.CaseMessage(text="x")
    with pytest.raises(EnvelopeError):
        messages.unpack(envelope.QUERY_REQUEST, short)
    with pytest.raises(EnvelopeError):
        messages.unpack(envelope.MESSAGE, b"\xff\xff")


def test_colours_and_person_files() -> None:
    """Every DOMAIN.md colour has a name; person files accept aliases and refuse typos."""
    assert set(messages.COLORS) == {
        "red",
        "yellow",
        "blue",
        "black",
        "green",
        "orange",
        "purple",
        "un-special",
        "silver",
    }
    assert messages.color_name(messages.color("UN_special")) == "un-special"
    with pytest.raises(ConfigError, match="unknown notice colour"):
        messages.color("pink")
    subject = messages.subject_from_dict(
        {"surname": "Bombieri", "given": "Marco", "dob": "1980-02-03"}
    )
    assert (subject.given_names, subject.date_of_birth) == ("Marco", "1980-02-03")
    with pytest.raises(ConfigError, match="unknown key 'surnmae'"):
        messages.subject_from_dict({"surnmae": "x"})
    with pytest.raises(ConfigError, match="must be a string"):
        messages.subject_from_dict({"surname": 3})


def test_size_limits() -> None:
    """Texts and attachments over the limits are refused before sealing."""
    messages.check_size("x" * messages.MAX_TEXT_CHARS, [])
    with pytest.raises(ConfigError):
        messages.check_size("x" * (messages.MAX_TEXT_CHARS + 1), [])
    big = messages_pb2.Attachment(name="a", data=b"x" * (messages.MAX_ATTACHMENT_BYTES + 1))
    with pytest.raises(ConfigError):
        messages.check_size("", [big])


def test_a_body_over_the_limit_is_refused_before_sealing() -> None:
    """Text of four-byte characters with attachments cannot make a copy over the gateway's
    envelope limit: pack refuses the body, and the largest accepted one seals well under it."""
    big = messages_pb2.CaseMessage(
        text="𝄞" * messages.MAX_TEXT_CHARS,
        attachments=[messages_pb2.Attachment(data=b"x" * messages.MAX_ATTACHMENT_BYTES)],
    )
    with pytest.raises(ConfigError, match="at most about 32 KiB"):
        messages.pack(big)
    largest = messages_pb2.CaseMessage(text="x" * (messages.MAX_BODY_BYTES - 100))
    env = envelope.seal_message(
        messages.pack(largest),
        sender=FR,
        recipient=PEERS["DE"],
        kind=envelope.MESSAGE,
        post_id=b"p" * 16,
    )
    assert env.ByteSize() < 64 * 1024 - 1024
