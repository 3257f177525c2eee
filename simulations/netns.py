"""Real-network mode: network namespaces joined by a bridge, and kernel faults on them.

A :class:`Topology` is a set of namespaces named with one run's prefix (``ncbs<pid>-<n>-``)::

    PREFIX-hub    a bridge ``br0``; the hub-side end of every veth pair (``v-ctl``, ``v-gw``,
                  ``v-h0``, ...), so nothing the mode creates lives in the root namespace
    PREFIX-ctl    10.77.0.1: the simulator's engine, its clients and its fault proxies
    PREFIX-gw     10.77.0.2: the gateway
    PREFIX-h0...  10.77.1.1, ...: one bureau host process each

Every namespace has its end of the pair as ``eth0``, and ``lo`` up. The namespaces are
created from the hub (``ip -n HUB link add eth0 netns NS type veth peer ...``), so no
interface, address or rule ever appears in the root namespace, and traffic to a namespace
address can only come from another namespace (the root namespace has no route there).

:class:`KernelFaults` turns a scenario's link faults into kernel state of one host's
namespace: packet loss and drops are nft rules in a table ``inet ncbsim`` of that
namespace (from-bureau: its output chain on ``eth0``; to-bureau: its input chain), a
bandwidth cap is a tc ``tbf`` qdisc (from-bureau: on ``eth0``; to-bureau: on its hub-side
peer), and resets kill the sockets with ``ss -K`` on both ends. Latency, jitter and slicing
stay in the asyncio fault proxy: this kernel has no netem.

Cleanup: :meth:`Topology.destroy` kills what still runs in the namespaces (only our own
processes can be there) and deletes them; :func:`cleanup_stale` removes the namespaces of
earlier runs whose owning process is dead, so a crash leaves nothing behind for long.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from ncbsim.errors import NetworkError

log = structlog.get_logger()

FAMILY = "ncbs"
"""Every namespace of this mode is named ``ncbs<owner pid>-<n>-<role>``."""
NETNS_DIR = Path("/run/netns")
SUBNET = "10.77.0.0/16"
CTL_ADDRESS = "10.77.0.1"
GATEWAY_ADDRESS = "10.77.0.2"
RESET_WAIT_S = 0.05
"""Pause after killing sockets, so their RSTs leave before a drop rule is removed."""

_PREFIX_RE = re.compile(rf"^{FAMILY}(\d+)-(\d+)-")
_CAP_NET_ADMIN = 12
_TOOLS = ("ip", "nft", "tc", "ss")
_TABLE = "ncbsim"
_sequence = itertools.count()


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise NetworkError(f"`{' '.join(argv)}` failed: {proc.stderr.strip() or proc.returncode}")
    return proc


def ns_exec(namespace: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside ``namespace``: ``ip netns exec NS ...``.

    ``ip netns exec`` execs the command in place, so the pid of the started process is the
    pid of the command itself (a signal sent to it hits the command, not a wrapper).
    """
    return ["ip", "netns", "exec", namespace, *argv]


def python_in(namespace: str, args: Sequence[str]) -> list[str]:
    """``python -m ncbsim ARGS`` (this interpreter) inside ``namespace``."""
    return ns_exec(namespace, [sys.executable, "-m", "ncbsim", *args])


def _has_cap_net_admin() -> bool:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> _CAP_NET_ADMIN & 1)
    return False


def unavailable() -> str | None:
    """Why the real-network mode cannot run here, or None if it can.

    It needs Linux, CAP_NET_ADMIN (root), the ``ip``, ``nft``, ``tc`` and ``ss`` tools,
    and a working ``ip netns add``.
    """
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if not _has_cap_net_admin():
        return "needs root (CAP_NET_ADMIN) to create network namespaces"
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing tools: {', '.join(missing)} (apt-get install iproute2 nftables)"
    probe = f"{FAMILY}{os.getpid()}-probe-{next(_sequence)}"
    made = _run(["ip", "netns", "add", probe], check=False)
    _run(["ip", "netns", "del", probe], check=False)
    if made.returncode != 0:
        return f"`ip netns add` does not work here: {made.stderr.strip()}"
    return None


