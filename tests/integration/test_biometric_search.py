"""Biometric searches end to end: FR's border officer searches DE's fingerprints and faces
through the gateway.

Real processes (the small scenario, 30 persons enrolled per bureau), real mTLS, queries
sealed in format-2 sessions. The probes are new captures of DE's enrolled subjects
(``ncbsim.node.biogen.capture``, seeded), at the border-post qualities.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from biometric_net import OWNER, ask, set_daily_cap

from ncbsim import auditread, biometrics, biosearch
from ncbsim.client import Outcome
from ncbsim.node import biogen
from ncbsim.node.records import NO_CONTROL
from ncbsim.node.store import RecordStore
from ncbsim.pki import PkiDir
from ncbsim.simulations.network import Network
from ncbsim.users import Rights, issue_user, role_rights
from ncbsim.v2 import query_pb2
from ncbsim.workdir import Workdir

pytestmark = pytest.mark.integration

QUALITY = {"fingerprint": "plain", "face": "border"}
BORDER = "FR/cdg-border-12"
"""A border officer FR issued (role ``border``: documents, vehicles, fingerprints, faces)."""


def _subject(network: Network, modality: str, nth: int = 0) -> tuple[str, str, int]:
    """(template ref, person ref, records seed) of an unrestricted enrolled DE person."""
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
    return ref, person, seed


def _probe(
    network: Network, modality: str, nth: int = 0, rng_seed: int = 1
) -> tuple[str, str, bytes]:
    ref, person, seed = _subject(network, modality, nth)
    rng = np.random.default_rng(rng_seed)
    probe = biogen.capture(
        OWNER, seed, person, modality=modality, quality=QUALITY[modality], rng=rng
    )
    return ref, person, probe


def _audit_rows(network: Network, message_id: str) -> list[dict[str, object]]:
    """DE's node audit rows of ``message_id`` (waiting briefly for the commit)."""
    audit = Workdir(network.workdir).bureau(OWNER).audit
    deadline = time.monotonic() + 10
    while True:
        columns, rows = auditread.search(audit, auditread.Query(message_id=message_id))
        found = [dict(zip(columns, row, strict=True)) for row in rows]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.fixture(scope="module")
def border(network: Network) -> str:
    """FR's border officer, issued on the running network and admitted by its gateway."""
    # The role's rights, at a rate a test's bursts of one-shot clients fit in (each opens
    # and closes a session: three envelopes for one query).
    rights = dataclasses.replace(Rights.from_proto(role_rights("border")), rate_per_s=50)
    issue_user(
        PkiDir(network.workdir), "FR", "cdg-border-12", "border", rights=rights, now_ms=_now_ms()
    )
    deadline = time.monotonic() + 30
    while True:  # the gateway rereads users/ within its refresh interval
        (answer,) = ask(network, BORDER, [query_pb2.Query(fetch=query_pb2.FetchQuery(ref="x"))])
        if answer.outcome != Outcome.FAILED or time.monotonic() > deadline:
            assert answer.outcome == Outcome.NOT_FOUND, answer.detail
            return BORDER
        time.sleep(0.1)


def _now_ms() -> int:
    return int(time.time() * 1000)


@pytest.mark.parametrize("modality", biometrics.MODALITIES)
def test_a_search_ranks_the_planted_subject_first_and_step_2_confirms_it(
    network: Network, border: str, modality: str
) -> None:
    """A border officer of FR probes a DE subject: a ranked list within the caps, the
    subject first; step 2 confirms it and releases the person."""
    ref, person, probe = _probe(network, modality)
    search, wide = ask(
        network,
        border,
        [biosearch.search(modality, probe), biosearch.search(modality, probe, max_candidates=10)],
    )
    assert search.outcome == Outcome.HIT, search.detail
    candidates = biosearch.candidates(search)
    assert candidates[0].ref == ref
    assert [c.rank for c in candidates] == list(range(1, len(candidates) + 1))
    assert len(candidates) <= biometrics.DEFAULT_CANDIDATES
    assert all(c.score >= biometrics.THRESHOLDS[modality]["search"] - 1e-6 for c in candidates)
    assert [c.score for c in candidates] == sorted((c.score for c in candidates), reverse=True)
    assert len(biosearch.candidates(wide)) <= biometrics.MAX_CANDIDATES
    assert biosearch.candidates(wide)[0].ref == ref

    (confirmed,) = ask(network, border, [biosearch.confirm(ref, modality, probe)])
    assert confirmed.outcome == Outcome.RECORD
    assert confirmed.response is not None
    confirmation = confirmed.response.confirmation
    assert confirmation.confirmed
    assert confirmation.score >= biometrics.THRESHOLDS[modality]["confirm"]
    assert confirmation.record.person.ref == person


