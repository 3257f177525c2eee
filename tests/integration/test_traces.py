"""On a network of `ncbsim up --trace-dir`: one query's spans, read from the trace files of
the client, the gateway and the node, form one trace with parent links; a multi-bureau
query has one gateway CLIENT span per recipient; a post's delivery is traced too."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import run_ncbsim

pytestmark = pytest.mark.integration

SMALL = Path(__file__).parents[1] / "scenarios" / "small.toml"
GATEWAY = "ncbsim.v2.GatewayService"
BUREAU = "ncbsim.v2.BureauService"


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A small network up with --trace-dir (work dir, trace dir); always brought down."""
    base = tmp_path_factory.mktemp("traced")
    workdir, traces = base / "net", base / "traces"
    up = run_ncbsim(
        "up", str(SMALL), "--workdir", str(workdir), "--detach", "--trace-dir", str(traces)
    )
    try:
        assert up.returncode == 0, up.stderr
        assert f"traces: {traces}" in up.stdout
        yield workdir, traces
    finally:
        if (workdir / "network.json").exists():
            run_ncbsim("down", "--workdir", str(workdir))


def spans(*paths: Path) -> list[dict[str, Any]]:
    """Every span line of the files (those that exist)."""
    lines = [line for p in paths if p.exists() for line in p.read_text().splitlines()]
    return [json.loads(line) for line in lines]


def host_files(traces: Path) -> list[Path]:
    return sorted(traces.glob("host-*.jsonl"))


def one(found: list[dict[str, Any]], what: str) -> dict[str, Any]:
    assert len(found) == 1, f"{what}: {len(found)} spans"
    return found[0]


def test_one_query_is_one_trace_across_client_gateway_and_node(
    traced: tuple[Path, Path], tmp_path: Path
) -> None:
    """`ncbsim query --trace-file`: node SERVER <- gateway CLIENT <- gateway SERVER <- client
    CLIENT <- the client's ncbsim.query span, all in one trace, each file 0600. The
    session's handshake is in the same trace, under a span of its own."""
    workdir, traces = traced
    client_file = tmp_path / "client.jsonl"
    number = f"Q{os.urandom(5).hex().upper()}"
    query = run_ncbsim(
        "query", "--workdir", str(workdir), "--as", "DE", "--to", "FR",
        "--trace-file", str(client_file), "document", "--number", number, "--issuer", "FR",
    )  # fmt: skip
    assert query.returncode == 0, query.stderr
    client = spans(client_file)
    root = one([s for s in client if s["name"] == "ncbsim.query"], "client query span")
    calls = [s for s in client if s["name"] == f"{GATEWAY}/Query" and s["kind"] == "CLIENT"]
    call = one([s for s in calls if s["parent_span_id"] == root["span_id"]], "client Query call")
    handshake = one([s for s in client if s["name"] == "ncbsim.session.open"], "session open")
    assert handshake["parent_span_id"] == root["span_id"]
    assert [s["parent_span_id"] for s in calls].count(handshake["span_id"]) == 1
    trace_id = root["trace_id"]
    assert root["parent_span_id"] is None
    assert call["trace_id"] == trace_id
    assert call["parent_span_id"] == root["span_id"]
    assert call["resource"]["service.name"] == "ncbsim-client"
    assert call["resource"]["ncbsim.party"] == "client:DE"
    assert call["status"] == "OK"

    mine = [s for s in spans(traces / "gateway.jsonl") if s["trace_id"] == trace_id]
    # The client's directory look-ups (GetDirectory) are in the same trace, beside the Query.
    server = one(
        [
            s
            for s in mine
            if s["kind"] == "SERVER"
            and s["name"] == f"{GATEWAY}/Query"
            and s["parent_span_id"] == call["span_id"]
        ],
        "gateway Query span",
    )
    assert server["parent_span_id"] == call["span_id"]
    assert server["attributes"]["ncbsim.peer"] == "DE"
    assert server["attributes"]["ncbsim.kind"] == "query_request"
    assert server["resource"]["service.name"] == "ncbsim-gateway"
    forward = one(
        [
            s
            for s in mine
            if s["kind"] == "CLIENT"
            and s["name"] == f"{BUREAU}/Handle"
            and s["parent_span_id"] == server["span_id"]
        ],
        "gateway Handle call",
    )
    assert forward["parent_span_id"] == server["span_id"]

    node = [s for s in spans(*host_files(traces)) if s["trace_id"] == trace_id]
    handle = one(
        [
            s
            for s in node
            if s["name"] == f"{BUREAU}/Handle" and s["parent_span_id"] == forward["span_id"]
        ],
        "node Handle span",
    )
    assert handle["kind"] == "SERVER"
    assert handle["attributes"]["ncbsim.party"] == "FR"
    assert handle["attributes"]["ncbsim.peer"] == "gateway"
    assert handle["resource"]["service.name"] == "ncbsim-node"
    everything = json.dumps([*client, *mine, *node])
    assert number not in everything
    for path in [client_file, traces / "gateway.jsonl", *host_files(traces)]:
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_multi_query_has_a_gateway_client_span_per_recipient(
    traced: tuple[Path, Path], tmp_path: Path
) -> None:
    """A MultiQuery to three bureaus: under the gateway's SERVER span, three CLIENT spans,
    each the parent of that bureau's node SERVER span. (The sessions' OPENs went before,
    in one MultiQuery of their own under the ``ncbsim.session.open`` span.)"""
    workdir, traces = traced
    client_file = tmp_path / "multi.jsonl"
    query = run_ncbsim(
        "query", "--workdir", str(workdir), "--as", "DE", "--to", "ALL", "document",
        "--number", "X123456", "--issuer", "FR", "--trace-file", str(client_file),
    )  # fmt: skip
    assert query.returncode == 0, query.stderr
    client = spans(client_file)
    root = one([s for s in client if s["name"] == "ncbsim.multi_query"], "multi_query span")
    assert root["attributes"]["ncbsim.recipients"] == 3
    call = one(
        [
            s
            for s in client
            if s["name"] == f"{GATEWAY}/MultiQuery" and s["parent_span_id"] == root["span_id"]
        ],
        "client MultiQuery call",
    )
    mine = [s for s in spans(traces / "gateway.jsonl") if s["trace_id"] == root["trace_id"]]
    server = one(
        [
            s
            for s in mine
            if s["name"] == f"{GATEWAY}/MultiQuery" and s["parent_span_id"] == call["span_id"]
        ],
        "gateway MultiQuery",
    )
    assert server["attributes"]["ncbsim.recipients"] == 3
    fanout = [
        s
        for s in mine
        if s["kind"] == "CLIENT"
        and s["name"] == f"{BUREAU}/Handle"
        and s["parent_span_id"] == server["span_id"]
    ]
    assert len(fanout) == 3
    nodes = [
        s
        for s in spans(*host_files(traces))
        if s["trace_id"] == root["trace_id"]
        and s["name"] == f"{BUREAU}/Handle"
        and s["parent_span_id"] in {f["span_id"] for f in fanout}
    ]
    assert sorted(s["attributes"]["ncbsim.party"] for s in nodes) == ["FR", "IT", "NL"]
    assert {s["parent_span_id"] for s in nodes} == {s["span_id"] for s in fanout}


