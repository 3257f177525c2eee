"""What a simulation run observed: one record per query and per fault, their tallies, and
the whole run's result (:class:`RunResult`).

The engine fills these as it runs; :mod:`ncbsim.simulations.report` and
:mod:`ncbsim.simulations.plot` read them. They hold metadata only (labels, bureau codes,
outcomes, times), never a query's contents or an answer's record.

Times are seconds since the start of traffic (``sent_s``, ``done_s``, ``start_s``,
``end_s``); latencies are milliseconds.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ncbsim.client import Answer, Outcome
from ncbsim.events import Event
from ncbsim.simulations import run_events
from ncbsim.simulations.schema import COUNT_KEYS, LATENCY_KEYS
from ncbsim.simulations.traffic import Planned

__all__ = [
    "ANSWERED",
    "REFUSED",
    "AnswerRecord",
    "FaultRecord",
    "QueryRecord",
    "counts",
    "latency",
]

#: The outcomes (``ncbsim.client.Outcome`` values) that mean the bureau did answer.
ANSWERED = frozenset({"hit", "no_hit", "record", "not_found"})
REFUSED = "refused"
"""A pair refused PERMISSION_DENIED: a user's query beyond the rights its bureau signed,
refused by the gateway or by the owner (docs/users.md). Expected by policy: not failed."""
_HIT = frozenset({"hit", "record"})
_NO_HIT = frozenset({"no_hit", "not_found"})


@dataclass(frozen=True, slots=True)
class AnswerRecord:
    """How one bureau answered one query."""

    bureau: str
    outcome: str  # outcome_of: hit no_hit record not_found error no_answer failed refused
    latency_ms: float


@dataclass(frozen=True, slots=True)
class QueryRecord:
    """One query sent during the run, and every bureau's answer to it."""

    label: str  # "document-12", "fetch-12", "multi-3", or an explicit event id
    kind: str  # document | person | vehicle | multi | fetch
    requester: str  # a bureau, or one of its users (FR/x)
    sent_s: float  # seconds since traffic start
    done_s: float
    latency_ms: float
    answers: tuple[AnswerRecord, ...]
    trace_id: str = ""  # its trace (32 hex digits) when the run was traced, else ""


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """One fault the timeline applied, and when it was healed."""

    id: str
    kind: str
    bureaus: tuple[str, ...]
    direction: str
    params: dict[str, float]
    start_s: float
    end_s: float | None  # None: never healed (until the end of the run)
    settle_s: float = 2.0


def outcome_of(answer: Answer) -> str:
    """How the report counts one answer: its outcome's value, or :data:`REFUSED` for a
    call that failed PERMISSION_DENIED (the gateway's or the owner's refusal of a user)."""
    if answer.outcome == Outcome.FAILED and "PERMISSION_DENIED" in answer.detail:
        return REFUSED
    return answer.outcome.value


def counts(answers: Iterable[AnswerRecord]) -> dict[str, int]:
    """Tally answers: each (query, recipient) pair counts once (unit: pairs).

    ``sent`` is the number of pairs; ``hit`` counts hit and record (a step-2 fetch that
    returned the record), ``no_hit`` counts no_hit and not_found, ``answered`` is their
    sum, ``refused`` counts :data:`REFUSED`, and ``failed`` is every other outcome but
    no_answer (error and failed).
    """
    sent = hit = no_hit = no_answer = refused = 0
    for answer in answers:
        sent += 1
        if answer.outcome in _HIT:
            hit += 1
        elif answer.outcome in _NO_HIT:
            no_hit += 1
        elif answer.outcome == "no_answer":
            no_answer += 1
        elif answer.outcome == REFUSED:
            refused += 1
    values = {
        "sent": sent,
        "answered": hit + no_hit,
        "hit": hit,
        "no_hit": no_hit,
        "no_answer": no_answer,
        "failed": sent - hit - no_hit - no_answer - refused,
        "refused": refused,
    }
    return {key: values[key] for key in COUNT_KEYS}  # the schema's keys, in its order


def _percentile(values: Sequence[float], q: int) -> float:
    if len(values) == 1:
        return round(values[0], 2)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 2)


def latency(values: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 and max of ``values`` in milliseconds, rounded to 2 decimals.

    Percentiles are inclusive (interpolated between samples); all are 0.0 when there are
    no values.
    """
    if not values:
        return dict.fromkeys(LATENCY_KEYS, 0.0)
    return {  # the schema's keys, in its order
        key: round(max(values), 2) if key == "max" else _percentile(values, int(key[1:]))
        for key in LATENCY_KEYS
    }


@dataclass(slots=True)
class Sent:
    """One planned query and what came back (the ground truth checks compare them)."""

    planned: Planned
    answers: list[Answer]
    fetched: Answer | None = None
    sent_s: float = 0.0  # seconds after traffic start
    done_s: float = 0.0


@dataclass(slots=True)
class RunResult:
    """Everything a run observed, for the checks, the report and the plot."""

    queries: list[QueryRecord] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    recorder: run_events.Recorder = field(default_factory=run_events.Recorder)
    """The simulator's own events (party sim and its clients)."""
    observed: list[Event] = field(default_factory=list)
    """The network's own events, observed during the traffic."""
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    run_end_s: float = 0.0
    message_probes: list[str] = field(default_factory=list)
    """Unique strings of the posts' texts (the gateway's files must hold none)."""

    @property
    def timeline(self) -> list[Event]:
        """Every event of the run, the simulator's and the network's (not sorted)."""
        return [*self.recorder.events, *self.observed]
