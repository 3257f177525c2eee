"""The simulation report: counts, latency, breakdowns, fault windows, check view, the
80-column summary and the plain progress lines (the timeline: test_run_events.py)."""

from __future__ import annotations

import io
import json
from typing import Any

from rich.console import Console

from ncbsim.simulations import report as reports
from ncbsim.simulations.outcomes import AnswerRecord, FaultRecord, QueryRecord, counts, latency
from ncbsim.simulations.progress import Progress


def query(
    label: str,
    sent_s: float,
    answers: dict[str, str],
    *,
    kind: str = "document",
    requester: str = "FR",
    took_s: float = 0.05,
    latency_ms: float = 50.0,
) -> QueryRecord:
    """A query sent at ``sent_s`` whose bureaus answered as ``answers`` says."""
    return QueryRecord(
        label=label,
        kind=kind,
        requester=requester,
        sent_s=sent_s,
        done_s=sent_s + took_s,
        latency_ms=latency_ms,
        answers=tuple(AnswerRecord(b, o, latency_ms) for b, o in answers.items()),
    )


def cut(
    start_s: float, end_s: float | None, bureaus: tuple[str, ...] = ("DE",), settle_s: float = 2.0
) -> FaultRecord:
    """A partition of ``bureaus`` from ``start_s`` to ``end_s``."""
    return FaultRecord(
        id="cut",
        kind="partition",
        bureaus=bureaus,
        direction="both",
        params={},
        start_s=start_s,
        end_s=end_s,
        settle_s=settle_s,
    )


def build(queries: list[QueryRecord], faults: list[FaultRecord], **extra: Any) -> dict[str, Any]:
    """The report of a run of FR, DE and IT that ended at 30 s."""
    return reports.build(
        scenario="t",
        bureaus=["FR", "DE", "IT"],
        queries=queries,
        faults=faults,
        run_end_s=30.0,
        timings={"startup_s": 1.23456, "shutdown_s": 0.5},
        extra=extra,
    )


def test_counts_fold_outcomes_like_the_core_report() -> None:
    """hit+record are hits, no_hit+not_found no-hits, error+failed failed, refused apart;
    sent counts all."""
    outcomes = [
        "hit", "record", "no_hit", "not_found", "no_answer", "error", "failed", "hit", "refused",
    ]  # fmt: skip
    c = counts(AnswerRecord("FR", o, 1.0) for o in outcomes)
    assert c == {
        "sent": 9, "answered": 5, "hit": 3, "no_hit": 2, "no_answer": 1, "failed": 2, "refused": 1,
    }  # fmt: skip


def test_latency_percentiles_and_empty() -> None:
    """Inclusive percentiles rounded to 2 decimals; all zero with no values."""
    values = [float(v) for v in range(1, 101)]
    assert latency(values) == {"p50": 50.5, "p95": 95.05, "p99": 99.01, "max": 100.0}
    assert latency([3.14159]) == {"p50": 3.14, "p95": 3.14, "p99": 3.14, "max": 3.14}
    assert latency([]) == {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}


def test_core_schema_then_breakdowns_in_order() -> None:
    """The core keys come first, then requests, per_bureau, kinds, faults, the slowest
    queries, timings, extra."""
    queries = [
        query("d1", 1.0, {"DE": "hit"}, latency_ms=10.0),
        query("m1", 2.0, {"DE": "no_hit", "IT": "no_answer"}, kind="multi", latency_ms=30.0),
        query("f1", 3.0, {"DE": "record"}, kind="fetch", requester="IT", latency_ms=20.0),
    ]
    report = build(queries, [], peak_rss_mib=321.0)
    assert list(report) == [
        "scenario",
        "bureaus",
        "queries",
        "latency_ms",
        "requests",
        "per_bureau",
        "kinds",
        "faults",
        "slowest_queries",
        "startup_s",
        "shutdown_s",
        "peak_rss_mib",
    ]
    assert report["bureaus"] == ["FR", "DE", "IT"]
    assert report["queries"] == {
        "sent": 4,
        "answered": 3,
        "hit": 2,
        "no_hit": 1,
        "no_answer": 1,
        "failed": 0,
        "refused": 0,
    }
    assert report["latency_ms"]["max"] == 30.0
    assert report["latency_ms"]["p50"] == 20.0
    assert report["startup_s"] == 1.235
    assert list(report["kinds"]) == ["document", "multi", "fetch"]
    assert report["kinds"]["multi"]["queries"]["sent"] == 2
    assert report["kinds"]["multi"]["requests"] == 1
    assert report["kinds"]["fetch"]["latency_ms"]["p99"] == 20.0
    json.dumps(report)  # the report must serialise as it is


