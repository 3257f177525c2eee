"""A malicious gateway that holds every envelope of a format 2 session (docs/protocol.md
§15) and no bureau's private key attacks the session core: it replays, reorders,
redirects, reflects and splices requests and answers, replays handshakes, downgrades the
suite, strips, alters and forges checkpoints, and forges a close. Each attack is refused
with the opaque EnvelopeError, or with the one distinguishable SessionRefused, and leaves
nothing the gateway can use. Pure: no I/O, every call is given its clock."""

from __future__ import annotations

import contextlib
import os

import pytest
from envelope_helpers import NOW, _ask, _assert_rejected, _identity, _senders
from session_gw_helpers import (
    ANSWER,
    QUERY,
    Pair,
    copy,
    handshake,
    make_pair,
    resign,
    rewrite,
)

from ncbsim import envelope, session
from ncbsim.errors import EnvelopeError, Replayed, SessionRefused

pytestmark = pytest.mark.parametrize("suite", [1, 2], ids=["classic", "hybrid"])


@pytest.fixture
def pair(suite: int) -> Pair:
    return make_pair(suite)


def _refused(call: object, detail: str = "session unknown") -> None:
    assert callable(call)
    with pytest.raises(SessionRefused) as caught:
        call()
    assert caught.value.detail == detail


# --------------------------------------------------------------------------- replay


@pytest.mark.attack(
    "replay a session request to its node within the live session",
    adversary="malicious gateway",
    expect="the first delivery opens; the replay Replayed (ALREADY_EXISTS: seq already taken)",
)
def test_request_replayed_in_its_session_is_refused(pair: Pair) -> None:
    """A request opens once; the same envelope again is refused as a replay."""
    sent = pair.send()
    opened, _, _ = pair.receive(sent.envelope)
    assert opened.plaintext == QUERY
    with pytest.raises(Replayed):
        pair.receive(sent.envelope, now=NOW + 20)
    assert pair.receive(pair.send().envelope)[0].plaintext == QUERY  # the session goes on


@pytest.mark.attack(
    "replay a session request after its session was closed, after it expired (60 s), or to "
    "a node that restarted",
    adversary="malicious gateway",
    expect="SessionRefused 'session unknown' (FAILED_PRECONDITION): the session is gone",
)
@pytest.mark.parametrize("after", ["close", "expiry", "restart"])
def test_request_replayed_after_its_session_ended_is_refused(pair: Pair, after: str) -> None:
    """Once a session ends, none of its requests opens again, even never-seen ones."""
    # Sealed to outlive the session (2 min), so only the session's end refuses them.
    seen, unseen = pair.send(ttl_ms=120_000), pair.send(ttl_ms=120_000)
    pair.receive(seen.envelope)
    now = NOW + 30
    if after == "close":
        close = pair.client.close(now_ms=now)
        pair.server.close(
            close, envelope.unverified_header(close), sender=pair.fr.as_peer(), now_ms=now
        )
    elif after == "expiry":
        now = NOW + 1 + session.EPOCH_MAX_MS + 1
    else:
        pair.server = session.ServerSessions(pair.de, suite=pair.suite)
    for item in (seen.envelope, unseen.envelope):
        _refused(lambda item=item: pair.receive(item, now=now))


# --------------------------------------------------------------------------- reorder


@pytest.mark.attack(
    "swap the answers of two requests of one session (each delivered to the other's caller)",
    adversary="malicious gateway",
    expect="both EnvelopeError: an answer is bound to its request's message id and seq",
)
def test_swapped_answers_both_fail(pair: Pair) -> None:
    """Answers delivered to the wrong request do not open; each opens for its own."""
    first, second = pair.send(), pair.send()
    answers = [pair.answer(first.envelope), pair.answer(second.envelope)]
    _assert_rejected(lambda: pair.client.open_response(first, answers[1], now_ms=NOW + 13))
    _assert_rejected(lambda: pair.client.open_response(second, answers[0], now_ms=NOW + 13))
    assert pair.client.open_response(first, answers[0], now_ms=NOW + 13).plaintext == ANSWER
    assert pair.client.open_response(second, answers[1], now_ms=NOW + 13).plaintext == ANSWER


