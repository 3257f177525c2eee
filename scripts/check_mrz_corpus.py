"""Check generated passports and VINs with tools nobody here wrote: ``mrz`` and ``vininfo``.

Usage: python scripts/check_mrz_corpus.py [--bureaus DE,FR,...] [--documents N]
                                          [--vehicles N] [--per-bureau K] [--seed S]

1. Generates the records of several bureaus with :func:`ncbsim.node.datagen.generate` (seed S) in
   a temporary directory.
2. Every passport MRZ goes through the ``mrz`` package's ``TD3CodeChecker`` (warnings do
   not count) and through :func:`ncbsim.node.mrz.validate_td3`; both must accept it.
3. Corruption corpus: K passports per bureau drawn with the seed, the first passport with
   an unspecified sex, and the ICAO specimen. Every single-character substitution at every
   one of their 88 positions (36 per position) is judged by both checkers. Where they
   disagree, the disagreement is sorted into one of :data:`CLASSES`, each a documented
   difference between the ``mrz`` package and Doc 9303; anything else is unclassified.
4. Every VIN goes through ``vininfo``: it must parse (ISO 3779 structure), and where
   vininfo checks a check digit (a North American WMI) the check digit must pass. Since
   :func:`ncbsim.node.vin.make_vin` writes the North American check digit everywhere, the count
   of other VINs that pass it is printed too.

Prints the counts and exits 1 if a generated passport or VIN fails, if our validator
rejects a generated passport, or if a disagreement is unclassified.
tests/node/test_independent_checks.py runs the same functions on a smaller corpus, and
docs/records.md quotes the counts of the default run.

``mrz`` (GPLv3) and ``vininfo`` are development dependencies: this script and that test
are their only users; nothing in the simulator imports them.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mrz.checker.td3 import TD3CodeChecker, is_code
from vininfo import Vin
from vininfo.exceptions import ValidationError

from ncbsim.node.datagen import generate
from ncbsim.node.mrz import td3_problems

BUREAUS = ("DE", "FR", "GB", "US", "RU", "GR", "GE", "AM", "KR", "CN", "JP", "NG", "BR", "IN")
"""Default bureaus: Latin, Cyrillic, Greek, Georgian, Armenian, Hangul and CJK names."""

SPECIMEN = (
    "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<",
    "L898902C36UTO7408122F1204159ZE184226B<<<<<10",
)
"""ICAO Doc 9303 Part 4's specimen passport, always part of the corruption corpus."""

MRZ_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ<"

Lines = tuple[str, str]


# ---------------------------------------------------------------- the two checkers


def mrz_package(lines: Lines, warnings: Counter[str] | None = None) -> tuple[bool, tuple[str, ...]]:
    """The ``mrz`` package's verdict and the names of the checks it failed.

    Its warnings (a name without a secondary identifier, a full name field that may be
    truncated, a word that looks like a title) do not count against the MRZ; they are
    tallied in ``warnings`` if given.
    """
    checker = TD3CodeChecker("\n".join(lines))
    if warnings is not None:
        warnings.update(str(warning) for warning in checker.report.warnings)
    return bool(checker), tuple(str(name) for name, _ in checker.report.falses)


# ---------------------------------------------------------------- disagreement classes


@dataclass(frozen=True)
class Judged:
    """One corrupted MRZ and what each checker made of it."""

    lines: Lines
    position: int
    """0-87: line 1 is 0-43, line 2 is 44-87."""
    ours: tuple[str, ...]
    """What ncbsim.node.mrz.td3_problems found wrong (empty: accepted)."""
    theirs: tuple[str, ...]
    """The checks the mrz package failed (empty: accepted)."""


def _number_has_inner_filler(j: Judged) -> bool:
    number = j.lines[1][0:9]
    return (
        not j.theirs
        and j.ours == ("document number",)
        and number[0] != "<"
        and "<" in number.rstrip("<")
    )


def _code_second_character(j: Judged) -> bool:
    return not j.theirs and j.ours == ("document code",) and j.lines[0][1].isdigit()


def _state_code_only_mrz_lists(j: Judged) -> bool:
    codes = {"issuing state": j.lines[0][2:5], "nationality": j.lines[1][10:13]}
    return (
        not j.theirs
        and bool(j.ours)
        and all(problem in codes for problem in j.ours)
        and all(is_code(codes[problem].replace("<", "")) for problem in j.ours)
    )


def _state_code_only_9303_lists(j: Judged) -> bool:
    codes = {"valid country code": j.lines[0][2:5], "valid nationality code": j.lines[1][10:13]}
    return (
        not j.ours
        and bool(j.theirs)
        and all(name in codes for name in j.theirs)
        and not any(is_code(codes[name].replace("<", "")) for name in j.theirs)
    )


