"""A malicious gateway relaying queries cannot read, alter, forge, replay, reroute or
silently drop them.

One network serves every attack: the compromised gateway (ncbsim.gateway.attacks, the real
gateway service with its RPCs wrapped, run by ``ncbsim gateway --classroom-attacks``),
real ``ncbsim node`` processes for DE and NL, and the real client (``ncbsim.client``, what
``ncbsim query`` runs) as FR and IT. Each test switches the gateway's behaviour through
its mode file, then checks what a user relies on: the requester never takes a forged,
altered, replayed or rerouted answer for a hit or a no-hit, the node refuses what was
tampered with and says so in its audit log, a substituted key is never used, and nothing
the gateway wrote holds a query.
"""

from __future__ import annotations

import time

import pytest
from evil_net import (
    CANARY,
    EvilNet,
    _ask,
    _ask_many,
    _assert_failed_not_answered,
    _doc,
    _new_events,
    _node_audit,
    _node_never_saw,
)

from ncbsim.client import Outcome
from ncbsim.gateway.audit import read_all

pytestmark = pytest.mark.integration

SESSION_VARIANTS = ["body", "header"]
"""Where the gateway flips a bit of a query or an answer. The client asks in format 2
sessions (docs/protocol.md §15), whose queries and answers carry no signature: the AEAD
over header and body is what a flip breaks. Flipping a format 1 signature is checked in
tests/ncbsim/test_envelope.py, a checkpoint's in tests/ncbsim/test_session_gw_epochs.py."""


# --------------------------------------------------------------------------- tampering


@pytest.mark.attack(
    "the gateway flips one bit of a query (its AEAD-sealed body, or its header) before "
    "forwarding it to the node",
    adversary="malicious gateway",
    expect="node INVALID_ARGUMENT 'envelope rejected' + audit 'unverified'; requester FAILED",
)
@pytest.mark.parametrize("variant", SESSION_VARIANTS)
def test_altered_request_is_refused_by_the_node(net: EvilNet, variant: str) -> None:
    net.set_mode("alter-request", target="DE", variant=variant)
    answer = _ask(net, _doc(net.known_document))
    _assert_failed_not_answered(answer)
    assert answer.detail == "INVALID_ARGUMENT: INVALID_ARGUMENT", answer
    [row] = _node_audit(net, "DE", answer.message_id)
    assert (row["sender"], row["outcome"], row["reason"], row["status"]) == (
        "FR",
        "refused",
        "unverified",
        "INVALID_ARGUMENT",
    )


@pytest.mark.attack(
    "the gateway flips one bit of the node's answer (its AEAD-sealed body, or its header) "
    "before returning it",
    adversary="malicious gateway",
    expect="requester FAILED 'response did not verify' (never a hit or no-hit)",
)
@pytest.mark.parametrize("variant", SESSION_VARIANTS)
def test_altered_response_is_refused_by_the_requester(net: EvilNet, variant: str) -> None:
    net.set_mode("alter-response", target="DE", variant=variant)
    answer = _ask(net, _doc(net.known_document))  # the genuine answer is a hit
    _assert_failed_not_answered(answer)
    assert answer.detail == "response did not verify"
    [row] = _node_audit(net, "DE", answer.message_id)
    assert (row["outcome"], row["status"]) == ("answered", "OK")


@pytest.mark.attack(
    "in a multi-bureau query the gateway flips a bit of one bureau's answer",
    adversary="malicious gateway",
    expect="that bureau FAILED in the merged reply; the other bureau's genuine answer stands",
)
def test_altered_response_in_a_multi_query_fails_only_that_bureau(net: EvilNet) -> None:
    net.set_mode("alter-response", target="DE", variant="body")
    answers = _ask_many(net, _doc(CANARY), ["DE", "NL"])
    _assert_failed_not_answered(answers["DE"])
    assert answers["DE"].detail == "response did not verify"
    assert answers["NL"].outcome == Outcome.NO_HIT


# --------------------------------------------------------------------------- replay


