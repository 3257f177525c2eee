"""Ctrl-C in a real `ncbsim simulate` under traffic: every process it started is stopped,
it says what it stopped, exits 130, and leaves no empty run directory behind.

The SIGINT goes to the `ncbsim simulate` process alone, not to its process group as a
terminal's Ctrl-C would: its children then get no signal of their own, so if none is left
afterwards, the engine stopped them."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SMALL = Path(__file__).resolve().parent.parent / "scenarios" / "small.toml"


def _long_small(folder: Path) -> Path:
    """tests/scenarios/small.toml with two minutes of traffic, named 'long'."""
    text = SMALL.read_text().replace('name = "small"', 'name = "long"')
    text = text.replace("duration_s = 4.0", "duration_s = 120.0")
    path = folder / "long.toml"
    path.write_text(text)
    return path


def _lines(stream: object, into: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.put(line)


def test_ctrl_c_under_traffic_stops_everything_and_says_what(tmp_path: Path) -> None:
    """SIGINT to `ncbsim simulate` alone once traffic runs: exit 130, "interrupted while
    running traffic ...: stopped the gateway and 4 bureaus", no traceback, no process of
    the run left (the engine stopped them), and the run directory it made (empty) removed."""
    from support import ncbsim_pids

    workdir, run_dir = tmp_path / "work", tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "ncbsim", "simulate", str(_long_small(tmp_path)),
            "--workdir", str(workdir), "--run-dir", str(run_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    out: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(proc.stdout, out), daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        # Off a terminal, the progress prints a line every 5 s of traffic: wait for one.
        deadline = time.monotonic() + 240
        while not any(line.startswith("long: ") for line in seen):
            assert proc.poll() is None, "".join(seen) + proc.stderr.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "no traffic progress: " + "".join(seen)
            with contextlib.suppress(queue.Empty):
                seen.append(out.get(timeout=1))
        running = ncbsim_pids(workdir)
        assert len(running) >= 2, running  # the gateway and the bureaus' host
        assert run_dir.is_dir()
        proc.send_signal(signal.SIGINT)  # the children get none: only the engine stops them
        assert proc.wait(timeout=120) == 130
        left = ncbsim_pids(workdir)  # before the clean-up below kills anything
        stderr = proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in ncbsim_pids(workdir):
            with contextlib.suppress(ProcessLookupError):  # it may exit on its own meanwhile
                os.kill(pid, signal.SIGKILL)
        reader.join(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("ncbsim: ")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("ncbsim: interrupted while running traffic at "), lines[0]
    assert ": stopped the gateway and 4 bureaus (" in lines[0]
    assert lines[0].endswith("; partial results not written")
    assert left == [], f"still running after simulate exited: {left}"
    assert not run_dir.exists()  # it held nothing
    assert workdir.is_dir()  # the work directory asked for is kept
