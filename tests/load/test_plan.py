"""The load plan: one bureau per user, a corpus whose expected answers are true, judged strictly."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ncbsim import pki
from ncbsim.client import Answer, Outcome
from ncbsim.countries import INTERPOL_MEMBERS
from ncbsim.errors import ConfigError
from ncbsim.identity import Identity
from ncbsim.load.plan import Item, LoadPlan, build_corpus, provision, requester_codes
from ncbsim.node import datagen
from ncbsim.node.answer import answer
from ncbsim.node.store import RecordStore
from ncbsim.v2 import query_pb2


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RecordStore]]:
    """Small generated record stores for DE and FR."""
    folder = tmp_path_factory.mktemp("plan")
    opened = {}
    for seed, code in enumerate(("DE", "FR")):
        datagen.generate(
            folder / f"{code}.sqlite", code, seed=seed, documents=300, persons=120, vehicles=120
        )
        opened[code] = RecordStore(folder / f"{code}.sqlite")
    yield opened
    for store in opened.values():
        store.close()


def test_requesters_are_members_without_a_node_one_per_user() -> None:
    """Requesters are INTERPOL members without a node, one per user, alphabetically."""
    codes = requester_codes(["AD", "DE", "FR"], 5)
    assert codes == ["AE", "AF", "AG", "AL", "AM"]
    assert requester_codes(["FR"], 1000) == sorted(set(INTERPOL_MEMBERS) - {"FR"})
    with pytest.raises(ConfigError, match="at least 1"):
        requester_codes(["FR"], 0)


def test_users_across_workers_each_get_their_own_bureau() -> None:
    """Users numbered across workers each get a bureau of their own until the pool runs out."""
    plan = LoadPlan("127.0.0.1:1", "/x", ["DE"], ["AD", "AE", "AF", "AG"], workers=2)
    # Two workers with two users each: local user i of worker w is user i*2+w overall.
    chosen = [plan.requester(i, w) for w in (0, 1) for i in (0, 1)]
    assert sorted(chosen) == ["AD", "AE", "AF", "AG"]
    assert plan.requester(2, 0) == "AD"  # beyond the pool: shared round-robin


def test_provision_issues_keys_once_and_they_load(pki_dir: pki.PkiDir) -> None:
    """Requester keys are issued once per work directory and load as an identity."""
    assert provision(pki_dir, ["AD", "AE"]) == ["AD", "AE"]
    assert provision(pki_dir, ["AD", "AE"]) == []
    identity = Identity.load(pki_dir, "AE", now_ms=int(time.time() * 1000))
    assert identity.bureau == "AE"


def test_plan_round_trips_and_refuses_what_is_not_a_plan(tmp_path: Path) -> None:
    """A saved plan reads back equal; a missing, foreign or partial file is refused."""
    item = Item("DE", "CgA=", "ref-1")
    plan = LoadPlan(
        "127.0.0.1:7600", "/pki", ["DE"], ["AD"], {"document": [item]}, workers=3, scenario="small"
    )
    plan.save(tmp_path / "plan.json")
    assert LoadPlan.read(tmp_path / "plan.json") == plan
    assert plan.describe() == "127.0.0.1:7600 (ncbsim gateway; network /pki, scenario small)"
    with pytest.raises(ConfigError, match="no load plan"):
        LoadPlan.read(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"version": 99}')
    with pytest.raises(ConfigError, match="version 99 unsupported"):
        LoadPlan.read(tmp_path / "bad.json")
    (tmp_path / "partial.json").write_text('{"version": 1, "gateway": "127.0.0.1:1"}')
    with pytest.raises(ConfigError, match="not a complete load plan"):
        LoadPlan.read(tmp_path / "partial.json")


def test_corpus_answers_are_what_the_owner_really_answers(stores: dict[str, RecordStore]) -> None:
    """Every corpus item expects exactly what its owner answers: planted hits, true no-hits."""
    corpus = build_corpus(stores, seed=3)
    for kind in ("document", "person", "vehicle"):
        items = corpus[kind]
        assert {i.to for i in items} == {"DE", "FR"}
        assert any(i.expect for i in items)
        assert any(i.expect is None for i in items)
        for item in items:
            refs = [m.ref for m in answer(stores[item.to], item.request()).hits.matches]
            if item.expect is None:
                assert refs == [], item
            else:
                assert item.expect in refs, item
    for item in corpus["fetch"]:
        reply = answer(stores[item.to], item.request())
        assert reply.WhichOneof("result") == "record"
    for item in corpus["multi"]:
        assert item.request().WhichOneof("query") == "document"
        assert item.request().document.issuer == item.to


def test_corpus_is_the_same_for_the_same_seed(stores: dict[str, RecordStore]) -> None:
    """The same seed draws the same corpus; another seed another."""
    assert build_corpus(stores, seed=5) == build_corpus(stores, seed=5)
    assert build_corpus(stores, seed=5) != build_corpus(stores, seed=6)


def _hits(*refs: str) -> Answer:
    body = query_pb2.Answer(hits=query_pb2.Hits(matches=[query_pb2.Match(ref=r) for r in refs]))
    return Answer("DE", Outcome.HIT if refs else Outcome.NO_HIT, body)


@pytest.mark.parametrize(
    ("expect", "answer_", "wrong"),
    [
        ("r1", _hits("r0", "r1"), None),
        ("r1", _hits(), "DE: planted record missed"),
        ("r1", _hits("r2"), "DE: planted record missed"),
        (None, _hits(), None),
        (None, _hits("r2"), "DE: false hit"),
        ("r1", Answer("DE", Outcome.RECORD, query_pb2.Answer()), None),
        ("r1", Answer("DE", Outcome.NOT_FOUND), "DE: reference not found"),
        (None, Answer("DE", Outcome.FAILED, None, "response did not verify"), "DE: failed"),
        (None, Answer("DE", Outcome.NO_ANSWER), "DE: no_answer"),
        (None, Answer("DE", Outcome.ERROR, None, "bad query"), "DE: error bad query"),
    ],
)
def test_a_load_user_counts_every_wrong_answer_as_a_failure(
    expect: str | None, answer_: Answer, wrong: str | None
) -> None:
    """A missed record, a false hit, no answer or an error each counts as a failure."""
    mismatch = Item("DE", "", expect).mismatch(answer_)
    if wrong is None:
        assert mismatch is None
    else:
        assert mismatch is not None
        assert mismatch.startswith(wrong)
