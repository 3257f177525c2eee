"""Live faults as events on a real `ncbsim up --faults --detach` network: a partition of
FR (a link fault, the fault daemon's own) and a kill and restart of NL (process faults
`ncbsim fault` tells the daemon of) reach the daemon's local-socket stream and a
NetworkObserver following the network, applied then healed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import ncbsim_pids, run_ncbsim

from ncbsim.events import Event, from_dict
from ncbsim.simulations import manifest
from ncbsim.simulations.observe_net import NetworkObserver

pytestmark = pytest.mark.integration

SMALL = Path(__file__).resolve().parent.parent / "scenarios" / "small.toml"
DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A network brought up with `up --detach --faults`; brought down and killed by pid
    whatever happens."""
    workdir = tmp_path_factory.mktemp("faultd-live") / "net"
    try:
        up = run_ncbsim("up", SMALL, "--workdir", workdir, "--detach", "--faults", timeout=180)
        assert up.returncode == 0, up.stdout + up.stderr
        yield workdir
    finally:
        if (workdir / "network.json").exists():
            run_ncbsim("down", "--workdir", workdir, timeout=60)
        for pid in ncbsim_pids(workdir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def _fault_events(
    observer: NetworkObserver, stream: asyncio.StreamReader, want: int
) -> tuple[list[Event], list[Event]]:
    """``want`` fault events from the daemon's own stream and from the observer."""
    direct: list[Event] = []
    merged: list[Event] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while len(direct) < want:
        line = await asyncio.wait_for(stream.readline(), deadline - loop.time())
        direct.append(from_dict(json.loads(line)))
    while len(merged) < want and loop.time() < deadline:
        merged += [e for e in await observer.next_batch(timeout=0.5) if e.party == "faultd"]
    return direct, merged


async def _command(*args: object) -> subprocess.CompletedProcess[str]:
    done = await asyncio.to_thread(run_ncbsim, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _seen(events: list[Event]) -> list[tuple[str, str, str, str]]:
    return [(e.kind, str(e.view["fault"]), str(e.view["target"]), e.correlation_id) for e in events]


def test_partition_and_kill_are_applied_then_healed_on_both_streams(faulty: Path) -> None:
    """`ncbsim fault partition FR` then `heal`: fault.applied then fault.healed with target
    FR, party faultd, on the daemon's socket and through the NetworkObserver; a kill of NL
    and its restart (process faults) likewise, noted by `ncbsim fault`."""
    sock = manifest.read(faulty).faultd
    assert sock is not None

    async def main() -> None:
        observer = NetworkObserver(faulty, kinds=["fault."], parties=["faultd"])
        following = asyncio.create_task(observer.run())
        reader, writer = await asyncio.open_unix_connection(sock["address"])
        try:
            writer.write(b'{"op": "observe", "kinds": ["fault."]}\n')
            await writer.drain()
            assert json.loads(await reader.readline())["ok"]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + DEADLINE_S
            while not (observer.sources.get("faultd") and observer.sources["faultd"].connected):
                assert loop.time() < deadline, observer.sources
                await asyncio.sleep(0.05)

            await _command(
                "fault", "--workdir", faulty, "partition", "--bureaus", "FR", "--id", "cut"
            )
            await _command("heal", "--workdir", faulty, "cut")
            direct, merged = await _fault_events(observer, reader, 2)
            expected = [
                ("fault.applied", "partition", "FR", "cut"),
                ("fault.healed", "partition", "FR", "cut"),
            ]
            assert _seen(direct) == expected
            assert _seen(merged) == expected
            assert {e.party for e in direct + merged} == {"faultd"}

            await _command("fault", "--workdir", faulty, "kill", "--bureaus", "NL", "--id", "down")
            await _command("fault", "--workdir", faulty, "restart", "--bureaus", "NL", "--id", "up")
            direct, merged = await _fault_events(observer, reader, 3)
            expected = [
                ("fault.applied", "kill", "NL", "down"),
                ("fault.healed", "kill", "NL", "down"),  # the restart ends the kill
                ("fault.applied", "restart", "NL", "up"),
            ]
            assert _seen(direct) == expected
            assert _seen(merged) == expected
            assert observer.dropped == 0
        finally:
            writer.close()
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following

    asyncio.run(main())
    status: dict[str, Any] = json.loads(run_ncbsim("status", "--workdir", faulty, "--json").stdout)
    assert status["faults"] == []
