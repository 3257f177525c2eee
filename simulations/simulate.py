"""``ncbsim simulate``: bring a network up, run the scenario's traffic, check, report.

It exits 0 only if every check passed. The report's keys are a stable contract
(see the README).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gateway.audit import read_all
from ncbsim.client import Outcome
from ncbsim.pki import PkiDir
from simulations import scenario as scenarios
from simulations.network import Network, audit_path, gateway_files
from simulations.traffic import Planner, Result, open_stores, send


@dataclass(frozen=True, slots=True)
class Check:
    """One pass/fail statement about the run."""

    name: str
    passed: bool
    detail: str


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return round(values[0], 2)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 2)


def _counts(results: list[Result]) -> dict[str, int]:
    answers = [a for r in results for a in r.answers]
    answers += [r.fetched for r in results if r.fetched is not None]
    hit = sum(a.outcome in (Outcome.HIT, Outcome.RECORD) for a in answers)
    no_hit = sum(a.outcome in (Outcome.NO_HIT, Outcome.NOT_FOUND) for a in answers)
    no_answer = sum(a.outcome == Outcome.NO_ANSWER for a in answers)
    return {
        "sent": len(answers),
        "answered": hit + no_hit,
        "hit": hit,
        "no_hit": no_hit,
        "no_answer": no_answer,
        "failed": len(answers) - hit - no_hit - no_answer,
    }


def _scan(folder: Path, probes: list[str]) -> list[str]:
    """Probes found anywhere in the files under ``folder`` (as text or raw bytes)."""
    needles = {p: p.encode() for p in probes if len(p) >= 6}
    found = set()
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found |= {p for p, raw in needles.items() if raw in data}
    return sorted(found)


def check(results: list[Result], workdir: Path) -> list[Check]:
    """Every check the simulation promises, computed from results and the gateway's files."""
    checks: list[Check] = []
    counts = _counts(results)
    unanswered = counts["sent"] - counts["answered"]
    checks.append(
        Check("every query answered", unanswered == 0, f"{counts['answered']}/{counts['sent']}")
    )

    missed, false_hits = [], []
    for r in results:
        for a in r.answers:
            planted = r.planned.expect_hit.get(a.bureau)
            refs = {m.ref for m in a.matches}
            if planted is not None and planted not in refs:
                missed.append(f"{r.planned.label}@{a.bureau}")
            if planted is None and a.outcome != Outcome.NO_HIT:
                false_hits.append(f"{r.planned.label}@{a.bureau}:{a.outcome.value}")
    planted_total = sum(v is not None for r in results for v in r.planned.expect_hit.values())
    checks.append(
        Check(
            "planted hits found",
            not missed and planted_total > 0,
            f"{planted_total - len(missed)}/{planted_total}"
            + (f" missed {missed}" if missed else ""),
        )
    )
    checks.append(
        Check(
            "no-hit where the bureau holds nothing",
            not false_hits,
            f"{len(false_hits)} wrong" + (f": {false_hits[:5]}" if false_hits else ""),
        )
    )

    fetches = [r for r in results if r.fetched is not None]
    good = [
        r
        for r in fetches
        if r.fetched is not None
        and r.fetched.outcome == Outcome.RECORD
        and r.fetched.response is not None
        and getattr(
            r.fetched.response.record, r.fetched.response.record.WhichOneof("record") or ""
        ).ref
        == r.planned.expect_hit[r.fetched.bureau]
    ]
    checks.append(
        Check(
            "step-2 fetches returned the planted record",
            bool(fetches) and len(good) == len(fetches),
            f"{len(good)}/{len(fetches)}",
        )
    )

    multis = [r for r in results if len(r.planned.expect_hit) > 1]
    complete = [r for r in multis if {a.bureau for a in r.answers} == set(r.planned.expect_hit)]
    checks.append(
        Check(
            "multi-bureau replies list every bureau",
            bool(multis) and len(complete) == len(multis),
            f"{len(complete)}/{len(multis)} complete, "
            f"{sum(len(r.answers) for r in multis)} bureau answers",
        )
    )

    probes = [p for r in results for p in r.planned.probes]
    leaked = _scan(gateway_files(workdir), probes)
    checks.append(
        Check(
            "gateway files hold no plaintext",
            not leaked,
            f"{len(probes)} query strings and the canary searched in logs and audit"
            + (f"; found {leaked}" if leaked else ""),
        )
    )

    sent_ids = {a.message_id for r in results for a in r.answers}
    sent_ids |= {r.fetched.message_id for r in results if r.fetched is not None}
    # A reused work directory keeps earlier runs' rows: count this run's envelopes only.
    rows = [row for row in read_all(audit_path(workdir)) if row.message_id in sent_ids]
    delivered = sum(row.outcome == "delivered" for row in rows)
    checks.append(
        Check(
            "gateway audited every envelope",
            delivered == counts["sent"] and len(rows) == counts["sent"],
            f"{len(rows)} audit rows, {delivered} delivered, {counts['sent']} envelopes sent",
        )
    )
    return checks


