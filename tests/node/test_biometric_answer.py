"""The owner's biometric answers without gRPC: candidate lists, Prüm caps, data-owner
control, hit confirmation and the refusals of unusable probes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ncbsim import biometrics, biosearch, padding
from ncbsim.errors import QueryError, QuotaExceeded
from ncbsim.node import admin, biogen, datagen
from ncbsim.node.biometric_answer import BiometricAnswerer, candidate_count
from ncbsim.node.hits import HitEvent
from ncbsim.node.store import RecordStore
from ncbsim.v2 import query_pb2

SEED = 11
NOW = 1_765_000_000_000


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DE's records with 60 of its 80 persons enrolled."""
    path = tmp_path_factory.mktemp("bio") / "records.sqlite"
    datagen.generate(
        path, "DE", seed=SEED, documents=10, persons=80, vehicles=5, biometrics=60, workers=1
    )
    return path


@pytest.fixture
def answerer(db: Path, tmp_path: Path) -> Iterator[BiometricAnswerer]:
    store = RecordStore(db)
    answering = BiometricAnswerer.open(store, tmp_path / "caps.sqlite", 100, backend="numpy")
    yield answering
    answering.close()
    store.close()


def _enrolled(db: Path, modality: str) -> list[tuple[str, str]]:
    store = RecordStore(db)
    try:
        return [(ref, person) for ref, person, kind, _ in store.enrolled() if kind == modality]
    finally:
        store.close()


