"""Operating a network of `ncbsim up` from the CLI, as the README does: status, restart,
live faults (fault/heal), record list and down, on real processes.

Every command runs as a subprocess of the real CLI, bounded in time. Each network is
stopped at the end of its fixture, and whatever it left is killed by pid, even on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from support import ncbsim_pids

from ncbsim.node.host import control
from ncbsim.processes import alive
from ncbsim.simulations.network import Network

pytestmark = pytest.mark.integration

SMALL = Path(__file__).resolve().parent.parent / "scenarios" / "small.toml"
BUREAUS = ["FR", "DE", "IT", "NL"]


def _ncbsim(*args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ncbsim", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _up(workdir: Path, *flags: str) -> None:
    up = _ncbsim("up", SMALL, "--workdir", workdir, "--detach", *flags, timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr


def _teardown(workdir: Path) -> None:
    """`down` if a network is still up, then SIGKILL whatever of ours it left."""
    if (workdir / "network.json").exists():
        _ncbsim("down", "--workdir", workdir, timeout=60)
    for pid in ncbsim_pids(workdir):
        with contextlib.suppress(ProcessLookupError):  # it may exit on its own meanwhile
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Path]:
    """A network of its own brought up with `up --detach` (no fault proxies)."""
    workdir = tmp_path / "plain"
    try:
        _up(workdir)
        yield workdir
    finally:
        _teardown(workdir)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A network brought up with `up --detach --faults`, shared by the module; each test
    leaves it as it found it (healed, every process serving)."""
    workdir = tmp_path_factory.mktemp("operate") / "net"
    try:
        _up(workdir, "--faults")
        yield workdir
    finally:
        _teardown(workdir)


def _status(workdir: Path) -> tuple[int, dict[str, Any]]:
    out = _ncbsim("status", "--workdir", workdir, "--json", timeout=60)
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout)


def _all_up(workdir: Path, what: str) -> dict[str, Any]:
    """``status --json`` once it exits 0, polled: a process just restarted or resumed may
    miss one health deadline on a busy machine."""

    def serving() -> dict[str, Any] | None:
        code, data = _status(workdir)
        return data if code == 0 else None

    data: dict[str, Any] = _until(what, serving)
    return data


def _rows(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in data["processes"]}


def _manifest(workdir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((workdir / "network.json").read_text())
    return data


def _node(workdir: Path, bureau: str) -> dict[str, Any]:
    return next(p for p in _manifest(workdir)["processes"] if p["bureau"] == bureau)


def _query(workdir: Path, asker: str, to: str, *kind: str, timeout: float = 5) -> dict[str, Any]:
    out = _ncbsim(
        "query", "--workdir", workdir, "--as", asker, "--to", to, *kind,
        "--json", "--timeout", timeout,
    )  # fmt: skip
    assert out.returncode in (0, 1), out.stderr
    answer: dict[str, Any] = json.loads(out.stdout)["answers"][0]
    return answer


def _until(what: str, check: Any, deadline_s: float = 60) -> Any:
    """Poll ``check()`` until it returns something truthy; fail naming ``what`` after
    a generous deadline (never a timing assertion)."""
    deadline = time.monotonic() + deadline_s
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.5)