CLASSES: dict[str, tuple[str, Callable[[Judged], bool]]] = {
    "number-inner-filler": (
        "we reject, mrz accepts: a filler between the characters of the document number "
        "(L8989<2C3). Doc 9303 left-aligns a field's data and pads it with fillers on the "
        "right; the mrz package only refuses a leading filler.",
        _number_has_inner_filler,
    ),
    "code-second-character": (
        "we reject, mrz accepts: a digit as the second character of the document code "
        "(P1). Doc 9303 Part 4 allows a letter or the filler there; the mrz package "
        "checks only the first character.",
        _code_second_character,
    ),
    "state-code-only-mrz-lists": (
        "we reject, mrz accepts: a state code in the mrz package's list but not in ours "
        "(ISO 3166-1 alpha-3 and Doc 9303 Part 3's own codes): GB< (mrz lists the United "
        "Kingdom as GB beside GBR; its 9303 code is GBR), INP (INTERPOL's 9303 code is "
        "XPO), ANT and NTZ (withdrawn from ISO 3166-1 in 2010 and 1993).",
        _state_code_only_mrz_lists,
    ),
    "state-code-only-9303-lists": (
        "we accept, mrz rejects: a Doc 9303 Part 3 code that the mrz package's list lacks: "
        "XPO (INTERPOL), XXC, XCE, XES, XMP.",
        _state_code_only_9303_lists,
    ),
}
"""Every known way the two checkers legitimately disagree: name -> (why, test)."""


def classify(judged: Judged) -> str:
    """The class of a disagreement, or ``"unclassified"``."""
    for name, (_, matches) in CLASSES.items():
        if matches(judged):
            return name
    return "unclassified"


# ---------------------------------------------------------------- the corpus


def corruptions(lines: Lines) -> Iterator[tuple[int, Lines]]:
    """Every single-character substitution of ``lines``: 88 positions x 36 characters."""
    text = lines[0] + lines[1]
    for position, old in enumerate(text):
        for new in MRZ_CHARS:
            if new != old:
                mutated = text[:position] + new + text[position + 1 :]
                yield position, (mutated[:44], mutated[44:])


@dataclass
class MrzCounts:
    """What the MRZ checks found."""

    passports: int = 0
    rejected_by_mrz: list[Lines] = field(default_factory=list)
    rejected_by_us: list[Lines] = field(default_factory=list)
    warnings: Counter[str] = field(default_factory=Counter)
    """The mrz package's warnings about generated passports, which do not fail them."""
    sampled: int = 0
    corruptions: int = 0
    both_accept: int = 0
    both_reject: int = 0
    disagreements: Counter[str] = field(default_factory=Counter)
    unclassified: list[Judged] = field(default_factory=list)

    @property
    def agreements(self) -> int:
        """Corruptions both checkers judged alike."""
        return self.both_accept + self.both_reject


def check_passports(passports: Sequence[Lines], counts: MrzCounts) -> None:
    """Both checkers must accept every generated passport."""
    for lines in passports:
        counts.passports += 1
        if not mrz_package(lines, counts.warnings)[0]:
            counts.rejected_by_mrz.append(lines)
        if td3_problems(lines):
            counts.rejected_by_us.append(lines)


def check_corruptions(sample: Sequence[Lines], counts: MrzCounts) -> None:
    """Judge every single-character corruption of ``sample`` with both checkers."""
    counts.sampled += len(sample)
    for original in sample:
        for position, lines in corruptions(original):
            counts.corruptions += 1
            ours = tuple(td3_problems(lines))
            theirs_ok, theirs = mrz_package(lines)
            if theirs_ok != (not ours):
                judged = Judged(lines, position, ours, theirs if not theirs_ok else ())
                name = classify(judged)
                counts.disagreements[name] += 1
                if name == "unclassified":
                    counts.unclassified.append(judged)
            elif theirs_ok:
                counts.both_accept += 1
            else:
                counts.both_reject += 1


def corruption_sample(by_bureau: dict[str, list[Lines]], per_bureau: int, seed: int) -> list[Lines]:
    """``per_bureau`` passports of each bureau, the first unspecified sex, and the specimen."""
    rng = random.Random(f"mrz-corpus:{seed}")
    sample = [SPECIMEN]
    for bureau in sorted(by_bureau):
        sample.extend(rng.sample(by_bureau[bureau], min(per_bureau, len(by_bureau[bureau]))))
    unspecified = (lines for mrzs in by_bureau.values() for lines in mrzs if lines[1][20] == "<")
    first = next(unspecified, None)
    if first is not None and first not in sample:
        sample.append(first)
    return sample


# ---------------------------------------------------------------- VINs


@dataclass
class VinCounts:
    """What vininfo found."""

    vins: int = 0
    malformed: list[str] = field(default_factory=list)
    north_american: int = 0
    check_digit_failures: list[str] = field(default_factory=list)
    other_regions: int = 0
    other_check_digit_passes: int = 0
    year_mismatches: list[str] = field(default_factory=list)