@pytest.mark.attack(
    "instead of forwarding a query, the gateway returns a response captured earlier: one the "
    "bureau sent the same requester, or one it sent another requester",
    adversary="malicious gateway",
    expect="requester FAILED 'response did not verify'; the query never reaches the node",
)
@pytest.mark.parametrize("variant", ["same", "other"])
def test_replayed_response_is_refused_by_the_requester(net: EvilNet, variant: str) -> None:
    # A genuine hit to capture: FR's own earlier query, or IT's.
    owner = "FR" if variant == "same" else "IT"
    assert _ask(net, _doc(net.known_document), as_=owner).outcome == Outcome.HIT
    before = len(net.event_lines())
    net.set_mode("replay-response", target="DE", variant=variant, source="IT")
    answer = _ask(net, _doc(net.known_document))
    _assert_failed_not_answered(answer)
    assert answer.detail == "response did not verify"
    [replayed] = [e for e in _new_events(net, before) if e.get("action") == "replayed-response"]
    assert replayed["captured_for"] == owner
    net.set_mode("honest")
    assert _node_never_saw(net, "DE", answer.message_id)


@pytest.mark.attack(
    "the gateway forwards the same query (a format 2 session request) twice to the node",
    adversary="malicious gateway",
    expect="answered once; the second delivery ALREADY_EXISTS + audit 'replay' (its seq was "
    "taken in the session)",
)
def test_request_forwarded_twice_is_answered_once(net: EvilNet) -> None:
    before = len(net.event_lines())
    net.set_mode("replay-request", target="DE")
    answer = _ask(net, _doc(net.known_document))
    assert answer.outcome == Outcome.HIT  # the genuine answer, once
    [event] = [e for e in _new_events(net, before) if e.get("action") == "replayed-request"]
    assert (event["first"], event["second"]) == ("OK", "ALREADY_EXISTS")
    rows = _node_audit(net, "DE", answer.message_id, count=2)
    assert [(r["outcome"], r["reason"], r["status"]) for r in rows] == [
        ("answered", "", "OK"),
        ("refused", "replay", "ALREADY_EXISTS"),
    ]


# --------------------------------------------------------------------------- reroute


@pytest.mark.attack(
    "the gateway delivers a query addressed to DE to NL's node, unchanged or with the "
    "header's recipient rewritten to NL",
    adversary="malicious gateway",
    expect="NL's node refuses it: unchanged, INVALID_ARGUMENT + audit 'unverified'; rewritten, "
    "FAILED_PRECONDITION + audit 'session_unknown' (NL holds no such session); requester "
    "FAILED; DE never sees it",
)
@pytest.mark.parametrize("variant", ["forward", "rewrite"])
def test_rerouted_query_is_refused_by_the_wrong_bureau(net: EvilNet, variant: str) -> None:
    net.set_mode("reroute", target="DE", to="NL", variant=variant)
    answer = _ask(net, _doc(net.known_document))
    _assert_failed_not_answered(answer)
    status, reason = (
        ("INVALID_ARGUMENT", "unverified")
        if variant == "forward"
        else ("FAILED_PRECONDITION", "session_unknown")
    )
    assert answer.detail.startswith(status), answer
    [row] = _node_audit(net, "NL", answer.message_id)
    assert (row["sender"], row["recipient"], row["reason"], row["status"]) == (
        "FR",
        "DE" if variant == "forward" else "NL",
        reason,
        status,
    )
    net.set_mode("honest")
    assert _node_never_saw(net, "DE", answer.message_id)


# --------------------------------------------------------------------------- forgery


@pytest.mark.attack(
    "the gateway answers a query itself with a fabricated 'no hit': unsigned, signed with "
    "its own key, a genuine earlier answer with its correlation id rewritten, or the query "
    "reflected back as its answer",
    adversary="malicious gateway",
    expect="requester FAILED 'response did not verify'; the query never reaches the node",
)
@pytest.mark.parametrize("variant", ["unsigned", "own-key", "splice", "reflect"])
def test_forged_response_is_refused_by_the_requester(net: EvilNet, variant: str) -> None:
    assert _ask(net, _doc(net.known_document)).outcome == Outcome.HIT  # one to splice
    net.set_mode("forge", target="DE", variant=variant)
    answer = _ask(net, _doc(net.known_document))
    _assert_failed_not_answered(answer)
    assert answer.detail == "response did not verify"
    net.set_mode("honest")
    assert _node_never_saw(net, "DE", answer.message_id)


# --------------------------------------------------------------------------- drop


