"""Property-based fuzzing of every parser that sees untrusted input.

Each test states the one contract a caller relies on: the parser either returns a
well-formed result or raises its documented error, never anything else. The envelope
tests go further: a mutated envelope opens if and only if its three fields are the
original's byte for byte, and otherwise fails with the one opaque EnvelopeError.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import math
import random
import string
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from ncbsim import _crypto, auditlog, envelope
from ncbsim.directory import Peer, verify_entry
from ncbsim.errors import ConfigError, DirectoryError, EnvelopeError, NcbsimError
from ncbsim.identity import Identity
from ncbsim.node import datagen, mrz, vin
from ncbsim.node.answer import answer
from ncbsim.node.store import RecordStore
from ncbsim.pki import sign_entry
from ncbsim.simulations import checks, scenario
from ncbsim.v2 import directory_pb2, envelope_pb2, query_pb2

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z; every open passes now_ms explicitly
BUREAUS = ["FR", "DE", "IT"]
INT64 = st.integers(-(2**63), 2**63 - 1)
UINT32 = st.integers(0, 2**32 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)


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
    body = query_pb2.Query(
        response_key=public, document=query_pb2.DocumentQuery(number="X1234567", issuer="DE")
    ).SerializeToString()
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


# ----------------------------------------------------------------------------- answer


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordStore]:
    """A small generated record store for bureau DE."""
    path = tmp_path_factory.mktemp("fuzz-answer") / "records.sqlite"
    datagen.generate(path, "DE", seed=5, documents=60, persons=40, vehicles=40)
    records = RecordStore(path)
    yield records
    records.close()


FIELD_TEXT = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=string.ascii_uppercase + string.digits + "<- ", max_size=20),
    st.sampled_from(["", " ", "\x00", "DE", "D", "DEU", "ÄÖÜß", "X" * 64, "X" * 65]),
    st.text(min_size=5000, max_size=20_000).filter(lambda s: len(s.strip()) > 64),
)
DATES = st.one_of(
    FIELD_TEXT,
    st.from_regex(r"\A\d{4}-\d{2}-\d{2}\Z"),
    st.dates().map(dt.date.isoformat),
    st.sampled_from(["2020-02-30", "0000-00-00", "9999-99-99", "1980-2-3", "1980-02-03"]),
)
QUERIES = st.one_of(
    st.builds(
        query_pb2.Query,
        document=st.builds(query_pb2.DocumentQuery, number=FIELD_TEXT, issuer=FIELD_TEXT),
    ),
    st.builds(
        query_pb2.Query,
        person=st.builds(
            query_pb2.PersonQuery, surname=FIELD_TEXT, given_names=FIELD_TEXT, date_of_birth=DATES
        ),
    ),
    st.builds(
        query_pb2.Query,
        vehicle=st.builds(query_pb2.VehicleQuery, vin=FIELD_TEXT, plate=FIELD_TEXT),
    ),
    st.builds(query_pb2.Query, fetch=st.builds(query_pb2.FetchQuery, ref=FIELD_TEXT)),
    st.builds(query_pb2.Query, response_key=st.binary(max_size=40)),  # empty oneof
)


def _assert_one_result(response: query_pb2.Answer) -> None:
    assert isinstance(response, query_pb2.Answer)
    which = response.WhichOneof("result")
    assert which in ("hits", "record", "not_found", "error")
    if which == "error":
        assert response.error.message
    response.SerializeToString()  # a response the node can seal


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(QUERIES)
def test_answer_returns_a_response_for_any_query(
    store: RecordStore, request: query_pb2.Query
) -> None:
    """answer() never raises: any field values get hits, a record, not-found or an error.

    ``too_slow`` is suppressed because the 20 000-character strings are slow to generate
    on purpose (they test the length limit), not because the code under test is slow.
    """
    response = answer(store, request)
    event(str(response.WhichOneof("result")))
    _assert_one_result(response)


@given(st.binary(max_size=300))
def test_answer_returns_a_response_for_any_decodable_body(store: RecordStore, body: bytes) -> None:
    """A body that decodes as a Query, whatever its bytes, gets a response."""
    try:
        request = query_pb2.Query.FromString(body)
    except DecodeError:
        return
    _assert_one_result(answer(store, request))


def test_answer_finds_what_the_store_holds(store: RecordStore) -> None:
    """Control for the tests above: a held document is a hit, so the store is not empty."""
    doc = store.sample("document", 1, random.Random(3))[0]
    response = answer(
        store,
        query_pb2.Query(document=query_pb2.DocumentQuery(number=doc.number, issuer="DE")),
    )
    assert [m.ref for m in response.hits.matches] == [doc.ref]


# ----------------------------------------------------------------------------- MRZ and VIN


MRZ_CHARS = string.ascii_uppercase + string.digits + "<"
MRZ_LINES = st.one_of(
    st.text(alphabet=MRZ_CHARS, min_size=44, max_size=44),
    st.text(alphabet=MRZ_CHARS, min_size=40, max_size=48),
    st.text(max_size=50),
)


@given(
    st.one_of(
        st.text(max_size=120), st.lists(MRZ_LINES, max_size=3), st.tuples(MRZ_LINES, MRZ_LINES)
    )
)
def test_mrz_parse_and_validate_never_raise_anything_else(text: str | list[str]) -> None:
    """parse_td3 returns a TD3 or raises MrzError; validate_td3 only ever answers a bool."""
    valid = mrz.validate_td3(text)
    assert isinstance(valid, bool)
    try:
        parsed = mrz.parse_td3(text)
    except mrz.MrzError:
        assert not valid
        return
    assert len(parsed.number) <= 9


@given(
    st.dates(min_value=dt.date(1930, 1, 1), max_value=dt.date(2029, 12, 31)),
    st.text(alphabet=string.ascii_uppercase + string.digits, min_size=1, max_size=9),
    st.text(alphabet=string.ascii_letters + " -'", min_size=1, max_size=30).filter(
        lambda s: any(c.isalpha() for c in s)
    ),
)
def test_built_mrz_validates_and_parses_back(born: dt.date, number: str, surname: str) -> None:
    """Control: an MRZ built from fields validates and parses back to its number."""
    lines = mrz.build_td3(
        issuing_state="D",
        surname=surname,
        given_names="Anna",
        number=number,
        nationality="D",
        date_of_birth=born,
        sex="F",
        date_of_expiry=dt.date(2030, 1, 1),
    )
    assert mrz.validate_td3(lines)
    assert mrz.parse_td3(" ".join(lines)).number == number


VIN_SHAPE = r"^[0-9A-HJ-NPR-Z]{17}$"


@given(
    st.one_of(
        st.text(max_size=30), st.from_regex(r"\A[0-9A-HJ-NPR-Z]{17}\Z"), st.from_regex(VIN_SHAPE)
    )
)
def test_vin_is_valid_only_ever_answers_a_bool(text: str) -> None:
    """is_valid never raises, and agrees with check_digit on well-shaped VINs."""
    valid = vin.is_valid(text)
    assert isinstance(valid, bool)
    if valid:
        clean = text.strip().upper()
        assert clean[vin.CHECK_POSITION] == vin.check_digit(clean)


@given(st.from_regex(r"\A[0-9A-HJ-NPR-Z]{17}\Z"))
def test_vin_check_digit_of_17_vin_characters(text: str) -> None:
    """check_digit of any 17 VIN characters is one of 0-9 or X, ignoring position 9."""
    digit = vin.check_digit(text)
    assert digit in "0123456789X"
    assert vin.check_digit(text[:8] + "0" + text[9:]) == digit


@example("1HGCM82633A004352\n")
@given(st.text(max_size=30))
def test_vin_check_digit_raises_only_value_error(text: str) -> None:
    """check_digit returns a digit for 17 VIN characters and ValueError for anything else."""
    try:
        digit = vin.check_digit(text)
    except ValueError:
        return
    assert digit in "0123456789X"


# ----------------------------------------------------------------------------- audit search


@pytest.fixture(scope="module")
def audit_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small node-style audit log with a few rows."""
    path = tmp_path_factory.mktemp("fuzz-audit") / "audit.sqlite"
    log = auditlog.ChainedLog(
        path,
        (
            ("at_ms", "INTEGER"),
            ("message_id", "TEXT"),
            ("sender", "TEXT"),
            ("recipient", "TEXT"),
            ("kind", "TEXT"),
        ),
        batch_wait_s=0.001,
    )
    for i in range(8):
        log.record((NOW + i, f"{i:032x}", BUREAUS[i % 3], "DE", "query_request"))
    log.close()
    return path


