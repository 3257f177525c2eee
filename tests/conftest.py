"""Shared fixtures: logging reset, and real networks of processes over mTLS on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from simulations import scenario as scenarios
from simulations.network import Network

SMALL = Path(__file__).parent / "scenarios" / "small.toml"


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """Each test starts from structlog's defaults, whatever the previous one configured."""
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def start_network(workdir: Path) -> Network:
    """Start the small scenario under ``workdir`` with debug logging (the strictest case)."""
    return Network.start(workdir, scenarios.load(str(SMALL)), log_level="debug")


@pytest.fixture
def fresh_network(tmp_path: Path) -> Iterator[Network]:
    """A network of its own for a test that breaks it (kills a node); always stopped."""
    net = start_network(tmp_path / "net")
    try:
        yield net
    finally:
        net.stop()


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """A running gateway and four bureau nodes, shared by a test module; always stopped."""
    net = start_network(tmp_path_factory.mktemp("net"))
    try:
        yield net
    finally:
        net.stop()