@pytest.mark.attack(
    "deliver an answer twice to its request, or an answer of an earlier session with the "
    "same seq to a request of a new one",
    adversary="malicious gateway",
    expect="EnvelopeError: one answer per request; another epoch's key does not open it",
)
def test_replayed_answer_is_refused(pair: Pair) -> None:
    """A requester takes one answer per request, and only under its session's keys."""
    sent = pair.send()
    answer = pair.answer(sent.envelope)
    assert pair.client.open_response(sent, answer, now_ms=NOW + 13).plaintext == ANSWER
    _assert_rejected(lambda: pair.client.open_response(sent, answer, now_ms=NOW + 14))
    _, _, newer = handshake(pair.fr, pair.de, pair.server, suite=pair.suite, now=NOW + 20)
    again = newer.seal_request(QUERY, now_ms=NOW + 30)
    assert again.seq == sent.seq
    _assert_rejected(lambda: newer.open_response(again, answer, now_ms=NOW + 31))


@pytest.mark.attack(
    "deliver the requests of a session out of order",
    adversary="malicious gateway",
    expect="each opens once and each answer opens only for its own request",
)
def test_requests_delivered_out_of_order_stay_bound(pair: Pair) -> None:
    """Reordering changes nothing a user relies on: every answer is its query's."""
    sent = [pair.send(f"q{i}".encode()) for i in range(4)]
    opened = {}
    for request in reversed(sent):
        plain, held, _ = pair.receive(request.envelope)
        opened[request.seq] = held.seal_response(plain.plaintext, request=plain.header, now_ms=NOW)
    for request in sent:
        got = pair.client.open_response(request, opened[request.seq], now_ms=NOW + 13)
        assert got.plaintext == f"q{request.seq - 1}".encode()


# --------------------------------------------------------------------------- redirect


@pytest.mark.attack(
    "deliver a session request for DE to IT: unchanged, with the recipient rewritten, or "
    "rewritten onto FR's own session with IT",
    adversary="malicious gateway",
    expect="IT refuses: EnvelopeError (not for it, or AEAD under other keys) or "
    "SessionRefused 'session unknown'; never opened",
)
def test_session_request_redirected_to_another_bureau_is_refused(pair: Pair) -> None:
    """A request sealed for FR's session with DE opens nowhere else."""
    it_server = session.ServerSessions(pair.it, suite=pair.suite)
    _, _, to_it = handshake(pair.fr, pair.it, it_server, suite=pair.suite, it=pair.de)
    to_it.seal_request(QUERY, now_ms=NOW + 5)  # FR has used seq 1 with IT too
    sent = pair.send()

    def at_it(item: envelope.Envelope) -> object:
        return it_server.open_request(
            item, envelope.unverified_header(item), sender=pair.fr.as_peer(), now_ms=NOW + 11
        )

    _assert_rejected(lambda: at_it(sent.envelope))
    renamed = copy(sent.envelope, header=rewrite(sent.envelope.header, recipient="IT"))
    with pytest.raises((SessionRefused, EnvelopeError)):
        at_it(renamed)
    onto = rewrite(
        sent.envelope.header,
        recipient="IT",
        session_id=to_it.session_id,
        recipient_key_id=pair.it.encryption_key_id,
    )
    _assert_rejected(lambda: at_it(copy(sent.envelope, header=onto)))
    assert pair.receive(sent.envelope)[0].plaintext == QUERY  # DE still takes it


@pytest.mark.attack(
    "reflect a session request back to its sender as the answer, or deliver an answer to "
    "the node as a request",
    adversary="malicious gateway",
    expect="EnvelopeError (kind, direction and key are bound)",
)
def test_reflected_session_envelopes_are_refused(pair: Pair) -> None:
    """A request is not an answer and an answer is not a request."""
    sent = pair.send()
    _assert_rejected(lambda: pair.client.open_response(sent, sent.envelope, now_ms=NOW + 13))
    answer = pair.answer(sent.envelope)
    _assert_rejected(lambda: pair.receive(answer))
    flipped = rewrite(answer.header, kind=envelope.QUERY_REQUEST, sender="FR", recipient="DE")
    _assert_rejected(lambda: pair.receive(copy(answer, header=flipped)))


