"""Generated records checked by tools nobody here wrote: the ``mrz`` and ``vininfo`` packages.

The corpus, with seed 15: bureaus DE, GB, RU, GR, KR and US with 1,000 documents and
1,000 vehicles each, which gives 5,668 passports and 6,000 VINs. The corruption corpus is
8 MRZs (one per bureau, the first holder of unspecified sex, and the ICAO specimen), each
changed one character at a time at all 88 positions, 36 ways each: 25,344 corruptions.

At the time of writing, ``validate_td3`` and the ``mrz`` package agreed on 25,253 of them
and disagreed on 91, each disagreement for a documented reason (see
``scripts/check_mrz_corpus.py``'s ``CLASSES``):

- 80 ``code-second-character``: a digit as the second letter of the document code (P1);
- 9 ``number-inner-filler``: a filler inside the document number (L8989<2C3);
- 2 ``state-code-only-mrz-lists``: ``GB<`` for ``GBR``.

Of the 6,000 VINs, 549 have a North American WMI; all pass vininfo's check digit.
``python scripts/check_mrz_corpus.py`` runs a larger corpus; docs/records.md has its counts.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ncbsim.node.mrz import td3_problems

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_mrz_corpus.py"
BUREAUS = ("DE", "GB", "RU", "GR", "KR", "US")
POSITIONS, ALTERNATIVES = 88, 36


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_mrz_corpus", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


corpus = _script()


@pytest.fixture(scope="module")
def counts() -> tuple[Any, Any]:
    """MRZ and VIN counts of the corpus described in the module docstring."""
    result: tuple[Any, Any] = corpus.run(
        BUREAUS, documents=1000, vehicles=1000, per_bureau=1, seed=15
    )
    return result


def test_the_mrz_package_accepts_every_generated_passport(counts: tuple[Any, Any]) -> None:
    """Every generated passport passes the mrz package's TD3 checker and validate_td3."""
    mrz_counts, _ = counts
    assert mrz_counts.passports > 5000
    assert mrz_counts.rejected_by_mrz == []
    assert mrz_counts.rejected_by_us == []


def test_validate_td3_agrees_with_the_mrz_package_on_every_corruption(
    counts: tuple[Any, Any],
) -> None:
    """On every one-character corruption both checkers agree, or differ for a known reason."""
    mrz_counts, _ = counts
    assert mrz_counts.sampled == len(BUREAUS) + 2  # the specimen and an unspecified sex
    assert mrz_counts.corruptions == mrz_counts.sampled * POSITIONS * ALTERNATIVES
    assert mrz_counts.unclassified == []
    assert set(mrz_counts.disagreements) <= set(corpus.CLASSES)
    # Each sampled MRZ has P< or a letter second: the ten digits there are the only changes
    # of the document code the mrz package lets through.
    assert mrz_counts.disagreements["code-second-character"] == mrz_counts.sampled * 10
    assert mrz_counts.agreements > 0.99 * mrz_counts.corruptions


def test_corruptions_of_the_specimen_give_these_counts() -> None:
    """The specimen's 3,168 corruptions: 11 disagreements, both of documented classes."""
    mrz_counts = corpus.MrzCounts()
    corpus.check_corruptions([corpus.SPECIMEN], mrz_counts)
    assert mrz_counts.corruptions == 3168
    assert (mrz_counts.both_accept, mrz_counts.both_reject) == (667, 2490)
    assert dict(mrz_counts.disagreements) == {"code-second-character": 10, "number-inner-filler": 1}


def _specimen_with(line: int, start: int, text: str) -> tuple[str, str]:
    lines = list(corpus.SPECIMEN)
    lines[line] = lines[line][:start] + text + lines[line][start + len(text) :]
    return lines[0], lines[1]


@pytest.mark.parametrize(
    ("line", "start", "text", "expected"),
    [
        (1, 0, "L8989<2C3", "number-inner-filler"),
        (0, 1, "1", "code-second-character"),
        (0, 2, "GB<", "state-code-only-mrz-lists"),
        (1, 10, "INP", "state-code-only-mrz-lists"),
        (0, 2, "XPO", "state-code-only-9303-lists"),
        (1, 10, "XXC", "state-code-only-9303-lists"),
    ],
)
def test_each_disagreement_class_is_what_it_says(
    line: int, start: int, text: str, expected: str
) -> None:
    """Each class of disagreement is recognised from one hand-made example of it."""
    lines = _specimen_with(line, start, text)
    ours = tuple(td3_problems(lines))
    theirs_ok, theirs = corpus.mrz_package(lines)
    assert theirs_ok != (not ours)  # they disagree
    judged = corpus.Judged(lines, start + 44 * line, ours, theirs)
    assert corpus.classify(judged) == expected


@pytest.mark.parametrize(
    ("line", "start", "text"),
    [
        (0, 5, "ERIKSSON<<ANNETT<<<<<<<<<<<<<<<<<<<<<<C"),  # a letter after the fillers
        (0, 5, "SMITH<<RUTH<<Z<<<<<<<<<<<<<<<<<<<<<<<<<"),  # a third identifier
        (1, 20, "X"),  # X belongs to the visual zone, not to the MRZ
    ],
)
def test_both_checkers_reject_the_corruptions_the_issue_found(
    line: int, start: int, text: str
) -> None:
    """Broken name structures and an X sex fail both validate_td3 and the mrz package."""
    lines = _specimen_with(line, start, text)
    assert td3_problems(lines)
    assert not corpus.mrz_package(lines)[0]


def test_vininfo_accepts_every_generated_vin(counts: tuple[Any, Any]) -> None:
    """Every VIN parses; North American ones pass vininfo's check digit; years decode."""
    _, vin_counts = counts
    assert vin_counts.vins == 1000 * len(BUREAUS)
    assert vin_counts.malformed == []
    assert vin_counts.north_american > 0
    assert vin_counts.check_digit_failures == []
    assert vin_counts.year_mismatches == []
    # make_vin writes the North American check digit everywhere, so the rest pass it too.
    assert vin_counts.other_check_digit_passes == vin_counts.other_regions


def test_the_script_prints_its_counts_and_succeeds(capsys: pytest.CaptureFixture[str]) -> None:
    """scripts/check_mrz_corpus.py exits 0 on a small corpus and prints every count."""
    argv = ["--bureaus", "FR", "--documents", "60", "--vehicles", "20", "--per-bureau", "0"]
    code = corpus.main(argv)
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"^generated passports: [1-9][0-9]*$", out, re.MULTILINE), out
    found = re.search(r"^corruptions: ([0-9]+) \(([0-9]+) MRZs x 88 positions", out, re.MULTILINE)
    assert found, out
    assert int(found[1]) == int(found[2]) * POSITIONS * ALTERNATIVES
    assert re.search(r"^ +unclassified: 0$", out, re.MULTILINE), out
    assert re.search(r"^VINs: 20$", out, re.MULTILINE), out