def test_slowest_queries_slowest_first_with_their_trace_ids() -> None:
    """At most SLOWEST rows, slowest first; one outcome, or mixed; a trace id, or null."""
    queries = [query(f"d{i}", float(i), {"DE": "no_hit"}, latency_ms=float(i)) for i in range(12)]
    queries.append(
        QueryRecord(
            "m1",
            "multi",
            "IT",
            20.0,
            21.0,
            900.0,
            (AnswerRecord("DE", "hit", 1.0), AnswerRecord("FR", "no_answer", 900.0)),
            trace_id="ab" * 16,
        )
    )
    rows = reports.slowest(queries)
    assert len(rows) == reports.SLOWEST
    assert [r["label"] for r in rows[:3]] == ["m1", "d11", "d10"]
    assert rows[0] == {
        "label": "m1",
        "kind": "multi",
        "requester": "IT",
        "recipients": ["DE", "FR"],
        "latency_ms": 900.0,
        "outcome": "mixed",
        "sent_s": 20.0,
        "trace_id": "ab" * 16,
    }
    assert rows[1]["outcome"] == "no_hit"
    assert rows[1]["trace_id"] is None
    assert reports.slowest([]) == []


def test_counts_say_which_unit_queries_or_pairs() -> None:
    """requests counts queries (a query to two bureaus once); queries.* count pairs; a
    bureau's figures as recipient and as requester are apart (issue 15)."""
    queries = [
        query("d1", 1.0, {"DE": "hit"}, latency_ms=10.0),
        query("m1", 2.0, {"DE": "no_hit", "IT": "no_answer"}, kind="multi", latency_ms=30.0),
        query("f1", 3.0, {"DE": "record"}, kind="fetch", requester="IT", latency_ms=20.0),
    ]
    report = build(queries, [])
    assert report["requests"] == 3
    assert report["queries"]["sent"] == 4
    fr, de, it = (report["per_bureau"][c] for c in ("FR", "DE", "IT"))
    # DE was sent three pairs and asked nothing; FR asked two queries, three pairs
    assert de["as_recipient"]["queries"]["sent"] == 3
    assert de["as_recipient"]["queries"]["hit"] == 2
    assert de["as_requester"] == {"requests": 0, "queries": counts([]), "latency_ms": latency([])}
    assert fr["as_recipient"] == {"queries": counts([]), "latency_ms": latency([])}
    assert fr["as_requester"]["requests"] == 2
    assert fr["as_requester"]["queries"]["sent"] == 3
    assert fr["as_requester"]["latency_ms"]["max"] == 30.0
    assert it["as_recipient"]["queries"]["no_answer"] == 1
    assert it["as_requester"]["requests"] == 1
    per = report["per_bureau"].values()
    for side in ("as_recipient", "as_requester"):
        assert sum(b[side]["queries"]["sent"] for b in per) == report["queries"]["sent"]
    assert sum(b["as_requester"]["requests"] for b in per) == report["requests"]
    assert sum(k["requests"] for k in report["kinds"].values()) == report["requests"]


def test_kinds_the_scenario_can_send_are_listed_even_when_none_was_sent() -> None:
    """The report's kinds are the scenario's (zero if none happened), so a check on one
    never finds it missing; a kind sent but not listed is still reported."""
    report = reports.build(
        scenario="t",
        bureaus=["FR", "DE"],
        kinds=["document", "multi", "fetch"],
        queries=[query("v1", 1.0, {"DE": "hit"}, kind="vehicle")],
        faults=[],
        run_end_s=5.0,
        timings={},
        extra={},
    )
    assert list(report["kinds"]) == ["document", "vehicle", "multi", "fetch"]
    assert report["kinds"]["multi"] == {
        "requests": 0,
        "queries": counts([]),
        "latency_ms": latency([]),
    }


def test_fault_windows_during_others_after_recovered() -> None:
    """Windows split answers by time and bureau; recovery is the first answer after heal."""
    queries = [
        query("before", 1.0, {"DE": "hit", "IT": "no_hit"}),
        query("in1", 6.0, {"DE": "no_answer", "IT": "hit"}),
        query("in2", 9.0, {"DE": "no_answer", "IT": "failed"}),
        # sent inside, done after the heal: not "during", but sent inside so in "others"
        query("straddle", 14.0, {"DE": "no_answer", "IT": "no_hit"}, took_s=3.0),
        # sent after the heal but before settling: neither "during" nor "after"
        query("settling", 15.5, {"DE": "hit"}, took_s=0.25),
        query("late1", 17.0, {"DE": "hit", "IT": "hit"}),
        query("late2", 20.0, {"DE": "no_hit"}),
    ]
    report = build(queries, [cut(5.0, 15.0)])
    fault = report["faults"]["cut"]
    assert {k: v for k, v in fault["during"].items() if k != "latency_ms"} == {
        "sent": 2,
        "answered": 0,
        "hit": 0,
        "no_hit": 0,
        "no_answer": 2,
        "failed": 0,
        "refused": 0,
    }
    assert fault["during"]["latency_ms"]["max"] > 0
    assert fault["others"]["sent"] == 3
    assert fault["others"]["failed"] == 1
    assert fault["others"]["answered"] == 2
    assert fault["after"]["sent"] == 2
    assert fault["after"]["answered"] == 2
    assert fault["recovered_s"] == 0.75  # "settling" done at 15.75
    assert fault["start_s"] == 5.0
    assert fault["end_s"] == 15.0
    assert fault["settle_s"] == 2.0
    assert fault["bureaus"] == ["DE"]
    assert fault["kind"] == "partition"