def test_a_stranger_gets_no_candidate_and_another_subject_is_not_confirmed(
    network: Network,
) -> None:
    """A subject enrolled nowhere: empty list; a probe of subject B confirms nothing for A."""
    ref_a, _, _ = _probe(network, "face", nth=0)
    _, _, probe_b = _probe(network, "face", nth=1)
    stranger = biogen.stranger(
        7, "integration", modality="face", quality="border", rng=np.random.default_rng(3)
    )
    search, confirm = ask(
        network,
        "FR",
        [biosearch.search("face", stranger), biosearch.confirm(ref_a, "face", probe_b)],
    )
    assert search.outcome == Outcome.NO_HIT
    assert confirm.outcome == Outcome.NOT_FOUND
    assert confirm.response is not None
    assert not confirm.response.confirmation.confirmed
    assert not confirm.response.confirmation.HasField("record")


@pytest.mark.attack(
    "send a biometric probe that is malformed (wrong length, all zero) or oversized",
    adversary="rogue bureau",
    expect="INVALID_ARGUMENT + node audit reason bad_query; the node answers the next query",
)
@pytest.mark.parametrize(
    ("label", "probe"),
    [
        ("short", bytes(range(1, 101))),
        ("all zero", bytes(biometrics.DIMS["face"])),
        ("oversized", bytes([7]) * 4096),
    ],
)
def test_a_bad_probe_is_refused_and_audited(network: Network, label: str, probe: bytes) -> None:
    """A face probe that is not 512 non-zero bytes: INVALID_ARGUMENT, audited; DE goes on."""
    _, _, good = _probe(network, "face")
    bad, after = ask(
        network, "FR", [biosearch.search("face", probe), biosearch.search("face", good)]
    )
    assert bad.outcome == Outcome.FAILED, label
    assert bad.detail.startswith("INVALID_ARGUMENT"), bad.detail
    rows = _audit_rows(network, bad.message_id)
    assert [(r["outcome"], r["reason"], r["status"]) for r in rows] == [
        ("refused", "bad_query", "INVALID_ARGUMENT")
    ]
    assert after.outcome == Outcome.HIT


@pytest.mark.attack(
    "a bureau searches another's biometrics beyond the owner's daily cap, also across a restart",
    adversary="rogue bureau",
    expect="RESOURCE_EXHAUSTED + node audit reason daily_cap; others and confirms unaffected",
)
def test_the_daily_cap_refuses_a_bureau_and_survives_a_restart(fresh_network: Network) -> None:
    """Cap 2: FR's third search is RESOURCE_EXHAUSTED (audited), IT still searches, FR still
    confirms; after DE restarts FR is still refused."""
    net = fresh_network
    set_daily_cap(net, 2)
    ref, _, probe = _probe(net, "fingerprint")
    search = biosearch.search("fingerprint", probe)
    first, second, third, confirm = ask(
        net, "FR", [search, search, search, biosearch.confirm(ref, "fingerprint", probe)]
    )
    assert first.outcome == second.outcome == Outcome.HIT
    assert third.outcome == Outcome.FAILED
    assert third.detail.startswith("RESOURCE_EXHAUSTED"), third.detail
    assert "daily cap of 2 biometric searches" in third.detail  # the node's, relayed
    assert confirm.outcome == Outcome.RECORD  # a confirmation is no search
    rows = _audit_rows(net, third.message_id)
    assert [(r["outcome"], r["reason"], r["status"]) for r in rows] == [
        ("refused", "daily_cap", "RESOURCE_EXHAUSTED")
    ]
    (other,) = ask(net, "IT", [search])
    assert other.outcome == Outcome.HIT  # the cap is per requesting bureau

    set_daily_cap(net, 2)  # a restart: the day's counts are on disk
    again, it_again = ask(net, "FR", [search]) + ask(net, "IT", [search])
    assert again.outcome == Outcome.FAILED
    assert again.detail.startswith("RESOURCE_EXHAUSTED"), again.detail
    assert it_again.outcome == Outcome.HIT  # IT's second search of the day
