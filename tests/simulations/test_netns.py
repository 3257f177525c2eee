"""Real-network mode: namespaces up and down, stale cleanup, kernel faults, a netns scenario.

Everything here needs root (CAP_NET_ADMIN), ``ip netns``, ``nft``, ``tc`` and ``ss``; where
one is missing, the tests skip and say which.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ncbsim.errors import NetworkError
from ncbsim.simulations import netns
from ncbsim.simulations import scenario as scenarios
from ncbsim.simulations.netns import GATEWAY_ADDRESS, KernelFaults, Topology, host_address, ns_exec
from ncbsim.simulations.netns_engine import NetnsEngine, NetnsPlacement
from ncbsim.simulations.network import Network

_REASON = netns.unavailable()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(_REASON is not None, reason=f"real-network mode: {_REASON}"),
]

TINY = """
name = "netns-tiny"
description = "Three bureaus in namespaces: DE partitioned by nft, IT on a lossy link."
bureaus = ["FR", "DE", "IT"]
seed = 7

[engine]
mode = "netns"

[records]
documents = 200
persons = 50
vehicles = 50
planted = 8

[traffic]
duration_s = 6.0
rate_per_s = 10.0
hit_ratio = 0.5
fetch_ratio = 0.0
deadline_ms = 1500
requesters = ["FR"]

[traffic.mix]
document = 1
person = 1
vehicle = 1
multi = 0

[[events]]
at_s = 1.0
id = "cut"
fault = "partition"
bureaus = ["DE"]
duration_s = 2.0
settle_s = 0.5

[[events]]
at_s = 0.5
id = "lossy"
fault = "loss"
bureaus = ["IT"]
loss = 0.2
duration_s = 4.0

[[checks]]
name = "DE silent during the partition"
expect = "faults.cut.during.answered == 0 and faults.cut.during.no_answer > 0"

[[checks]]
name = "DE answers again after the heal"
expect = "faults.cut.after.answered > 0 and faults.cut.after.failed == 0"

[[checks]]
name = "IT still answers through 20% packet loss"
expect = "faults.lossy.during.answered > 0"
"""

_SERVER = """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("{address}", 9100))
s.listen()
print("ready", flush=True)
held = []
while True:
    held.append(s.accept()[0])
"""

_HOLDER = """
import socket
c = socket.create_connection(("{address}", 9100), timeout=2)
c.settimeout(None)
print("up", flush=True)
try:
    print("eof" if not c.recv(1) else "data", flush=True)
except OSError as exc:
    print("reset", exc.errno, flush=True)
"""

_PROBE = """
import socket, sys
try:
    socket.create_connection(("{address}", 9100), timeout=0.5).close()
except ConnectionRefusedError:
    sys.exit(3)
except OSError:
    sys.exit(2)
"""


def _ours(prefix: str) -> list[str]:
    return [n for n in netns.namespaces() if n.startswith(prefix)]


def _root_links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return sorted(line.split(":")[1].strip() for line in out.splitlines())


def _in(namespace: str, argv: list[str]) -> str:
    return subprocess.run(
        ns_exec(namespace, argv), capture_output=True, text=True, check=True
    ).stdout


def _script(namespace: str, code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ns_exec(namespace, [sys.executable, "-c", code]),
        stdout=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str] | None) -> None:
    if proc is not None:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _probe(namespace: str, address: str) -> int:
    code = _PROBE.format(address=address)
    return subprocess.run(ns_exec(namespace, [sys.executable, "-c", code]), check=False).returncode


@pytest.fixture
def topology() -> Iterator[Topology]:
    """A topology of two host namespaces, always destroyed."""
    made = Topology.create(Topology.new_prefix(), hosts=2)
    try:
        yield made
    finally:
        made.destroy()


def test_topology_up_and_down_leaves_nothing() -> None:
    """Creating then destroying a topology leaves no namespace and no root-namespace link."""
    links = _root_links()
    made = Topology.create(Topology.new_prefix(), hosts=2)
    try:
        names = _ours(made.prefix)
        assert sorted(names) == sorted(
            [made.hub, made.ctl, made.gateway, made.host(0), made.host(1)]
        )
        assert f"inet {host_address(1)}/16" in _in(made.host(1), ["ip", "-o", "addr"])
        assert _root_links() == links  # nothing of ours in the root namespace
    finally:
        made.destroy()
    assert _ours(made.prefix) == []
    assert _root_links() == links


def test_stale_cleanup_removes_dead_owners_only(topology: Topology) -> None:
    """cleanup_stale deletes namespaces whose owning pid is dead and keeps live runs'."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = Topology.create(f"ncbs{dead.pid}-0-", hosts=1)
    try:
        removed = netns.cleanup_stale()
        assert set(_ours(stale.prefix)) == set()
        assert {stale.hub, stale.ctl, stale.host(0)} <= set(removed)
        assert len(_ours(topology.prefix)) == 5
    finally:
        stale.destroy()


def test_partition_drops_then_heal_resets_connections(topology: Topology) -> None:
    """A partition stops new connections; healing resets open ones instead of resuming them."""
    server = _script(topology.gateway, _SERVER.format(address=GATEWAY_ADDRESS))
    holder = None
    faults = KernelFaults(topology)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        holder = _script(topology.host(0), _HOLDER.format(address=GATEWAY_ADDRESS))
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "up"
        faults.apply(topology.host(0), "partition", key="cut")
        assert _probe(topology.host(0), GATEWAY_ADDRESS) == 2  # timed out: dropped
        assert _probe(topology.host(1), GATEWAY_ADDRESS) == 0  # the others are unaffected
        faults.heal(topology.host(0), "cut")
        assert holder.wait(timeout=5) == 0
        assert holder.stdout.read().startswith("reset")
        assert _probe(topology.host(0), GATEWAY_ADDRESS) == 0
    finally:
        faults.heal_all()
        _stop(holder)
        _stop(server)