def test_recovered_is_the_slowest_bureau_and_none_if_one_never_answers() -> None:
    """With two bureaus cut, recovery waits for both; a bureau silent after heal gives None."""
    both = [
        query("a", 12.0, {"DE": "hit", "IT": "no_answer"}, took_s=0.5),
        query("b", 13.0, {"IT": "no_hit"}, took_s=1.0),
    ]
    fault = build(both, [cut(5.0, 10.0, ("DE", "IT"))])["faults"]["cut"]
    assert fault["recovered_s"] == 4.0  # DE at 12.5, IT at 14.0
    only_de = both[:1]
    fault = build(only_de, [cut(5.0, 10.0, ("DE", "IT"))])["faults"]["cut"]
    assert fault["recovered_s"] is None


def test_unhealed_fault_runs_to_the_end_with_no_after() -> None:
    """A fault never healed covers the run's end; after is empty and recovered_s None."""
    queries = [
        query("in", 20.0, {"DE": "no_answer", "IT": "hit"}),
        query("late", 29.0, {"DE": "no_answer"}),
    ]
    fault = build(queries, [cut(5.0, None)])["faults"]["cut"]
    assert fault["end_s"] is None
    assert fault["during"]["no_answer"] == 2
    assert fault["others"]["answered"] == 1
    assert fault["after"] == {**counts([]), "latency_ms": latency([])}
    assert fault["recovered_s"] is None


def test_check_view_maps_bureaus_to_per_bureau() -> None:
    """Checks read bureaus.FR...; the report keeps its list of codes."""
    report = build([query("d1", 1.0, {"DE": "hit"})], [])
    view = reports.check_view(report)
    assert view["bureaus"]["DE"]["as_recipient"]["queries"]["hit"] == 1
    assert report["bureaus"] == ["FR", "DE", "IT"]
    assert view["queries"] is report["queries"]
    assert "per_bureau" not in view