def _probe(person: str, modality: str, quality: str, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return biogen.capture("DE", SEED, person, modality=modality, quality=quality, rng=rng)


def test_enrolment_is_stable_and_one_template_per_person_and_modality(db: Path) -> None:
    """60 persons x 2 modalities, opaque refs, int8 bytes of the modality's size; same seed,
    same templates."""
    store = RecordStore(db)
    rows = store.enrolled()
    store.close()
    assert len(rows) == 120
    assert {kind for _, _, kind, _ in rows} == set(biometrics.MODALITIES)
    assert all(len(t) == biometrics.DIMS[kind] for _, _, kind, t in rows)
    assert len({ref for ref, _, _, _ in rows}) == 120
    again = db.parent / "again.sqlite"
    datagen.generate(
        again, "DE", seed=SEED, documents=10, persons=80, vehicles=5, biometrics=60, workers=1
    )
    store = RecordStore(again)
    assert store.enrolled() == rows
    store.close()


@pytest.mark.parametrize("modality", biometrics.MODALITIES)
def test_a_probe_of_an_enrolled_subject_ranks_it_first(
    answerer: BiometricAnswerer, db: Path, modality: str
) -> None:
    """Border-quality probes of ten subjects: each comes back first, ranks 1..n, scores
    above the search threshold, best first, at most the default count."""
    quality = biometrics.QUALITIES[modality][1]
    for ref, person in _enrolled(db, modality)[:10]:
        query = biosearch.search(modality, _probe(person, modality, quality))
        found = answerer.answer(query, requester="FR", now_ms=NOW).candidates.candidates
        assert found[0].ref == ref
        assert [c.rank for c in found] == list(range(1, len(found) + 1))
        assert len(found) <= biometrics.DEFAULT_CANDIDATES
        assert min(c.score for c in found) >= biometrics.THRESHOLDS[modality]["search"] - 1e-6


def test_the_owner_caps_the_candidates_asked_for() -> None:
    """0 asks for the default; more than the cap gets the cap."""
    assert candidate_count(0) == biometrics.DEFAULT_CANDIDATES
    assert candidate_count(3) == 3
    assert candidate_count(500) == biometrics.MAX_CANDIDATES


def test_a_person_withheld_from_the_requester_is_no_candidate_nor_confirmed(
    db: Path, tmp_path: Path
) -> None:
    """DE denies its person to IT: IT's search leaves the candidate out, IT's confirm reads
    like an unknown reference; FR still gets it; the owner is told of IT's attempts."""
    copy = tmp_path / "records.sqlite"
    copy.write_bytes(db.read_bytes())
    ref, person = _enrolled(copy, "face")[3]
    admin.restrict(
        copy,
        person,
        admin.ControlChange(access="deny", bureaus=frozenset({"IT"}), handling=1, notify=True),
    )
    events: list[HitEvent] = []
    store = RecordStore(copy)
    answering = BiometricAnswerer.open(store, tmp_path / "caps.sqlite", 100, backend="numpy")
    probe = _probe(person, "face", "border")
    try:
        it_search = answering.answer(
            biosearch.search("face", probe),
            requester="IT/border-1",
            now_ms=NOW,
            on_hit=events.append,
        )
        it_confirm = answering.answer(
            biosearch.confirm(ref, "face", probe), requester="IT", now_ms=NOW, on_hit=events.append
        )
        unknown = answering.answer(
            biosearch.confirm("a" * 20, "face", probe), requester="IT", now_ms=NOW
        )
        fr = answering.answer(
            biosearch.confirm(ref, "face", probe), requester="FR", now_ms=NOW, on_hit=events.append
        )
    finally:
        answering.close()
        store.close()
    assert ref not in {c.ref for c in it_search.candidates.candidates}
    assert it_confirm == unknown
    assert fr.confirmation.confirmed
    assert fr.confirmation.record.person.ref == person
    assert fr.confirmation.record.handling == 2  # H1 on the wire
    assert [(e.requester, e.query_kind, e.outcome, e.ref) for e in events] == [
        ("IT/border-1", "face", "withheld", person),
        ("IT", "confirm", "withheld", person),
        ("FR", "confirm", "released", person),
    ]


def test_confirmation_holds_only_for_the_same_subject(
    answerer: BiometricAnswerer, db: Path
) -> None:
    """A's probe confirms A; B's probe against A's template is not confirmed and carries no
    record; a reference of the other modality is not confirmed either."""
    (ref_a, person_a), (_, person_b) = _enrolled(db, "fingerprint")[:2]
    face_ref = _enrolled(db, "face")[0][0]
    probe_a = _probe(person_a, "fingerprint", "rolled")
    same = answerer.answer(
        biosearch.confirm(ref_a, "fingerprint", probe_a), requester="FR", now_ms=NOW
    )
    other = answerer.answer(
        biosearch.confirm(ref_a, "fingerprint", _probe(person_b, "fingerprint", "rolled")),
        requester="FR",
        now_ms=NOW,
    )
    crossed = answerer.answer(
        biosearch.confirm(face_ref, "fingerprint", probe_a), requester="FR", now_ms=NOW
    )
    assert same.confirmation.confirmed
    assert same.confirmation.record.person.ref == person_a
    assert not other.confirmation.confirmed
    assert not other.confirmation.HasField("record")
    assert not crossed.confirmation.confirmed


@pytest.mark.parametrize(
    ("label", "query"),
    [
        ("short", biosearch.search("face", b"\x01" * 100)),
        ("oversized", biosearch.search("face", b"\x01" * 4096)),
        ("all zero", biosearch.search("fingerprint", bytes(256))),
        (
            "no modality",
            query_pb2.Query(biometric=query_pb2.BiometricQuery(template=b"\x01" * 256)),
        ),
        ("confirm, short", biosearch.confirm("a" * 20, "face", b"\x01" * 10)),
    ],
)
def test_an_unusable_probe_is_a_query_error_and_costs_no_search(
    answerer: BiometricAnswerer, label: str, query: query_pb2.Query
) -> None:
    """QueryError (the node refuses it INVALID_ARGUMENT), and the daily count is untouched."""
    with pytest.raises(QueryError):
        answerer.answer(query, requester="FR", now_ms=NOW)
    assert answerer._caps.used("FR", NOW) == 0, label


def test_searches_beyond_the_cap_are_refused_but_confirms_are_not_counted(
    db: Path, tmp_path: Path
) -> None:
    """Cap 1: one search, then QuotaExceeded; confirmations go on."""
    store = RecordStore(db)
    answering = BiometricAnswerer.open(store, tmp_path / "caps.sqlite", 1, backend="numpy")
    ref, person = _enrolled(db, "face")[0]
    probe = _probe(person, "face", "border")
    try:
        answering.answer(biosearch.search("face", probe), requester="FR", now_ms=NOW)
        with pytest.raises(QuotaExceeded):
            answering.answer(biosearch.search("face", probe), requester="FR", now_ms=NOW)
        for _ in range(3):
            confirmed = answering.answer(
                biosearch.confirm(ref, "face", probe), requester="FR", now_ms=NOW
            )
            assert confirmed.confirmation.confirmed
    finally:
        answering.close()
        store.close()


def test_every_biometric_request_pads_to_one_size() -> None:
    """Fingerprint and face searches and confirmations all pad to 1,024 bytes: the size says
    'biometric', never which modality; other queries keep 256."""
    sizes = {
        len(padding.padded(q, padding.REQUEST_BYTES))
        for q in (
            biosearch.search("fingerprint", b"\x01" * 256, 10),
            biosearch.search("face", b"\x01" * 512, 10),
            biosearch.confirm("a" * 20, "face", b"\x01" * 512),
            biosearch.confirm("a" * 20, "fingerprint", b"\x01" * 256),
        )
    }
    assert sizes == {padding.BIOMETRIC_REQUEST_BYTES}
    fetch = query_pb2.Query(fetch=query_pb2.FetchQuery(ref="a" * 20))
    assert len(padding.padded(fetch, padding.REQUEST_BYTES)) == padding.REQUEST_BYTES