SEARCH_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["FR", "DE", "query", "query_request", "query_", "%", "_", "' OR 1=1 --", "\x00"]
    ),
)
SEARCH_QUERIES = st.builds(
    auditlog.Query,
    sender=SEARCH_TEXT,
    recipient=SEARCH_TEXT,
    kind=SEARCH_TEXT,
    message_id=SEARCH_TEXT,
    since_ms=st.none() | INT64,
    until_ms=st.none() | INT64,
    limit=st.none() | st.integers(1, 2**63 - 1),
)


@given(SEARCH_QUERIES)
def test_audit_search_with_random_filters(audit_log: Path, query: auditlog.Query) -> None:
    """search() with any filter values returns matching rows only, or a clear NcbsimError."""
    columns, rows = auditlog.search(audit_log, query)
    assert columns[0] == "seq"
    assert columns[-1] == "hash"
    assert len(rows) <= 8
    named = [dict(zip(columns, row, strict=True)) for row in rows]
    for row in named:
        assert not query.sender or row["sender"] == query.sender
        assert not query.recipient or row["recipient"] == query.recipient
        assert query.since_ms is None or row["at_ms"] >= query.since_ms
        assert query.until_ms is None or row["at_ms"] < query.until_ms


@pytest.mark.parametrize(
    "query",
    [
        auditlog.Query(limit=2**64),
        auditlog.Query(since_ms=-(2**70)),
        auditlog.Query(sender="\udcff"),
    ],
    ids=["limit-overflow", "since-overflow", "lone-surrogate"],
)
def test_audit_search_out_of_range_filters_are_a_clear_error(
    audit_log: Path, query: auditlog.Query
) -> None:
    """Filter values SQLite cannot bind are refused with NcbsimError (the CLI's clear error)."""
    with contextlib.suppress(NcbsimError):
        auditlog.search(audit_log, query)


