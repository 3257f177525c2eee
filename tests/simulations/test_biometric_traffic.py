"""Biometric traffic: planted searches aim at enrolled subjects, no-hits at strangers, the
plan is the seed's, and the report's biometric table counts what came back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import load_scenario

from ncbsim import biometrics, biosearch
from ncbsim.client import Answer, Outcome
from ncbsim.errors import ConfigError
from ncbsim.node import datagen
from ncbsim.node.biometric_answer import BiometricAnswerer
from ncbsim.node.store import RecordStore
from ncbsim.simulations import biometric_report, scenario
from ncbsim.simulations.outcomes import Sent
from ncbsim.simulations.traffic import Planner, second_step
from ncbsim.v2 import query_pb2

TEXT = """
bureaus = ["FR", "DE"]
seed = 4
[records]
documents = 20
persons = 40
vehicles = 10
planted = 6
biometrics = 30
[traffic]
duration_s = 10.0
rate_per_s = 6.0
hit_ratio = 0.5
face_quality = "cctv"
[traffic.mix]
document = 1
person = 0
vehicle = 0
multi = 0
fingerprint = 1
face = 1
"""


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[dict[str, RecordStore]]:
    opened = {}
    for code in ("FR", "DE"):
        path = tmp_path / f"{code}.sqlite"
        datagen.generate(
            path, code, seed=4, documents=20, persons=40, vehicles=10, biometrics=30, workers=1
        )
        opened[code] = RecordStore(path)
    yield opened
    for store in opened.values():
        store.close()


def test_biometric_traffic_needs_enrolled_persons(tmp_path: Path) -> None:
    """A biometric weight with records.biometrics 0 is refused, naming the key; so is a
    quality the modality has not."""
    with pytest.raises(ConfigError, match=r"traffic\.mix\.fingerprint: .*records\.biometrics"):
        load_scenario(tmp_path, TEXT.replace("biometrics = 30", "biometrics = 0"))
    with pytest.raises(ConfigError, match=r"traffic\.face_quality"):
        load_scenario(tmp_path, TEXT.replace('"cctv"', '"latent"'))


def test_planted_searches_find_their_subject_and_strangers_find_none(
    tmp_path: Path, stores: dict[str, RecordStore]
) -> None:
    """Each planted search, answered by its target's own index, ranks the planted template
    in its list (cctv faces: most first); each stranger gets no candidate; the same seed
    plans the same probes."""
    loaded = load_scenario(tmp_path, TEXT)
    plan = Planner(loaded, stores).plan()
    again = Planner(scenario.load(str(loaded.path)), stores).plan()
    assert [p.query for p in plan] == [p.query for p in again]
    biometric = [p for p in plan if p.kind in ("fingerprint", "face")]
    assert {p.kind for p in biometric} == {"fingerprint", "face"}
    answerers = {
        code: BiometricAnswerer.open(store, tmp_path / f"{code}-caps", 1000, backend="numpy")
        for code, store in stores.items()
    }
    sent = []
    try:
        for p in biometric:
            (target,) = p.to
            assert p.query.biometric.modality == biometrics.to_wire(p.kind)
            body = answerers[target].answer(p.query, requester=p.requester, now_ms=0)
            outcome = Outcome.HIT if body.candidates.candidates else Outcome.NO_HIT
            sent.append(Sent(p, [Answer(target, outcome, body)]))
    finally:
        for answering in answerers.values():
            answering.close()
    table = biometric_report.summary(sent, ("fingerprint", "face"))
    for modality in ("fingerprint", "face"):
        row = table[modality]
        assert row["searches"] > 0
        assert row["strangers"] > 0
        assert row["false_candidates"] == 0
        assert row["found"] >= row["first"] >= 0.8 * row["searches"]
        assert row["rank1"] == round(row["first"] / row["searches"], 4)


def test_step_two_of_a_biometric_hit_is_its_confirmation() -> None:
    """A candidate list's step 2 confirms the planted candidate with the search's probe."""
    search = biosearch.search("face", b"\x02" * 512)
    answer = Answer(
        "DE",
        Outcome.HIT,
        query_pb2.Answer(
            candidates=query_pb2.Candidates(
                candidates=[
                    query_pb2.Candidate(ref="b" * 20, score=0.5, rank=1),
                    query_pb2.Candidate(ref="a" * 20, score=0.4, rank=2),
                ]
            )
        ),
    )
    step, kind = second_step(search, answer, "a" * 20)
    assert kind == "confirm"
    assert (step.confirm.ref, step.confirm.template) == ("a" * 20, b"\x02" * 512)
    step, _ = second_step(search, answer, None)
    assert step.confirm.ref == "b" * 20
