"""A malicious gateway cannot make a bureau use a key it substituted, nor slip a forged or
revoked sender past a node; and an honest gateway relays a hit.

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

import json
import time
from typing import Any

import pytest
from evil_net import (
    CANARY,
    EvilNet,
    _ask,
    _assert_failed_not_answered,
    _doc,
    _new_events,
    _node_audit,
)

from ncbsim import _crypto, pki, rekey
from ncbsim.client import Outcome
from ncbsim.pki import PkiDir
from ncbsim.revocation import verify_list
from ncbsim.v2 import directory_pb2

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- baseline


def test_honest_gateway_relays_a_hit(net: EvilNet) -> None:
    """Baseline: through the compromised gateway in honest mode, queries work normally."""
    hit = _ask(net, _doc(net.known_document))
    assert hit.outcome == Outcome.HIT, hit
    assert hit.matches
    miss = _ask(net, _doc(CANARY))
    assert miss.outcome == Outcome.NO_HIT, miss
    assert _ask(net, _doc(net.known_document), as_="IT").outcome == Outcome.HIT
    rows = _node_audit(net, "DE", hit.message_id)
    assert [(r["outcome"], r["status"]) for r in rows] == [("answered", "OK")]


# --------------------------------------------------------------------------- keys


@pytest.mark.attack(
    "the gateway serves the target bureau's directory entry with a substituted encryption or "
    "signing key: bytes altered under the root's signature, re-signed by a fake root, another "
    "bureau's entry relabelled, or another bureau's valid entry in its place",
    adversary="malicious gateway",
    expect="requester FAILED (no verified directory entry), seals nothing, sends no query",
)
@pytest.mark.parametrize("how", ["altered", "fake-root", "relabel", "substitute"])
@pytest.mark.parametrize("key", ["encryption", "signing"])
def test_swapped_key_is_never_used_by_the_requester(net: EvilNet, key: str, how: str) -> None:
    before = len(net.event_lines())
    net.set_mode("swap-key", swap={"bureau": "DE", "key": key, "how": how, "source": "NL"})
    answer = _ask(net, _doc(CANARY))
    _assert_failed_not_answered(answer)
    assert answer.detail == "no verified directory entry for DE"
    events = _new_events(net, before)
    asked = [e for e in events if e.get("rpc") == "GetDirectory"]
    assert asked
    assert (asked[0]["asked"], asked[0]["swapped"], asked[0]["how"]) == (["DE"], "DE", how)
    # Nothing was sealed, so nothing reached the gateway to relay, let alone under its key.
    assert not [e for e in events if e.get("action") == "received"]
    assert not [e for e in events if e.get("action") == "sealed-to-attacker"]


_NEW_BUREAUS = {"altered": "ES", "fake-root": "PT", "relabel": "BE", "substitute": "AT"}


@pytest.mark.attack(
    "the gateway makes up a query as a bureau the node has not met yet, signed with its own "
    "key, and serves that bureau's directory entry with its own signing key substituted "
    "(altered, fake root, relabelled or another bureau's entry)",
    adversary="malicious gateway",
    expect="node refuses the entry and the envelope: INVALID_ARGUMENT + audit 'unverified'",
)
@pytest.mark.parametrize("how", sorted(_NEW_BUREAUS))
def test_node_refuses_a_sender_under_a_substituted_signing_key(net: EvilNet, how: str) -> None:
    code = _NEW_BUREAUS[how]
    # The root admits a new bureau while the network runs; DE has never fetched its entry.
    pki.add_bureau(PkiDir(net.workdir), code)
    refused_before = net.node_log("DE").count("directory_entry_refused")
    before = len(net.event_lines())
    net.set_mode(
        "forge-request",
        target="DE",
        swap={"bureau": code, "key": "signing", "how": how, "source": "NL"},
        **{"as": code},
    )
    answer = _ask(net, _doc(CANARY))
    _assert_failed_not_answered(answer)
    assert answer.detail.startswith("INVALID_ARGUMENT"), answer
    [forged] = [e for e in _new_events(net, before) if e.get("action") == "forged-request"]
    assert forged["status"] == "INVALID_ARGUMENT"
    [row] = _node_audit(net, "DE", forged["forged_message_id"])
    assert (row["sender"], row["outcome"], row["reason"], row["status"]) == (
        code,
        "refused",
        "unverified",
        "INVALID_ARGUMENT",
    )
    # The node did fetch the substituted entry from the gateway, and refused it.
    fetched = [
        e
        for e in _new_events(net, before)
        if e.get("rpc") == "GetDirectory" and e.get("peer") == "DE"
    ]
    assert [(e["asked"], e["swapped"], e["how"]) for e in fetched] == [([code], code, how)]
    refused = net.node_log("DE").count("directory_entry_refused") - refused_before
    # Another bureau's valid entry verifies, but for that bureau: the sender stays unknown.
    assert refused == (0 if how == "substitute" else 1)


@pytest.mark.attack(
    "the gateway makes up a query as a bureau the node knows (FR), signed with its own key",
    adversary="malicious gateway",
    expect="node INVALID_ARGUMENT 'envelope rejected' + audit 'unverified'; requester FAILED",
)
def test_node_refuses_a_query_forged_by_the_gateway(net: EvilNet) -> None:
    before = len(net.event_lines())
    net.set_mode("forge-request", target="DE", **{"as": "FR"})
    answer = _ask(net, _doc(CANARY))
    _assert_failed_not_answered(answer)
    [forged] = [e for e in _new_events(net, before) if e.get("action") == "forged-request"]
    [row] = _node_audit(net, "DE", forged["forged_message_id"])
    assert (row["sender"], row["reason"], row["status"]) == ("FR", "unverified", "INVALID_ARGUMENT")


def _encryption_key_id(net: EvilNet, bureau: str) -> tuple[bytes, str]:
    """A bureau's signed entry as the PKI holds it now, and its encryption key id (hex)."""
    signed = PkiDir(net.workdir).entry_path(bureau).read_bytes()
    entry = directory_pb2.DirectoryEntry.FromString(
        directory_pb2.SignedDirectoryEntry.FromString(signed).entry
    )
    return signed, _crypto.key_id(entry.encryption_key).hex()