# ----------------------------------------------------------------------------- scenarios


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return (
            '"'
            + "".join(c if c.isalnum() or c in " -_." else f"\\u{ord(c):04x}" for c in value)
            + '"'
        )
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + "}"
    raise TypeError(value)


def _toml(data: dict[str, Any]) -> str:
    return "".join(f'"{key}" = {_toml_value(value)}\n' for key, value in data.items())


SCALARS = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(alphabet=st.characters(exclude_categories=("Cs",), max_codepoint=0xFFFF), max_size=6),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["documents", "rate_per_s", "at_s", "fault", "expect", "x"]),
            inner,
            max_size=3,
        )
    ),
    max_leaves=8,
)
RANDOM_SCENARIOS = st.dictionaries(
    st.sampled_from(
        [
            "name",
            "description",
            "bureaus",
            "seed",
            "records",
            "traffic",
            "engine",
            "events",
            "checks",
            "x",
        ]
    ),
    VALUES,
    max_size=7,
)
"""Tables with the scenario's keys (and one unknown) holding values of any TOML type."""

VALID_SCENARIO: dict[str, Any] = {
    "name": "fuzz",
    "bureaus": ["FR", "DE", "IT"],
    "seed": 3,
    "records": {"documents": 1, "persons": 2, "vehicles": 3, "planted": 1},
    "traffic": {
        "duration_s": 2.0,
        "rate_per_s": 1.5,
        "hit_ratio": 0.5,
        "fetch_ratio": 0.0,
        "deadline_ms": 100,
        "max_in_flight": 1,
        "requesters": ["FR"],
        "mix": {"document": 1, "person": 0, "vehicle": 0.5, "multi": 0},
    },
    "engine": {"hosts": 1, "proxy": "auto", "mode": "loopback", "startup_timeout_s": 5},
    "events": [
        {"at_s": 0.5, "id": "cut", "fault": "latency", "bureaus": ["DE"], "latency_ms": 10},
        {"at_s": 1.0, "heal": "cut"},
        {"at_s": 0.2, "query": {"from": "FR", "to": ["DE"], "kind": "person"}, "expect": "hit"},
    ],
    "checks": [{"name": "ok", "expect": "queries.failed == 0 and faults.cut.after.failed == 0"}],
}
_EXPRESSIONS = [
    "queries.failed == 0",
    "0 < latency_ms.p99 < 250",
    "faults.cut.recovered_s < 5",
    "faults.nope.during.sent == 0",
    "bureaus.ES.queries.sent > 0",
    "len(queries) > 0",
    "queries.failed ==",
    "explicit.query_2.passed",
    "",
]
_SCENARIO_FIELDS: dict[tuple[str | int, ...], st.SearchStrategy[Any]] = {
    ("name",): st.text(max_size=5),
    ("description",): st.text(max_size=5),
    ("bureaus",): st.lists(
        st.sampled_from(["FR", "DE", "IT", "NL", "fr", "F", "FRA", "XX", ""]), max_size=4
    )
    | st.sampled_from(["all-members", "all"]),
    ("seed",): st.integers(-(2**63), 2**63 - 1),
    ("records",): st.dictionaries(
        st.sampled_from(["documents", "persons", "x"]), st.integers(-2, 3)
    ),
    ("traffic",): st.dictionaries(st.sampled_from(["rate_per_s", "x"]), st.integers(-2, 3)),
    **{("records", k): st.integers(-2, 3) for k in ("documents", "persons", "vehicles", "planted")},
    ("traffic", "duration_s"): st.floats(-1, 3) | st.integers(-1, 3),
    ("traffic", "rate_per_s"): st.floats(-1, 3) | st.just(math.inf),
    ("traffic", "hit_ratio"): st.floats(-1, 2) | st.just(math.nan),
    ("traffic", "fetch_ratio"): st.floats(-1, 2),
    ("traffic", "deadline_ms"): st.integers(0, 200),
    ("traffic", "max_in_flight"): st.integers(-2, 3),
    ("traffic", "requesters"): st.lists(st.sampled_from(["FR", "DE", "NL", ""]), max_size=3),
    ("traffic", "mix", "multi"): st.floats(-1, 2),
    ("traffic", "mix", "document"): st.integers(-1, 2),
    ("traffic", "x"): SCALARS,
    ("engine", "hosts"): st.integers(-1, 4),
    ("engine", "proxy"): st.sampled_from(["auto", "all", "none", "x"]),
    ("engine", "mode"): st.sampled_from(["loopback", "netns", "x"]),
    ("events", 0, "at_s"): st.floats(-1, 3) | st.integers(-1, 3),
    ("events", 0, "fault"): st.sampled_from(["latency", "kill", "partition", "skew", "reset", "x"]),
    ("events", 0, "bureaus"): st.lists(st.sampled_from(["FR", "DE", "NL", "ALL"]), max_size=3),
    ("events", 0, "latency_ms"): st.integers(-1, 5),
    ("events", 0, "duration_s"): st.floats(-1, 3),
    ("events", 0, "direction"): st.sampled_from(["both", "to-bureau", "up"]),
    ("events", 0, "id"): st.sampled_from(["cut", "query_2", "Cut", "if", ""]),
    ("events", 1, "heal"): st.sampled_from(["cut", "query_2", "x", ""]),
    ("events", 1, "at_s"): st.floats(-1, 3),
    ("events", 2, "query"): st.fixed_dictionaries(
        {
            "from": st.sampled_from(["FR", "DE", "NL"]),
            "to": st.lists(st.sampled_from(["FR", "DE", "IT", "ALL"]), max_size=3),
            "kind": st.sampled_from(["document", "person", "boat"]),
        },
        optional={"planted": st.booleans(), "fetch": st.booleans()},
    ),
    ("events", 2, "expect"): st.sampled_from(["hit", "record", "x"]),
    ("checks", 0, "expect"): st.sampled_from(_EXPRESSIONS) | st.text(max_size=8),
    ("x",): SCALARS,
}