def host_address(index: int) -> str:
    """The address of host ``index``'s namespace (10.77.1.1 for host 0)."""
    return f"10.77.{1 + index // 250}.{1 + index % 250}"


def namespaces() -> list[str]:
    """Every named network namespace (``ip netns list``), ours or not."""
    out = _run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _owner_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _delete(namespace: str) -> None:
    """Kill every process still in ``namespace`` (ours: nothing else runs there), delete it."""
    pids = _run(["ip", "netns", "pids", namespace], check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _owner_alive(int(p))]
        for pid in pids:  # reap our own children; others are reaped by their parent
            with contextlib.suppress(ChildProcessError, ValueError):
                os.waitpid(int(pid), os.WNOHANG)
        time.sleep(0.02)
    _run(["ip", "netns", "del", namespace], check=False)


def cleanup_stale() -> list[str]:
    """Delete the namespaces of earlier runs whose owning process is dead; their names."""
    stale = []
    for name in namespaces():
        match = _PREFIX_RE.match(name)
        if match and not _owner_alive(int(match.group(1))):
            stale.append(name)
    # Hosts first, the hub (holding the bridge) last.
    for name in sorted(stale, key=lambda n: n.endswith("-hub")):
        _delete(name)
    if stale:
        log.info("netns_stale_removed", namespaces=len(stale))
    return stale