def _sealed_to(net: EvilNet, before: int, key_id: str) -> list[dict[str, Any]]:
    """Queries the gateway received, since event ``before``, sealed to ``key_id``."""
    return [
        e
        for e in _new_events(net, before)
        if e.get("action") == "received" and e.get("recipient_key_id") == key_id
    ]


@pytest.mark.attack(
    "the root revokes a bureau (its key leaked); the gateway withholds the revocation list "
    "from a requester and keeps serving the revoked, still root-signed entry",
    adversary="malicious gateway",
    expect="requester refuses the entry (it reads the root's list from the PKI folder); "
    "nothing is sealed to the revoked key",
)
def test_requester_refuses_a_revoked_entry_when_the_gateway_withholds_revocations(
    net: EvilNet,
) -> None:
    pkidir = PkiDir(net.workdir)
    pki.add_bureau(pkidir, "LU")
    _, revoked = _encryption_key_id(net, "LU")
    rekey.revoke(pkidir, "LU")
    before = len(net.event_lines())
    net.set_mode("swap-key", withhold_revocations=True)
    answer = _ask(net, _doc(CANARY), "LU")
    assert _sealed_to(net, before, revoked) == []
    _assert_failed_not_answered(answer)


@pytest.mark.attack(
    "after a bureau rotated its keys (no grace period), the gateway serves a requester the "
    "bureau's older entry, still root-signed and within its validity",
    adversary="malicious gateway",
    expect="requester refuses the older entry (listed as superseded); nothing is sealed to "
    "the retired key",
)
def test_requester_refuses_a_superseded_entry_after_rotation(net: EvilNet) -> None:
    pkidir = PkiDir(net.workdir)
    pki.add_bureau(pkidir, "LT")
    stale, old_key = _encryption_key_id(net, "LT")
    rekey.rotate(pkidir, "LT", grace_ms=0)
    _, new_key = _encryption_key_id(net, "LT")
    assert new_key != old_key
    before = len(net.event_lines())
    net.set_mode("swap-key", swap={"bureau": "LT", "how": "stale", "entry": stale.hex()})
    answer = _ask(net, _doc(CANARY), "LT")
    assert _sealed_to(net, before, old_key) == []
    _assert_failed_not_answered(answer)


@pytest.mark.attack(
    "the root revokes a bureau whose keys leaked; the gateway, colluding with the thief, "
    "withholds the revocation list from a node and delivers a query signed with the "
    "revoked key",
    adversary="malicious gateway",
    expect="node INVALID_ARGUMENT 'envelope rejected' + audit reason 'revoked'",
)
def test_node_refuses_a_revoked_sender_when_the_gateway_withholds_revocations(
    net: EvilNet,
) -> None:
    pkidir = PkiDir(net.workdir)
    pki.add_bureau(pkidir, "LV")
    rekey.revoke(pkidir, "LV")
    listed = pkidir.revocation_list()
    assert listed is not None
    sequence = verify_list(pkidir.root_public_key(), listed).sequence
    # The node reads the root's list from the PKI folder within a second of the revocation.
    node_log = net.workdir / "bureaus" / "DE" / "node.log"
    deadline = time.monotonic() + 10
    while not any(
        e.get("event") == "revocations_adopted" and e.get("sequence", 0) >= sequence
        for e in (json.loads(x) for x in node_log.read_text().splitlines() if x.startswith("{"))
    ):
        assert time.monotonic() < deadline, "DE never adopted the revocation list"
        time.sleep(0.05)
    before = len(net.event_lines())
    net.set_mode(
        "forge-request", target="DE", leaked=True, withhold_revocations=True, **{"as": "LV"}
    )
    answer = _ask(net, _doc(CANARY))
    [forged] = [e for e in _new_events(net, before) if e.get("action") == "forged-request"]
    [row] = _node_audit(net, "DE", forged["forged_message_id"])
    assert (row["sender"], row["reason"], row["status"]) == ("LV", "revoked", "INVALID_ARGUMENT")
    _assert_failed_not_answered(answer)
