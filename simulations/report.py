"""The simulation report: the ``report.json`` dict, its check view, the terminal summary,
and ``timeline.jsonl``.

:func:`build` makes the report from the run's records; simulations/schema.py defines every
key, what it counts and in which unit. Its first keys are the core schema (README, "The
simulation report"): ``scenario``, ``bureaus`` (a list of codes), ``queries`` (counts of
(query, recipient) pairs) and ``latency_ms`` (percentiles of query latencies). It adds
``requests`` (queries, each once), ``per_bureau``, ``kinds``, ``faults`` and
``slowest_queries`` (with their trace ids), then the run's timings and extra figures at
the top level. ``simulate`` adds ``checks`` and ``passed``.

Scenario checks address a bureau's figures as ``bureaus.FR.as_recipient.queries.no_answer``;
they are evaluated against :func:`check_view`, in which ``bureaus`` is the ``per_bureau``
table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from ncbsim.principal import bureau_of
from ncbsim.rights import ROLES
from ncbsim.simulations.outcomes import (
    ANSWERED,
    AnswerRecord,
    FaultRecord,
    QueryRecord,
    counts,
    latency,
)
from ncbsim.simulations.schema import COUNT_KEYS, KIND_ORDER

__all__ = ["SLOWEST", "build", "check_view", "print_summary", "slowest"]

SLOWEST = 10
"""How many of the slowest queries the report lists."""
_MAX_BUREAU_ROWS = 12
_FAULT_BUREAUS_SHOWN = 2


def _answers_from(queries: Iterable[QueryRecord], bureaus: Iterable[str]) -> list[AnswerRecord]:
    wanted = set(bureaus)
    return [a for q in queries for a in q.answers if a.bureau in wanted]


def _answers_not_from(queries: Iterable[QueryRecord], bureaus: Iterable[str]) -> list[AnswerRecord]:
    unwanted = set(bureaus)
    return [a for q in queries for a in q.answers if a.bureau not in unwanted]


def _window(answers: Sequence[AnswerRecord]) -> dict[str, Any]:
    """Counts and latency percentiles of the answers in one window of a fault."""
    return {**counts(answers), "latency_ms": latency([a.latency_ms for a in answers])}


def _recovered_s(fault: FaultRecord, queries: Sequence[QueryRecord]) -> float | None:
    """Seconds from the heal until the slowest of the fault's bureaus answered again."""
    if fault.end_s is None:
        return None
    end = fault.end_s
    worst = 0.0
    for code in fault.bureaus:
        first = min(
            (
                q.done_s
                for q in queries
                if q.sent_s >= end
                and any(a.bureau == code and a.outcome in ANSWERED for a in q.answers)
            ),
            default=None,
        )
        if first is None:
            return None
        worst = max(worst, first - end)
    return round(worst, 3)


def _fault(fault: FaultRecord, queries: Sequence[QueryRecord], run_end_s: float) -> dict[str, Any]:
    """One fault's entry: its definition and the answers in its windows.

    ``during``: answers from the fault's bureaus to queries sent and done inside the
    window; ``others``: answers from every other bureau to queries sent inside it by
    bureaus outside the fault (a cut-off requester's own queries fail by its fault);
    ``after``: answers from the fault's bureaus to queries sent once it healed and
    ``settle_s`` passed (empty if it never healed).
    """
    end = run_end_s if fault.end_s is None else fault.end_s
    during = [q for q in queries if q.sent_s >= fault.start_s and q.done_s <= end]
    inside = [
        q
        for q in queries
        if fault.start_s <= q.sent_s < end and bureau_of(q.requester) not in fault.bureaus
    ]
    after = (
        []
        if fault.end_s is None
        else [q for q in queries if q.sent_s >= fault.end_s + fault.settle_s]
    )
    return {
        "kind": fault.kind,
        "bureaus": list(fault.bureaus),
        "direction": fault.direction,
        "params": dict(fault.params),
        "start_s": round(fault.start_s, 3),
        "end_s": None if fault.end_s is None else round(fault.end_s, 3),
        "settle_s": round(fault.settle_s, 3),
        "during": _window(_answers_from(during, fault.bureaus)),
        "others": _window(_answers_not_from(inside, fault.bureaus)),
        "after": _window(_answers_from(after, fault.bureaus)),
        "recovered_s": _recovered_s(fault, queries),
    }