@dataclass(slots=True)
class Topology:
    """The namespaces of one run: hub (bridge), ctl (simulator), gw (gateway), h0.. (hosts)."""

    prefix: str
    hosts: int
    created: list[str] = field(default_factory=list)

    @staticmethod
    def new_prefix() -> str:
        """A prefix unique to this process and call: ``ncbs<pid>-<n>-``."""
        return f"{FAMILY}{os.getpid()}-{next(_sequence)}-"

    @property
    def hub(self) -> str:
        """The namespace holding the bridge."""
        return f"{self.prefix}hub"

    @property
    def ctl(self) -> str:
        """The simulator's namespace (engine, clients, proxies)."""
        return f"{self.prefix}ctl"

    @property
    def gateway(self) -> str:
        """The gateway's namespace."""
        return f"{self.prefix}gw"

    def host(self, index: int) -> str:
        """Host ``index``'s namespace."""
        return f"{self.prefix}h{index}"

    def members(self) -> list[tuple[str, str, str]]:
        """(namespace, address, hub-side interface) of every namespace but the hub."""
        out = [(self.ctl, CTL_ADDRESS, "v-ctl"), (self.gateway, GATEWAY_ADDRESS, "v-gw")]
        out += [(self.host(i), host_address(i), f"v-h{i}") for i in range(self.hosts)]
        return out

    def address_of(self, namespace: str) -> str:
        """The address of ``namespace``."""
        return next(address for ns, address, _ in self.members() if ns == namespace)

    def peer_of(self, namespace: str) -> str:
        """The hub-side interface of ``namespace``'s veth pair."""
        return next(peer for ns, _, peer in self.members() if ns == namespace)

    @classmethod
    def create(cls, prefix: str, *, hosts: int) -> Topology:
        """Create the namespaces, the bridge and the veth pairs; undo all of it on failure."""
        topology = cls(prefix, hosts)
        try:
            topology._build()
        except BaseException:
            topology.destroy()
            raise
        log.info("netns_up", prefix=prefix, hosts=hosts)
        return topology

    def _add(self, namespace: str) -> None:
        _run(["ip", "netns", "add", namespace])
        self.created.append(namespace)
        _run(["ip", "-n", namespace, "link", "set", "lo", "up"])

    def _build(self) -> None:
        hub = self.hub
        self._add(hub)
        _run(["ip", "-n", hub, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", hub, "link", "set", "br0", "up"])
        for namespace, address, peer in self.members():
            self._add(namespace)
            _run(
                [
                    *("ip", "-n", hub, "link", "add", peer, "type", "veth"),
                    *("peer", "name", "eth0", "netns", namespace),
                ]
            )
            _run(["ip", "-n", hub, "link", "set", peer, "master", "br0", "up"])
            _run(["ip", "-n", namespace, "addr", "add", f"{address}/16", "dev", "eth0"])
            _run(["ip", "-n", namespace, "link", "set", "eth0", "up"])

    def destroy(self) -> None:
        """Kill what runs in the namespaces and delete them all (the hub last)."""
        names = [n for n in namespaces() if n.startswith(self.prefix)]
        for name in sorted(set(names) | set(self.created), key=lambda n: n == self.hub):
            _delete(name)
        self.created.clear()
        log.info("netns_down", prefix=self.prefix)

    @classmethod
    def current(cls) -> Topology | None:
        """The topology whose ctl namespace this process runs in, or None."""
        try:
            mine = os.stat("/proc/self/ns/net").st_ino
            names = [n for n in namespaces() if _PREFIX_RE.match(n)]
        except (OSError, NetworkError):
            return None
        for name in names:
            if not name.endswith("-ctl"):
                continue
            with contextlib.suppress(OSError):
                if (NETNS_DIR / name).stat().st_ino == mine:
                    prefix = name.removesuffix("ctl")
                    hosts = sum(1 for n in names if re.fullmatch(rf"{prefix}h\d+", n))
                    return cls(prefix, hosts)
        return None


_NFT_SETUP = f"""
table inet {_TABLE} {{
    chain out {{ type filter hook output priority 0; policy accept; }}
    chain in {{ type filter hook input priority 0; policy accept; }}
}}
"""


@dataclass(slots=True)
class _Applied:
    namespace: str
    rules: list[tuple[str, int]] = field(default_factory=list)  # (chain, handle)
    qdiscs: list[tuple[str, str]] = field(default_factory=list)  # (namespace, device)
    reset_on_heal: bool = False


class KernelFaults:
    """Faults as kernel state of a host's namespace, each undone by the key it was set with.

    ``direction`` is "from-bureau" (what leaves the namespace), "to-bureau" (what enters
    it) or "both". Kinds: ``loss`` (nft ``numgen random`` drop), ``bandwidth`` (tc tbf),
    ``blackhole`` and ``partition`` (nft drop; healing resets the connections, never
    resumes them), ``down`` (new TCP connections rejected with a reset, open ones reset),
    and ``reset`` (instant: every TCP connection of the namespace reset, both ends).
    """

    KINDS = frozenset({"loss", "bandwidth", "blackhole", "partition", "down", "reset"})

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self._applied: dict[tuple[str, str], _Applied] = {}
        self._ready: set[str] = set()

    def _nft(self, namespace: str, script: str) -> str:
        proc = subprocess.run(
            ns_exec(namespace, ["nft", "-e", "-a", "-f", "-"]),
            input=script,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise NetworkError(f"nft in {namespace} failed: {proc.stderr.strip()}")
        return proc.stdout

    def _table(self, namespace: str) -> None:
        if namespace not in self._ready:
            self._nft(namespace, _NFT_SETUP)
            self._ready.add(namespace)

    def _rule(self, applied: _Applied, chain: str, rule: str) -> None:
        iface = "oifname" if chain == "out" else "iifname"
        out = self._nft(applied.namespace, f"add rule inet {_TABLE} {chain} {iface} eth0 {rule}\n")
        handle = re.search(r"# handle (\d+)", out)
        if handle is None:
            raise NetworkError(f"nft gave no rule handle in {applied.namespace}: {out!r}")
        applied.rules.append((chain, int(handle.group(1))))

    def _chains(self, direction: str) -> list[str]:
        if direction not in ("from-bureau", "to-bureau", "both"):
            raise ValueError(f"direction must be from-bureau, to-bureau or both: {direction!r}")
        return [
            c for c, d in (("out", "from-bureau"), ("in", "to-bureau")) if direction in (d, "both")
        ]

    def apply(
        self,
        namespace: str,
        fault: str,
        *,
        key: str,
        direction: str = "both",
        params: dict[str, float] | None = None,
    ) -> None:
        """Set ``fault`` on ``namespace`` until :meth:`heal` with the same ``key``.

        ``params``: loss takes ``loss`` (0 < x <= 1), bandwidth ``kbit_per_s``. Raises
        ValueError for an unknown kind or direction, NetworkError if a tool fails.
        """
        if fault not in self.KINDS:
            raise ValueError(f"not a kernel fault: {fault!r}")
        params = params or {}
        chains = self._chains("both" if fault == "partition" else direction)
        if fault == "reset":
            self.reset(namespace)
            return
        applied = _Applied(namespace)
        self._table(namespace)
        try:
            if fault == "loss":
                share = round(float(params["loss"]) * 10_000)
                for chain in chains:
                    self._rule(applied, chain, f"numgen random mod 10000 < {share} drop")
            elif fault == "bandwidth":
                self._bandwidth(applied, chains, float(params["kbit_per_s"]))
            elif fault in ("blackhole", "partition"):
                applied.reset_on_heal = True
                for chain in chains:
                    self._rule(applied, chain, "drop")
            else:  # down: refuse new connections, reset the open ones
                for chain in chains:
                    self._rule(
                        applied, chain, "tcp flags & (syn | ack) == syn reject with tcp reset"
                    )
                self.reset(namespace)
        except BaseException:
            self._undo(applied)
            raise
        self._applied[(namespace, key)] = applied
        log.info("kernel_fault", namespace=namespace, fault=fault, direction=direction, **params)

    def _bandwidth(self, applied: _Applied, chains: list[str], kbit: float) -> None:
        # tbf needs a bucket of at least one full-size packet; ~50 ms worth otherwise.
        burst = max(3200, int(kbit * 1000 / 8 / 20))
        for chain in chains:
            where, device = (
                (applied.namespace, "eth0")
                if chain == "out"
                else (self.topology.hub, self.topology.peer_of(applied.namespace))
            )
            _run(
                [
                    *ns_exec(where, ["tc", "qdisc", "replace", "dev", device, "root", "tbf"]),
                    *("rate", f"{kbit:g}kbit", "burst", str(burst), "latency", "500ms"),
                ]
            )
            applied.qdiscs.append((where, device))

    def reset(self, namespace: str) -> int:
        """Reset every TCP connection of ``namespace``, at both ends; how many were killed.

        ``ss -K`` destroys the sockets of the namespace, and the gateway's and the
        simulator's ends of connections with it, so neither side resumes a stream.
        """
        address = self.topology.address_of(namespace)
        killed = self._kill(namespace, [])
        for other in (self.topology.gateway, self.topology.ctl):
            if other != namespace:
                killed += self._kill(other, ["dst", address])
        time.sleep(RESET_WAIT_S)
        return killed

    def _kill(self, namespace: str, where: list[str]) -> int:
        proc = _run(ns_exec(namespace, ["ss", "-K", "-tnH", *where]), check=False)
        return len([line for line in proc.stdout.splitlines() if line.strip()])

    def heal(self, namespace: str, key: str) -> None:
        """Undo what :meth:`apply` set with ``key`` (nothing if it set nothing)."""
        applied = self._applied.pop((namespace, key), None)
        if applied is None:
            return
        if applied.reset_on_heal:
            # Kill the sockets while the drop is still in place: nothing resumes mid-stream.
            self.reset(namespace)
        self._undo(applied)
        log.info("kernel_heal", namespace=namespace, key=key)

    def _undo(self, applied: _Applied) -> None:
        for chain, handle in applied.rules:
            with contextlib.suppress(NetworkError):
                self._nft(applied.namespace, f"delete rule inet {_TABLE} {chain} handle {handle}\n")
        for where, device in applied.qdiscs:
            _run(ns_exec(where, ["tc", "qdisc", "del", "dev", device, "root"]), check=False)
        applied.rules.clear()
        applied.qdiscs.clear()

    def heal_all(self) -> None:
        """Undo every fault still set."""
        for namespace, key in list(self._applied):
            self.heal(namespace, key)