def _records(workdir: Path, bureau: str, kind: str, limit: int = 5) -> list[dict[str, Any]]:
    out = _ncbsim(
        "record", "list", "--workdir", workdir, "--as", bureau, "--kind", kind,
        "--limit", limit, "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def _visible(record: dict[str, Any], asker: str) -> bool:
    access, bureaus = record["control"]["access"], record["control"]["bureaus"]
    return access == "open" or (access == "allow") == (asker in bureaus)


def _a_document(workdir: Path, owner: str, asker: str) -> tuple[str, ...]:
    doc = next(r for r in _records(workdir, owner, "document") if _visible(r, asker))
    return ("document", "--number", doc["number"], "--issuer", doc["issuer"])


# ---------------------------------------------------------------- status and down


def test_status_down_counts_and_link_faults_need_up_faults(plain: Path) -> None:
    """status exits 0 with every process SERVING, and 1 naming a host killed by pid; a
    link fault on a network without --faults says so (a process fault works); down
    counts stopped and gone, and takes the live faults with it."""
    code, data = _status(plain)
    assert code == 0, data
    rows = _rows(data)
    assert sorted(rows) == sorted(["gateway", *BUREAUS])
    assert all(r["alive"] and r["health"] == "SERVING" and r["up"] for r in rows.values())
    assert rows["gateway"]["role"] == "gateway"
    assert rows["DE"]["bureaus"] == ["DE"]
    assert data["faults_enabled"] is False
    assert data["faults"] == []

    cut = _ncbsim("fault", "--workdir", plain, "partition", "--bureaus", "DE")
    assert cut.returncode == 2
    assert "not brought up with --faults" in cut.stderr
    assert "Traceback" not in cut.stderr

    skew = _ncbsim("fault", "--workdir", plain, "skew", "--bureaus", "FR", "--offset-ms", "-2000")
    assert skew.returncode == 0, skew.stderr  # a process fault needs no --faults

    os.kill(_node(plain, "IT")["pid"], signal.SIGKILL)
    code, data = _status(plain)
    assert code == 1
    assert [(f["id"], f["params"]) for f in data["faults"]] == [("skew_1", {"offset_ms": -2000})]
    rows = _rows(data)
    assert not rows["IT"]["alive"]
    assert not rows["IT"]["up"]
    assert all(rows[name]["up"] for name in ("gateway", "FR", "DE", "NL"))
    human = _ncbsim("status", "--workdir", plain)
    assert human.returncode == 1
    dead = _ncbsim("fault", "--workdir", plain, "pause", "--bureaus", "IT")
    assert dead.returncode == 2
    assert "is not running; start it again with `ncbsim restart" in dead.stderr
    assert "1 of 5 down: IT" in human.stdout

    pids = [p["pid"] for p in _manifest(plain)["processes"]]
    down = _ncbsim("down", "--workdir", plain)
    assert down.returncode == 0, down.stderr
    assert "stopped 4 processes (gateway, 3 hosts); 1 was already gone (host)" in down.stdout
    assert not (plain / "network.json").exists()
    assert not (plain / "run" / "faults.json").exists()  # live faults end with the network
    left = sorted(p.name for p in (plain / "run").iterdir())
    assert "operate.lock" not in left  # taken by the skew
    assert [name for name in left if name.endswith((".json", ".sock"))] == [
        f"host-{i}.spec.json" for i in range(len(BUREAUS))
    ]  # no ready file or socket of a process that is gone
    assert not any(alive(pid) for pid in pids)


# ---------------------------------------------------------------- restart


def _peer_certificate(workdir: Path, bureau: str) -> bytes:
    """The certificate (DER) the bureau's node presents to a TLS client."""
    host, port = _node(workdir, bureau)["address"].rsplit(":", 1)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(workdir / "ca.crt")
    context.load_cert_chain(workdir / "operator" / "tls.crt", workdir / "operator" / "tls.key")
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=f"{bureau.lower()}.bureau.ncbsim") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def _on_disk(workdir: Path, bureau: str) -> bytes:
    pem = (workdir / "bureaus" / bureau / "tls.crt").read_bytes()
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


def test_restart_presents_the_rotated_tls_certificate(faulty: Path) -> None:
    """After `pki rotate --tls`, DE still presents its old certificate until `restart
    --bureau DE`, which brings it back on the same port with the new one."""
    old = _on_disk(faulty, "DE")
    assert _peer_certificate(faulty, "DE") == old
    rotate = _ncbsim("pki", "rotate", "--dir", faulty, "--bureau", "DE", "--tls")
    assert rotate.returncode == 0, rotate.stderr
    new = _on_disk(faulty, "DE")
    assert new != old
    assert _peer_certificate(faulty, "DE") == old  # a running node keeps its certificate

    before = _node(faulty, "DE")
    restart = _ncbsim("restart", "--workdir", faulty, "--bureau", "DE")
    assert restart.returncode == 0, restart.stderr
    assert restart.stdout.startswith("restarted DE")
    after = _node(faulty, "DE")
    assert after["address"] == before["address"]
    assert after["pid"] != before["pid"]
    assert _peer_certificate(faulty, "DE") == new
    _all_up(faulty, "every process serving after the restart")
    query = _a_document(faulty, "DE", "FR")
    _until(
        "DE answered after its restart",
        lambda: _query(faulty, "FR", "DE", *query)["outcome"] == "hit",
    )