def check_vins(vehicles: Sequence[tuple[str, int]], counts: VinCounts) -> None:
    """Every VIN parses; North American ones pass vininfo's check digit; years decode."""
    for vin, year in vehicles:
        counts.vins += 1
        try:
            parsed = Vin(vin)
        except ValidationError:
            counts.malformed.append(vin)
            continue
        passes = parsed.verify_checksum()
        if parsed.region == "North America":
            counts.north_american += 1
            if not passes:
                counts.check_digit_failures.append(vin)
        else:
            counts.other_regions += 1
            counts.other_check_digit_passes += passes
        if year not in parsed.years:
            counts.year_mismatches.append(vin)


# ---------------------------------------------------------------- generating


def generated(
    workdir: Path, bureaus: Sequence[str], *, documents: int, vehicles: int, seed: int
) -> tuple[dict[str, list[Lines]], list[tuple[str, int]]]:
    """The passports (by bureau) and the (VIN, model year) pairs of freshly generated bureaus."""
    passports: dict[str, list[Lines]] = {}
    vins: list[tuple[str, int]] = []
    for bureau in bureaus:
        path = workdir / f"{bureau}.sqlite"
        generate(
            path, bureau, seed=seed, documents=documents, persons=0, vehicles=vehicles, workers=1
        )
        conn = sqlite3.connect(path)
        try:
            rows = conn.execute("SELECT mrz FROM documents WHERE mrz IS NOT NULL ORDER BY id")
            passports[bureau] = [_lines(str(mrz)) for (mrz,) in rows]
            vins.extend(conn.execute("SELECT vin, year FROM vehicles ORDER BY id"))
        finally:
            conn.close()
    return passports, vins


def _lines(mrz: str) -> Lines:
    line1, line2 = mrz.split("\n")
    return line1, line2


def run(
    bureaus: Sequence[str], *, documents: int, vehicles: int, per_bureau: int, seed: int
) -> tuple[MrzCounts, VinCounts]:
    """Generate, then check every passport, the corruption corpus and every VIN."""
    with tempfile.TemporaryDirectory(prefix="mrz-corpus-") as tmp:
        by_bureau, vins = generated(
            Path(tmp), bureaus, documents=documents, vehicles=vehicles, seed=seed
        )
    mrz_counts, vin_counts = MrzCounts(), VinCounts()
    check_passports([lines for mrzs in by_bureau.values() for lines in mrzs], mrz_counts)
    check_corruptions(corruption_sample(by_bureau, per_bureau, seed), mrz_counts)
    check_vins(vins, vin_counts)
    return mrz_counts, vin_counts


def report(mrz_counts: MrzCounts, vin_counts: VinCounts) -> str:
    """The counts as printed."""
    m, v = mrz_counts, vin_counts
    lines = [
        f"generated passports: {m.passports}",
        f"  rejected by the mrz package: {len(m.rejected_by_mrz)}",
        f"  rejected by ncbsim.node.mrz.validate_td3: {len(m.rejected_by_us)}",
        f"  mrz package warnings (not failures): {dict(sorted(m.warnings.items()))}",
        f"corruptions: {m.corruptions} ({m.sampled} MRZs x 88 positions x 36 characters)",
        f"  agreements: {m.agreements} (both reject {m.both_reject}, both accept {m.both_accept})",
        f"  disagreements: {sum(m.disagreements.values())}",
    ]
    lines += [f"    {name}: {m.disagreements[name]}" for name in [*CLASSES, "unclassified"]]
    lines += [
        f"VINs: {v.vins}",
        f"  malformed for vininfo: {len(v.malformed)}",
        f"  North American WMI: {v.north_american}, check digit failures: "
        f"{len(v.check_digit_failures)}",
        f"  other regions (structure only): {v.other_regions}, of which pass the check digit "
        f"anyway: {v.other_check_digit_passes}",
        f"  model year not decoded: {len(v.year_mismatches)}",
    ]
    for judged in m.unclassified[:10]:
        lines.append(f"unclassified: position {judged.position}: {judged.ours} / {judged.theirs}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the checks with the command line's sizes; 1 if anything failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bureaus", default=",".join(BUREAUS), help="alpha-2 codes")
    parser.add_argument("--documents", type=int, default=1000, help="documents per bureau")
    parser.add_argument("--vehicles", type=int, default=1000, help="vehicles per bureau")
    parser.add_argument("--per-bureau", type=int, default=3, help="MRZs per bureau to corrupt")
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args(argv)
    mrz_counts, vin_counts = run(
        args.bureaus.split(","),
        documents=args.documents,
        vehicles=args.vehicles,
        per_bureau=args.per_bureau,
        seed=args.seed,
    )
    print(report(mrz_counts, vin_counts))
    failed = (
        mrz_counts.rejected_by_mrz
        or mrz_counts.rejected_by_us
        or mrz_counts.unclassified
        or vin_counts.malformed
        or vin_counts.check_digit_failures
        or vin_counts.year_mismatches
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
