"""Helpers of the tests that search a running network's biometrics (the integration and
security tests): queries to one owner, and restarting the owner with a daily cap."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from ncbsim.client import Answer, BureauClient
from ncbsim.pki import PkiDir
from ncbsim.simulations.network import Network
from ncbsim.v2 import query_pb2

OWNER = "DE"
"""The bureau whose collection the tests search."""


def ask(network: Network, requester: str, queries: list[query_pb2.Query]) -> list[Answer]:
    """Each query sent to :data:`OWNER` in turn as ``requester`` (a bureau or a user), in
    one client's session, through the gateway."""

    async def run() -> list[Answer]:
        client = BureauClient.open(PkiDir(network.workdir), requester, network.gateway.address)
        async with client:
            return [await client.query(q, OWNER, timeout=15) for q in queries]

    return asyncio.run(run())


def set_daily_cap(network: Network, cap: int) -> None:
    """Restart :data:`OWNER`'s host with ``cap`` biometric searches a bureau a day (the
    host spec's ``biometric_daily_cap``)."""
    host = network.host_of(OWNER)
    network.stop_host(host)
    spec_path = Path(host.spec)
    spec = json.loads(spec_path.read_text())
    for item in spec["bureaus"]:
        if item["bureau"] == OWNER:
            item["biometric_daily_cap"] = cap
    spec_path.write_text(json.dumps(spec, indent=2) + "\n")
    network.restart_host(host)
