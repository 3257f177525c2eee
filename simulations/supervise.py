"""Start the processes of a network and tell which are still ours.

Every program runs as ``python -m ncbsim ...`` with its JSON log private to its owner
(ncbsim.private) and writes a ready file once it serves; :func:`wait_ready` says which
process failed and shows the end of its log. Hosts (node/host.py) are started from the
spec :class:`~ncbsim.simulations.network.Network` wrote for them, and answer on a control
socket (:func:`socket_path`). Processes are stopped by pid (ncbsim.processes), and only
while :func:`ours` says the pid is still a process of this work directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ncbsim import private, processes
from ncbsim.simulations.manifest import Host
from ncbsim.workdir import Workdir

if TYPE_CHECKING:
    from ncbsim.simulations.network import Placement

READY_TIMEOUT_S = 60.0
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes
SOCKET_DIR_PREFIX = "ncbsim-sock-"


@dataclass(frozen=True, slots=True)
class Stopped:
    """What :meth:`Network.stop` found: processes it stopped, and those already gone, by
    role ("gateway", "host", "faultd")."""

    stopped: dict[str, int]
    gone: dict[str, int]

    @classmethod
    def tally(cls, running: Mapping[str, list[int]]) -> Stopped:
        """From each process slot ("gateway", "host-N", "faultd") and its pids still running."""
        stopped: dict[str, int] = {}
        gone: dict[str, int] = {}
        for slot, pids in running.items():
            role = "host" if slot.startswith("host-") else slot
            counts = stopped if pids else gone
            counts[role] = counts.get(role, 0) + 1
        return cls(stopped, gone)

    def describe(self) -> str:
        """E.g. ``stopped 3 processes (gateway, 2 hosts); 1 was already gone (host)``."""
        count = sum(self.stopped.values())
        text = f"stopped {count} process{'' if count == 1 else 'es'}"
        if count:
            text += f" ({_roles(self.stopped)})"
        gone = sum(self.gone.values())
        if gone:
            text += f"; {gone} {'was' if gone == 1 else 'were'} already gone ({_roles(self.gone)})"
        return text


_ROLE_NAMES = {"gateway": "gateway", "host": "host", "faultd": "fault proxy"}


def _roles(counts: Mapping[str, int]) -> str:
    parts = []
    for role in ("gateway", "host", "faultd"):
        n = counts.get(role, 0)
        name = _ROLE_NAMES[role]
        if n:
            parts.append(name if n == 1 else f"{n} {name}s")
    return ", ".join(parts)


def spawn(
    args: list[str], log_path: Path, *, detach: bool, prefix: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """Start ``python -m ncbsim ARGS`` (after ``prefix``), appending to ``log_path``.

    ``detach`` gives the child a session of its own, so it outlives this process.
    """
    private.private_folder(log_path.parent)  # hosts/, or a party's folder
    with os.fdopen(private.open_log(log_path), "ab") as out:
        return processes.spawn(
            [*prefix, sys.executable, "-m", "ncbsim", *args],
            out,
            # Keep gRPC core's own (non-JSON) chatter out of the JSON logs.
            env={"GRPC_VERBOSITY": "ERROR"},
            new_session=detach,
        )


def wait_ready(
    proc: subprocess.Popen[bytes],
    ready: Path,
    log_path: Path,
    *,
    deadline: float,
    what: str,
    abort: threading.Event | None = None,
) -> dict[str, Any]:
    """Wait for ``proc``'s ready file until ``deadline`` (monotonic), or until ``abort``."""
    return processes.wait_ready(
        proc,
        ready,
        deadline=deadline,
        exited=lambda code: (
            f"{what} (pid {proc.pid}) exited with {code}; log {log_path}: "
            + processes.log_tail(log_path, 5)
        ),
        late=f"{what} (pid {proc.pid}) not ready in time; log {log_path}",
        abort=abort,
    )


def socket_path(run: Path, name: str) -> str:
    """Where to put the Unix socket ``name`` of a process of the network in ``run``."""
    path = run / name
    if len(os.fsencode(str(path))) <= _SOCKET_PATH_MAX:
        return str(path)
    # A deep work directory: keep the socket short, in a private folder of its own (a
    # predictable name in a shared /tmp could be taken first by someone else).
    folder = tempfile.mkdtemp(prefix=SOCKET_DIR_PREFIX)
    return str(Path(folder) / name)


