"""deploy/grafana/ncbsim.json: a real dashboard whose every query names a metric that a
running gateway or node really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_metrics import families

from ncbsim.simulations.network import Network

pytestmark = pytest.mark.integration

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "ncbsim.json"
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_NOT_METRICS = {
    "sum", "max", "min", "avg", "count", "rate", "irate", "increase", "histogram_quantile",
    "by", "without", "on", "ignoring", "and", "or", "unless", "le", "bool", "offset",
}  # fmt: skip
_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers outside braces, strings and
    grouping clauses, that are not functions or keywords."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    names = set()
    for match in _IDENT.finditer(expr):
        name = match.group()
        if name in _NOT_METRICS or re.fullmatch(r"[0-9.e]+", name):
            continue
        for suffix in _SUFFIXES:
            if name.endswith(suffix):
                name = name.removesuffix(suffix)
        names.add(name)
    return names


def test_the_scan_finds_metric_names() -> None:
    """The identifier scan keeps metric names and drops functions, labels and grouping."""
    expr = 'histogram_quantile(0.99, sum by (le, party) (rate(x_seconds_bucket{a="b"}[1m])))'
    assert metric_names(expr) == {"x_seconds"}
    assert metric_names('up{job=~"ncbsim-.*"}') == {"up"}


def test_dashboard_is_a_grafana_dashboard_with_a_datasource_variable() -> None:
    """Schema 39 or later, a Prometheus datasource variable every panel uses, and the
    three rows: query path, mailbox, faults and health."""
    board = json.loads(DASHBOARD.read_text())
    assert board["schemaVersion"] >= 39
    variables = board["templating"]["list"]
    assert {"name": "datasource", "type": "datasource", "query": "prometheus"}.items() <= variables[
        0
    ].items()
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == ["Query path", "Mailbox", "Faults and health"]
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"


def test_every_query_names_a_metric_the_network_exports(network: Network) -> None:
    """Each metric a dashboard query reads (after _bucket/_sum/_count) is on the page of
    the gateway or a node of a live network (``up`` is Prometheus's own)."""
    exported: set[str] = set()
    for proc in network.procs:
        exported |= families(proc.metrics)  # every family, with samples yet or not
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 12
    named = set().union(*(metric_names(e) for e in exprs)) - {"up"}
    missing = sorted(
        n for n in named if n not in exported and n.removesuffix("_total") not in exported
    )
    assert not missing, f"the dashboard reads metrics no party exports: {missing}"