def run(
    name: str,
    *,
    workdir: Path | None = None,
    report_path: Path | None = None,
    log_level: str = "info",
    console: Console | None = None,
) -> dict[str, Any]:
    """Run scenario ``name`` end to end and return (and optionally write) the report."""
    console = console or Console()
    scenario = scenarios.load(name)
    temp = None if workdir is not None else Path(tempfile.mkdtemp(prefix="ncbsim-"))
    work = (workdir or temp or Path()).resolve()
    started = time.monotonic()
    try:
        console.print(
            f"[bold]ncbsim simulate[/] {scenario.name}: {', '.join(scenario.bureaus)} "
            f"and a gateway, as separate processes on loopback"
        )
        network = Network.start(work, scenario, log_level=log_level)
        try:
            stores = open_stores(work, scenario)
            plan = Planner(scenario, stores).plan()
            for store in stores.values():
                store.close()
            results = asyncio.run(send(plan, PkiDir(work), network.gateway.address, scenario))
        finally:
            network.stop()
        checks = check(results, work)
        latencies = [r.latency_ms for r in results]
        latencies += [r.fetched.latency_ms for r in results if r.fetched is not None]
        report: dict[str, Any] = {
            "scenario": scenario.name,
            "bureaus": list(scenario.bureaus),
            "queries": _counts(results),
            "latency_ms": {
                "p50": _percentile(latencies, 50),
                "p95": _percentile(latencies, 95),
                "p99": _percentile(latencies, 99),
                "max": round(max(latencies), 2) if latencies else 0.0,
            },
            "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in checks],
            "passed": all(c.passed for c in checks),
            "duration_s": round(time.monotonic() - started, 2),
            "workdir": str(work) if temp is None else None,
        }
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
    if report_path is not None:
        report_path.write_text(json.dumps(report, indent=2) + "\n")
    _print_summary(console, report)
    return report


def _print_summary(console: Console, report: dict[str, Any]) -> None:
    q, lat = report["queries"], report["latency_ms"]
    table = Table(title="queries", show_header=True, header_style="bold")
    for key in q:
        table.add_column(key.replace("_", "-"), justify="right")
    table.add_row(*(str(v) for v in q.values()))
    console.print(table)
    console.print(
        f"latency ms: p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}  max {lat['max']}"
    )
    checks = Table(title="checks", show_header=False)
    checks.add_column("")
    checks.add_column("check")
    checks.add_column("detail", overflow="fold")
    for c in report["checks"]:
        mark = "[bold green]PASS[/]" if c["passed"] else "[bold red]FAIL[/]"
        checks.add_row(mark, c["name"], c["detail"])
    console.print(checks)
    verdict = "[bold green]PASSED[/]" if report["passed"] else "[bold red]FAILED[/]"
    console.print(f"{verdict} in {report['duration_s']} s")
    if report.get("workdir"):
        console.print(f"PKI, records, logs and audit kept in {report['workdir']}")