@pytest.mark.attack(
    "the gateway drops the answer: holds the call past the caller's deadline (after "
    "forwarding, or without), or replies UNAVAILABLE",
    adversary="malicious gateway",
    expect="requester NO_ANSWER (DEADLINE_EXCEEDED or UNAVAILABLE) by its deadline, never no-hit",
)
@pytest.mark.parametrize("variant", ["hang", "silent", "unavailable"])
def test_dropped_answer_is_no_answer_never_no_hit(net: EvilNet, variant: str) -> None:
    net.set_mode("drop", target="DE", variant=variant)
    answer = _ask(net, _doc(CANARY), timeout=1.0)
    assert answer.outcome == Outcome.NO_ANSWER, answer
    assert answer.response is None
    expected = "UNAVAILABLE" if variant == "unavailable" else "DEADLINE_EXCEEDED"
    assert answer.detail.startswith(expected + ":"), answer


@pytest.mark.attack(
    "in a multi-bureau query the gateway replies UNAVAILABLE for one bureau",
    adversary="malicious gateway",
    expect="that bureau NO_ANSWER in the merged reply; the other's genuine answer stands",
)
def test_dropped_answer_in_a_multi_query_is_no_answer(net: EvilNet) -> None:
    net.set_mode("drop", target="DE", variant="unavailable")
    answers = _ask_many(net, _doc(CANARY), ["DE", "NL"])
    assert answers["DE"].outcome == Outcome.NO_ANSWER
    assert answers["DE"].response is None
    assert answers["NL"].outcome == Outcome.NO_HIT


@pytest.mark.attack(
    "in a multi-bureau query the gateway leaves one bureau out of the merged reply, or swaps "
    "two bureaus' answers (each delivery still labelled with its own bureau)",
    adversary="malicious gateway",
    expect="omitted: NO_ANSWER 'missing from reply'; swapped: both FAILED, neither taken as "
    "an answer",
)
@pytest.mark.parametrize("variant", ["omit", "swap"])
def test_mixed_up_multi_query_reply_is_detected(net: EvilNet, variant: str) -> None:
    net.set_mode("mix-deliveries", target="DE", variant=variant)
    answers = _ask_many(net, _doc(net.known_document), ["DE", "NL"])
    assert sorted(answers) == ["DE", "NL"]  # every recipient is listed, whatever came back
    if variant == "omit":
        assert answers["DE"].outcome == Outcome.NO_ANSWER
        assert answers["DE"].detail == "missing from reply"
        assert answers["NL"].outcome == Outcome.NO_HIT
    else:
        for answer in answers.values():
            _assert_failed_not_answered(answer)
            assert answer.detail == "response did not verify"


@pytest.mark.attack(
    "the gateway leaves a connected bureau out of its Routes reply, so a query to ALL "
    "silently skips that bureau",
    adversary="malicious gateway",
    expect="the requester still asks the hidden bureau: ALL is the root-signed directory, "
    "not the gateway's routes",
)
def test_query_to_all_lists_a_bureau_the_gateway_hides(net: EvilNet) -> None:
    net.set_mode("hide-route", target="DE")
    answers = _ask_many(net, _doc(net.known_document), ["ALL"])
    assert answers["NL"].outcome == Outcome.NO_HIT  # the query did go out
    assert "DE" in answers
    assert answers["DE"].outcome == Outcome.HIT  # hidden from Routes, asked all the same


# --------------------------------------------------------------------------- canary


@pytest.mark.attack(
    "the gateway keeps everything it can (audit, log, event record, captured responses) "
    "while relaying queries for a unique document number",
    adversary="malicious gateway",
    expect="the number appears in none of the files the gateway wrote",
)
def test_gateway_never_holds_a_query_in_clear(net: EvilNet) -> None:
    answer = _ask(net, _doc(CANARY))
    assert answer.outcome == Outcome.NO_HIT
    # The gateway did record this very query (so we are reading the right files)...
    audit = net.files / "audit.sqlite"
    deadline = time.monotonic() + 10
    while answer.message_id not in {r.message_id for r in read_all(audit)}:
        assert time.monotonic() < deadline, "the gateway's audit never recorded the query"
        time.sleep(0.05)
    assert answer.message_id in net.events.read_text()
    assert net.capture.stat().st_size > 0
    # ...and nowhere holds the number, nor the known document's, in any encoding we know.
    written = [p for p in net.files.iterdir() if p.is_file() and p.name != "mode.json"]
    assert {p.name for p in written} >= {
        "audit.sqlite",
        "mailbox.sqlite",
        "gateway.log",
        net.events.name,
        net.capture.name,
    }
    for secret in (CANARY, net.known_document):
        needles = [
            secret.encode(),
            secret.encode("utf-16-le"),
            secret.encode().hex().encode(),
        ]
        for path in written:
            data = path.read_bytes()
            assert not [n for n in needles if n in data], f"{secret} found in {path.name}"
