"""What the servers need in a pod, over real processes: a plaintext health port holding
health alone, metrics on any address (opted in), one metrics page per host, and nodes
bound to 0.0.0.0 that register the address that routes to the gateway (``advertise: auto``).

The health client is grpcio-health-checking's stub over a plaintext channel, as the
kubelet's gRPC probe connects; the metrics are parsed by prometheus_client's parser.
"""

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

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from spawned import stop
from support import document_query, run_ncbsim, scrape_metrics

from ncbsim import pki as pkimod
from ncbsim import processes
from ncbsim.client import BureauClient, Outcome
from ncbsim.node import datagen
from ncbsim.pki import PkiDir
from ncbsim.v2 import bureau_pb2, bureau_pb2_grpc, gateway_pb2, gateway_pb2_grpc, query_pb2

pytestmark = pytest.mark.integration

BUREAUS = ["FR", "DE", "IT", "ES", "NL"]
HOSTED = ["DE", "IT"]
GATEWAY_SERVICE = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
TIMEOUT_S = 60.0  # generous: the machine is shared; only a hung process needs it


@dataclass
class Pod:
    """A PKI, a gateway and a host of DE and IT started as pods start them."""

    root: Path
    pki: PkiDir
    gateway: dict[str, Any]
    host: dict[str, Any]
    gateway_log: Path


def _start(
    root: Path, name: str, args: list[str]
) -> tuple[subprocess.Popen[bytes], dict[str, Any], Path]:
    """Start ``ncbsim ARGS --ready-file ...``; the process, its ready file and its log."""
    run = root / "run"
    run.mkdir(exist_ok=True)
    log, ready = run / f"{name}.log", run / f"{name}.ready.json"
    with log.open("ab") as out:
        child = processes.spawn(
            [
                sys.executable,
                "-m",
                "ncbsim",
                "--log-level",
                "debug",
                *args,
                "--ready-file",
                str(ready),
            ],
            out,
            env={"GRPC_VERBOSITY": "ERROR"},
        )
    try:
        data = processes.wait_ready(
            child,
            ready,
            deadline=time.monotonic() + TIMEOUT_S,
            exited=lambda code: f"{name} exited {code}: {log.read_text()[-2000:]}",
            late=f"{name} not ready: {log.read_text()[-2000:]}",
        )
    except BaseException:
        stop(child, timeout_s=TIMEOUT_S)
        raise
    return child, data, log


def _spec(root: Path, name: str, gateway: str, bureaus: list[str]) -> Path:
    """A host spec as a pod's: every bureau on 0.0.0.0, advertise auto, no own metrics."""
    entries = [
        {
            "bureau": code,
            "db": str(root / "bureaus" / code / "records.sqlite"),
            "listen": "0.0.0.0:0",
            "advertise": "auto",
            "metrics_listen": "off",
        }
        for code in bureaus
    ]
    path = root / "run" / f"{name}.spec.json"
    path.write_text(json.dumps({"gateway": gateway, "bureaus": entries}))
    return path


def _host(
    root: Path, name: str, gateway: str, bureaus: list[str]
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    spec = _spec(root, name, gateway, bureaus)
    child, ready, _ = _start(
        root,
        name,
        [
            "host",
            "--dir",
            str(root),
            "--spec",
            str(spec),
            "--health-listen",
            "0.0.0.0:0",
            "--pod-metrics-listen",
            "0.0.0.0:0",
            "--metrics-any-address",
        ],
    )
    return child, ready


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    """A gateway on loopback with a health port and metrics on 0.0.0.0, and a host of DE
    and IT as a bureaus pod runs it; always stopped."""
    root = tmp_path_factory.mktemp("pod")
    pki = pkimod.init(root, BUREAUS)
    for code in BUREAUS[1:]:
        db = root / "bureaus" / code / "records.sqlite"
        db.parent.mkdir(parents=True, exist_ok=True)
        datagen.generate(db, code, seed=3, documents=100, persons=20, vehicles=20, workers=1)
    (root / "run").mkdir()
    children: list[subprocess.Popen[bytes]] = []
    try:
        gateway_proc, gateway, gateway_log = _start(
            root,
            "gateway",
            [
                "gateway",
                "--dir",
                str(root),
                "--listen",
                "127.0.0.1:0",
                "--health-listen",
                "0.0.0.0:0",
                "--metrics-listen",
                "0.0.0.0:0",
                "--metrics-any-address",
            ],
        )
        children.append(gateway_proc)
        host_proc, host = _host(root, "host", gateway["address"], HOSTED)
        children.append(host_proc)
        yield Pod(root, pki, gateway, host, gateway_log)
    finally:
        for child in reversed(children):
            stop(child, timeout_s=TIMEOUT_S)


def _local(address: str) -> str:
    """A wildcard-bound address as a client on this machine dials it."""
    return "127.0.0.1:" + address.rpartition(":")[2]


def _check(address: str, service: str) -> int:
    with grpc.insecure_channel(_local(address)) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_S
        )
    return int(reply.status)


