"""Host processes: many bureau nodes in one process, their control socket and clocks."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from spawned import spawn, stop, wait_ready
from support import document_query

from ncbsim import pki as pkimod
from ncbsim.client import BureauClient, Outcome
from ncbsim.clock import Clock
from ncbsim.errors import ConfigError
from ncbsim.node import datagen
from ncbsim.node.host import control, load_spec
from ncbsim.pki import PkiDir
from ncbsim.v2 import query_pb2

BUREAUS = ["FR", "DE", "IT", "ES", "NL"]
HOSTED = ["FR", "DE", "IT"]
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


@dataclass
class Net:
    """A PKI, a running gateway, and a host process serving FR, DE and IT."""

    root: Path
    pki: PkiDir
    gateway: str
    host: subprocess.Popen[bytes]
    ready: dict[str, Any]
    control: Path
    log: Path


def _db(root: Path, code: str) -> Path:
    return root / "bureaus" / code / "records.sqlite"


def _spec(root: Path, name: str, gateway: str, bureaus: list[dict[str, Any]]) -> Path:
    path = root / "run" / f"{name}.spec.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"gateway": gateway, "bureaus": bureaus}))
    return path


def _entry(root: Path, code: str, **extra: Any) -> dict[str, Any]:
    return {"bureau": code, "db": str(_db(root, code)), "listen": "127.0.0.1:0", **extra}


def _start_host(net_root: Path, name: str, spec: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """Start ``ncbsim host`` on ``spec``; returns it and its log."""
    run = net_root / "run"
    log = run / f"{name}.log"
    host = spawn(
        [
            "--log-level",
            "debug",
            "host",
            "--dir",
            str(net_root),
            "--spec",
            str(spec),
            "--ready-file",
            str(run / f"{name}.ready.json"),
            "--control",
            str(run / f"{name}.sock"),
        ],
        log,
    )
    return host, log


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    """A gateway and one host of FR, DE and IT, real processes; always stopped."""
    root = tmp_path_factory.mktemp("hostnet")
    pki = pkimod.init(root, BUREAUS)
    for code in BUREAUS:
        _db(root, code).parent.mkdir(parents=True, exist_ok=True)
        datagen.generate(
            _db(root, code), code, seed=1, documents=200, persons=50, vehicles=50, workers=1
        )
    run = root / "run"
    run.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        glog = run / "gateway.log"
        gateway = spawn(
            [
                "--log-level",
                "debug",
                "gateway",
                "--dir",
                str(root),
                "--listen",
                "127.0.0.1:0",
                "--ready-file",
                str(run / "gateway.json"),
            ],
            glog,
        )
        procs.append(gateway)
        address = wait_ready(gateway, run / "gateway.json", glog)["address"]
        spec = _spec(root, "main", address, [_entry(root, code) for code in HOSTED])
        host, log = _start_host(root, "main", spec)
        procs.append(host)
        ready = wait_ready(host, run / "main.ready.json", log)
        yield Net(root, pki, address, host, ready, run / "main.sock", log)
    finally:
        for proc in reversed(procs):
            stop(proc)


def _document(root: Path, code: str) -> query_pb2.Query:
    """A document query that hits a record of ``code``'s database."""
    with sqlite3.connect(_db(root, code)) as conn:
        number, issuer = conn.execute("select number, issuer from documents limit 1").fetchone()
    return document_query(number, issuer)


async def _ask(net: Net, to: str, *, clock: Clock | None = None) -> Outcome:
    async with BureauClient.open(net.pki, "FR", net.gateway, clock=clock) as client:
        answer = await client.query(_document(net.root, to), to)
    return answer.outcome


def test_clock_is_wall_time_plus_a_mutable_offset() -> None:
    """A Clock reads the wall time plus its offset, and follows a changed offset."""
    clock = Clock()
    before = int(time.time() * 1000)
    assert before <= clock.now_ms() <= int(time.time() * 1000)
    clock.offset_ms = 120_000
    assert clock.now_ms() - int(time.time() * 1000) in range(119_000, 120_001)
    clock.offset_ms = -5_000
    assert clock.now_ms() < int(time.time() * 1000) - 4_000


