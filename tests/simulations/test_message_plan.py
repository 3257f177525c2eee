"""The plan of a simulation's one-way posts: drawn from the seed, and the person search
for a notice's subject."""

from __future__ import annotations

from pathlib import Path

from support import load_scenario

from ncbsim.simulations import message_plan
from ncbsim.v2 import messages_pb2

HEAD = 'bureaus = ["FR", "DE", "IT", "GS"]\n[traffic]\nduration_s = 20\n'


def test_plan_is_seeded_poisson_with_unique_probes(tmp_path: Path) -> None:
    """The stream is drawn from the seed: the same scenario gives the same posts, at about
    the rate, each text of text_bytes with its own probe, never sent to its sender."""
    loaded = load_scenario(
        tmp_path,
        HEAD + '[messages]\nrate_per_s = 10\ntext_bytes = 80\ndiffusion_to = ["DE", "IT"]\n'
        '[[events]]\nat_s = 5\nid = "note"\nmessage = {from = "FR", to = ["DE"]}\n',
    )
    first, second = message_plan.plan(loaded, {}), message_plan.plan(loaded, {})
    assert [(p.at_s, p.sender, p.to, p.text) for p in first.posts] == [
        (p.at_s, p.sender, p.to, p.text) for p in second.posts
    ]
    stream = [p for p in first.posts if p.label != "note"]
    assert 120 <= len(stream) <= 280  # 200 expected over 20 s at 10/s
    assert all(len(p.text) == 80 and p.probe in p.text for p in stream)
    assert len({p.probe for p in first.posts}) == len(first.posts)
    assert all(p.sender not in p.to for p in first.posts)
    assert {p.kind for p in stream} == {"diffusion", "message"}
    assert all(set(p.to) <= {"DE", "IT"} for p in stream if p.kind == "diffusion")
    assert [p.at_s for p in first.posts] == sorted(p.at_s for p in first.posts)
    assert any(p.label == "note" and p.to == ("DE",) for p in first.posts)


def test_subject_query_searches_the_notice_subject_without_accents() -> None:
    """A notice query asks for the subject as a border post types it."""
    subject = messages_pb2.NoticeSubject(
        surname="Müller", given_names="Zoë Anne", date_of_birth="1980-02-03"
    )
    query = message_plan.subject_query(subject).person
    assert (query.surname, query.given_names, query.date_of_birth) == (
        "MULLER",
        "ZOE ANNE",
        "1980-02-03",
    )
