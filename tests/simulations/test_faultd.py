"""The fault daemon of `ncbsim up --faults` and the parts live faults share with scenario
files, without processes: its control protocol over a real Unix socket, in one loop; and
what `up` and `down` leave behind."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

import pytest

from ncbsim.cli import build_parser
from ncbsim.errors import NetworkError
from ncbsim.simulations import faultd, operate, scenario, supervise
from ncbsim.simulations.faultd import FaultDaemon
from ncbsim.simulations.manifest import Host, Proc
from ncbsim.simulations.network import Network
from ncbsim.simulations.scenario import FAULT_PARAMS, FAULTS, ScenarioError, fault_event
from ncbsim.simulations.supervise import Stopped
from ncbsim.workdir import Workdir

SMALL = Path(__file__).resolve().parent.parent / "scenarios" / "small.toml"


def test_fault_event_validates_like_a_scenario_file() -> None:
    """A live fault table gets the scenario loader's checks and messages, keyed by name."""
    event = fault_event(
        {"at_s": 0, "id": "slow", "fault": "latency", "bureaus": ["DE"], "latency_ms": 80}
    )
    assert event.params == {"latency_ms": 80.0, "jitter_ms": 0}
    assert event.direction == "both"
    bad = [
        ({"fault": "latency", "bureaus": ["DE"]}, "latency_ms: required for a latency fault"),
        ({"fault": "loss", "bureaus": ["DE"], "loss": 2}, "loss: expected a number > 0 and <= 1"),
        ({"fault": "kill", "bureaus": ["DE"], "direction": "to-bureau"}, "direction: only link"),
        ({"fault": "partition"}, "bureaus: required for a partition fault"),
        ({"fault": "reset", "bureaus": ["DE"], "duration_s": 2}, "reset is instantaneous"),
        ({"fault": "melt", "bureaus": ["DE"]}, "fault: expected one of"),
        ({"fault": "skew", "bureaus": ["DE"], "offset_ms": 1.5}, "offset_ms: expected an integer"),
    ]
    for table, message in bad:
        with pytest.raises(ScenarioError, match=message):
            fault_event({"at_s": 0, "id": "x", **table})


@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_every_scenario_fault_kind_is_a_fault_command(kind: str) -> None:
    """`ncbsim fault` offers every scenario fault kind with every parameter, spelled as
    in the file or with dashes, so a live fault and a scenario event cannot drift."""
    for spelling in ("_", "-"):
        params = [
            item
            for name in FAULT_PARAMS.get(kind, {})
            for item in (f"--{name.replace('_', spelling)}", "7")
        ]
        args = build_parser().parse_args(
            ["fault", "--workdir", "w", kind, "--bureaus", "de", *params]
        )
        assert args.kind == kind
        assert args.bureaus == ["DE"]
        assert all(getattr(args, name) == 7 for name in FAULT_PARAMS.get(kind, {}))


def test_stopped_says_what_it_stopped_and_what_was_gone() -> None:
    """`ncbsim down` counts the processes it stopped and those already gone, by role."""
    assert (
        Stopped({"gateway": 1, "host": 2, "faultd": 1}, {"host": 1}).describe()
        == "stopped 4 processes (gateway, 2 hosts, fault proxy); 1 was already gone (host)"
    )
    assert Stopped({}, {"gateway": 1, "host": 3}).describe() == (
        "stopped 0 processes; 4 were already gone (gateway, 3 hosts)"
    )
    assert Stopped({"host": 1}, {}).describe() == "stopped 1 process (host)"