def test_a_post_and_its_delivery_are_traced(traced: tuple[Path, Path], tmp_path: Path) -> None:
    """`message send --trace-file`: the Post call is one trace from client to gateway; the
    gateway's delivery is a trace of its own: deliver -> Deliver call -> FR's node."""
    workdir, traces = traced
    client_file = tmp_path / "post.jsonl"
    sent = run_ncbsim(
        "message", "send", "--workdir", str(workdir), "--as", "DE", "--to", "IT",
        "--text", "meet at noon", "--trace-file", str(client_file),
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    post = one(
        [s for s in spans(client_file) if s["name"] == f"{GATEWAY}/Post"], "client Post call"
    )
    gateway_post = one(
        [
            s
            for s in spans(traces / "gateway.jsonl")
            if s["trace_id"] == post["trace_id"] and s["name"] == f"{GATEWAY}/Post"
        ],
        "gateway Post span",
    )
    assert gateway_post["parent_span_id"] == post["span_id"]
    deadline = time.monotonic() + 60
    while True:
        delivered = [
            s
            for s in spans(*host_files(traces))
            if s["name"] == f"{BUREAU}/Deliver" and s["attributes"]["ncbsim.party"] == "IT"
        ]
        if delivered or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert delivered, "IT's node traced no Deliver call"
    node = delivered[-1]
    gateway = {s["span_id"]: s for s in spans(traces / "gateway.jsonl")}
    call = gateway[node["parent_span_id"]]
    assert call["kind"] == "CLIENT"
    assert call["name"] == f"{BUREAU}/Deliver"
    batch = gateway[call["parent_span_id"]]
    assert batch["name"] == "ncbsim.gateway.deliver"
    assert batch["parent_span_id"] is None
    assert batch["attributes"]["ncbsim.envelopes"] >= 1


def test_a_restarted_host_keeps_tracing(traced: tuple[Path, Path], tmp_path: Path) -> None:
    """`ncbsim restart --bureau FR` starts FR's host with its trace file again (network.json
    keeps the trace dir): FR's next Handle span lands in the same file."""
    workdir, traces = traced
    restarted = run_ncbsim("restart", "--workdir", str(workdir), "--bureau", "FR")
    assert restarted.returncode == 0, restarted.stderr
    client_file = tmp_path / "after.jsonl"
    query = run_ncbsim(
        "query", "--workdir", str(workdir), "--as", "IT", "--to", "FR", "--trace-file",
        str(client_file), "document", "--number", "R7654321", "--issuer", "FR",
    )  # fmt: skip
    assert query.returncode == 0, query.stderr
    trace_id = spans(client_file)[-1]["trace_id"]
    handled = [
        s
        for s in spans(*host_files(traces))
        if s["trace_id"] == trace_id and s["name"] == f"{BUREAU}/Handle"
    ]
    assert [s["attributes"]["ncbsim.party"] for s in handled] == ["FR"]
