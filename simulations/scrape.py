"""``ncbsim status --prometheus``: a prometheus.yml that scrapes a running network.

One job per role (``ncbsim-gateway``, ``ncbsim-node``), one target per party (the
gateway, each bureau's node: a host process serving several nodes has an endpoint per
node), each labelled ``party`` and ``role``. Made from network.json, so it is true for
that network only: its ports are the ones the processes bound. docs/metrics.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ncbsim.simulations.manifest import Proc

SCRAPE_INTERVAL_S = 5
_ROLES = (("gateway", "ncbsim-gateway"), ("node", "ncbsim-node"))


def _quoted(text: str) -> str:
    """A YAML scalar in double quotes (JSON strings are valid YAML)."""
    return json.dumps(text)


def prometheus_yml(procs: Sequence[Proc], *, workdir: str, made_by: str) -> str:
    """The prometheus.yml text scraping every process of ``procs`` that serves metrics."""
    lines = [
        "# Prometheus scrape configuration of an ncbsim network, made by:",
        f"#   {made_by}",
        f"# from {workdir}/network.json. The ports are the ones that network's processes",
        "# bound: regenerate this file for your own network (docs/metrics.md, deploy/README.md).",
        "global:",
        f"  scrape_interval: {SCRAPE_INTERVAL_S}s",
        f"  evaluation_interval: {SCRAPE_INTERVAL_S}s",
        "scrape_configs:",
    ]
    for role, job in _ROLES:
        targets = [p for p in procs if p.role == role and p.metrics]
        if not targets:
            continue
        lines += [f"  - job_name: {job}", "    metrics_path: /metrics", "    static_configs:"]
        for proc in targets:
            party = proc.bureau or proc.role
            lines += [
                f"      - targets: [{_quoted(proc.metrics)}]",
                "        labels:",
                f"          party: {_quoted(party)}",
                f"          role: {_quoted(role)}",
            ]
    return "\n".join(lines) + "\n"
