"""`ncbsim watch` for scripts: its errors, `--json` lines of figures whose query counts
follow the queries sent, and `--events` lines in the event schema, on a real network."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support import document_query, run_ncbsim

from ncbsim.client import BureauClient, Outcome
from ncbsim.events import KINDS, from_json
from ncbsim.node.store import RecordStore
from ncbsim.pki import PkiDir
from ncbsim.simulations.network import Network
from ncbsim.workdir import Workdir

N = 6


def _watch(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ncbsim", "watch", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    """Wait for ``proc`` to exit (killed if it does not): its code, stdout and stderr."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--duration", "0"], "--duration must be a number of seconds > 0"),
        (["--count", "0"], "--count must be at least 1"),
        (["--json", "--kinds", "query."], "--kinds filters --events"),
        (["--events", "--kinds", "melt."], "'melt.' is no event kind nor the start of one"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    """A bad option is refused in one line, exit 2, before anything is watched."""
    out = run_ncbsim("watch", "--workdir", tmp_path, *args)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("ncbsim: ")
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_workdir_without_a_network_is_a_one_line_error(tmp_path: Path) -> None:
    """Watching a folder where no network runs says so in one line, exit 2."""
    out = run_ncbsim("watch", "--workdir", tmp_path, "--json", "--count", "1")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"ncbsim: no network runs in {tmp_path} (no network.json); start one with "
        f"`ncbsim up SCENARIO --workdir {tmp_path} --detach`"
    ]
    assert out.stdout == ""


def test_watch_help_names_its_modes() -> None:
    """`ncbsim watch --help` documents the live view, --json, --events and the bounds."""
    out = run_ncbsim("watch", "--help")
    assert out.returncode == 0
    for option in ("--json", "--events", "--kinds", "--duration", "--count", "--window"):
        assert option in out.stdout


def _queries(network: Network, n: int) -> None:
    """``n`` document queries from FR to DE, each answered."""
    store = RecordStore(Workdir(network.workdir).bureau("DE").records)
    try:
        docs = store.sample("document", n, random.Random(3))
    finally:
        store.close()

    async def ask() -> None:
        pki = PkiDir(network.workdir)
        async with BureauClient.open(pki, "FR", network.gateway.address) as client:
            for doc in docs:
                answer = await client.query(document_query(doc.number, doc.issuer), "DE")
                assert answer.outcome in (Outcome.HIT, Outcome.NO_HIT), answer

    asyncio.run(ask())


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.integration
def test_json_lines_count_the_queries_sent(network: Network) -> None:
    """Each --json line is one object of figures; after N queries FR -> DE the query
    total rises by N, DE counts them in its window, and the rate is not zero."""
    watch = _watch("--workdir", network.workdir, "--json", "--duration", "120")
    try:
        assert watch.stdout is not None
        first = json.loads(watch.stdout.readline())
        assert first["schema"] == 1
        assert sorted(first["bureaus"]) == ["DE", "FR", "IT", "NL"]
        assert all(b["state"] == "serving" for b in first["bureaus"].values()), first
        _queries(network, N)
        deadline = time.monotonic() + 60
        line = first
        while line["queries"]["total"] < first["queries"]["total"] + N:
            assert time.monotonic() < deadline, line
            line = json.loads(watch.stdout.readline())
        assert line["queries"]["total"] == first["queries"]["total"] + N
        assert line["bureaus"]["DE"]["queries"] >= N
        assert line["queries"]["qps"] > 0
        assert line["queries"]["p50_ms"] is not None
        assert line["events"]["dropped"] == 0
    finally:
        watch.kill()
        watch.communicate(timeout=30)  # reaped, and its pipes closed


@pytest.mark.integration
def test_events_lines_parse_as_the_schema(network: Network) -> None:
    """--events prints the merged stream as lines of the event schema, filtered by
    --kinds, until --count."""
    watch = _watch(
        "--workdir", network.workdir, "--events", "--kinds", "query.", "--count", "2",
        "--duration", "120",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while watch.poll() is None and time.monotonic() < deadline:
            _queries(network, 1)
    finally:
        code, out, err = _finish(watch, timeout=1 if watch.poll() is None else 30)
    assert code == 0, err
    events = [from_json(line) for line in out.splitlines()]
    assert len(events) == 2
    assert all(e.kind.startswith("query.") and e.kind in KINDS for e in events)
    assert {e.party for e in events} <= {"gateway", "FR", "DE"}