def test_restart_gateway_keeps_its_address(faulty: Path) -> None:
    """`restart --gateway` starts the gateway again on its port; bureaus reach it again."""
    before = _manifest(faulty)["processes"][0]
    assert before["role"] == "gateway"
    restart = _ncbsim("restart", "--workdir", faulty, "--gateway")
    assert restart.returncode == 0, restart.stderr
    after = _manifest(faulty)["processes"][0]
    assert after["address"] == before["address"]
    assert after["pid"] != before["pid"]
    assert not alive(before["pid"])
    query = _a_document(faulty, "DE", "IT")
    _until(
        "answered after the gateway restart",
        lambda: _query(faulty, "IT", "DE", *query)["outcome"] == "hit",
    )
    _all_up(faulty, "every process serving after the gateway restart")


# ---------------------------------------------------------------- live faults


def test_partition_unanswered_until_healed(faulty: Path) -> None:
    """A live partition of DE makes FR's queries to DE go no_answer, status lists it,
    and after `heal` they are answered again and the fault is gone from status."""
    query = _a_document(faulty, "DE", "FR")
    assert _query(faulty, "FR", "DE", *query)["outcome"] == "hit"
    cut = _ncbsim("fault", "--workdir", faulty, "partition", "--bureaus", "DE", "--id", "cut")
    assert cut.returncode == 0, cut.stderr
    try:
        faults = _status(faulty)[1]["faults"]
        assert [(f["id"], f["kind"], f["held"]) for f in faults] == [("cut", "partition", ["DE"])]
        for _ in range(2):
            assert _query(faulty, "FR", "DE", *query, timeout=2)["outcome"] == "no_answer"
    finally:
        heal = _ncbsim("heal", "--workdir", faulty, "cut")
    assert heal.returncode == 0, heal.stderr
    assert _status(faulty)[1]["faults"] == []
    _until(
        "answered after the heal", lambda: _query(faulty, "FR", "DE", *query)["outcome"] == "hit"
    )