@pytest.mark.attack(
    "splice a session request's sealed body under another request's header (or another "
    "seq, or another message id)",
    adversary="malicious gateway",
    expect="EnvelopeError (the header is the AEAD's associated data); the genuine requests "
    "still open",
)
def test_spliced_session_request_is_refused(pair: Pair) -> None:
    """Header and body travel together or not at all; a failed splice burns no seq."""
    first, second = pair.send(), pair.send()
    spliced = copy(second.envelope, sealed=first.envelope.sealed)
    _assert_rejected(lambda: pair.receive(spliced))
    for name, value in (("seq", second.seq), ("message_id", os.urandom(16))):
        moved = copy(first.envelope, header=rewrite(first.envelope.header, **{name: value}))
        _assert_rejected(lambda moved=moved: pair.receive(moved))
    assert pair.receive(first.envelope)[0].plaintext == QUERY
    assert pair.receive(second.envelope)[0].plaintext == QUERY


# --------------------------------------------------------------------------- handshake


@pytest.mark.attack(
    "replay a SESSION_OPEN: while its session lives, after the node restarted, and many "
    "captured OPENs at once",
    adversary="malicious gateway",
    expect="a live session's OPEN: EnvelopeError; otherwise the node holds a session the "
    "gateway cannot use (no key), at most MAX_SESSIONS_PER_PEER per peer",
)
def test_replayed_open_gives_the_gateway_nothing_and_is_bounded(pair: Pair) -> None:
    """Replayed OPENs never hand out keys, and cannot grow a node's state without bound."""
    senders = _senders(pair.fr, pair.de, pair.it)
    _assert_rejected(
        lambda: pair.server.accept(
            pair.opening.envelope, pair.opening.header, senders=senders, now_ms=NOW + 5
        )
    )
    restarted = session.ServerSessions(pair.de, suite=pair.suite)
    replayed = restarted.accept(
        pair.opening.envelope, pair.opening.header, senders=senders, now_ms=NOW + 5
    )
    assert replayed.sealed != pair.accept.sealed  # a fresh epoch seed, sealed to A's key
    # The gateway holds both ACCEPTs but not the ephemeral key: FR's old request does not
    # open in the replayed session, and the gateway cannot seal one that would.
    _assert_rejected(
        lambda: restarted.open_request(
            pair.send().envelope,
            envelope.unverified_header(pair.sent[-1].envelope),
            sender=pair.fr.as_peer(),
            now_ms=NOW + 11,
        )
    )
    captured = [
        session.open_session(pair.fr, pair.de.as_peer(), suite=pair.suite, now_ms=NOW + i)
        for i in range(3 * session.MAX_SESSIONS_PER_PEER)
    ]
    for opening in captured:
        with contextlib.suppress(EnvelopeError):  # refusing past the bound would do too
            restarted.accept(opening.envelope, opening.header, senders=senders, now_ms=NOW + 50)
        assert len(restarted) <= session.MAX_SESSIONS_PER_PEER
    # IT's sessions are not crowded out by FR's.
    handshake(pair.it, pair.de, restarted, suite=pair.suite, now=NOW + 60, it=pair.fr)
    assert len(restarted) <= session.MAX_SESSIONS_PER_PEER + 1


@pytest.mark.attack(
    "answer a new SESSION_OPEN with an ACCEPT captured from an earlier handshake of the same "
    "pair, or with another bureau's ACCEPT",
    adversary="malicious gateway",
    expect="EnvelopeError: the ACCEPT is bound to its OPEN (correlation id, session id, "
    "ephemeral key id, signer)",
)
def test_old_accept_is_refused_for_a_new_open(pair: Pair) -> None:
    """An ACCEPT finishes only the OPEN it answers, from the bureau that was asked."""
    fresh = session.open_session(pair.fr, pair.de.as_peer(), suite=pair.suite, now_ms=NOW + 20)
    _assert_rejected(
        lambda: session.finish_session(
            fresh, pair.accept, sender=pair.fr, peer=pair.de.as_peer(), now_ms=NOW + 21
        )
    )
    it_server = session.ServerSessions(pair.it, suite=pair.suite)
    other = session.open_session(pair.fr, pair.it.as_peer(), suite=pair.suite, now_ms=NOW + 20)
    senders = _senders(pair.fr, pair.de, pair.it)
    it_accept = it_server.accept(other.envelope, other.header, senders=senders, now_ms=NOW + 21)
    _assert_rejected(
        lambda: session.finish_session(
            fresh, it_accept, sender=pair.fr, peer=pair.de.as_peer(), now_ms=NOW + 22
        )
    )
    spliced = copy(
        it_accept, header=rewrite(it_accept.header, correlation_id=fresh.header.message_id)
    )
    _assert_rejected(
        lambda: session.finish_session(
            fresh, spliced, sender=pair.fr, peer=pair.it.as_peer(), now_ms=NOW + 22
        )
    )


