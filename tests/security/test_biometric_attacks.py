"""Attacks on the owners' biometric collections (docs/biometrics.md): probes of the wrong
modality, a probe past the gateway's size cap, and a bureau's users beyond their rights
or around their bureau's daily cap.

Real processes: the gateway and the nodes of the small scenario (30 persons enrolled per
bureau), over real mTLS, queries in format 2 sessions through the reference client, as a
bureau or as one of its users. Malformed probes of the right modality and the daily cap
of a bureau are attacked in tests/integration/test_biometric_search.py; these tests add
what it does not: each is refused, audited, gives nothing away, and the owner answers
the next search.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from biometric_net import OWNER, ask, set_daily_cap
from user_net import (
    admitted,
    assert_discreet,
    gateway_rows,
    issue,
    node_rows,
    secrets_of,
    wait_for,
    wait_gateway_rows,
    wait_node_rows,
)

from ncbsim import biosearch, users
from ncbsim.client import Answer, Outcome
from ncbsim.gateway.audit import AuditRecord
from ncbsim.node import biogen
from ncbsim.node.records import NO_CONTROL
from ncbsim.node.store import RecordStore
from ncbsim.simulations.network import Network
from ncbsim.v2 import query_pb2
from ncbsim.workdir import Workdir

pytestmark = pytest.mark.integration

QUALITY = {"fingerprint": "plain", "face": "border"}
BORDER = "FR/gare-border-2"
NO_FACE = "FR/inv-docs-2"
GATEWAY_CAP = 64 * 1024
"""The gateway's default largest envelope (gateway/config.py)."""


@dataclasses.dataclass(frozen=True)
class Subject:
    """An enrolled, unrestricted person of DE's and a fresh capture of it."""

    ref: str
    person: str
    probe: bytes


def _subject(network: Network, modality: str, nth: int = 0) -> Subject:
    store = RecordStore(Workdir(network.workdir).bureau(OWNER).records)
    try:
        seed = int(store.meta()["seed"])
        enrolled = [
            (ref, person)
            for ref, person, kind, _ in store.enrolled()
            if kind == modality and store.control(person) == NO_CONTROL
        ]
    finally:
        store.close()
    ref, person = enrolled[nth]
    probe = biogen.capture(
        OWNER,
        seed,
        person,
        modality=modality,
        quality=QUALITY[modality],
        rng=np.random.default_rng(nth + 1),
    )
    return Subject(ref, person, probe)


def _refused_by_owner(network: Network, answer: Answer, status: str, reason: str) -> None:
    assert answer.outcome == Outcome.FAILED, answer
    assert answer.detail.startswith(status), answer.detail
    rows = wait_node_rows(network, OWNER, message_id=answer.message_id)
    assert [(r["outcome"], r["reason"], r["status"]) for r in rows] == [("refused", reason, status)]


def _still_searched(network: Network, requester: str, subject: Subject, modality: str) -> None:
    """The owner still answers ``requester``'s genuine search, with the subject first."""
    (answer,) = ask(network, requester, [biosearch.search(modality, subject.probe)])
    assert answer.outcome == Outcome.HIT, answer.detail
    assert biosearch.candidates(answer)[0].ref in (subject.ref, "")  # "" for a hit-only user


# ----------------------------------------------------------------------------- malformed probes


def _wrong_modality(name: str, network: Network) -> query_pb2.Query:
    face = _subject(network, "face").probe
    finger = _subject(network, "fingerprint").probe
    return {
        "no modality": query_pb2.Query(
            biometric=query_pb2.BiometricQuery(
                modality=query_pb2.MODALITY_UNSPECIFIED, template=face
            )
        ),
        "unknown modality": query_pb2.Query(
            biometric=query_pb2.BiometricQuery(modality=9, template=face)  # type: ignore[arg-type]
        ),
        "fingerprint probe as a face": biosearch.search("face", finger),
        "face probe as a fingerprint": biosearch.search("fingerprint", face),
        "confirmation of no modality": query_pb2.Query(
            confirm=query_pb2.ConfirmQuery(ref=_subject(network, "face").ref, template=face)
        ),
    }[name]