def test_down_refuses_and_loss_bandwidth_are_set_and_removed(topology: Topology) -> None:
    """down rejects new connections; loss and bandwidth become nft and tc state, then vanish."""
    ns = topology.host(1)
    server = _script(topology.gateway, _SERVER.format(address=GATEWAY_ADDRESS))
    faults = KernelFaults(topology)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        faults.apply(ns, "down", key="d", direction="from-bureau")
        assert _probe(ns, GATEWAY_ADDRESS) == 3  # refused at once
        faults.heal(ns, "d")
        assert _probe(ns, GATEWAY_ADDRESS) == 0
        faults.apply(ns, "loss", key="l", direction="to-bureau", params={"loss": 0.25})
        faults.apply(ns, "bandwidth", key="b", params={"kbit_per_s": 256})
        rules = _in(ns, ["nft", "list", "table", "inet", "ncbsim"])
        assert 'iifname "eth0" numgen random mod 10000 < 2500 drop' in rules
        assert "oifname" not in rules  # to-bureau only
        assert "tbf" in _in(ns, ["tc", "qdisc", "show", "dev", "eth0"])
        peer = topology.peer_of(ns)
        assert "rate 256Kbit" in _in(topology.hub, ["tc", "qdisc", "show", "dev", peer])
        faults.heal_all()
        assert "numgen" not in _in(ns, ["nft", "list", "table", "inet", "ncbsim"])
        assert "tbf" not in _in(ns, ["tc", "qdisc", "show", "dev", "eth0"])
        assert "tbf" not in _in(topology.hub, ["tc", "qdisc", "show", "dev", peer])
    finally:
        faults.heal_all()
        _stop(server)


def test_processes_are_the_real_python_in_their_namespace(
    topology: Topology, tmp_path: Path
) -> None:
    """Gateway and hosts run as python itself in their namespace; the root has no route."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    scenario = scenarios.load(str(path))
    network = Network.start(
        tmp_path / "work",
        scenario,
        hosts=[["FR", "DE"], ["IT"]],
        placement=NetnsPlacement(topology),
    )
    try:
        expected = {network.gateway.pid: topology.gateway}
        expected |= {h.pid: topology.host(h.index) for h in network.hosts}
        for pid, namespace in expected.items():
            inode = os.stat(f"/run/netns/{namespace}").st_ino
            assert os.stat(f"/proc/{pid}/ns/net").st_ino == inode
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            assert argv[0] == os.fsencode(sys.executable)  # not `ip netns exec`
        assert network.node("IT").address.startswith(f"{host_address(1)}:")
        assert network.gateway.address.startswith(f"{GATEWAY_ADDRESS}:")
        # The root namespace has no route to the namespaces (and no client here ever
        # aims at a namespace address from the root namespace).
        routes = subprocess.run(
            ["ip", "route", "show"], capture_output=True, text=True, check=True
        ).stdout
        assert "10.77." not in routes
    finally:
        network.stop()


def test_engine_refuses_to_run_in_the_root_namespace(tmp_path: Path) -> None:
    """NetnsEngine outside a topology's ctl namespace raises instead of sending from the root."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    with pytest.raises(NetworkError, match="ctl namespace"):
        NetnsEngine(scenarios.load(str(path)), tmp_path / "work")


def test_tiny_scenario_passes_in_netns_mode(tmp_path: Path) -> None:
    """A 3-bureau netns scenario with a partition and packet loss passes, leaving nothing."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    before = set(netns.namespaces())
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "ncbsim", "simulate", str(path)),
            *("--workdir", str(tmp_path / "w"), "--run-dir", str(tmp_path / "run")),
            *("--report", str(tmp_path / "r.json")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    report = json.loads((tmp_path / "r.json").read_text())
    assert proc.returncode == 0, [c for c in report["checks"] if not c["passed"]]
    assert report["passed"]
    assert report["netns"]["engine_namespace"].endswith("-ctl")
    assert {f["kind"] for f in report["faults"].values()} == {"partition", "loss"}
    assert set(netns.namespaces()) <= before  # everything it made is gone
    assert not any(n.startswith(report["netns"]["prefix"]) for n in netns.namespaces())


def test_crashed_engine_leaves_nothing(tmp_path: Path) -> None:
    """If the engine inside the namespaces dies, the outer run deletes them and fails."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    outer = subprocess.Popen(
        [sys.executable, "-m", "ncbsim", "simulate", str(path), "--run-dir", str(tmp_path / "r")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    prefix = f"ncbs{outer.pid}-"
    try:
        engine = None
        deadline = time.monotonic() + 30
        while engine is None and time.monotonic() < deadline and outer.poll() is None:
            for name in _ours(prefix):
                if name.endswith("-ctl"):
                    pids = subprocess.run(
                        ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
                    ).stdout.split()
                    engine = next((int(p) for p in pids if b"simulate" in _cmdline(p)), None)
            time.sleep(0.05)
        assert engine is not None, "the engine never started in its ctl namespace"
        os.kill(engine, signal.SIGKILL)
        output, _ = outer.communicate(timeout=30)
        print(output[-2000:])
        assert outer.returncode != 0
        assert "wrote no report" in output
        assert _ours(prefix) == []
    finally:
        if outer.poll() is None:
            outer.kill()
            outer.communicate()


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