@pytest.mark.attack(
    "downgrade the suite: rewrite the suite field of an OPEN, an ACCEPT or a request, "
    "re-signing the OPEN with its own key, or open a session of another suite",
    adversary="malicious gateway",
    expect="EnvelopeError: the suite is signed in the handshake, AEAD-bound in requests, and "
    "a node takes only its network's suite",
)
def test_suite_downgrade_is_refused(pair: Pair, suite: int) -> None:
    """No envelope of a session changes suite on the way, and no node takes a foreign one."""
    other = 2 if suite == 1 else 1
    senders = _senders(pair.fr, pair.de, pair.it)
    fresh = session.open_session(pair.fr, pair.de.as_peer(), suite=suite, now_ms=NOW + 20)
    downgraded = copy(fresh.envelope, header=rewrite(fresh.envelope.header, suite=other))
    for item in (downgraded, resign(downgraded, _identity("FR"))):
        _assert_rejected(
            lambda item=item: pair.server.accept(
                item, envelope.unverified_header(item), senders=senders, now_ms=NOW + 21
            )
        )
    foreign = session.open_session(pair.fr, pair.de.as_peer(), suite=other, now_ms=NOW + 20)
    _assert_rejected(
        lambda: pair.server.accept(
            foreign.envelope, foreign.header, senders=senders, now_ms=NOW + 21
        )
    )
    accept = pair.server.accept(fresh.envelope, fresh.header, senders=senders, now_ms=NOW + 21)
    altered = copy(accept, header=rewrite(accept.header, suite=other))
    _assert_rejected(
        lambda: session.finish_session(
            fresh, altered, sender=pair.fr, peer=pair.de.as_peer(), now_ms=NOW + 22
        )
    )
    sent = pair.send()
    _assert_rejected(
        lambda: pair.receive(copy(sent.envelope, header=rewrite(sent.envelope.header, suite=other)))
    )


# --------------------------------------------------------------------------- close


@pytest.mark.attack(
    "forge a SESSION_CLOSE for FR's session (signed with its own key, or a genuine close of "
    "another session re-addressed), or a SESSION_CLOSED to FR",
    adversary="malicious gateway",
    expect="EnvelopeError; the session stays open and FR keeps its keys",
)
def test_forged_close_is_refused(pair: Pair) -> None:
    """Only FR closes FR's session, and only DE confirms it."""
    own = _identity("FR")  # the gateway's key, under FR's name
    pending = pair.send()  # sent before the close, delivered after the forgeries
    close = pair.client.close(now_ms=NOW + 30)
    forged = resign(close, own)

    def at_de(item: envelope.Envelope) -> object:
        return pair.server.close(
            item, envelope.unverified_header(item), sender=pair.fr.as_peer(), now_ms=NOW + 31
        )

    _assert_rejected(lambda: at_de(forged))
    # A genuine close of another session, moved onto this one, breaks its signature.
    _, _, other = handshake(pair.fr, pair.de, pair.server, suite=pair.suite, now=NOW + 5)
    other_close = other.close(now_ms=NOW + 30)
    moved = copy(
        other_close,
        header=rewrite(other_close.header, session_id=pair.client.session_id),
    )
    with pytest.raises((EnvelopeError, SessionRefused)):
        at_de(moved)
    # Neither forgery ended the session at DE: the earlier request still opens there.
    assert pair.receive(pending.envelope, now=NOW + 31)[0].plaintext == QUERY
    closed, _ = at_de(close)  # type: ignore[misc]
    fake_closed = resign(closed, _identity("DE"))
    _assert_rejected(
        lambda: pair.client.check_closed(
            close, fake_closed, peer=pair.de.as_peer(), now_ms=NOW + 32
        )
    )
    pair.client.check_closed(close, closed, peer=pair.de.as_peer(), now_ms=NOW + 32)


# --------------------------------------------------------------------------- rogue bureau