def _kind_key(kind: str) -> tuple[int, str]:
    return (KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER), kind)


def _stats(queries: Sequence[QueryRecord]) -> dict[str, Any]:
    """``requests``, pair ``queries`` counts and per-query ``latency_ms`` of some queries."""
    return {
        "requests": len(queries),
        "queries": counts(a for q in queries for a in q.answers),
        "latency_ms": latency([q.latency_ms for q in queries]),
    }


def slowest(queries: Sequence[QueryRecord], n: int = SLOWEST) -> list[dict[str, Any]]:
    """The ``n`` slowest queries, slowest first: what they were, who they went to, how
    long they took, what came back, and their trace id (null when the run was not traced),
    so an engineer can open the worst ones (docs/traces.md)."""
    ranked = sorted(queries, key=lambda q: (-q.latency_ms, q.sent_s))[:n]
    rows = []
    for q in ranked:
        outcomes = {a.outcome for a in q.answers}
        rows.append(
            {
                "label": q.label,
                "kind": q.kind,
                "requester": q.requester,
                "recipients": [a.bureau for a in q.answers],
                "latency_ms": q.latency_ms,
                "outcome": outcomes.pop() if len(outcomes) == 1 else "mixed",
                "sent_s": round(q.sent_s, 3),
                "trace_id": q.trace_id or None,
            }
        )
    return rows


