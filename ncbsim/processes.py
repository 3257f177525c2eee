"""Child processes and stop signals, in one place for every ncbsim program and tool.

Start a program with its output in a log file (:func:`spawn`), wait until it writes its
ready file (:func:`wait_ready`, :func:`wait_ready_async`; the child's death and the
deadline are reported), and stop processes by pid (:func:`terminate`, :func:`kill`),
tolerating those already gone. A server stops on SIGINT or SIGTERM
(:func:`stop_on_signals`); a command turns SIGTERM into Ctrl-C
(:func:`sigterm_as_interrupt`) or into cancelling its run (:func:`cancel_on_sigterm`), so
whatever it started is stopped either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from ncbsim.errors import NetworkError

STOP_TIMEOUT_S = 10.0
"""How long :func:`terminate` and :func:`kill` wait for a process to end."""
POLL_S = 0.05


def spawn(
    argv: Sequence[str],
    log: IO[bytes],
    *,
    env: Mapping[str, str] | None = None,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with no input and its output and errors appended to ``log``.

    ``env`` is added to this process's environment. ``new_session`` puts the child in a
    session (and process group) of its own, so it outlives us and our Ctrl-C.
    """
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        stdout=log,
        stderr=log,
        start_new_session=new_session,
    )


def log_tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of the log at ``path``, joined by `` | ``."""
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])


def _ready(child: subprocess.Popen[bytes], ready: Path, exited: Callable[[int], str]) -> Any:
    """The ready file's content, or None if not written yet; raises if ``child`` exited."""
    if ready.exists():
        return json.loads(ready.read_text())
    if child.poll() is not None:
        raise NetworkError(exited(child.returncode))
    return None


def wait_ready(
    child: subprocess.Popen[bytes],
    ready: Path,
    *,
    deadline: float,
    exited: Callable[[int], str],
    late: str,
    abort: threading.Event | None = None,
) -> dict[str, Any]:
    """Wait until ``child`` writes its JSON ``ready`` file; return its content.

    Raises NetworkError with ``exited(returncode)`` if the child exits first, with
    ``late`` once ``deadline`` (monotonic) has passed, and "start-up interrupted" as
    soon as ``abort`` is set.
    """
    while time.monotonic() < deadline:
        data = _ready(child, ready, exited)
        if data is not None:
            return dict(data)
        if abort is not None and abort.is_set():
            raise NetworkError("start-up interrupted")
        time.sleep(POLL_S)
    raise NetworkError(late)


async def wait_ready_async(
    child: subprocess.Popen[bytes],
    ready: Path,
    *,
    deadline: float,
    exited: Callable[[int], str],
    late: str,
) -> dict[str, Any]:
    """:func:`wait_ready` for a coroutine: the event loop runs on while it waits."""
    while True:
        data = _ready(child, ready, exited)
        if data is not None:
            return dict(data)
        if time.monotonic() > deadline:
            raise NetworkError(late)
        await asyncio.sleep(POLL_S)


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is a child of ours that has ended."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def terminate(pids: Sequence[int]) -> None:
    """SIGTERM each pid, wait, then SIGKILL what is left. Reaps children of ours.

    A stopped (SIGSTOP) process is continued first, or it could not act on SIGTERM.
    A pid already gone is skipped.
    """
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for pid in pids:
        while alive(pid) and time.monotonic() < deadline:
            reap(pid)
            time.sleep(POLL_S)
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        reap(pid)


def kill(pid: int) -> None:
    """SIGKILL ``pid`` (a crash: no goodbye) and reap it, if it is a child of ours."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while alive(pid) and time.monotonic() < deadline:
        reap(pid)
        time.sleep(0.02)
    reap(pid)


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGINT or SIGTERM (where the running loop supports signal handlers)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)


@contextlib.contextmanager
def cancel_on_sigterm() -> Iterator[None]:
    """Inside a coroutine: SIGTERM cancels the current task, as Ctrl-C does under asyncio.run."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


@contextlib.contextmanager
def sigterm_as_interrupt(first: Callable[[], None] | None = None) -> Iterator[None]:
    """SIGTERM acts as Ctrl-C (SIGINT) inside the block; the previous handler comes back after.

    ``first`` runs before, e.g. to pass the signal on to a child. Outside the main
    thread (where no handler can be installed) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: object) -> None:
        if first is not None:
            first()
        signal.raise_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