def start_process(
    args: list[str],
    log_path: Path,
    ready: Path,
    *,
    detach: bool,
    what: str,
    timeout_s: float = READY_TIMEOUT_S,
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start ``python -m ncbsim ARGS`` logging to ``log_path``; wait for its ``ready`` file.

    Returns the child and the ready file's content. Raises NetworkError (the child
    stopped) if it exits or is not ready within ``timeout_s``.
    """
    ready.unlink(missing_ok=True)
    child = spawn(args, log_path, detach=detach)
    try:
        info = wait_ready(child, ready, log_path, deadline=time.monotonic() + timeout_s, what=what)
    except BaseException:
        processes.terminate([child.pid])
        child.wait()
        raise
    return child, info


def control_path(run: Path, index: int) -> str:
    """The control socket of host ``index``."""
    return socket_path(run, f"host-{index}.sock")


def remove_socket(path: str) -> None:
    """Remove a control socket, and the private folder :func:`socket_path` made for it."""
    control = Path(path)
    control.unlink(missing_ok=True)
    if control.parent.name.startswith(SOCKET_DIR_PREFIX):
        with contextlib.suppress(OSError):
            control.parent.rmdir()


def spawn_gateway(
    workdir: Path,
    ready: Path,
    log_path: Path,
    *,
    log_level: str,
    listen: str,
    detach: bool,
    placement: Placement,
    metrics_listen: str = "127.0.0.1:0",
    trace_file: Path | None = None,
    attacks: bool = False,
) -> subprocess.Popen[bytes]:
    """Start the gateway of ``workdir`` on ``listen`` (its metrics on ``metrics_listen``);
    it writes ``ready`` once it serves, and appends its spans to ``trace_file`` if one is
    given. ``attacks`` (``ncbsim classroom`` only) makes it the classroom-mode gateway,
    reading its attack from ``Workdir(workdir).gateway.attack_mode``."""
    mode = Workdir(workdir).gateway.attack_mode
    classroom = ["--classroom-attacks", str(mode)] if attacks else []
    return spawn(
        [
            "--log-level",
            log_level,
            "gateway",
            "--dir",
            str(workdir),
            "--listen",
            listen,
            "--ready-file",
            str(ready),
            "--metrics-listen",
            metrics_listen,
            *trace_option(trace_file),
            *classroom,
        ],
        log_path,
        detach=detach,
        prefix=placement.command(None),
    )


def write_spec(
    host: Host,
    workdir: Path,
    *,
    gateway: str,
    listen: str,
    gateway_for: Mapping[str, str],
    advertise_for: Mapping[str, str],
) -> None:
    """Write ``host``'s spec: the bureaus it serves, their records, where they listen."""
    # Imported here, not above: ncbsim.simulations.network names the work directory's paths
    # and imports this module.

    spec = {
        "gateway": gateway,
        "bureaus": [
            {
                "bureau": code,
                "db": str(Workdir(workdir).bureau(code).records),
                "listen": listen,
                "advertise": advertise_for.get(code),
                "gateway": gateway_for.get(code),
            }
            for code in host.bureaus
        ],
    }
    private.write_text(Path(host.spec), json.dumps(spec, indent=2) + "\n")


def host_ready(host: Host) -> Path:
    """Where ``host`` writes its ready file: beside its spec."""
    return Path(host.spec).with_name(f"host-{host.index}.ready.json")


def trace_option(trace_file: Path | None) -> list[str]:
    """``--trace-file PATH`` for a program's command line, or nothing."""
    return [] if trace_file is None else ["--trace-file", str(trace_file)]


def trace_files(trace_dir: Path | None, name: str) -> Path | None:
    """Where process ``name`` ("gateway", "host-N") of a network traced into
    ``trace_dir`` appends its spans: ``trace_dir/NAME.jsonl`` (None: not traced)."""
    return None if trace_dir is None else trace_dir / f"{name}.jsonl"


def start_host(
    host: Host,
    env_args: list[str],
    *,
    detach: bool,
    placement: Placement,
    trace_file: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``host`` from its spec; sets ``host.pid``. :func:`await_host` waits for it.
    With ``trace_file`` every bureau of the host appends its spans there."""
    spec = Path(host.spec)
    ready = host_ready(host)
    ready.unlink(missing_ok=True)
    Path(host.control).unlink(missing_ok=True)
    child = spawn(
        [
            *env_args,
            "host",
            "--dir",
            str(spec.parent.parent),
            "--spec",
            str(spec),
            "--ready-file",
            str(ready),
            "--control",
            host.control,
            *trace_option(trace_file),
        ],
        Path(host.log),
        detach=detach,
        prefix=placement.command(host.index),
    )
    host.pid = child.pid
    return child


def await_host(
    host: Host,
    child: subprocess.Popen[bytes],
    *,
    deadline: float,
    abort: threading.Event | None = None,
) -> None:
    """Wait until ``host`` serves; sets ``host.addresses`` from its ready file."""
    ready = host_ready(host)
    what = (
        f"host {host.index} ({', '.join(host.bureaus[:3])}{'...' if len(host.bureaus) > 3 else ''})"
    )
    info = wait_ready(child, ready, Path(host.log), deadline=deadline, what=what, abort=abort)
    host.addresses = {code: str(address) for code, address in info["bureaus"].items()}
    host.metrics = {code: str(address) for code, address in info.get("metrics", {}).items()}


def ours(pid: int, workdir: Path) -> bool:
    """Whether ``pid`` is still an ncbsim process of this work directory (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    folder = os.fsencode(str(workdir))
    # The folder itself or a path inside it: /tmp/w2 is not a process of /tmp/w.
    named = any(arg == folder or arg.startswith(folder + b"/") for arg in cmdline)
    return b"ncbsim" in cmdline and named
