"""`ncbsim load` end to end: real networks, real locust processes, the SLO gate's exit code.

No test here depends on the machine's speed. The latency objectives are the
load gate's to judge (``ncbsim load --duration 20s``, its own CI step); these tests
check what the harness does whatever the machine: which SLO lines it judges, that
the exit code, the verdict, the HTML report and the JUnit file agree, that it
counts every worker's requests and keeps warm-up calls out of the figures. Only a
deliberately impossible SLO is expected to fail, and a generous one (no failed
request) to pass; the runs that expect no failed request give each call 60 s
(``--deadline 60``), so a busy machine makes an answer slow, never failed.
"""

from __future__ import annotations

import csv
import json
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from junitparser import Failure, JUnitXml

from ncbsim.load import report, slo
from ncbsim.load.plan import LoadPlan, requester_codes
from ncbsim.simulations.network import Network
from ncbsim.workdir import Workdir

if TYPE_CHECKING:
    from tests.load.conftest import ReportTables

ReadHtml = Callable[[Path], "ReportTables"]

pytestmark = [pytest.mark.integration, pytest.mark.load]

TASKS = {"document", "person", "vehicle", "fetch", "multi"}
NO_FAILED_REQUEST = "[overall]\nmax_failure_ratio = 0\n"  # correctness only, any speed
PATIENT = ("--deadline", "60")
"""Per-call deadline of the runs that expect no failed request: at the plan's default of
5 s, an answer a busy machine delays would count as a failure."""