@pytest.mark.attack(
    "a rogue bureau IT opens a session as FR (OPEN signed with IT's key under FR's name), "
    "or sends requests under FR's name in IT's own session, or in FR's session",
    adversary="rogue bureau",
    expect="OPEN: EnvelopeError; requests: SessionRefused 'session unknown' or EnvelopeError",
)
def test_rogue_bureau_cannot_open_or_use_a_session_as_another(pair: Pair) -> None:
    """A session is FR's only if FR signed its OPEN; IT's own session is IT's only."""
    senders = _senders(pair.fr, pair.de, pair.it)
    as_fr = session.open_session(pair.it, pair.de.as_peer(), suite=pair.suite, now_ms=NOW + 5)
    renamed = resign(as_fr.envelope, pair.it, header=rewrite(as_fr.envelope.header, sender="FR"))
    _assert_rejected(
        lambda: pair.server.accept(
            renamed, envelope.unverified_header(renamed), senders=senders, now_ms=NOW + 6
        )
    )
    _, _, its_own = handshake(pair.it, pair.de, pair.server, suite=pair.suite, it=pair.fr)
    request = its_own.seal_request(QUERY, now_ms=NOW + 10)
    as_fr_header = rewrite(request.envelope.header, sender="FR")
    _refused(lambda: pair.receive(copy(request.envelope, header=as_fr_header)))
    in_fr_session = rewrite(request.envelope.header, session_id=pair.client.session_id)
    with pytest.raises((EnvelopeError, SessionRefused)):
        pair.receive(copy(request.envelope, header=in_fr_session), sender=pair.it)
    assert pair.receive(pair.send().envelope)[0].plaintext == QUERY  # FR's is untouched


# --------------------------------------------------------------------------- versions


@pytest.mark.attack(
    "cross the formats: a format 1 request relabelled version 2 and given to the session "
    "path, a format 2 OPEN or request relabelled version 1 and given to the format 1 path",
    adversary="malicious gateway",
    expect="EnvelopeError or SessionRefused: the signature contexts ('ncbsim/v1 envelope', "
    "'ncbsim/v2 envelope') and the AEAD keep each format's envelopes to their own path",
)
def test_envelopes_do_not_cross_formats(pair: Pair) -> None:
    """No envelope of one format is taken by the other format's checks."""
    v1 = _ask(pair.fr, pair.de)
    relabelled = rewrite(
        v1.envelope.header, version=2, suite=pair.suite, session_id=pair.client.session_id, seq=1
    )
    with pytest.raises((EnvelopeError, SessionRefused)):
        pair.receive(copy(v1.envelope, header=relabelled, signature=b""))
    _assert_rejected(lambda: pair.receive(copy(v1.envelope, header=relabelled)))
    senders = _senders(pair.fr, pair.de, pair.it)
    sent = pair.send()
    for item in (pair.opening.envelope, sent.envelope):
        as_v1 = copy(item, header=rewrite(item.header, version=1))
        for candidate in (item, as_v1):
            _assert_rejected(
                lambda candidate=candidate: envelope.open_request(
                    candidate, recipient=pair.de, senders=senders, now_ms=NOW + 11
                )
            )


@pytest.mark.attack(
    "send the node requests made up under a live session's header (copied, with another seq "
    "and random bytes for the body), beyond the checkpoint bound or the epoch's 10,000",
    adversary="malicious gateway",
    expect="EnvelopeError (opaque: the AEAD opens before the bounds, so a made-up request is "
    "never refused, and audited, as its sender's 'checkpoint required' or 'session unknown'); "
    "the session is unharmed: its genuine requests, those seqs included, still open",
)
def test_made_up_requests_in_a_live_session_harm_nothing(pair: Pair) -> None:
    """Whatever the gateway sends under FR's session id, FR's own requests still open, and
    nothing it made up passes for a refusal of FR's own doing."""
    sent = pair.send()
    for seq in (1, 2, session.MAX_UNCOVERED + 1, session.EPOCH_MAX_REQUESTS + 1):
        made_up = copy(
            sent.envelope,
            header=rewrite(sent.envelope.header, seq=seq, message_id=os.urandom(16)),
            sealed=os.urandom(len(sent.envelope.sealed)),
        )
        with pytest.raises(EnvelopeError):
            pair.receive(made_up)
    assert pair.receive(sent.envelope)[0].plaintext == QUERY
    assert pair.receive(pair.send().envelope)[0].plaintext == QUERY  # seq 2, made up above
