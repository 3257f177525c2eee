"""The report's ``biometric`` table: how a run's fingerprint and face searches fared.

A biometric search is right or wrong by degrees, not exactly: the owner answers a ranked
candidate list above a threshold, so a planted subject may rank second, or miss, and a
stranger may draw a candidate (docs/biometrics.md measures the rates). The built-in
checks' exact "planted records hit" and "no hit where the bureau holds nothing" therefore
leave biometric searches to this table, which counts per modality: answered planted
searches, whether the subject was in the list and first (``rank1``), answered searches of
strangers and how many drew a candidate anyway, and the confirmations that released the
planted subject's person. A scenario's checks then say what it expects
(``biometric.face.rank1 >= 0.9``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ncbsim import biosearch
from ncbsim.client import Outcome
from ncbsim.simulations.outcomes import ANSWERED, Sent
from ncbsim.simulations.schema import BIOMETRIC_KINDS

__all__ = ["is_biometric", "summary"]


def is_biometric(sent: Sent) -> bool:
    """Whether ``sent`` was a biometric search (its step 2 a confirmation)."""
    return sent.planned.kind in BIOMETRIC_KINDS


def summary(items: Sequence[Sent], kinds: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The ``biometric`` table for ``kinds`` (the modalities the scenario sends)."""
    table: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        searches = found = first = strangers = false_candidates = confirmed = 0
        for s in (s for s in items if s.planned.kind == kind):
            for answer in s.answers:
                if answer.outcome.value not in ANSWERED:
                    continue
                planted = s.planned.expect_hit.get(answer.bureau)
                refs = [c.ref for c in biosearch.candidates(answer)]
                if planted is None:
                    strangers += 1
                    false_candidates += bool(refs)
                    continue
                searches += 1
                found += planted in refs
                first += bool(refs) and refs[0] == planted
            fetched = s.fetched
            if (
                fetched is not None
                and fetched.outcome == Outcome.RECORD
                and s.planned.expect_hit.get(fetched.bureau) is not None
            ):
                confirmed += 1
        table[kind] = {
            "searches": searches,
            "found": found,
            "first": first,
            "rank1": round(first / searches, 4) if searches else 0.0,
            "strangers": strangers,
            "false_candidates": false_candidates,
            "confirmed": confirmed,
        }
    return table
