"""What a bureau's user may ask of a node (node/rights.py), and how the answer path treats
a user requester: the owner's lists by its bureau, hit notifications naming the user."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import fetch_query, generate_records, query_for, uncontrolled_documents

from ncbsim.errors import RightsError, status_for
from ncbsim.node import admin, rights
from ncbsim.node.answer import answer
from ncbsim.node.hits import HitEvent, HitLog, read_hits
from ncbsim.node.store import RecordStore
from ncbsim.v2 import query_pb2

OWNER = "DE"


@dataclass(frozen=True)
class _Rights:
    """The two fields of ncbsim.users.Rights the node reads."""

    query_kinds: frozenset[str] = field(default_factory=frozenset)
    full_records: bool = False


BORDER = _Rights(frozenset({"document", "vehicle", "fingerprint", "face"}), False)
INVESTIGATOR = _Rights(frozenset({"document", "person", "vehicle", "fingerprint", "face"}), True)
PARTNER = _Rights(frozenset(), False)


def _biometric(modality: int) -> query_pb2.Query:
    return query_pb2.Query(biometric=query_pb2.BiometricQuery(modality=modality, template=b"x"))


def _confirm(modality: int) -> query_pb2.Query:
    return query_pb2.Query(confirm=query_pb2.ConfirmQuery(ref="r", modality=modality))


DOCUMENT = query_pb2.Query(document=query_pb2.DocumentQuery(number="X1", issuer="DE"))
PERSON = query_pb2.Query(person=query_pb2.PersonQuery(surname="DOE", date_of_birth="1980-01-02"))
VEHICLE = query_pb2.Query(vehicle=query_pb2.VehicleQuery(plate="AB-1"))


@pytest.mark.parametrize(
    ("query", "kind"),
    [
        (DOCUMENT, "document"),
        (PERSON, "person"),
        (VEHICLE, "vehicle"),
        (fetch_query("r"), "fetch"),
        (_biometric(query_pb2.MODALITY_FINGERPRINT), "fingerprint"),
        (_biometric(query_pb2.MODALITY_FACE), "face"),
        (_confirm(query_pb2.MODALITY_FACE), "confirm"),
        (query_pb2.Query(), ""),
    ],
)
def test_a_query_counts_as_its_kind(query: query_pb2.Query, kind: str) -> None:
    """Step-1 kinds by name, biometric searches by modality, step 2 as fetch or confirm."""
    assert rights.query_kind(query) == kind


def test_a_bureau_may_ask_anything() -> None:
    """No rights (a bureau's own entry) refuses nothing and strips nothing."""
    for query in (DOCUMENT, PERSON, fetch_query("r"), _confirm(query_pb2.MODALITY_FACE)):
        rights.check_query(None, query)
    assert not rights.hit_only(None)


def test_a_border_user_checks_documents_but_not_persons_nor_step_two() -> None:
    """Border: document, vehicle and biometric searches; person, fetch, confirm refused."""
    for query in (DOCUMENT, VEHICLE, _biometric(query_pb2.MODALITY_FACE)):
        rights.check_query(BORDER, query)
    for query in (PERSON, fetch_query("r"), _confirm(query_pb2.MODALITY_FINGERPRINT)):
        with pytest.raises(RightsError) as caught:
            rights.check_query(BORDER, query)
        assert status_for(caught.value)[0].name == "PERMISSION_DENIED"
        assert rights.query_kind(query) not in str(caught.value)  # the gateway relays it
    assert rights.hit_only(BORDER)


def test_an_investigator_fetches_and_confirms_in_its_modalities() -> None:
    """Full records: fetch passes; confirm passes only in a modality it may search."""
    rights.check_query(INVESTIGATOR, PERSON)
    rights.check_query(INVESTIGATOR, fetch_query("r"))
    rights.check_query(INVESTIGATOR, _confirm(query_pb2.MODALITY_FACE))
    no_face = _Rights(frozenset({"document", "fingerprint"}), True)
    with pytest.raises(RightsError):
        rights.check_query(no_face, _confirm(query_pb2.MODALITY_FACE))
    assert not rights.hit_only(INVESTIGATOR)


def test_a_partner_may_query_nothing() -> None:
    """No query kinds: every kind is refused."""
    for query in (DOCUMENT, PERSON, VEHICLE, _biometric(query_pb2.MODALITY_FACE)):
        with pytest.raises(RightsError):
            rights.check_query(PARTNER, query)


def test_a_hit_only_answer_keeps_the_hit_and_loses_every_reference() -> None:
    """Matches and candidates keep their count and scores; their refs are emptied."""
    hits = query_pb2.Answer(
        hits=query_pb2.Hits(matches=[query_pb2.Match(ref="a" * 20, score=0.9)] * 2)
    )
    stripped = rights.without_refs(hits)
    assert [(m.ref, round(m.score, 2)) for m in stripped.hits.matches] == [("", 0.9)] * 2
    candidates = query_pb2.Answer(
        candidates=query_pb2.Candidates(
            candidates=[query_pb2.Candidate(ref="c1", score=0.8, rank=1)]
        )
    )
    (candidate,) = rights.without_refs(candidates).candidates.candidates
    assert (candidate.ref, candidate.rank) == ("", 1)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return generate_records(tmp_path, OWNER, seed=5, documents=120, persons=40, vehicles=40)


def test_a_users_view_is_its_bureaus_and_its_hits_name_it(
    db: Path, tmp_path: Path, open_store: Callable[[Path], RecordStore]
) -> None:
    """Allow-listed for FR: FR's user sees it, NL's does not; the hit log names the user,
    and a --requester FR filter finds FR's and its users' hits, FR/x only the user's."""
    store = open_store(db)
    doc, other = uncontrolled_documents(store, 2, sample=120, seed=3)
    admin.restrict(
        db,
        doc.ref,
        admin.ControlChange(access="allow", bureaus=frozenset({"FR"}), notify=True),
    )
    admin.restrict(db, other.ref, admin.ControlChange(notify=True))
    events: list[HitEvent] = []
    seen = answer(store, query_for(doc), requester="FR/cdg-1", on_hit=events.append)
    assert [m.ref for m in seen.hits.matches] == [doc.ref]
    assert answer(store, fetch_query(doc.ref), requester="FR/cdg-1").HasField("record")
    hidden = answer(store, query_for(doc), requester="NL/ams-2", on_hit=events.append)
    assert hidden.hits.matches == []
    answer(store, query_for(other), requester="FR", on_hit=events.append)
    answer(store, query_for(other), requester="DE/own-user", on_hit=events.append)
    assert [(e.requester, e.outcome) for e in events] == [
        ("FR/cdg-1", "hit"),
        ("NL/ams-2", "withheld"),
        ("FR", "hit"),
    ]  # the owner's own user is the owner: not recorded
    log = HitLog(tmp_path / "hits.sqlite", batch_wait_s=0.0)
    for event in events:
        log.record(event)
    log.close()
    path = tmp_path / "hits.sqlite"
    assert [e.requester for e in read_hits(path, requester="fr")] == ["FR/cdg-1", "FR"]
    assert [e.requester for e in read_hits(path, requester="fr/cdg-1")] == ["FR/cdg-1"]
    assert read_hits(path, requester="FR/cdg-2") == []
