"""Start and stop ``ncbsim classroom`` as a user does, for the classroom's tests.

The process brings up its own network (tests/scenarios/classroom.toml: FR, DE, IT, NL and
GS, in classroom mode) and serves the page on a free loopback port; every test of the
session talks to it over HTTP, or drives the page in Debian's Chromium. It is stopped by
its PID at the end, whatever happened, and so is anything it left running.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support import ncbsim_pids

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "classroom.toml"
START_TIMEOUT_S = 180.0
_URL = re.compile(r"Classroom: (http://\S+/)")


@dataclass
class Room:
    """A running ``ncbsim classroom``: its page's address, its folder, what it printed."""

    url: str
    workdir: Path
    proc: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def log(self) -> str:
        """Everything it printed (stdout and stderr: its log lines are JSON)."""
        return "\n".join(self.output)


def start_classroom(workdir: Path, *args: str) -> Room:
    """``ncbsim classroom`` with ``args`` (default: the test scenario), once it serves."""
    command = [sys.executable, "-m", "ncbsim", "--log-level", "info", "classroom"]
    command += list(args) or [str(SCENARIO)]
    command += ["--workdir", str(workdir), "--port", "0"]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
    )
    room = Room("", workdir, proc)
    found = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            room.output.append(line.rstrip("\n"))
            match = _URL.search(line)
            if match and not found.is_set():
                room.url = match.group(1)
                found.set()

    room.reader = threading.Thread(target=read, daemon=True)
    room.reader.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not found.wait(0.2):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_classroom(room)
            pytest.fail(f"ncbsim classroom did not start:\n{room.log()[-4000:]}")
    return room


def stop_classroom(room: Room, *, network_too: bool = True) -> None:
    """SIGTERM the classroom by its PID (it stops a network it started), then anything of
    its folder left running (not with ``network_too`` false: a network it attached to)."""
    if room.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(room.proc.pid, signal.SIGTERM)
        try:
            room.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(room.proc.pid, signal.SIGKILL)
            room.proc.wait()
    for pid in ncbsim_pids(room.workdir) if network_too else []:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if room.reader is not None:
        room.reader.join(10)  # it ends with the output
    if room.proc.stdout is not None:
        room.proc.stdout.close()


def call(room: Room, path: str, body: Any = None, *, raw: bytes | None = None) -> tuple[int, Any]:
    """GET ``path`` (no body) or POST ``body`` as JSON; (status, decoded JSON or text)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(
        room.url + path.lstrip("/"),
        data=data,
        method="GET" if data is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, payload = response.status, response.read()
            kind = response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        # Closed here: left to the garbage collector, its socket would be reported unclosed
        # in whichever later test the collector happens to run.
        with exc:
            status, payload = exc.code, exc.read()
            kind = exc.headers.get("Content-Type", "")
    return status, json.loads(payload) if "json" in kind else payload.decode()


def planted(room: Room, code: str, kind: str) -> dict[str, str]:
    """The first record of ``kind`` the page offers for ``code`` (sure to hit)."""
    status, state = call(room, "/api/state")
    assert status == 200
    return next(p for p in state["planted"][code] if p["kind"] == kind)


def query(room: Room, asker: str, to: str, item: dict[str, str]) -> dict[str, Any]:
    """Send ``item`` (a planted record's fields) from ``asker`` to ``to``; the exchange."""
    fields = {k: v for k, v in item.items() if k != "label"}
    status, reply = call(room, "/api/query", {"from": asker, "to": to, **fields})
    assert status == 200, reply
    return reply