def _full_report(n_bureaus: int) -> dict[str, Any]:
    """A report of ``n_bureaus`` bureaus with a fault and checks, as simulate completes it."""
    codes = [f"{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(n_bureaus)]
    queries = [
        query(
            f"q{i}",
            i * 0.1,
            {codes[i % n_bureaus]: "no_answer" if i % 7 == 0 else "hit"},
            kind=("document", "person", "vehicle", "multi")[i % 4],
            requester=codes[(i + 1) % n_bureaus],
            latency_ms=5.0 + i,
        )
        for i in range(200)
    ]
    # the alphabetically last bureau fails most: it must head the per-bureau table
    queries += [query(f"x{i}", 3.0 + i, {codes[-1]: "failed"}) for i in range(3)]
    long_cut = FaultRecord(
        id="a-rather-long-fault-identifier",
        kind="blackhole",
        bureaus=tuple(codes[:8]),
        direction="up",
        params={"loss": 0.05},
        start_s=5.0,
        end_s=15.0,
    )
    report = reports.build(
        scenario="all-members",
        bureaus=codes,
        queries=queries,
        faults=[long_cut, cut(2.0, None)],
        run_end_s=20.0,
        timings={"prepare_s": 3.2, "startup_s": 41.5, "traffic_s": 20.0, "shutdown_s": 4.1},
        extra={"peak_rss_mib": 2876.4},
    )
    report["checks"] = [
        {
            "name": "every bureau answers outside partitions, without exception, always",
            "passed": False,
            "detail": "x" * 150,
            "expect": "queries.failed == 0",
        },
        {"name": "p99", "passed": True, "detail": "ok", "expect": "latency_ms.p99 < 250"},
    ]
    report["passed"] = False
    report["duration_s"] = 70.1
    return report


def test_summary_fits_80_columns_and_shows_the_worst_bureaus() -> None:
    """At width 80 no line is longer than 80; only 12 bureaus are listed, worst first."""
    report = _full_report(40)
    buffer = io.StringIO()
    console = Console(file=buffer, width=80, color_system=None)
    reports.print_summary(console, report)
    text = buffer.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "... and 28 more bureaus (all in report.json)" in text
    rows = [line.split() for line in text.splitlines() if line.strip()[:2] in report["bureaus"]]
    shown = [row[0] for row in rows if len(row) == 9]
    assert len(shown) == 12
    assert shown[0] == "BN"  # 3 failed + its no-answers: the worst, though last by name
    for needle in (
        "all-members: 40 bureaus - failed",
        "203 queries sent: 203 (query, recipient) pairs",
        "by bureau: the 12 with most no-answer + failed (pairs sent to it)",
        "FAIL",
        "PASS",
        "start-up 41.5 s",
    ):
        assert needle in text
    assert "AA,AB +6" in text  # 8 bureaus abbreviated
    assert "peak memory of the process tree: 2876 MiB" in text
    assert "FAILED in 70.1 s" in text
    assert "5.0-15.0" in text
    assert "2.0-end" in text


def test_summary_of_a_small_report_lists_every_bureau() -> None:
    """Up to 12 bureaus all appear, with no 'more bureaus' line."""
    report = _full_report(5)
    buffer = io.StringIO()
    reports.print_summary(Console(file=buffer, width=80, color_system=None), report)
    text = buffer.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "more bureaus" not in text
    rows = {line.split()[0] for line in text.splitlines() if line.strip()}
    assert set(report["bureaus"]) <= rows


def test_progress_prints_plain_lines_every_5_s_when_not_a_terminal() -> None:
    """Off a terminal: one line per 5 s of elapsed time however often it is updated."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=120, force_terminal=False)
    with Progress(console, total_s=12.0, label="quick") as progress:
        for tick in range(49):  # every 0.25 s up to 12 s
            elapsed = tick * 0.25
            progress.update(elapsed, {"sent": tick, "answered": tick, "no_answer": 0}, 2)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 3  # at 5 s, at 10 s, and the final counts at 12 s
    assert lines[0].startswith("quick:   5.0/12 s  sent 20  answered 20")
    assert "in flight 2" in lines[0]
    assert lines[2].startswith("quick:  12.0/12 s  sent 48")


def test_progress_bar_on_a_terminal_shows_counts() -> None:
    """On a terminal the rich bar shows the label and the live counts."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=120, force_terminal=True, color_system=None)
    with Progress(console, total_s=10.0, label="quick") as progress:
        progress.update(10.0, {"sent": 7, "answered": 6, "no_answer": 1, "failed": 0}, 0)
    text = buffer.getvalue()
    assert "quick" in text
    assert "sent 7  answered 6  no-answer 1  failed 0  in flight 0" in text


def test_others_leave_out_queries_sent_by_a_faulted_bureau() -> None:
    """A cut-off bureau's own queries go unanswered by its fault, not the others'."""
    queries = [
        query("from_cut", 6.0, {"IT": "no_answer"}, requester="DE"),
        query("from_fr", 7.0, {"IT": "hit", "DE": "no_answer"}),
    ]
    fault = build(queries, [cut(5.0, 15.0)])["faults"]["cut"]
    assert fault["others"]["sent"] == 1
    assert fault["others"]["no_answer"] == 0
    assert fault["others"]["answered"] == 1
    assert fault["during"]["no_answer"] == 1


def test_summary_bureau_rows_name_asked_and_sent_to_apart() -> None:
    """A bureau's row shows the pairs it asked and the pairs sent to it, each under its own
    heading; the per-kind row shows queries and pairs apart (issue 15)."""
    queries = [
        query("m1", 1.0, {"DE": "hit", "IT": "no_hit"}, kind="multi", latency_ms=2154.45),
        query("d1", 2.0, {"DE": "no_answer"}, latency_ms=12345.67),
    ]
    report = build(queries, [])
    buffer = io.StringIO()
    reports.print_summary(Console(file=buffer, width=80, color_system=None), report)
    text = buffer.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text  # no header or figure cut short, even with latencies in seconds
    assert "12346" in text
    assert "by bureau, in pairs: asked by it; sent to it, how it answered" in text
    header = next(line.split() for line in text.splitlines() if line.split()[:1] == ["bureau"])
    assert header[:4] == ["bureau", "asked", "to", "it"]
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()}
    assert rows["FR"][:2] == ["3", "0"]  # FR asked 3 pairs; none was sent to it
    assert rows["DE"][:5] == ["0", "2", "1", "1", "1"]  # asked 0; 2 to it: 1 answered, hit, no-ans
    assert rows["multi"][:3] == ["1", "2", "2"]  # one query, two pairs, both answered