def _load(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ncbsim", "load", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _csv_names(out: Path) -> set[str]:
    with (out / "locust_stats.csv").open() as f:
        return {row["Name"] for row in csv.DictReader(f)}


def _slo_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "slo.toml"
    path.write_text(text)
    return path


def _shipped_lines() -> list[str]:
    """Every line of load/slo.toml, in the order the gate judges them."""
    spec = slo.load()
    any_figures = slo.Measured("x", 1, 0, 1, 1, 1, 1)
    return [
        c.line for c in slo.evaluate(spec, any_figures, dict.fromkeys(spec.requests, any_figures))
    ]


def _assert_outputs_agree(
    result: subprocess.CompletedProcess[str], out: Path, junit_path: Path, read_html: ReadHtml
) -> dict[str, Any]:
    """Exit code, printed verdict, verdict.json, HTML report and JUnit tell one story."""
    verdict: dict[str, Any] = json.loads((out / "verdict.json").read_text())
    failed = [c["line"] for c in verdict["checks"] if not c["passed"]]
    failed += [] if verdict["user_exceptions"] == 0 else [report.EXCEPTIONS_LINE]
    assert result.returncode == (0 if verdict["passed"] else 1), result.stdout[-3000:]
    assert verdict["passed"] is (not failed)
    if failed:
        assert f"SLO BREACHED: {len(failed)} of" in result.stdout
    else:
        assert "SLO met: all" in result.stdout
    # JUnit, read by junitparser: one case per SLO line plus user exceptions.
    (suite,) = JUnitXml.fromfile(str(junit_path))
    cases = {case.name: case for case in suite}
    assert list(cases) == [*(c["line"] for c in verdict["checks"]), report.EXCEPTIONS_LINE]
    assert (suite.tests, suite.failures, suite.errors) == (len(cases), len(failed), 0)
    assert sorted(n for n, c in cases.items() if not c.is_passed) == sorted(failed)
    for name in failed:
        (failure,) = cases[name].result
        assert isinstance(failure, Failure)
        assert "bound" in (failure.message or "")
    # The HTML report, read by html.parser: the target and the same verdict, line by line.
    parsed = read_html(out / "report.html")
    assert report.SECTION_ID in parsed.section_ids
    target = {row[0]: row[1] for row in parsed.tables["ncbsim-target"]}
    assert {k: target[k] for k in verdict["target"]} == verdict["target"]
    assert target["SLO file"] == verdict["slo"]
    _header, *rows, footer = parsed.tables["ncbsim-slo"]
    expected = [
        [c["scope"], c["metric"], "PASS" if c["passed"] else "FAIL"] for c in verdict["checks"]
    ]
    expected.append(["users", "exceptions", "PASS" if verdict["user_exceptions"] == 0 else "FAIL"])
    assert [[r[0], r[1], r[4]] for r in rows] == expected
    assert footer[0] == "overall verdict"
    assert footer[-1] == ("PASS" if verdict["passed"] else "FAIL")
    plan = LoadPlan.read(out / "plan.json")
    assert parsed.locust_host() == plan.describe()  # locust's own "Target Host"
    return verdict


def _assert_warm_up_apart(verdict: dict[str, Any], users: int) -> None:
    """Each user's directory fetch and its opening of sessions (one call: too short a run
    for a rekey) are listed as warm-up, outside every judged figure."""
    assert verdict["warm_up"]["directory"]["requests"] == users
    assert verdict["warm_up"]["session"]["requests"] == users
    assert verdict["warm_up"]["session"]["failures"] == 0
    assert set(verdict["requests"]) <= TASKS
    assert verdict["overall"]["requests"] == sum(
        m["requests"] for m in verdict["requests"].values()
    )


def test_load_on_its_own_network_judges_every_shipped_slo_line(
    tmp_path: Path, read_html: ReadHtml
) -> None:
    """The default run brings up quickstart and judges each shipped line, whatever the speed."""
    out, net, junit_path = tmp_path / "out", tmp_path / "net", tmp_path / "junit.xml"
    started_ms = int(time.time() * 1000)
    result = _load(
        "--duration", "5s", "--spawn-rate", "10", "--workdir", str(net), "--out", str(out),
        "--junit", str(junit_path), *PATIENT,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stdout[-3000:] + result.stderr[-3000:]
    verdict = _assert_outputs_agree(result, out, junit_path, read_html)
    assert [c["line"] for c in verdict["checks"]] == _shipped_lines()
    assert verdict["slo"] == str(slo.DEFAULT_SLO)
    match = re.search(r" via (\S+)\n", result.stdout)
    assert match is not None
    assert verdict["target"] == {
        "gateway": match.group(1),
        "network": str(net.resolve()),
        "scenario": "quickstart",
    }
    assert verdict["overall"]["requests"] > 0
    assert verdict["overall"]["failures"] == 0  # every answer was the one owed
    assert LoadPlan.read(out / "plan.json").deadline_s == 60
    _assert_warm_up_apart(verdict, users=10)
    assert _csv_names(out) <= {*TASKS, "directory", "session", "Aggregated"}
    assert "Aggregated" in _csv_names(out)
    _assert_checks_ran_in_sessions(LoadPlan.read(out / "plan.json"), Workdir(net), started_ms)


def _assert_checks_ran_in_sessions(plan: LoadPlan, work: Workdir, since_ms: int) -> None:
    """Every target node's audit shows each user open one session with it (its first
    envelope there) and its checks answered in it (format 2: a request with no session
    would be refused)."""
    for target in plan.targets:
        with sqlite3.connect(work.bureau(target).audit) as db:
            rows = db.execute(
                "SELECT sender, kind, status FROM audit WHERE at_ms >= ? ORDER BY seq",
                (since_ms,),
            ).fetchall()
        by_sender: dict[str, list[tuple[str, str]]] = {}
        for sender, kind, status in rows:
            if sender in plan.requesters:
                by_sender.setdefault(sender, []).append((kind, status))
        assert set(by_sender) == set(plan.requesters), target
        for sender, handled in by_sender.items():
            kinds = [kind for kind, _status in handled]
            assert handled[0] == ("session_open", "OK"), (target, sender, handled[:3])
            assert kinds.count("session_open") == 1, (target, sender)
            assert {kind for kind, status in handled if status != "OK"} == set(), handled
            assert set(kinds) <= {"session_open", "query_request", "session_close"}
            assert kinds.count("session_close") <= 1  # said on stop, best effort
        assert any("query_request" in {k for k, _ in h} for h in by_sender.values()), target


def test_an_impossible_slo_breaches_and_exits_non_zero(
    network: Network, tmp_path: Path, read_html: ReadHtml
) -> None:
    """Objectives no machine can meet fail the run with exit 1, in every report."""
    limits = _slo_file(tmp_path, "[overall]\np99_ms = 0.001\nmin_rps = 1000000\n")
    out, junit_path = tmp_path / "out", tmp_path / "junit.xml"
    result = _load(
        "--target", str(network.workdir), "--duration", "4s", "--users", "2",
        "--slo", str(limits), "--out", str(out), "--junit", str(junit_path),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "SLO BREACHED: 2 of 2 checks failed" in result.stdout
    verdict = _assert_outputs_agree(result, out, junit_path, read_html)
    assert verdict["overall"]["requests"] > 0  # it ran; it was the objective that failed
    assert verdict["target"] == {
        "gateway": network.gateway.address,
        "network": str(network.workdir),
        "scenario": network.scenario,
    }
    (suite,) = JUnitXml.fromfile(str(junit_path))
    assert [c.is_passed for c in suite] == [False, False, True]


def test_distributed_mode_combines_every_workers_figures(
    network: Network, tmp_path: Path, read_html: ReadHtml
) -> None:
    """Two workers' ten users are all counted by the master, and their warm-up apart."""
    out, junit_path = tmp_path / "out", tmp_path / "junit.xml"
    started_ms = int(time.time() * 1000)
    result = _load(
        "--target", str(network.workdir), "--duration", "6s", "--spawn-rate", "10",
        "--workers", "2", "--slo", str(_slo_file(tmp_path, NO_FAILED_REQUEST)),
        "--out", str(out), "--junit", str(junit_path), *PATIENT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    verdict = _assert_outputs_agree(result, out, junit_path, read_html)
    assert verdict["workers"] == 2
    assert "(2 workers)" in result.stdout
    _assert_warm_up_apart(verdict, users=10)
    # Ten users, five on each worker, each its own requester bureau. The master's
    # figures must count every envelope the gateway relayed for all ten: one per
    # check or fetch, one per target bureau for a multi-bureau check.
    targets = sorted(p.bureau for p in network.procs if p.bureau)
    requesters = requester_codes(targets, 10)
    with sqlite3.connect(Workdir(network.workdir).gateway.audit) as db:
        rows = [
            row
            for row in db.execute(
                "SELECT sender, kind, COUNT(*) FROM audit WHERE at_ms >= ? GROUP BY sender, kind",
                (started_ms,),
            )
            if row[0] in requesters
        ]
    assert {sender for sender, _, _ in rows} == set(requesters)
    counts = {name: figures["requests"] for name, figures in verdict["requests"].items()}
    relayed = sum(counts.get(k, 0) for k in ("document", "person", "vehicle", "fetch"))
    requests = sum(n for _, kind, n in rows if kind == "query_request")
    assert requests == relayed + counts.get("multi", 0) * len(targets)
    # Each user opened its session with every target in its one warm-up call.
    opened = sum(n for _, kind, n in rows if kind == "session_open")
    assert opened == verdict["warm_up"]["session"]["requests"] * len(targets)
    assert {"worker-1.log", "worker-2.log"} <= {p.name for p in out.iterdir()}


def test_workers_on_another_machine_join_with_the_same_command(
    network: Network, tmp_path: Path
) -> None:
    """A master waiting for a remote worker, and `ncbsim load --join` supplying it."""
    port = str(_free_port())
    master_out, worker_out = tmp_path / "master", tmp_path / "worker"
    limits = _slo_file(tmp_path, NO_FAILED_REQUEST)  # the shipped min_rps is for ten users
    master = subprocess.Popen(
        [
            sys.executable, "-m", "ncbsim", "load", "--target", str(network.workdir),
            "--duration", "4s", "--users", "2", "--spawn-rate", "2", "--remote-workers", "1",
            "--master-bind", f"127.0.0.1:{port}", "--slo", str(limits), "--out", str(master_out),
            *PATIENT,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (master_out / "plan.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        copy = tmp_path / "copied-plan.json"
        copy.write_bytes((master_out / "plan.json").read_bytes())
        worker = _load(
            "--join", f"127.0.0.1:{port}", "--plan", str(copy), "--workers", "1",
            "--out", str(worker_out), timeout=120,
        )  # fmt: skip
        output, _ = master.communicate(timeout=120)
    finally:
        if master.poll() is None:
            master.kill()
            master.wait()
    assert worker.returncode == 0, worker.stdout + worker.stderr
    assert master.returncode == 0, output
    verdict = json.loads((master_out / "verdict.json").read_text())
    assert verdict["workers"] == 1
    assert verdict["overall"]["requests"] > 0
    assert verdict["overall"]["failures"] == 0
    assert (worker_out / "worker-1.log").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--duration", "0s"], "--duration must be at least 1s"),
        (["--duration", "soon"], "--duration: expected a duration"),
        (["--users", "0"], "--users must be at least 1"),
        (["--deadline", "0"], "--deadline must be a number of seconds > 0"),
        (["--slo", "/nonexistent/slo.toml"], "no such SLO file"),
        (["--target", "/nonexistent"], "no running network"),
        (["--pki", "pki"], "--pki goes with --plan or --join"),
        (["--gateway", "127.0.0.1:1"], "--gateway goes with --target, --plan or --join"),
        (["--plan", "p.json", "--target", "t"], "--plan runs a ready plan and --target makes one"),
        (["--plan", "/nonexistent/plan.json"], "no load plan"),
        (["--join", "127.0.0.1:1"], "--join needs --plan"),
        (["--master-bind", "anywhere"], "not a host:port address"),
        (
            ["--join", "127.0.0.1:1", "--plan", "p.json", "--junit", "j.xml"],
            "--junit goes with the master",
        ),
    ],
)
def test_bad_options_are_refused_before_anything_starts(
    args: list[str], message: str, tmp_path: Path
) -> None:
    """A bad option ends the command with exit 2 and one line naming it, before any start."""
    result = _load(*args, "--out", str(tmp_path / "out"), timeout=60)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