def test_spec_errors_name_the_key(tmp_path: Path) -> None:
    """An invalid spec is refused with the file, the key and what was expected."""
    pki = pkimod.init(tmp_path / "pki", ["FR"])
    db = tmp_path / "fr.sqlite"
    db.write_bytes(b"")
    bad: list[tuple[object, str]] = [
        ({"bureaus": []}, "gateway: expected a non-empty string"),
        ({"gateway": "127.0.0.1:1", "bureaus": []}, "bureaus: expected a non-empty list"),
        ({"gateway": "127.0.0.1:1", "bureaus": [{"db": str(db)}]}, "bureaus[0].bureau"),
        (
            {"gateway": "127.0.0.1:1", "bureaus": [{"bureau": "FR", "db": str(db), "port": 1}]},
            "bureaus[0]: unknown key 'port'",
        ),
        (
            {"gateway": "127.0.0.1:1", "bureaus": [{"bureau": "JP", "db": str(db)}]},
            "bureaus[0].bureau: JP is not a bureau of the PKI",
        ),
        (
            {"gateway": "127.0.0.1:1", "bureaus": [{"bureau": "FR", "db": str(tmp_path / "x")}]},
            "bureaus[0].db: no such database",
        ),
        (
            {
                "gateway": "127.0.0.1:1",
                "bureaus": [{"bureau": "FR", "db": str(db), "clock_offset_ms": "5s"}],
            },
            "bureaus[0].clock_offset_ms: expected an integer",
        ),
        (
            {
                "gateway": "127.0.0.1:1",
                "bureaus": [{"bureau": "FR", "db": str(db), "advertise": "x"}],
            },
            "not a host:port address",
        ),
    ]
    spec = tmp_path / "spec.json"
    for data, message in bad:
        spec.write_text(json.dumps(data))
        with pytest.raises(ConfigError) as caught:
            load_spec(spec, pki)
        assert message in str(caught.value)
        assert str(spec) in str(caught.value)
    spec.write_text(
        json.dumps(
            {
                "gateway": "127.0.0.1:1",
                "bureaus": [
                    {"bureau": "FR", "db": str(db), "clock_offset_ms": 7, "advertise": None}
                ],
            }
        )
    )
    (config,) = load_spec(spec, pki)
    assert (config.bureau, config.gateway, config.clock_offset_ms) == ("FR", "127.0.0.1:1", 7)
    assert (config.listen, config.advertise, config.clock_skew_ms) == ("127.0.0.1:0", None, 30_000)


@pytest.mark.integration
def test_ready_file_lists_every_bureau_and_logs_name_them(net: Net) -> None:
    """The ready file names the host's pid and every bureau's address; each node's log
    lines carry its bureau."""
    assert net.ready["role"] == "host"
    assert net.ready["pid"] == net.host.pid
    assert sorted(net.ready["bureaus"]) == sorted(HOSTED)
    assert len(set(net.ready["bureaus"].values())) == len(HOSTED)
    lines = [json.loads(line) for line in net.log.read_text().splitlines() if line.startswith("{")]
    listening = {line.get("bureau") for line in lines if line["event"] == "node_listening"}
    assert listening == set(HOSTED)
    # The host's own lines say host; a node's say which node, as a node process's would.
    assert all(
        line["role"] == ("host" if "bureau" not in line else f"node:{line['bureau']}")
        for line in lines
    )


@pytest.mark.integration
def test_hosted_bureaus_answer_each_other(net: Net) -> None:
    """FR, hosted with DE and IT, queries both through the gateway and gets hits."""
    assert asyncio.run(_ask(net, "DE")) == Outcome.HIT
    assert asyncio.run(_ask(net, "IT")) == Outcome.HIT


@pytest.mark.integration
def test_status_over_the_control_socket(net: Net) -> None:
    """status gives the pid, and each bureau's address, metrics endpoint and clock offset."""
    reply = asyncio.run(control(net.control, {"op": "status"}))
    assert reply == {
        "ok": True,
        "pid": net.host.pid,
        "bureaus": {
            code: {
                "address": net.ready["bureaus"][code],
                "metrics": net.ready["metrics"][code],
                "offset_ms": 0,
            }
            for code in HOSTED
        },
    }


@pytest.mark.integration
def test_a_skewed_bureau_fails_until_its_clock_is_set_back(net: Net) -> None:
    """DE's clock 2 minutes ahead: queries to DE fail (DE sees them expired), IT still
    answers; with the clock set back, DE answers again."""

    async def scenario() -> list[Outcome]:
        outcomes = []
        reply = await control(net.control, {"op": "clock", "bureau": "DE", "offset_ms": 120_000})
        assert reply == {"ok": True}
        try:
            status = await control(net.control, {"op": "status"})
            assert status["bureaus"]["DE"]["offset_ms"] == 120_000
            outcomes += [await _ask(net, "DE"), await _ask(net, "IT")]
        finally:
            reply = await control(net.control, {"op": "clock", "bureau": "DE", "offset_ms": 0})
        assert reply == {"ok": True}
        outcomes.append(await _ask(net, "DE"))
        return outcomes

    assert asyncio.run(scenario()) == [Outcome.FAILED, Outcome.HIT, Outcome.HIT]


