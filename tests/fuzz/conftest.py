"""Hypothesis settings for the fuzz tests (deterministic and bounded, for CI) and the
``wire`` into a running network that the live fuzz tests share.

``derandomize=True`` makes every run draw the same examples, so a failure in CI
reproduces locally without a saved seed; ``database=None`` keeps hypothesis from writing
``.hypothesis/`` into the tree; ``deadline=None`` because one example may legitimately
take a while on a loaded 2-core runner (a gRPC round trip, an SQLite lookup): time is
bounded by ``max_examples`` (tests that do expensive work set a smaller one), not by a
per-example timer that would flake. No health check is suppressed here; a test that
needs to is explicit about it and says why.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from hypothesis import settings
from live_wire import Wire, _channel

from ncbsim.directory import Directory
from ncbsim.identity import Identity
from ncbsim.pki import GATEWAY_NAME, PkiDir, bureau_dns_name
from ncbsim.simulations.network import Network

settings.register_profile(
    "ncbsim-ci",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=100,
    print_blob=False,
)
settings.load_profile("ncbsim-ci")


@pytest.fixture(scope="module")
def wire(network: Network) -> Iterator[Wire]:
    """Channels as FR and NL to the gateway and as the gateway to DE, closed afterwards."""
    pki = PkiDir(network.workdir)
    now = int(time.time() * 1000)
    channels = (
        _channel(network.gateway.address, pki.tls("FR"), GATEWAY_NAME),
        _channel(network.gateway.address, pki.tls("NL"), GATEWAY_NAME),
        _channel(network.node("DE").address, pki.tls("gateway"), bureau_dns_name("DE")),
    )
    try:
        yield Wire(
            *channels,
            fr=Identity.load(pki, "FR", now_ms=now),
            nl=Identity.load(pki, "NL", now_ms=now),
            de=Directory.from_pki(pki).get("DE"),
            network=network,
        )
    finally:
        for channel in channels:
            channel.close()