@pytest.mark.attack(
    "send a biometric search or confirmation of no, an unknown, or the wrong modality (a "
    "fingerprint probe sent as a face and the reverse)",
    adversary="any caller",
    expect=(
        "INVALID_ARGUMENT + node audit reason bad_query; the detail names no template, no "
        "reference; the owner answers the next search"
    ),
)
@pytest.mark.parametrize(
    "name",
    [
        "no modality",
        "unknown modality",
        "fingerprint probe as a face",
        "face probe as a fingerprint",
        "confirmation of no modality",
    ],
)
def test_a_probe_of_the_wrong_modality_is_refused(network: Network, name: str) -> None:
    """The owner decodes the probe for the modality named: anything else is refused."""
    subject = _subject(network, "face")
    (bad,) = ask(network, "FR", [_wrong_modality(name, network)])
    _refused_by_owner(network, bad, "INVALID_ARGUMENT", "bad_query")
    assert_discreet(bad.detail, subject.ref, subject.person, subject.probe[:16].hex())
    _still_searched(network, "FR", subject, "face")


@pytest.mark.attack(
    "send a biometric probe so large that its envelope passes the gateway's size cap",
    adversary="any caller",
    expect=(
        "RESOURCE_EXHAUSTED at the gateway + gateway audit row, refused unread; the owner "
        "never sees it and answers the next search"
    ),
)
def test_a_probe_past_the_gateways_size_cap_is_refused_unread(network: Network) -> None:
    """A 64 KiB probe: its padded envelope is over 64 KiB, which the gateway refuses."""
    subject = _subject(network, "fingerprint")
    huge = bytes([5]) * GATEWAY_CAP

    def over_cap(r: AuditRecord) -> bool:
        return r.peer == "FR" and r.outcome == "refused" and r.status == "RESOURCE_EXHAUSTED"

    before = len(gateway_rows(network, over_cap))
    (bad,) = ask(network, "FR", [biosearch.search("fingerprint", huge)])
    assert bad.outcome == Outcome.FAILED, bad
    assert bad.detail.startswith("RESOURCE_EXHAUSTED"), bad.detail
    rows = wait_gateway_rows(network, over_cap, count=before + 1)
    assert rows[-1].request_bytes > GATEWAY_CAP
    assert_discreet(bad.detail, huge[:16].hex(), subject.ref)
    _still_searched(network, "FR", subject, "fingerprint")
    assert not node_rows(network, OWNER, message_id=bad.message_id)  # never relayed


# ----------------------------------------------------------------------------- users


@pytest.fixture(scope="module")
def bio_users(network: Network) -> Network:
    """FR's border officer (fingerprint and face, hits only) and an investigator its bureau
    let search documents only; both admitted by the gateway."""
    border = users.Rights.from_proto(users.role_rights("border"))
    issue(
        network,
        BORDER,
        "border",
        rights=dataclasses.replace(border, rate_per_s=100, full_records=False),
    )
    docs = users.Rights.from_proto(users.role_rights("investigator"))
    issue(
        network,
        NO_FACE,
        "investigator",
        rights=dataclasses.replace(docs, rate_per_s=100, query_kinds=frozenset({"document"})),
    )
    for user in (BORDER, NO_FACE):
        wait_for(f"the gateway to admit {user}", lambda user=user: admitted(network, user))
    return network


