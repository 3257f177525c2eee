"""Attacks on what outlives a single query in a format 2 session (docs/protocol.md
§15.6-§15.8): the gateway strips, alters, forges or moves checkpoints to leave queries
unprovable, and a thief holding both bureaus' long-term private keys and every envelope
of a closed epoch tries to read it. Pure: no I/O, every call is given its clock."""

from __future__ import annotations

import hashlib

import pytest
from envelope_helpers import NOW, _assert_rejected, _identity
from session_gw_helpers import (
    CHECKPOINT_CONTEXT,
    QUERY,
    Pair,
    copy,
    handshake,
    leaf,
    make_pair,
    sign_checkpoint,
    signed_v2,
)

from ncbsim import _crypto, envelope, session
from ncbsim.errors import EnvelopeError, SessionRefused
from ncbsim.v2 import session_pb2

pytestmark = pytest.mark.parametrize("suite", [1, 2], ids=["classic", "hybrid"])


@pytest.fixture
def pair(suite: int) -> Pair:
    return make_pair(suite)


def _until_checkpoint(pair: Pair) -> list[session.SessionRequest]:
    """FR's requests up to and including the first one carrying a checkpoint."""
    sent = []
    for _ in range(session.MAX_UNCOVERED):
        sent.append(pair.send())
        if sent[-1].envelope.checkpoint:
            return sent
    raise AssertionError("no checkpoint within MAX_UNCOVERED requests")


def _checkpoint(item: session.SessionRequest) -> session_pb2.Checkpoint:
    signed = session_pb2.SignedCheckpoint.FromString(item.envelope.checkpoint)
    return session_pb2.Checkpoint.FromString(signed.checkpoint)


# --------------------------------------------------------------------------- checkpoints


def test_an_honest_checkpoint_covers_what_the_node_received(pair: Pair) -> None:
    """The baseline the attacks below break: DE gets a verified Covered naming each leaf."""
    sent = _until_checkpoint(pair)
    covered = None
    for item in sent:
        covered = pair.receive(item.envelope)[2] or covered
    assert covered is not None
    assert (covered.sender, covered.session_id) == ("FR", pair.client.session_id)
    assert (covered.first_seq, covered.last_seq) == (1, len(sent) - 1)
    body = _checkpoint(sent[-1])
    assert list(body.leaves) == [leaf(s.envelope.header, s.envelope.sealed) for s in sent[:-1]]
    assert [r.seq for r in covered.requests] == [s.seq for s in sent[:-1]]


@pytest.mark.attack(
    "withhold every checkpoint of a session, so that none of FR's queries can be proven to "
    "have come from FR: strip it from the requests carrying one, or drop those requests",
    adversary="malicious gateway",
    expect="the node answers no request 128 or more past the first uncovered seq: "
    "FAILED_PRECONDITION 'checkpoint required'",
)
@pytest.mark.parametrize("how", ["strip", "drop"])
def test_withheld_checkpoints_stop_the_session_at_the_bound(pair: Pair, how: str) -> None:
    """A gateway that withholds checkpoints gets at most 128 unprovable queries answered."""
    withheld = 0
    while True:
        item = pair.send()
        if item.envelope.checkpoint:
            withheld += 1
            if how == "drop":
                continue
        bare = copy(item.envelope, checkpoint=b"")
        if item.seq < 1 + session.MAX_UNCOVERED:
            assert pair.receive(bare)[2] is None, item.seq
            continue
        with pytest.raises(SessionRefused) as caught:
            pair.receive(bare)
        break
    assert withheld >= 1  # FR did try to cover them
    assert (caught.value.detail, caught.value.reason) == (
        "checkpoint required",
        "checkpoint_required",
    )


