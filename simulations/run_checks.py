"""The checks every run makes of itself, whatever its scenario says: each query answered
and sent to the right place, planted records found where they are and nowhere else, the
gateway's files free of plaintext, every message delivered once (``ncbsim simulate``,
simulations/simulate.py, adds them to the scenario's own checks); and the report's
``planted`` and ``explicit`` summaries they rest on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ncbsim.client import ALL, Answer, Outcome
from ncbsim.gateway.audit import read_all
from ncbsim.simulations import biometric_report, message_report
from ncbsim.simulations.outcomes import ANSWERED, Sent, outcome_of
from ncbsim.workdir import Workdir

__all__ = [
    "Check",
    "builtin_checks",
    "explicit_outcomes",
    "message_checks",
    "multi_bureau_check",
    "planted_summary",
]


@dataclass(frozen=True, slots=True)
class Check:
    """One pass/fail statement about the run."""

    name: str
    passed: bool
    detail: str
    expect: str = ""


def _scan(folder: Path, probes: list[str]) -> list[str]:
    """Probes found anywhere in the files under ``folder`` (as text or raw bytes)."""
    needles = {p: p.encode() for p in probes if len(p) >= 6}
    found = set()
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found |= {p for p, raw in needles.items() if raw in data}
    return sorted(found)


def _answered(outcome: Outcome) -> bool:
    return outcome.value in ANSWERED


def multi_bureau_check(sent: Sequence[Sent]) -> Check | None:
    """Every query to ALL or to several bureaus came back with one row per bureau asked.

    A reply must name each recipient exactly once, whatever became of it (a gateway that
    is down makes every row ``no_answer``): a row for ``ALL`` instead, a bureau missing,
    one twice, or one not asked (the requester itself) makes it incomplete. None when the
    run sent no such query.
    """
    multis = [s for s in sent if s.planned.to == [ALL] or len(s.planned.to) > 1]
    if not multis:
        return None
    incomplete = [
        s for s in multis if sorted(a.bureau for a in s.answers) != sorted(s.planned.expect_hit)
    ]
    shown = [
        f"{s.planned.label} ({', '.join(f'{a.bureau}:{a.outcome.value}' for a in s.answers[:3])}"
        + (", ..." if len(s.answers) > 3 else "")
        + f" for {len(s.planned.expect_hit)} bureaus)"
        for s in incomplete[:3]
    ]
    return Check(
        "multi-bureau replies list every bureau",
        not incomplete,
        f"{len(multis) - len(incomplete)}/{len(multis)} complete, "
        f"{sum(len(s.answers) for s in multis)} bureau answers"
        + (f"; incomplete: {'; '.join(shown)}" if shown else ""),
    )


def _found(ref: str, answer: Answer) -> bool:
    """Whether ``answer`` found the planted record ``ref``: among its matches, or a hit
    whose references are all withheld (a hit-only user's answer: docs/users.md)."""
    refs = {m.ref for m in answer.matches}
    return ref in refs or (answer.outcome == Outcome.HIT and refs == {""})


def builtin_checks(sent: list[Sent], workdir: Path) -> list[Check]:
    """What every run must show, whatever its faults: no wrong answer, no plaintext leak.

    Availability (no-answer) is the scenario's own checks' business: a partitioned bureau
    rightly does not answer. An answer that came back, though, must be right, and must be
    in the gateway's audit, even if the gateway was SIGKILLed right after (it commits an
    answer's row before the answer leaves: ncbsim.auditlog).
    """
    checks: list[Check] = []
    missed, false_hits, unanswered_planted, planted_total = [], [], 0, 0
    for s in sent:
        if biometric_report.is_biometric(s):  # right by degrees: see the report's biometric
            continue
        for a in s.answers:
            planted = s.planned.expect_hit.get(a.bureau)
            if planted is not None:
                planted_total += 1
                if not _answered(a.outcome):
                    unanswered_planted += 1
                elif not _found(planted, a):
                    missed.append(f"{s.planned.label}@{a.bureau}")
            elif a.outcome == Outcome.HIT:
                false_hits.append(f"{s.planned.label}@{a.bureau}")
    answered = planted_total - unanswered_planted
    checks.append(
        Check(
            "planted records hit when answered",
            not missed and answered > 0,
            f"{answered - len(missed)}/{answered} answered planted queries hit"
            + (f", {unanswered_planted} not answered" if unanswered_planted else "")
            + (f"; missed {missed[:5]}" if missed else ""),
        )
    )
    checks.append(
        Check(
            "no hit where the bureau holds nothing",
            not false_hits,
            f"{len(false_hits)} wrong" + (f": {false_hits[:5]}" if false_hits else ""),
        )
    )
    fetches = [
        s
        for s in sent
        if s.fetched is not None
        and _answered(s.fetched.outcome)
        and not biometric_report.is_biometric(s)
    ]
    good = [
        s
        for s in fetches
        if s.fetched is not None
        and s.fetched.outcome == Outcome.RECORD
        and s.fetched.response is not None
        and getattr(
            s.fetched.response.record, s.fetched.response.record.WhichOneof("record") or ""
        ).ref
        == s.planned.expect_hit[s.fetched.bureau]
    ]
    if fetches:
        checks.append(
            Check(
                "step-2 fetches returned the planted record",
                len(good) == len(fetches),
                f"{len(good)}/{len(fetches)} answered fetches",
            )
        )
    multi = multi_bureau_check(sent)
    if multi is not None:
        checks.append(multi)
    probes = [p for s in sent for p in s.planned.probes]
    leaked = _scan(Workdir(workdir).gateway.root, probes)
    checks.append(
        Check(
            "gateway files hold no plaintext",
            not leaked,
            f"{len(probes)} query strings and the canary searched in logs and audit"
            + (f"; found {leaked}" if leaked else ""),
        )
    )

    answered_ids = {a.message_id for s in sent for a in s.answers if _answered(a.outcome)}
    answered_ids |= {
        s.fetched.message_id for s in sent if s.fetched is not None and _answered(s.fetched.outcome)
    }
    delivered = {
        row.message_id
        for row in read_all(Workdir(workdir).gateway.audit)
        if row.message_id in answered_ids and row.outcome == "delivered"
    }
    checks.append(
        Check(
            "gateway audited every answered envelope",
            delivered == answered_ids,
            f"{len(delivered)}/{len(answered_ids)} answered envelopes audited as delivered",
        )
    )
    return checks


def message_checks(
    messages: dict[str, Any] | None, probes: list[str], workdir: Path
) -> list[Check]:
    """What every run that posts must show: no copy lost or processed twice, order kept
    per sender and recipient, and no post's text in the gateway's files."""
    if not messages or not messages.get("sent"):
        return []
    leaked = message_report.scan_gateway(workdir, probes)
    return [
        Check(
            "messages: nothing lost, nothing processed twice",
            messages["lost"] == 0 and messages["duplicates_processed"] == 0,
            f"{messages['recipients']} copies of {messages['sent']} posts:"
            f" {messages['delivered']} delivered, {messages['expired']} expired,"
            f" {messages['rejected']} rejected, {messages['pending']} pending,"
            f" {messages['lost']} lost, {messages['not_accepted']} not accepted;"
            f" {messages['duplicates_processed']} processed twice",
        ),
        Check(
            "messages kept their order per sender and recipient",
            messages["out_of_order"] == 0,
            f"{messages['out_of_order']} copies processed after a later post of their sender",
        ),
        Check(
            "gateway files hold no message text",
            not leaked,
            f"{len(probes)} strings of the posts (texts, notice subjects and summaries)"
            " searched in the gateway's files" + (f"; found {leaked}" if leaked else ""),
        ),
    ]


def planted_summary(sent: list[Sent]) -> dict[str, int]:
    """Answers to queries aimed at a planted record: how many, hit, missed, unanswered."""
    queries = hit = unanswered = 0
    for s in sent:
        if biometric_report.is_biometric(s):  # the report's biometric table counts it
            continue
        for a in s.answers:
            ref = s.planned.expect_hit.get(a.bureau)
            if ref is None:
                continue
            queries += 1
            if not _answered(a.outcome):
                unanswered += 1
            elif _found(ref, a):
                hit += 1
    return {
        "queries": queries,
        "hit": hit,
        "missed": queries - hit - unanswered,
        "unanswered": unanswered,
    }


def explicit_outcomes(sent: list[Sent]) -> dict[str, dict[str, Any]]:
    """The timeline's own queries: what came back, and whether it was what they expect."""
    out: dict[str, dict[str, Any]] = {}
    for s in sent:
        if not s.planned.explicit:
            continue
        outcomes = sorted({outcome_of(a) for a in s.answers})
        expected = s.planned.expect_hit
        owner = next((b for b, ref in expected.items() if ref is not None), next(iter(expected)))
        first = next((a for a in s.answers if a.bureau == owner), s.answers[0])
        outcome = outcome_of(s.fetched if s.fetched is not None else first)
        out[s.planned.label] = {
            "outcome": outcome,
            "outcomes": outcomes,
            "expected": s.planned.expect_outcome,
            "passed": s.planned.expect_outcome in (None, outcome),
        }
    return out
