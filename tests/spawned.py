"""Real ncbsim processes for tests: start one logging to a file, wait for its ready file,
stop it (SIGTERM, then SIGKILL; always reaped)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 60.0  # readiness on a busy machine, not speed
STOP_TIMEOUT_S = 10.0


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m ncbsim ARGS``, its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ncbsim", *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
        )


def wait_ready(
    proc: subprocess.Popen[bytes], ready: Path, log: Path, *, timeout_s: float = READY_TIMEOUT_S
) -> dict[str, Any]:
    """The ready file's JSON once ``proc`` wrote it; AssertionError with the log's tail if
    the process exits first or takes longer than ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready.exists():
            data: dict[str, Any] = json.loads(ready.read_text())
            return data
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    raise AssertionError(f"not ready after {timeout_s}s: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen[bytes], *, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``; reaped either way."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