def _document(root: Path, code: str) -> query_pb2.Query:
    with sqlite3.connect(root / "bureaus" / code / "records.sqlite") as conn:
        number, issuer = conn.execute("select number, issuer from documents limit 1").fetchone()
    return document_query(number, issuer)


async def _ask(pod: Pod, to: str) -> Outcome:
    async with BureauClient.open(pod.pki, "FR", pod.gateway["address"]) as client:
        answer = await client.query(_document(pod.root, to), to)
    return answer.outcome


def _unimplemented_on(address: str) -> list[grpc.StatusCode]:
    """The codes of a Gateway and a Bureau call sent, in plaintext, to ``address``."""
    codes = []
    with grpc.insecure_channel(_local(address)) as channel:
        calls = [
            lambda: gateway_pb2_grpc.GatewayServiceStub(channel).Routes(
                gateway_pb2.RoutesRequest(), timeout=TIMEOUT_S
            ),
            lambda: bureau_pb2_grpc.BureauServiceStub(channel).Handle(
                bureau_pb2.HandleRequest(), timeout=TIMEOUT_S
            ),
        ]
        for call in calls:
            with pytest.raises(grpc.RpcError) as caught:
                call()
            codes.append(caught.value.code())
    return codes


def test_the_gateway_health_port_answers_health_in_plaintext(pod: Pod) -> None:
    """The gateway's health port, bound to 0.0.0.0, says SERVING for "" and the Gateway
    service without TLS; an unknown service is NOT_FOUND."""
    assert pod.gateway["health"].startswith("0.0.0.0:")
    assert _check(pod.gateway["health"], "") == SERVING
    assert _check(pod.gateway["health"], GATEWAY_SERVICE) == SERVING
    with pytest.raises(grpc.RpcError) as caught:
        _check(pod.gateway["health"], "ncbsim.v2.NoSuchService")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_the_health_ports_hold_no_program_service(pod: Pod) -> None:
    """On either health port a Gateway or a Bureau call is UNIMPLEMENTED: plaintext
    reaches nothing but health."""
    for address in (pod.gateway["health"], pod.host["health"]):
        assert _unimplemented_on(address) == [grpc.StatusCode.UNIMPLEMENTED] * 2


def test_the_gateway_serves_metrics_on_any_address_when_opted_in(pod: Pod) -> None:
    """With --metrics-any-address the page is bound to 0.0.0.0 and reads as Prometheus's."""
    assert pod.gateway["metrics"].startswith("0.0.0.0:")
    assert "grpc_server_handled_total" in scrape_metrics(_local(pod.gateway["metrics"]))


def test_metrics_on_a_wildcard_without_the_opt_in_is_refused(tmp_path: Path) -> None:
    """Without --metrics-any-address, 0.0.0.0 stays a one-line error, exit 2, for both."""
    pkimod.init(tmp_path / "pki", ["FR"])
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps({"gateway": "127.0.0.1:1", "bureaus": [{"bureau": "FR", "db": "x"}]})
    )
    for args in (
        ["gateway", "--dir", tmp_path / "pki", "--listen", "127.0.0.1:0"],
        ["host", "--dir", tmp_path / "pki", "--spec", spec, "--pod-metrics-listen", "0.0.0.0:0"],
    ):
        wildcard = [] if args[0] == "host" else ["--metrics-listen", "0.0.0.0:0"]
        done = run_ncbsim(*args, *wildcard, timeout=TIMEOUT_S)
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert "loopback only" in line
        assert "--metrics-any-address" in line