async def _ask(sock: Path, message: dict[str, Any] | bytes) -> dict[str, Any]:
    reader, writer = await asyncio.open_unix_connection(str(sock))
    writer.write(message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n")
    await writer.drain()
    line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    reply: dict[str, Any] = json.loads(line)
    return reply


def _shaped(daemon: FaultDaemon, code: str) -> list[Any]:
    return daemon.links[code].shaping("both")


def test_daemon_applies_heals_and_lists_link_faults(tmp_path: Path) -> None:
    """Over its control socket the daemon applies a partition and a latency, lists them,
    heals one leaving the other in force, and refuses what it cannot do, carrying on."""

    async def main() -> None:
        sock = tmp_path / "faultd.sock"
        daemon = FaultDaemon(["DE", "IT"])
        server = await asyncio.start_unix_server(daemon.serve_control, path=str(sock))
        try:
            links = await daemon.start()
            assert set(links) == {"DE", "IT"}
            cut = {"at_s": 0, "id": "cut", "fault": "partition", "bureaus": ["DE"]}
            slow = {
                "at_s": 0,
                "id": "slow",
                "fault": "latency",
                "bureaus": ["DE"],
                "latency_ms": 40,
            }
            assert (await _ask(sock, {"op": "fault", "event": cut}))["ok"]
            assert (await _ask(sock, {"op": "fault", "event": slow}))["ok"]
            assert all(s.blackhole and s.latency_ms == 40 for s in _shaped(daemon, "DE"))
            assert all(s.is_clear() for s in _shaped(daemon, "IT"))
            status = await _ask(sock, {"op": "status"})
            assert [(f["id"], f["held"]) for f in status["faults"]] == [
                ("cut", ["DE"]),
                ("slow", ["DE"]),
            ]
            healed = await _ask(sock, {"op": "heal", "id": "cut"})
            assert healed["ok"]
            assert healed["fault"]["kind"] == "partition"
            assert all(not s.blackhole and s.latency_ms == 40 for s in _shaped(daemon, "DE"))
            refused = [
                {"op": "fault", "event": slow},  # the id is in force
                {"op": "fault", "event": {**cut, "id": "k", "fault": "kill"}},
                {"op": "fault", "event": {**cut, "id": "n", "bureaus": ["NL"]}},
                {"op": "heal", "id": "cut"},
                {"op": "explode"},
            ]
            for message in refused:
                reply = await _ask(sock, message)
                assert reply["ok"] is False, message
                assert reply["error"]
            assert (await _ask(sock, b"not json\n"))["ok"] is False
            assert (await _ask(sock, {"op": "heal_all"}))["healed"] == ["slow"]
            assert all(s.is_clear() for s in _shaped(daemon, "DE"))
            assert (await _ask(sock, {"op": "status"}))["faults"] == []
        finally:
            server.close()
            await daemon.close()

    asyncio.run(main())


def test_a_fault_with_duration_heals_itself(tmp_path: Path) -> None:
    """A link fault given duration_s is taken out of force by the daemon on its own."""

    async def main() -> None:
        daemon = FaultDaemon(["DE"])
        await daemon.start()
        try:
            table = {"at_s": 0, "id": "brief", "fault": "blackhole", "bureaus": ["DE"]}
            reply = await daemon.handle(
                json.dumps({"op": "fault", "event": {**table, "duration_s": 0.05}}).encode()
            )
            assert reply["ok"]
            assert reply["fault"]["until_ms"] is not None
            for _ in range(400):  # polled, never timed: the heal runs when the loop gets to it
                if not daemon.active:
                    break
                await asyncio.sleep(0.05)
            assert not daemon.active
            assert all(s.is_clear() for s in _shaped(daemon, "DE"))
        finally:
            await daemon.close()

    asyncio.run(main())


def test_run_writes_its_ready_file_and_removes_its_socket_when_stopped(tmp_path: Path) -> None:
    """The daemon's ready file names its pid, role and each bureau's two proxy addresses
    once its control socket answers; stopped, it leaves no socket behind."""

    async def main() -> None:
        sock, ready = tmp_path / "faultd.sock", tmp_path / "faultd.json"
        stop = asyncio.Event()
        serving = asyncio.create_task(
            faultd.run(["DE", "IT"], control=sock, ready_file=ready, stop=stop)
        )
        try:
            for _ in range(600):  # polled, never timed
                if ready.exists() or serving.done():
                    break
                await asyncio.sleep(0.05)
            info = json.loads(ready.read_text())
            assert (info["pid"], info["role"]) == (os.getpid(), "faultd")
            assert sorted(info["links"]) == ["DE", "IT"]
            assert all(set(link) == {"to_gateway", "to_bureau"} for link in info["links"].values())
            assert (await _ask(sock, {"op": "status"}))["pid"] == os.getpid()
        finally:
            stop.set()
            assert await asyncio.wait_for(serving, timeout=60) == 0
        assert not sock.exists()
        assert not ready.with_name("faultd.json.tmp").exists()

    asyncio.run(main())


def _gone_pid() -> int:
    """The pid of a process that has exited: nothing of a network runs under it."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_down_leaves_no_state_of_the_stopped_network(tmp_path: Path) -> None:
    """`ncbsim down` of an `up --faults` network removes what said it runs (the manifest,
    every ready file, the fault daemon's socket, live faults, the operation lock) and keeps
    the logs and host specs."""
    workdir = tmp_path / "net"
    run = workdir / "run"
    run.mkdir(parents=True)
    pid = _gone_pid()
    host = Host(
        index=0,
        bureaus=["DE"],
        spec=str(run / "host-0.spec.json"),
        control=str(run / "host-0.sock"),
        log=str(run / "host-0.log"),
        pid=pid,
    )
    gateway = Proc("gateway", None, pid, "127.0.0.1:1", str(run / "gateway.log"))
    node = Proc("node", "DE", pid, "127.0.0.1:2", host.log, host=0)
    daemon = Proc("faultd", None, pid, str(run / "faultd.sock"), str(run / "faultd.log"))
    Network(workdir, "t", [gateway, node], hosts=[host], faultd=daemon).write_manifest()
    for name in (
        "gateway.json", "host-0.ready.json", "faultd.json", "faultd.sock", "faults.json",
        "operate.lock", "host-0.spec.json", "host-0.log", "faultd.log",
    ):  # fmt: skip
        (run / name).write_text("{}")
    stopped = operate.down(workdir)
    assert stopped.gone == {"gateway": 1, "host": 1, "faultd": 1}
    assert not (workdir / "network.json").exists()
    assert sorted(p.name for p in run.iterdir()) == ["faultd.log", "host-0.log", "host-0.spec.json"]


def _open_on(path: Path) -> int:
    """How many descriptors of this process are open on ``path``."""
    fds = Path("/proc/self/fd")
    found = 0
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            found += os.readlink(fd) == str(path)
    return found


def test_a_command_queued_behind_down_locks_the_lock_file_down_left(tmp_path: Path) -> None:
    """`down` removes the lock file it holds; a command that was waiting on it then locks
    the file at that path (made afresh), so the commands after it still queue behind it."""
    path = Workdir(tmp_path).operate_lock
    entered, release = threading.Event(), threading.Event()

    def queued() -> None:
        with operate.locked(tmp_path):
            entered.set()
            release.wait(60)

    waiter = threading.Thread(target=queued)
    try:
        with operate.locked(tmp_path):
            waiter.start()
            for _ in range(1200):  # polled: until the waiter has the old file open
                if _open_on(path) >= 2:
                    break
                time.sleep(0.05)
            assert _open_on(path) >= 2
            path.unlink()  # as down does, holding the lock
        assert entered.wait(60)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            with pytest.raises(BlockingIOError):  # the next command waits
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    finally:
        release.set()
        if waiter.ident is not None:  # started
            waiter.join(60)


def test_up_removes_the_socket_folder_of_a_fault_daemon_that_never_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deep work directory puts the daemon's socket in a private folder of /tmp: if the
    daemon never becomes ready, `up --faults` fails and that folder goes too."""
    made: list[str] = []

    def socket_path(run: Path, name: str) -> str:
        made.append(supervise.socket_path(run, name))
        return made[-1]

    def never_ready(*args: object, **kwargs: object) -> NoReturn:
        raise NetworkError("fault daemon (pid 1) not ready in time")

    monkeypatch.setattr(operate, "socket_path", socket_path)
    monkeypatch.setattr(
        operate, "prepare", lambda workdir, scenario, **_kw: workdir.mkdir(parents=True)
    )
    monkeypatch.setattr(operate, "start_process", never_ready)
    deep = tmp_path / ("d" * 100)
    with pytest.raises(NetworkError, match="not ready in time"):
        operate.up(deep, scenario.load(str(SMALL)), detach=True, log_level="info", faults=True)
    (control,) = made
    folder = Path(control).parent
    assert folder.name.startswith(supervise.SOCKET_DIR_PREFIX)
    leaked = folder.exists()
    shutil.rmtree(folder, ignore_errors=True)  # never left in /tmp, even by a failure
    assert not leaked


def test_status_names_only_the_services_whose_health_differs() -> None:
    """`status` keeps to one health column: a service is named only when it disagrees."""
    from ncbsim.simulations.operate import _services_text

    same = {"ncbsim.v2.BureauService": "SERVING"}
    assert _services_text("SERVING", same) == ""
    odd = {"ncbsim.v2.GatewayService": "NOT_SERVING", "grpc.x.Other": "SERVING"}
    assert _services_text("SERVING", odd) == " (GatewayService NOT_SERVING)"