@pytest.mark.attack(
    "a hit-only user (a kiosk issued --hit-only) confirms a biometric candidate (step 2) "
    "to get the person's record",
    adversary="rogue user",
    expect=(
        "its search's candidates carry no reference; the confirmation PERMISSION_DENIED + "
        "owner's node audit reason rights; the bureau still confirms"
    ),
)
def test_a_hit_only_user_cannot_confirm_a_candidate(bio_users: Network) -> None:
    """FR/gare-border-2 learns DE holds a match, never which, and cannot ask for it."""
    subject = _subject(bio_users, "fingerprint")
    search, confirm = ask(
        bio_users,
        BORDER,
        [
            biosearch.search("fingerprint", subject.probe),
            biosearch.confirm(subject.ref, "fingerprint", subject.probe),
        ],
    )
    assert search.outcome == Outcome.HIT, search.detail
    assert [c.ref for c in biosearch.candidates(search)] == [""] * len(biosearch.candidates(search))
    _refused_by_owner(bio_users, confirm, "PERMISSION_DENIED", "rights")
    assert_discreet(confirm.detail, subject.ref, subject.person, *secrets_of(bio_users, BORDER))
    (fr,) = ask(bio_users, "FR", [biosearch.confirm(subject.ref, "fingerprint", subject.probe)])
    assert fr.outcome == Outcome.RECORD
    _still_searched(bio_users, BORDER, subject, "fingerprint")


@pytest.mark.attack(
    "a user whose bureau granted it no biometric kinds searches faces",
    adversary="rogue user",
    expect=(
        "PERMISSION_DENIED + owner's node audit reason rights (the gateway cannot see the "
        "kind); its document queries still answered"
    ),
)
def test_a_user_without_biometric_rights_cannot_search(bio_users: Network) -> None:
    """FR/inv-docs-2 may query documents only: its face search is refused by DE."""
    subject = _subject(bio_users, "face")
    (bad,) = ask(bio_users, NO_FACE, [biosearch.search("face", subject.probe)])
    _refused_by_owner(bio_users, bad, "PERMISSION_DENIED", "rights")
    assert_discreet(bad.detail, subject.ref, "face", *secrets_of(bio_users, NO_FACE))
    doc = query_pb2.Query(document=query_pb2.DocumentQuery(number="X0", issuer=OWNER))
    (fine,) = ask(bio_users, NO_FACE, [doc])
    assert fine.outcome == Outcome.NO_HIT, fine.detail
    _still_searched(bio_users, "FR", subject, "face")


# ----------------------------------------------------------------------------- the daily cap


@pytest.mark.attack(
    "a bureau spreads its biometric searches over its users to get past the owner's daily "
    "cap, also across the owner's restart",
    adversary="rogue user",
    expect=(
        "the users' searches count for their bureau: RESOURCE_EXHAUSTED (daily_cap) + node "
        "audit for the bureau and every user of it, after a restart too; other bureaus "
        "still search"
    ),
)
def test_a_bureaus_users_share_its_daily_cap(fresh_network: Network) -> None:
    """Cap 2 at DE: FR/x's two searches use FR's day; FR and FR/y are then refused."""
    net = fresh_network
    first, second = "FR/cap-border-1", "FR/cap-border-2"
    for user in (first, second):
        issue(net, user, "border")
        wait_for(f"the gateway to admit {user}", lambda user=user: admitted(net, user))
    set_daily_cap(net, 2)
    subject = _subject(net, "fingerprint")
    search = biosearch.search("fingerprint", subject.probe)
    used = ask(net, first, [search, search])
    assert [a.outcome for a in used] == [Outcome.HIT, Outcome.HIT]
    for who in (second, "FR", first):
        (over,) = ask(net, who, [search])
        _refused_by_owner(net, over, "RESOURCE_EXHAUSTED", "daily_cap")
        assert_discreet(over.detail, subject.ref, subject.person)
    (it,) = ask(net, "IT", [search])
    assert it.outcome == Outcome.HIT
    set_daily_cap(net, 2)  # a restart: the day's counts are on disk
    (again,) = ask(net, second, [search])
    _refused_by_owner(net, again, "RESOURCE_EXHAUSTED", "daily_cap")
    (it_again,) = ask(net, "IT", [search])
    assert it_again.outcome == Outcome.HIT