def build(
    *,
    scenario: str,
    bureaus: Sequence[str],
    queries: Sequence[QueryRecord],
    faults: Sequence[FaultRecord],
    run_end_s: float,
    timings: dict[str, float],
    extra: dict[str, Any],
    kinds: Sequence[str] = (),
    users: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The run's report, without ``checks`` and ``passed`` (the caller adds those).

    simulations/schema.py defines every key and its unit. In order: ``scenario``,
    ``bureaus`` (codes), ``queries`` (counts of (query, recipient) pairs), ``latency_ms``
    (of every query), ``requests`` (queries, each once), ``per_bureau`` (for each bureau:
    ``as_recipient``, the pairs sent to it and the latency of its answers, and
    ``as_requester``, the queries it sent), ``kinds`` (for each of ``kinds``, the kinds
    the scenario can send, whether sent or not, and any other kind sent: its queries),
    ``faults`` (by id: definition, ``during``/``others``/``after`` counts and
    ``recovered_s``), then every entry of ``timings`` (seconds, rounded to 3 decimals)
    and of ``extra``, as given. A fault that never healed runs until ``run_end_s``.

    ``users`` (principal -> role) are the scenario's users: a user's queries count in its
    bureau's ``as_requester``, and, if there are users, in ``users`` and ``roles.<role>``.
    """
    answers = [a for q in queries for a in q.answers]
    per_bureau: dict[str, Any] = {}
    for code in bureaus:
        mine = [a for a in answers if a.bureau == code]
        per_bureau[code] = {
            "as_recipient": {
                "queries": counts(mine),
                "latency_ms": latency([a.latency_ms for a in mine]),
            },
            "as_requester": _stats([q for q in queries if bureau_of(q.requester) == code]),
        }
    sent_kinds = {q.kind for q in queries} - set(kinds)
    report: dict[str, Any] = {
        "scenario": scenario,
        "bureaus": list(bureaus),
        "queries": counts(answers),
        "latency_ms": latency([q.latency_ms for q in queries]),
        "requests": len(queries),
        "per_bureau": per_bureau,
        "kinds": {
            kind: _stats([q for q in queries if q.kind == kind])
            for kind in sorted({*kinds, *sent_kinds}, key=_kind_key)
        },
        **_users(queries, users or {}),
        "faults": {
            f.id: _fault(f, queries, run_end_s)
            for f in sorted(faults, key=lambda f: (f.start_s, f.id))
        },
        "slowest_queries": slowest(queries),
    }
    report.update({k: round(v, 3) for k, v in timings.items()})
    report.update(extra)
    return report


def _users(queries: Sequence[QueryRecord], users: Mapping[str, str]) -> dict[str, Any]:
    """``users`` and ``roles``: the queries the scenario's users sent, all and by role
    (each role of ``users``, whether it sent or not); nothing without users."""
    if not users:
        return {}
    roles = [r for r in ROLES if r in users.values()]
    return {
        "users": _stats([q for q in queries if q.requester in users]),
        "roles": {
            role: _stats([q for q in queries if users.get(q.requester) == role]) for role in roles
        },
    }


def check_view(report: dict[str, Any]) -> dict[str, Any]:
    """The report as scenario checks see it: ``bureaus`` is the ``per_bureau`` table.

    So ``bureaus.FR.as_recipient.queries.no_answer`` reads FR's figures while the report
    itself keeps ``bureaus`` as the list of codes of the core schema. A shallow copy; the
    report is not changed.
    """
    view = {k: v for k, v in report.items() if k != "per_bureau"}
    view["bureaus"] = report.get("per_bureau", {})
    return view


# ---------------------------------------------------------------------- summary


def _counts_row(c: dict[str, Any]) -> list[str]:
    """Pairs sent, answered, hit, no-answer and failed (no-hit is answered - hit; refused
    pairs are in the queries table and the users' line)."""
    return [str(c.get(k, 0)) for k in COUNT_KEYS if k not in ("no_hit", "refused")]


def _ms(value: Any) -> str:
    return str(value) if isinstance(value, int | float) else "-"


def _cell_ms(value: Any) -> str:
    """Milliseconds in at most 5 characters up to 99999 ms, to fit the tables in 80 columns."""
    if not isinstance(value, int | float):
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def _queries_table(q: dict[str, Any]) -> Table:
    table = Table(title="queries, per (query, recipient) pair", header_style="bold")
    for key in q:
        table.add_column(key.replace("_", "-"), justify="right")
    table.add_row(*(str(v) for v in q.values()))
    return table


_PAIR_COLUMNS = ("answered", "hit", "no-ans", "failed")  # no-hit = answered - hit


def _kinds_table(kinds: dict[str, Any]) -> Table:
    """Per kind: queries (each once), then its pairs and how they were answered."""
    table = Table(
        title="by kind: queries; their pairs, how they were answered; latency ms",
        header_style="bold",
        box=box.SIMPLE,
        pad_edge=False,
    )
    table.add_column("kind")
    for name in ("queries", "pairs", *_PAIR_COLUMNS, "p50", "p99"):
        table.add_column(name, justify="right")
    for kind, entry in kinds.items():
        lat = entry.get("latency_ms", {})
        table.add_row(
            kind,
            str(entry.get("requests", 0)),
            *_counts_row(entry.get("queries", {})),
            _cell_ms(lat.get("p50")),
            _cell_ms(lat.get("p99")),
        )
    return table


def _bureaus_table(per_bureau: dict[str, Any]) -> tuple[Table, int]:
    """The per-bureau table, worst first if there are too many; and how many were left out.

    In pairs: ``asked``, the pairs the bureau sent; ``to it``, the pairs sent to it, then
    how it answered them and the latency of its answers.
    """

    def received(code: str) -> dict[str, Any]:
        return dict(per_bureau[code].get("as_recipient", {}))

    codes = list(per_bureau)
    if len(codes) > _MAX_BUREAU_ROWS:

        def trouble(code: str) -> int:
            q = received(code).get("queries", {})
            return int(q.get("no_answer", 0)) + int(q.get("failed", 0))

        codes = sorted(codes, key=lambda c: (-trouble(c), c))[:_MAX_BUREAU_ROWS]
    title = "by bureau, in pairs: asked by it; sent to it, how it answered; latency ms"
    if len(codes) < len(per_bureau):
        title = f"by bureau: the {len(codes)} with most no-answer + failed (pairs sent to it)"
    table = Table(title=title, header_style="bold", box=box.SIMPLE, pad_edge=False)
    table.add_column("bureau")
    for name in ("asked", "to it", *_PAIR_COLUMNS, "p50", "p99"):
        table.add_column(name, justify="right")
    for code in codes:
        asked = per_bureau[code].get("as_requester", {}).get("queries", {})
        q, lat = received(code).get("queries", {}), received(code).get("latency_ms", {})
        table.add_row(
            code,
            str(asked.get("sent", 0)),
            *_counts_row(q),
            _cell_ms(lat.get("p50")),
            _cell_ms(lat.get("p99")),
        )
    return table, len(per_bureau) - len(codes)


def _abbreviate(bureaus: Sequence[str]) -> str:
    if len(bureaus) <= _FAULT_BUREAUS_SHOWN:
        return ",".join(bureaus)
    shown = ",".join(bureaus[:_FAULT_BUREAUS_SHOWN])
    return f"{shown} +{len(bureaus) - _FAULT_BUREAUS_SHOWN}"


def _faults_table(faults: dict[str, Any]) -> Table:
    table = Table(title="faults", header_style="bold", box=box.SIMPLE, pad_edge=False)
    table.add_column("fault", overflow="fold", min_width=10)
    table.add_column("bureaus", overflow="fold")
    table.add_column("window s", no_wrap=True)
    table.add_column("during\nok/no-ans", justify="right")
    table.add_column("others\nfailed", justify="right")
    table.add_column("after\nok", justify="right")
    table.add_column("recovered", justify="right", no_wrap=True)
    for fault_id, f in faults.items():
        start, end = f.get("start_s"), f.get("end_s")
        window = f"{start:.1f}-" + ("end" if end is None else f"{end:.1f}")
        during, others, after = f.get("during", {}), f.get("others", {}), f.get("after", {})
        recovered = f.get("recovered_s")
        table.add_row(
            f"{fault_id}\n[dim]{f.get('kind', '')}[/]",
            _abbreviate(list(f.get("bureaus", []))),
            window,
            f"{during.get('answered', 0)}/{during.get('no_answer', 0)}",
            str(others.get("failed", 0)),
            str(after.get("answered", 0)) if f.get("end_s") is not None else "-",
            "-" if recovered is None else f"{recovered:.2f} s",
        )
    return table


def _checks_table(checks: Sequence[dict[str, Any]]) -> Table:
    table = Table(title="checks", show_header=False)
    table.add_column("")
    table.add_column("check", overflow="fold")
    table.add_column("detail", overflow="fold")
    for c in checks:
        mark = "[bold green]PASS[/]" if c.get("passed") else "[bold red]FAIL[/]"
        table.add_row(mark, str(c.get("name", "")), str(c.get("detail", "")))
    return table


def _timings_lines(report: dict[str, Any]) -> list[str]:
    parts = [
        f"{label} {report[key]:.1f} s"
        for key, label in (
            ("prepare_s", "prepare"),
            ("startup_s", "start-up"),
            ("traffic_s", "traffic"),
            ("shutdown_s", "shutdown"),
        )
        if isinstance(report.get(key), int | float)
    ]
    lines = ["timings: " + ", ".join(parts)] if parts else []
    if isinstance(report.get("peak_rss_mib"), int | float):
        lines.append(f"peak memory of the process tree: {report['peak_rss_mib']:.0f} MiB")
    return lines


def _messages_lines(messages: Any) -> list[str]:
    """One-way messages: what became of the copies, delivery latency, and the notices."""
    if not isinstance(messages, dict) or not messages.get("sent"):
        return []
    m = messages
    lat = m.get("latency_ms", {})
    lines = [
        f"messages: {m.get('sent')} posts, {m.get('recipients')} copies;"
        f" {m.get('delivered')} delivered, {m.get('expired')} expired,"
        f" {m.get('rejected')} rejected, {m.get('pending')} pending, {m.get('lost')} lost;"
        f" {m.get('duplicates_processed')} processed twice, {m.get('out_of_order')} out of order",
        f"delivery ms: p50 {_ms(lat.get('p50'))}  p99 {_ms(lat.get('p99'))}"
        f"  max {_ms(lat.get('max'))}  (drained in {m.get('drain_s')} s)",
    ]
    gs = m.get("notice_copies") or {}
    if gs.get("recipients"):
        lines.append(
            f"of which GS's notice copies: {gs.get('recipients')};"
            f" {gs.get('delivered')} delivered, {gs.get('expired')} expired,"
            f" {gs.get('rejected')} rejected, {gs.get('pending')} pending, {gs.get('lost')} lost"
        )
    for notice_id, n in (m.get("notices") or {}).items():
        held = n.get("all_held_s")
        lines.append(
            f"notice {notice_id}: {'published' if n.get('published') else 'not published'},"
            f" held by {n.get('holders')} bureaus"
            + (f" {held} s after the request" if held is not None else "")
            + (f", withdrawn by {n.get('withdrawn')}" if n.get("withdrawn") else "")
        )
    return lines


def _users_lines(report: dict[str, Any]) -> list[str]:
    """The users' queries: how many, answered and refused, in all and by role."""
    users = report.get("users")
    if not isinstance(users, dict):
        return []

    def line(label: str, entry: dict[str, Any]) -> str:
        q = entry.get("queries", {})
        return (
            f"{label}: {entry.get('requests', 0)} queries, {q.get('sent', 0)} pairs;"
            f" {q.get('answered', 0)} answered, {q.get('refused', 0)} refused,"
            f" {q.get('no_answer', 0) + q.get('failed', 0)} unanswered"
        )

    lines = [line("users", users)]
    lines += [f"  {line(role, entry)}" for role, entry in report.get("roles", {}).items()]
    return lines


def print_summary(console: Console, report: dict[str, Any]) -> None:
    """Print the report for a person, readable in an 80-column terminal.

    A header, the queries table, latency, per-kind and per-bureau tables (at most 12
    bureaus: those with most no-answer + failed), the faults, the checks, the timings and
    the verdict. Sections whose data the report lacks are left out.
    """
    passed = report.get("passed")
    bureaus = report.get("bureaus", [])
    state = "" if passed is None else (" - [green]passed[/]" if passed else " - [red]failed[/]")
    console.print(f"[bold]{report.get('scenario', '?')}[/]: {len(bureaus)} bureaus{state}")
    if isinstance(report.get("requests"), int):
        pairs = report.get("queries", {}).get("sent", 0)
        console.print(f"{report['requests']} queries sent: {pairs} (query, recipient) pairs")
    console.print(_queries_table(report.get("queries", {})))
    lat = report.get("latency_ms", {})
    console.print(
        f"latency ms: p50 {_ms(lat.get('p50'))}  p95 {_ms(lat.get('p95'))}  "
        f"p99 {_ms(lat.get('p99'))}  max {_ms(lat.get('max'))}"
    )
    if report.get("kinds"):
        console.print(_kinds_table(report["kinds"]))
    if report.get("per_bureau"):
        table, hidden = _bureaus_table(report["per_bureau"])
        console.print(table)
        if hidden:
            console.print(f"... and {hidden} more bureaus (all in report.json)")
    if report.get("faults"):
        console.print(_faults_table(report["faults"]))
    for line in _users_lines(report):
        console.print(line)
    for line in _messages_lines(report.get("messages")):
        console.print(line)
    if report.get("checks"):
        console.print(_checks_table(report["checks"]))
    for line in _timings_lines(report):
        console.print(line)
    if passed is not None:
        verdict = "[bold green]PASSED[/]" if passed else "[bold red]FAILED[/]"
        duration = report.get("duration_s")
        console.print(verdict + (f" in {duration} s" if duration is not None else ""))
    if report.get("workdir"):
        console.print(f"PKI, records, logs and audit kept in {report['workdir']}")