@pytest.mark.integration
def test_a_skewed_requester_is_refused_by_a_correct_bureau(net: Net) -> None:
    """A client whose clock runs 2 minutes behind seals envelopes DE finds expired."""
    assert asyncio.run(_ask(net, "DE", clock=Clock(offset_ms=-120_000))) == Outcome.FAILED
    assert asyncio.run(_ask(net, "DE", clock=Clock(offset_ms=1_000))) == Outcome.HIT


@pytest.mark.integration
def test_malformed_control_input_is_refused_and_the_host_lives_on(net: Net) -> None:
    """Garbage, wrong shapes, unknown ops and bureaus get ok: false on the same
    connection, and the host keeps answering."""

    async def exchange(lines: list[bytes]) -> list[dict[str, Any]]:
        reader, writer = await asyncio.open_unix_connection(str(net.control))
        replies = []
        for line in lines:
            writer.write(line + b"\n")
            await writer.drain()
            replies.append(json.loads(await asyncio.wait_for(reader.readline(), 5)))
        writer.close()
        await writer.wait_closed()
        return replies

    bad = [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"op": "reboot"}',
        b'{"op": "clock", "bureau": "JP", "offset_ms": 1}',
        b'{"op": "clock", "bureau": "DE", "offset_ms": "soon"}',
        b'{"op": "clock", "bureau": "DE", "offset_ms": true}',
    ]
    replies = asyncio.run(exchange([*bad, b'{"op": "status"}']))
    assert [r["ok"] for r in replies] == [False] * len(bad) + [True]
    assert all(r["error"] for r in replies[:-1])
    assert replies[-1]["bureaus"]["DE"]["offset_ms"] == 0
    assert net.host.poll() is None


@pytest.mark.integration
def test_sigterm_stops_the_host_cleanly(net: Net) -> None:
    """SIGTERM: every node stops, the host exits 0 and removes its control socket."""
    spec = _spec(net.root, "solo", net.gateway, [_entry(net.root, "ES")])
    host, log = _start_host(net.root, "solo", spec)
    try:
        ready = wait_ready(host, net.root / "run" / "solo.ready.json", log)
        sock = net.root / "run" / "solo.sock"
        assert sock.exists()
        assert list(ready["bureaus"]) == ["ES"]
        host.send_signal(signal.SIGTERM)
        assert host.wait(timeout=STOP_TIMEOUT_S) == 0
        assert not sock.exists()
        assert '"node_stopping"' in log.read_text()
    finally:
        stop(host)


@pytest.mark.integration
def test_a_bureau_that_cannot_start_stops_the_host(net: Net) -> None:
    """A bureau whose port is taken: the host stops the others, names the bureau and
    why, and exits non-zero without a ready file."""
    spec = _spec(
        net.root,
        "clash",
        net.gateway,
        [_entry(net.root, "ES"), _entry(net.root, "NL", listen=net.gateway)],
    )
    host, log = _start_host(net.root, "clash", spec)
    try:
        assert host.wait(timeout=READY_TIMEOUT_S) == 1
    finally:
        stop(host)
    failures = [
        json.loads(line)
        for line in log.read_text().splitlines()
        if '"bureau_failed"' in line and line.startswith("{")
    ]
    assert [(f["bureau"], "cannot listen" in f["reason"]) for f in failures] == [("NL", True)]
    assert not (net.root / "run" / "clash.ready.json").exists()
    assert not (net.root / "run" / "clash.sock").exists()


@pytest.mark.integration
def test_a_spec_naming_an_unknown_bureau_is_refused(net: Net) -> None:
    """A bureau the PKI does not know: non-zero exit, and a message naming it."""
    spec = _spec(net.root, "unknown", net.gateway, [_entry(net.root, "FR") | {"bureau": "JP"}])
    result = subprocess.run(
        [sys.executable, "-m", "ncbsim", "host", "--dir", str(net.root), "--spec", str(spec)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "bureaus[0].bureau: JP is not a bureau of the PKI" in result.stderr