@pytest.mark.attack(
    "strip one checkpoint and let the later ones through (a gap in what is covered)",
    adversary="malicious gateway",
    expect="the later checkpoints are taken, but the 128 bound counts from the gap: "
    "SessionRefused 'checkpoint required' 128 requests past its first seq",
)
def test_a_gap_in_checkpoints_holds_the_bound_at_the_gap(pair: Pair) -> None:
    """Covering later requests does not move the bound past a request left uncovered."""
    first = _until_checkpoint(pair)
    for item in first:
        assert pair.receive(copy(item.envelope, checkpoint=b""))[2] is None
    covered = 0
    while pair.client.sent < session.MAX_UNCOVERED:
        covered += pair.receive(pair.send().envelope)[2] is not None
    assert covered >= 1  # later checkpoints were taken...
    with pytest.raises(SessionRefused) as caught:  # ...yet seq 1 is still unprovable
        pair.receive(pair.send().envelope)
    assert caught.value.detail == "checkpoint required"


@pytest.mark.attack(
    "alter a checkpoint on its way: flip a bit of its signature, of a leaf, of its first "
    "seq, or move it onto a request of another session",
    adversary="malicious gateway",
    expect="EnvelopeError for the request carrying it, and the session ends (SessionRefused "
    "'session unknown' after)",
)
@pytest.mark.parametrize("how", ["signature", "leaf", "first_seq", "other-session"])
def test_altered_checkpoint_is_refused_and_ends_the_session(pair: Pair, how: str) -> None:
    """A checkpoint is FR's signature over what DE received, or it is refused."""
    sent = _until_checkpoint(pair)
    for item in sent[:-1]:
        pair.receive(item.envelope)
    carrier = sent[-1]
    signed = session_pb2.SignedCheckpoint.FromString(carrier.envelope.checkpoint)
    if how == "signature":
        signed.signature = bytes([signed.signature[0] ^ 1]) + signed.signature[1:]
        bad = signed.SerializeToString()
    elif how in {"leaf", "first_seq"}:
        body = session_pb2.Checkpoint.FromString(signed.checkpoint)
        if how == "leaf":
            body.leaves[0] = hashlib.sha256(b"another query").digest()
        else:
            body.first_seq += 1
        signed.checkpoint = body.SerializeToString()
        bad = signed.SerializeToString()
    else:  # FR's genuine checkpoint of its other session with DE
        _, _, other = handshake(pair.fr, pair.de, pair.server, suite=pair.suite, now=NOW + 5)
        sent_other = []
        while not (sent_other and sent_other[-1].envelope.checkpoint):
            sent_other.append(other.seal_request(QUERY, now_ms=NOW + 10))
        bad = sent_other[-1].envelope.checkpoint
    _assert_rejected(lambda: pair.receive(copy(carrier.envelope, checkpoint=bad)))
    with pytest.raises(SessionRefused):
        pair.receive(pair.send().envelope)


@pytest.mark.attack(
    "forge a checkpoint for FR's session, signed with its own key under FR's name, over the "
    "leaves of what DE received (or of requests FR never sent)",
    adversary="malicious gateway",
    expect="EnvelopeError and the session ends; no Covered is ever produced from it",
)
@pytest.mark.parametrize("leaves", ["genuine", "invented"])
def test_forged_checkpoint_is_refused(pair: Pair, leaves: str) -> None:
    """Only FR's signing key makes a checkpoint DE records."""
    sent = [pair.send() for _ in range(3)]
    for item in sent:
        assert pair.receive(copy(item.envelope, checkpoint=b""))[2] is None
    body = _checkpoint(_until_checkpoint(make_pair(pair.suite))[-1])  # a real one's shape
    body.sender, body.recipient = "FR", "DE"
    body.session_id = pair.client.session_id
    body.first_seq = 1
    del body.leaves[:]
    if leaves == "genuine":
        body.leaves.extend(leaf(s.envelope.header, s.envelope.sealed) for s in sent)
    else:
        body.leaves.extend(hashlib.sha256(bytes([i])).digest() for i in range(3))
    forged = sign_checkpoint(_identity("FR"), body)
    carrier = pair.send()
    _assert_rejected(lambda: pair.receive(copy(carrier.envelope, checkpoint=forged)))
    assert CHECKPOINT_CONTEXT.endswith(b"\x00")
    with pytest.raises(SessionRefused):
        pair.receive(pair.send().envelope)