def test_a_bad_fault_is_refused_as_a_scenario_would_refuse_it(faulty: Path) -> None:
    """A live fault takes a scenario's names and checks: bad values, unknown bureaus,
    a taken id and an unknown heal are one-line errors (exit 2) that change nothing."""
    cases = [
        (
            ["latency", "--bureaus", "DE", "--latency-ms", "fast"],
            "latency_ms: expected a number > 0",
        ),
        (["latency", "--bureaus", "DE"], "latency_ms: required for a latency fault"),
        (["loss", "--bureaus", "XX", "--loss", "0.1"], "XX is not a bureau of this network"),
        (["kill", "--bureaus", "DE", "--duration-s", "3"], "duration_s: a live kill lasts"),
        (["restart", "--bureaus", "DE"], "ncbsim restart --workdir"),
    ]
    for args, message in cases:
        out = _ncbsim("fault", "--workdir", faulty, *args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert message in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr
    heal = _ncbsim("heal", "--workdir", faulty, "nothing")
    assert heal.returncode == 2
    assert "no fault 'nothing' is in force" in heal.stderr
    assert _status(faulty)[0] == 0


def test_process_faults_live(faulty: Path) -> None:
    """kill and restart, pause and heal, skew and heal: each applied to NL's or FR's
    real process, seen by status, and undone."""
    kill = _ncbsim("fault", "--workdir", faulty, "kill", "--bureaus", "NL")
    assert kill.returncode == 0, kill.stderr
    code, data = _status(faulty)
    assert code == 1
    assert not _rows(data)["NL"]["alive"]
    again = _ncbsim("fault", "--workdir", faulty, "restart", "--bureaus", "NL")
    assert again.returncode == 0, again.stderr
    assert _all_up(faulty, "NL serving after its restart")["faults"] == []

    pause = _ncbsim("fault", "--workdir", faulty, "pause", "--bureaus", "NL", "--id", "nap")
    assert pause.returncode == 0, pause.stderr
    code, data = _status(faulty)
    assert code == 1
    assert _rows(data)["NL"]["alive"]
    assert _rows(data)["NL"]["health"] == "UNREACHABLE"
    assert _ncbsim("heal", "--workdir", faulty, "nap").returncode == 0
    _all_up(faulty, "NL serving after SIGCONT")

    skew = _ncbsim("fault", "--workdir", faulty, "skew", "--bureaus", "FR", "--offset-ms", "5000")
    assert skew.returncode == 0, skew.stderr
    sock = Path(_manifest(faulty)["hosts"][0]["control"])
    offset = asyncio.run(control(sock, {"op": "status"}))["bureaus"]["FR"]["offset_ms"]
    assert offset == 5000
    assert [f["kind"] for f in _status(faulty)[1]["faults"]] == ["skew"]
    assert _ncbsim("heal", "--workdir", faulty, "--all").returncode == 0
    assert asyncio.run(control(sock, {"op": "status"}))["bureaus"]["FR"]["offset_ms"] == 0
    _all_up(faulty, "every process serving after the heals")


# ---------------------------------------------------------------- record list


def test_record_list_names_records_that_hit_and_never_writes(faulty: Path) -> None:
    """Every record `record list` shows (visible to the asker) hits when queried with the
    fields it printed, and listing leaves the record database untouched."""
    db = faulty / "bureaus" / "IT" / "records.sqlite"
    before = (hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime_ns)
    listed = {
        kind: _records(faulty, "IT", kind, limit=2) for kind in ("document", "person", "vehicle")
    }
    human = _ncbsim("record", "list", "--workdir", faulty, "--as", "IT", "--kind", "vehicle")
    assert (hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime_ns) == before
    assert human.returncode == 0
    assert "--to IT vehicle --vin" in human.stdout
    numbers = _ncbsim(
        "record", "list", "--workdir", faulty, "--as", "IT", "--kind", "document",
        "--limit", 2, "--field", "number",
    )  # fmt: skip
    assert numbers.stdout.split() == [r["number"] for r in listed["document"]]
    mixed = _ncbsim("record", "list", "--workdir", faulty, "--as", "IT", "--field", "number")
    assert (mixed.returncode, mixed.stdout) == (2, "")  # persons have no number: nothing half
    assert "a person has ref, surname" in mixed.stderr
    queries = {
        "document": lambda r: ("document", "--number", r["number"], "--issuer", r["issuer"]),
        "person": lambda r: (
            "person",
            "--surname",
            r["surname"],
            "--given-names",
            r["given_names"],
            "--dob",
            r["date_of_birth"],
        ),
        "vehicle": lambda r: ("vehicle", "--vin", r["vin"]),
    }
    asked = 0
    for kind, records in listed.items():
        assert len(records) == 2
        assert {r["kind"] for r in records} == {kind}
        for record in records:
            if not _visible(record, "NL"):
                continue
            answer = _query(faulty, "NL", "IT", *queries[kind](record))
            assert answer["outcome"] == "hit", (kind, answer)
            assert record["ref"] in [m["ref"] for m in answer["matches"]]
            asked += 1
    assert asked >= 3


def test_stop_finds_a_host_restarted_by_another_command(fresh_network: Network) -> None:
    """A network started in one process (a foreground `up`) still stops a host that
    `ncbsim restart` started again meanwhile: stop reads the pids in network.json too."""
    workdir = fresh_network.workdir
    old = fresh_network.node("DE").pid
    restart = _ncbsim("restart", "--workdir", workdir, "--bureau", "DE")
    assert restart.returncode == 0, restart.stderr
    new = _node(workdir, "DE")["pid"]
    assert new != old
    assert alive(new)
    try:
        stopped = fresh_network.stop()
        assert not alive(new)
        assert stopped.stopped == {"gateway": 1, "host": 4}
    finally:
        if alive(new):
            with contextlib.suppress(ProcessLookupError):  # it may exit on its own meanwhile
                os.kill(new, signal.SIGKILL)
