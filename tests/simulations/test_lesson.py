"""The lesson script shared by ``ncbsim demo`` and the classroom: its shape and its helpers."""

from __future__ import annotations

import re

import pytest

from ncbsim.simulations import _demo_bio, _demo_failures, _demo_posts, _demo_steps, lesson
from ncbsim.simulations._demo_record import Shown, Step

QUERY_STEPS = ("document", "person", "biometric", "restricted", "down", "tampered")
ATTACKS = ("replay", "swap-key", "redirect", "drop-answer", "spoof-sender")


def test_the_lesson_is_in_the_order_the_brief_gives() -> None:
    """The query steps (the biometric search after the document and person checks), then
    diffusion, notice, border check, withdrawal, attacks."""
    keys = [step.key for step in lesson.LESSON]
    assert keys == [
        *QUERY_STEPS,
        "diffusion",
        "notice",
        "border-check",
        "withdraw",
        *(f"attack:{name}" for name in ATTACKS),
    ]
    assert len(set(keys)) == len(keys) == _demo_steps.STEPS
    assert len({step.title for step in lesson.LESSON}) == len(keys)


def test_needs_match_what_each_step_uses() -> None:
    """Query steps need nothing but the face search (enrolled faces), the one-way steps a GS
    node, the attacks a classroom gateway."""
    needs = {step.key: step.needs for step in lesson.LESSON}
    assert all(needs[key] == frozenset() for key in QUERY_STEPS if key != "biometric")
    assert needs["biometric"] == {"biometrics"}
    assert all(needs[key] == {"gs"} for key in ("diffusion", "notice", "border-check", "withdraw"))
    assert all(needs[f"attack:{name}"] == {"attacks"} for name in ATTACKS)
    assert [step.attack for step in lesson.LESSON if step.attack] == list(ATTACKS)


@pytest.mark.parametrize("step", lesson.LESSON, ids=lambda s: s.key)
def test_every_caption_fits_a_projector_and_says_something(step: lesson.LessonStep) -> None:
    """Filled with short values, a caption stays under the projector's limit; the trainer
    has one or two sentences to say."""
    filled = lesson.caption(step, **dict.fromkeys(lesson.fields(step), "XX"))
    assert len(filled) <= lesson.MAX_CAPTION - 20, filled
    assert "{" not in filled
    assert "}" not in filled
    assert 1 <= len(re.findall(r"[.!?](?:\s|$)", step.say)) <= 2, step.say


def test_caption_fills_the_named_fields() -> None:
    """caption() puts each value where its field is, as often as it appears."""
    step = lesson.LESSON[lesson.index_of("tampered")]
    assert lesson.fields(step) == {"asker", "to"}
    text = lesson.caption(step, asker="FR", to="DE")
    assert text.startswith("Someone on the path flips one bit of a sealed query from FR to DE.")
    assert "DE's node refuses it" in text


def test_caption_refuses_a_missing_or_unknown_field() -> None:
    """A step that does not fill its caption, or fills a field it has not, is an error."""
    step = lesson.LESSON[lesson.index_of("document")]
    with pytest.raises(ValueError, match=r"missing \['issuer', 'to'\]"):
        lesson.caption(step, asker="FR")
    with pytest.raises(ValueError, match=r"not in the caption \['colour'\]"):
        lesson.caption(step, asker="FR", issuer="DE", to="DE", colour="red")


def test_a_malformed_step_is_refused_when_written() -> None:
    """Unknown needs, a missing part, or a field with a format spec fail at import time."""
    with pytest.raises(ValueError, match="unknown needs"):
        lesson.LessonStep("x", "X", "caption", "Say it.", frozenset({"root"}))
    with pytest.raises(ValueError, match="required"):
        lesson.LessonStep("x", "X", "", "Say it.")
    with pytest.raises(ValueError, match="plain name"):
        lesson.LessonStep("x", "X", "took {ms:.1f} ms", "Say it.")


def test_index_of_names_the_missing_step() -> None:
    """index_of finds a step by key, and says which key it lacks."""
    assert lesson.index_of("notice") == 7
    with pytest.raises(KeyError, match="no step 'teleport'"):
        lesson.index_of("teleport")


def test_every_step_has_code_that_runs_it() -> None:
    """Every key is a query step of the demo's, a one-way step or an attack: none is left
    without code (a new script step without code would fail in front of the room)."""
    posts = {name.removeprefix("step_").replace("_", "-") for name in dir(_demo_posts)}
    query_modules = (_demo_steps.Demo, _demo_bio, _demo_failures)
    for step in lesson.LESSON:
        assert (
            (step.key in QUERY_STEPS and any(hasattr(m, f"step_{step.key}") for m in query_modules))
            or step.key in posts
            or step.attack is not None
        ), step.key


def test_a_skipped_step_neither_passes_nor_fails() -> None:
    """A skipped step has not run: not passed, and no checks to fail."""
    step = Step("notice", "A red notice", 8, skipped=lesson.NEEDS["gs"])
    assert not step.ran
    assert not step.passed
    assert step.numbered == "8. A red notice"
    ran = Step("document", "Passport check", 1)
    assert not ran.passed  # no check yet
    ran.check("a hit", True)
    assert ran.passed


def test_shown_names_only_views_the_classroom_draws() -> None:
    """Extra lines go to the requester, gateway, recipient or reply view, nowhere else."""
    assert Shown(asker="FR", to="DE", extra={"reply": [("answer", "hit")]}).extra
    with pytest.raises(ValueError, match="no view named"):
        Shown(asker="FR", to="DE", extra={"wire": []})


def test_the_trainers_guide_has_every_step() -> None:
    """The guide lists each step in order with its caption's wording and what to say."""
    guide = lesson.trainer_guide()
    for number, step in enumerate(lesson.LESSON, 1):
        assert f"{number}. **{step.title}**" in guide
        assert f"   - Say: {step.say}" in guide
    assert "A border officer of *asker* checks a passport issued by *issuer*." in guide
    assert "*asker* searches *owner*'s faces" in guide
    assert guide.count("(needs a GS node)") == 4
    assert guide.count("(needs a classroom-mode gateway)") == 5
    assert guide.count("(needs enrolled faces)") == 1
    assert lesson.NEED_NAMES.keys() == lesson.NEEDS.keys()