def _child(table: Any, key: str | int) -> Any:
    """``table[key]`` if it is a table or an array inside a table or an array, else None."""
    if isinstance(table, list) and isinstance(key, int) and key < len(table):
        return table[key]
    if isinstance(table, dict) and isinstance(table.get(key), dict | list):
        return table[key]
    return None


@st.composite
def _near_valid_scenario(draw: st.DrawFn) -> dict[str, Any]:
    """The valid table above with up to three values replaced, removed or added."""
    data = copy.deepcopy(VALID_SCENARIO)
    paths = draw(st.lists(st.sampled_from(sorted(_SCENARIO_FIELDS)), max_size=3, unique=True))
    for path in paths:
        table: Any = data
        for key in path[:-1]:
            table = _child(table, key)
            if table is None:
                break
        else:
            if not isinstance(table, dict):
                continue
            if draw(st.integers(0, 4)) == 0:
                table.pop(path[-1], None)
            else:
                table[path[-1]] = draw(_SCENARIO_FIELDS[path] | VALUES)
    return data


SCENARIO_DICTS = st.one_of(_near_valid_scenario(), RANDOM_SCENARIOS)


def _load(tmp: Path, data: dict[str, Any]) -> scenario.Scenario | None:
    """The scenario, or None for a clear error (an NcbsimError the CLI prints in one line)."""
    path = tmp / "fuzz.toml"
    path.write_text(_toml(data))
    assert tomllib.loads(path.read_text()).keys() == data.keys()  # the writer above is sound
    try:
        return scenario.load(str(path))
    except NcbsimError:
        return None


