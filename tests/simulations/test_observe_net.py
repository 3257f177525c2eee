"""NetworkObserver on its own: it follows only the parties it is given, and a party that
cannot be reached is tried again less and less often, not twice a second for ever."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from ncbsim.pki import PkiDir
from ncbsim.simulations import manifest
from ncbsim.simulations.observe_net import NetworkObserver

pytestmark = pytest.mark.timeout(60)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: connections are refused


def _network(pki_dir: PkiDir) -> Path:
    """A network.json naming a gateway and a node that do not listen, and a fault daemon
    whose socket does not exist."""
    workdir = Path(pki_dir.root)
    procs = [
        {"role": "gateway", "bureau": None, "pid": 1, "address": f"127.0.0.1:{_closed_port()}"},
        {"role": "node", "bureau": "FR", "pid": 1, "address": f"127.0.0.1:{_closed_port()}"},
    ]
    faultd = {"role": "faultd", "bureau": None, "pid": 1, "address": str(workdir / "no.sock")}
    manifest.write(
        workdir,
        {"processes": [{**p, "log": ""} for p in procs], "faultd": {**faultd, "log": ""}},
    )
    return workdir


def test_unreachable_parties_are_retried_with_growing_waits(pki_dir: PkiDir) -> None:
    """Over 1.5 s with retry_s 0.05, a refused party is tried about 5 times (0.05, 0.1,
    0.2, 0.4, 0.8 s apart), not 30; each is marked disconnected with why."""
    workdir = _network(pki_dir)

    async def main() -> NetworkObserver:
        observer = NetworkObserver(workdir, retry_s=0.05, parties=["gateway", "faultd"])
        task = asyncio.create_task(observer.run())
        await asyncio.sleep(1.5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return observer

    observer = asyncio.run(main())
    assert set(observer.sources) == {"gateway", "faultd"}  # FR was not asked for
    for source in observer.sources.values():
        assert not source.connected
        assert source.error, source
        assert 1 <= source.failures <= 6, source  # 30 tries without the growing wait
    assert observer.sources["gateway"].error == "UNAVAILABLE"
    assert observer.sources["faultd"].error == "FileNotFoundError"