def test_host_health_names_every_bureau_and_the_whole(pod: Pod) -> None:
    """The host's health port says SERVING for "" and for ncbsim.bureau.XX of each bureau
    it hosts, NOT_FOUND for one it does not."""
    address = pod.host["health"]
    assert _check(address, "") == SERVING
    for code in HOSTED:
        assert _check(address, f"ncbsim.bureau.{code}") == SERVING
    with pytest.raises(grpc.RpcError) as caught:
        _check(address, "ncbsim.bureau.FR")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_nodes_on_0000_register_their_address_toward_the_gateway(pod: Pod) -> None:
    """Bound to 0.0.0.0 with advertise auto, each node registers 127.0.0.1 and its port
    (the interface that routes to a loopback gateway), and answers through the gateway."""
    bound = pod.host["bureaus"]
    assert all(address.startswith("0.0.0.0:") for address in bound.values())
    lines = [json.loads(x) for x in pod.gateway_log.read_text().splitlines() if x.startswith("{")]
    routes = {x["bureau"]: x["address"] for x in lines if x["event"] == "route_registered"}
    assert {code: routes[code] for code in HOSTED} == {code: _local(bound[code]) for code in HOSTED}
    for code in HOSTED:
        assert asyncio.run(_ask(pod, code)) == Outcome.HIT


def test_one_metrics_page_holds_every_hosted_bureau(pod: Pod) -> None:
    """The host's pod metrics page labels each sample with its bureau: after a query to
    each, both bureaus' Handle counts are there, told apart by ``bureau``."""
    for code in HOSTED:
        assert asyncio.run(_ask(pod, code)) == Outcome.HIT
    samples = scrape_metrics(_local(pod.host["pod_metrics"]))
    handled = {
        labels["bureau"]: value
        for labels, value in samples["grpc_server_handled_total"]
        if labels["grpc_method"] == "Handle" and labels["grpc_code"] == "OK"
    }
    assert set(handled) == set(HOSTED)
    assert all(value >= 1 for value in handled.values())
    assert {labels["bureau"] for labels, _ in samples["ncbsim_replays_total"]} == set(HOSTED)
    assert pod.host["metrics"] == dict.fromkeys(HOSTED, "")  # each node serves none itself


def test_a_node_with_advertise_auto_is_queried_through_the_gateway(pod: Pod) -> None:
    """``ncbsim node --listen 0.0.0.0:0 --advertise auto`` registers 127.0.0.1:PORT and
    FR's query reaches it through the gateway."""
    child, ready, _ = _start(
        pod.root,
        "node-ES",
        [
            "node",
            "--dir",
            str(pod.root),
            "--bureau",
            "ES",
            "--gateway",
            pod.gateway["address"],
            "--db",
            str(pod.root / "bureaus" / "ES" / "records.sqlite"),
            "--listen",
            "0.0.0.0:0",
            "--advertise",
            "auto",
        ],
    )
    try:
        assert ready["address"].startswith("0.0.0.0:")
        assert asyncio.run(_ask(pod, "ES")) == Outcome.HIT
        lines = [
            json.loads(x) for x in pod.gateway_log.read_text().splitlines() if x.startswith("{")
        ]
        routes = [
            x["address"] for x in lines if x["event"] == "route_registered" and x["bureau"] == "ES"
        ]
        assert routes == [_local(ready["address"])]
    finally:
        stop(child, timeout_s=TIMEOUT_S)


def test_host_health_turns_not_serving_when_it_stops(pod: Pod) -> None:
    """A Watch on the host's health port sees "" and the bureau turn NOT_SERVING after
    SIGTERM, before the port closes."""
    child, ready = _host(pod.root, "host-NL", pod.gateway["address"], ["NL"])
    try:
        with grpc.insecure_channel(_local(ready["health"])) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            streams = [
                stub.Watch(health_pb2.HealthCheckRequest(service=name), timeout=TIMEOUT_S)
                for name in ("", "ncbsim.bureau.NL")
            ]
            assert [next(s).status for s in streams] == [SERVING, SERVING]
            child.send_signal(signal.SIGTERM)
            assert [next(s).status for s in streams] == [NOT_SERVING, NOT_SERVING]
    finally:
        stop(child, timeout_s=TIMEOUT_S)


def test_gateway_health_port_turns_not_serving_when_it_stops(tmp_path: Path) -> None:
    """A Watch on the gateway's health port sees NOT_SERVING after SIGTERM."""
    pkimod.init(tmp_path, ["FR"])
    child, ready, _ = _start(
        tmp_path,
        "gateway",
        [
            "gateway",
            "--dir",
            str(tmp_path),
            "--listen",
            "127.0.0.1:0",
            "--health-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
        ],
    )
    try:
        with grpc.insecure_channel(ready["health"]) as channel:
            stream = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=GATEWAY_SERVICE), timeout=TIMEOUT_S
            )
            assert next(stream).status == SERVING
            child.send_signal(signal.SIGTERM)
            assert next(stream).status == NOT_SERVING
    finally:
        stop(child, timeout_s=TIMEOUT_S)