# --------------------------------------------------------------------------- forward secrecy


@pytest.mark.attack(
    "with FR's and DE's long-term private keys (Ed25519 and X25519), stolen after an epoch "
    "closed, and every envelope of that epoch: HPKE-open the ACCEPT with either bureau's "
    "directory key, open the requests as format 1, finish the handshake again",
    adversary="leaked key",
    expect="nothing opens (CryptoFailure / EnvelopeError); the query appears in no envelope",
)
def test_closed_epoch_stays_closed_to_stolen_long_term_keys(pair: Pair) -> None:
    """Forward secrecy: long-term keys only sign; the epoch's secret died with it."""
    sent = pair.send()
    answer = pair.answer(sent.envelope)
    assert pair.client.open_response(sent, answer, now_ms=NOW + 13).plaintext
    close = pair.client.close(now_ms=NOW + 30)
    closed, _ = pair.server.close(
        close, envelope.unverified_header(close), sender=pair.fr.as_peer(), now_ms=NOW + 31
    )
    pair.client.check_closed(close, closed, peer=pair.de.as_peer(), now_ms=NOW + 32)
    recorded = [pair.opening.envelope, pair.accept, sent.envelope, answer, close, closed]

    for item in recorded:  # the query and the answer travel only as ciphertext
        assert b"CANARY-42" not in item.SerializeToString()
    open_hash = hashlib.sha256(
        signed_v2(pair.opening.envelope.header, pair.opening.envelope.sealed)
    ).digest()
    info = b"ncbsim/v2 accept" + open_hash + hashlib.sha256(pair.accept.header).digest()
    for stolen in (pair.de.encryption_key, pair.fr.encryption_key):
        for tried in (info, b""):
            with pytest.raises(_crypto.CryptoFailure):
                _crypto.kem_open(_crypto.KEM_CLASSIC, stolen, info=tried, sealed=pair.accept.sealed)
            with pytest.raises(_crypto.CryptoFailure):
                _crypto.hpke_open(stolen, info=tried, aad=b"", sealed=pair.accept.sealed)
    with pytest.raises(EnvelopeError):  # the request, read as format 1 by DE's identity
        envelope.open_request(
            sent.envelope, recipient=pair.de, senders=lambda _: pair.fr.as_peer(), now_ms=NOW + 11
        )
    # The processes that held the keys erased them: the opening finishes no second time,
    # FR's closed session seals and opens nothing, DE no longer knows the session.
    _assert_rejected(
        lambda: session.finish_session(
            pair.opening, pair.accept, sender=pair.fr, peer=pair.de.as_peer(), now_ms=NOW + 40
        )
    )
    with pytest.raises(SessionRefused):
        pair.client.seal_request(QUERY, now_ms=NOW + 40)
    with pytest.raises((EnvelopeError, SessionRefused)):
        pair.client.open_response(sent, answer, now_ms=NOW + 40)
    with pytest.raises(SessionRefused):
        pair.receive(sent.envelope, now=NOW + 40)


@pytest.mark.attack(
    "with both bureaus' long-term keys, derive a later epoch's keys from an earlier "
    "epoch's transcript (same pair, next session)",
    adversary="leaked key",
    expect="each epoch draws a fresh seed under a fresh ephemeral key: the requests of one "
    "epoch do not open under the other's session",
)
def test_epochs_are_independent(pair: Pair) -> None:
    """Two epochs of one pair share no key: a request of one never opens in the other."""
    _, _, second = handshake(pair.fr, pair.de, pair.server, suite=pair.suite, now=NOW + 5)
    assert second.session_id != pair.client.session_id
    first_req = pair.send()
    second_req = second.seal_request(QUERY, now_ms=NOW + 10)
    assert first_req.seq == second_req.seq == 1
    assert first_req.envelope.sealed != second_req.envelope.sealed
    swapped = copy(second_req.envelope, sealed=first_req.envelope.sealed)
    _assert_rejected(lambda: pair.receive(swapped))