@settings(max_examples=200)
@given(SCENARIO_DICTS)
def test_scenario_load_of_random_tables_is_a_scenario_or_clear_error(
    tmp_path_factory: pytest.TempPathFactory, data: dict[str, Any]
) -> None:
    """Any TOML table loads as a valid Scenario or raises an NcbsimError (ConfigError/PkiError)."""
    loaded = _load(tmp_path_factory.mktemp("scenario", numbered=True), data)
    event("loaded" if loaded is not None else "refused")
    if loaded is not None:
        if data["bureaus"] == "all-members":
            assert len(loaded.bureaus) == 196
        else:
            assert loaded.bureaus == tuple(data["bureaus"])
        assert len(set(loaded.bureaus)) == len(loaded.bureaus) >= 2
        assert min(loaded.records.documents, loaded.records.persons, loaded.records.vehicles) >= 1
        assert 0 <= loaded.traffic.hit_ratio <= 1
        assert loaded.traffic.deadline_ms >= 100
        assert 0 < loaded.traffic.rate_per_s < math.inf
        assert set(loaded.traffic.requesters) <= set(loaded.bureaus)
        assert [e.at_s for e in loaded.events] == sorted(e.at_s for e in loaded.events)
        ids = {e.id: e for e in loaded.events}
        assert len(ids) == len(loaded.events)
        for e in loaded.events:
            assert 0 <= e.at_s < loaded.traffic.duration_s
            if e.kind == "fault":
                assert set(e.bureaus) <= set(loaded.bureaus)
            if e.kind == "heal":
                assert ids[e.heal].kind == "fault"
                assert ids[e.heal].at_s < e.at_s
        for spec in loaded.checks:
            checks.parse(spec.expect)  # every check expression was vetted at load


@pytest.mark.parametrize("seed", ["x", math.inf, math.nan], ids=["text", "inf", "nan"])
def test_scenario_with_a_non_integer_seed_is_a_config_error(tmp_path: Path, seed: object) -> None:
    """A seed that is not an integer is a ConfigError naming the file."""
    path = tmp_path / "seed.toml"
    path.write_text(_toml({"bureaus": ["FR", "DE"], "seed": seed}))
    with pytest.raises(ConfigError, match=r"seed\.toml"):
        scenario.load(str(path))
