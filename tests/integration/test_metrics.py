"""Prometheus metrics of a real network: every party's page parses, handled counters rise by
exactly the queries sent, a spoofed sender is counted as a refusal, and the generated
prometheus.yml is valid and scrapes every party (promtool and Prometheus, when present)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import document_query, metric_total, scrape_metrics

from ncbsim import processes, transport
from ncbsim.client import BureauClient, seal_query
from ncbsim.pki import PkiDir
from ncbsim.simulations.network import Network
from ncbsim.simulations.scrape import prometheus_yml
from ncbsim.v2 import gateway_pb2, gateway_pb2_grpc

pytestmark = pytest.mark.integration

QUERY = document_query("ZZ0000000", "DE")
N = 5


def families(address: str) -> set[str]:
    """The names of the families on one /metrics page (``_total`` stripped by the parser),
    those with no sample yet too."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as reply:
        return {f.name for f in text_string_to_metric_families(reply.read().decode())}


async def _queries(network: Network, n: int) -> None:
    pki = PkiDir(network.workdir)
    async with BureauClient.open(pki, "FR", network.gateway.address) as client:
        for _ in range(n):
            await client.query(QUERY, "DE", timeout=10)


async def _spoof(network: Network) -> grpc.StatusCode:
    """Seal a query as FR, send it over DE's mTLS connection: the header lies."""
    pki = PkiDir(network.workdir)
    async with BureauClient.open(pki, "FR", network.gateway.address) as fr:
        await fr.peers.resolve(["DE"])
        sealed = seal_query(fr.identity, fr.peers.get("DE"), QUERY).envelope
    channel = transport.gateway_channel(network.gateway.address, pki.tls("DE"))
    try:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        await stub.Query(gateway_pb2.QueryRequest(envelope=sealed), timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    finally:
        await channel.close()
    return grpc.StatusCode.OK


def test_every_party_serves_a_page_the_prometheus_parser_reads(network: Network) -> None:
    """The gateway and every node have an endpoint in network.json, on loopback, whose
    page parses and holds the standard gRPC families and ncbsim's own."""
    manifest = json.loads((network.workdir / "network.json").read_text())
    assert {p["metrics"] for p in manifest["processes"]} == {p.metrics for p in network.procs}
    for proc in network.procs:
        assert proc.metrics.startswith("127.0.0.1:"), proc
        samples = scrape_metrics(proc.metrics)
        # Every node has called the gateway (Register) by now, and the gateway served it.
        family = (
            "grpc_server_started_total" if proc.role == "gateway" else "grpc_client_started_total"
        )
        assert family in samples, proc
        assert "ncbsim_audit_writer_lag_seconds" in samples, proc
    assert len({p.metrics for p in network.procs}) == len(network.procs)  # a page per party


def test_handled_counters_rise_by_exactly_the_queries_sent(network: Network) -> None:
    """After N queries FR->DE from one client, Query/OK at the gateway and Handle/OK at
    DE rose by N + 2: the queries, and the session's SESSION_OPEN and SESSION_CLOSE."""
    gateway, de = network.gateway.metrics, network.node("DE").metrics
    query = {"grpc_method": "Query", "grpc_code": "OK"}
    handle = {"grpc_method": "Handle", "grpc_code": "OK"}
    before = (
        metric_total(gateway, "grpc_server_handled_total", **query),
        metric_total(de, "grpc_server_handled_total", **handle),
    )
    asyncio.run(_queries(network, N))
    after = (
        metric_total(gateway, "grpc_server_handled_total", **query),
        metric_total(de, "grpc_server_handled_total", **handle),
    )
    assert after[0] - before[0] == N + 2
    assert after[1] - before[1] == N + 2
    assert metric_total(gateway, "grpc_client_handled_total", **handle) >= N
    assert metric_total(gateway, "ncbsim_relay_seconds_count") >= N


def test_a_spoofed_sender_is_counted_as_an_identity_mismatch(network: Network) -> None:
    """A query sealed as FR but sent with DE's certificate is refused, and the gateway's
    refusals by reason rise by exactly one."""
    gateway = network.gateway.metrics
    labels = {"rpc": "Query", "reason": "identity_mismatch"}
    before = metric_total(gateway, "ncbsim_refusals_total", **labels)
    assert asyncio.run(_spoof(network)) == grpc.StatusCode.PERMISSION_DENIED
    assert metric_total(gateway, "ncbsim_refusals_total", **labels) - before == 1
    assert metric_total(gateway, "grpc_server_handled_total", grpc_code="PermissionDenied") >= 1


@pytest.fixture
def scrape_config(network: Network, tmp_path: Path) -> Path:
    """``ncbsim status --prometheus --out`` for the network."""
    out = tmp_path / "prometheus.yml"
    command = [sys.executable, "-m", "ncbsim", "status", "--workdir", str(network.workdir)]
    done = subprocess.run(
        [*command, "--prometheus", "--out", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text() == prometheus_yml(
        network.procs,
        workdir=str(network.workdir),
        made_by=f"ncbsim status --workdir {network.workdir} --prometheus",
    )
    return out


def test_promtool_accepts_the_generated_configuration(scrape_config: Path) -> None:
    """promtool (Debian package prometheus) checks the generated prometheus.yml."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus; .ci/run installs it)")
    done = subprocess.run(
        [promtool, "check", "config", str(scrape_config)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def prometheus(scrape_config: Path, tmp_path: Path) -> Iterator[str]:
    """Prometheus on a free loopback port with a temporary store; stopped by its pid."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (Debian package prometheus)")
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = (tmp_path / "prometheus.log").open("wb")
    child = subprocess.Popen(
        [
            binary,
            f"--config.file={scrape_config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        processes.terminate([child.pid])
        child.wait()
        log.close()


def _targets(api: str) -> list[dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://{api}/api/v1/targets", timeout=5) as reply:
            return list(json.loads(reply.read())["data"]["activeTargets"])
    except OSError:
        return []


def test_prometheus_scrapes_every_party(network: Network, prometheus: str) -> None:
    """A real Prometheus, given the generated configuration, reports every party's target
    up, each labelled with its party and role."""
    deadline = time.monotonic() + 60
    targets: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        targets = _targets(prometheus)
        if len(targets) == len(network.procs) and all(t["health"] == "up" for t in targets):
            break
        time.sleep(0.5)
    assert len(targets) == len(network.procs), targets
    assert all(t["health"] == "up" for t in targets), targets
    parties = {t["labels"]["party"] for t in targets}  # type: ignore[index]
    assert parties == {p.bureau or "gateway" for p in network.procs}
