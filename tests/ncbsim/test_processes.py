"""ncbsim.processes with real short-lived children (``python -c ...``)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ncbsim import processes
from ncbsim.errors import NetworkError

WRITE_READY = (
    "import json, os, sys, time; time.sleep(0.2); "
    "open(sys.argv[1], 'w').write(json.dumps({'pid': os.getpid(), 'address': 'here'})); "
    "time.sleep(60)"
)
DIE = "import sys; print('no keys in', sys.argv[1]); sys.exit(3)"
SLEEP = "import time; time.sleep(60)"


def _start(tmp_path: Path, code: str, *args: str, **kwargs: bool) -> subprocess.Popen[bytes]:
    with (tmp_path / "child.log").open("ab") as log:
        return processes.spawn(
            [sys.executable, "-c", code, *args], log, env={"NCBSIM_TEST": "yes"}, **kwargs
        )


def _exited(code: int) -> str:
    return f"child exited with {code}"


def test_spawn_appends_output_to_the_log_and_adds_to_the_environment(tmp_path: Path) -> None:
    """The child's output and errors go to the log, with the given variables set."""
    (tmp_path / "child.log").write_text("earlier\n")
    code = "import os, sys; print(os.environ['NCBSIM_TEST']); print('err', file=sys.stderr)"
    child = _start(tmp_path, code)
    assert child.wait(timeout=30) == 0
    assert (tmp_path / "child.log").read_text().split() == ["earlier", "yes", "err"]


def test_spawn_in_a_session_of_its_own(tmp_path: Path) -> None:
    """``new_session`` makes the child lead its own session (and process group)."""
    child = _start(tmp_path, SLEEP, new_session=True)
    try:
        assert os.getsid(child.pid) == child.pid
        assert os.getpgid(child.pid) != os.getpgid(0)
    finally:
        processes.terminate([child.pid])
        child.wait()


def test_wait_ready_returns_the_ready_file(tmp_path: Path) -> None:
    """Once the child writes its ready file, its content is returned."""
    ready = tmp_path / "ready.json"
    child = _start(tmp_path, WRITE_READY, str(ready))
    try:
        info = processes.wait_ready(
            child, ready, deadline=time.monotonic() + 30, exited=_exited, late="late"
        )
        assert info == {"pid": child.pid, "address": "here"}
    finally:
        processes.terminate([child.pid])
        child.wait()


def test_wait_ready_reports_a_child_that_died_first(tmp_path: Path) -> None:
    """A child that exits before its ready file is reported with its code and log."""
    child = _start(tmp_path, DIE, "tls/")
    log = tmp_path / "child.log"
    with pytest.raises(NetworkError, match=r"^child exited with 3: no keys in tls/$"):
        processes.wait_ready(
            child,
            tmp_path / "ready.json",
            deadline=time.monotonic() + 30,
            exited=lambda code: f"child exited with {code}: {processes.log_tail(log, 5)}",
            late="late",
        )


def test_wait_ready_gives_up_at_the_deadline(tmp_path: Path) -> None:
    """A child that runs but never gets ready is reported once the deadline passes."""
    child = _start(tmp_path, SLEEP)
    try:
        started = time.monotonic()
        with pytest.raises(NetworkError, match=r"^child not ready in time$"):
            processes.wait_ready(
                child,
                tmp_path / "ready.json",
                deadline=started + 0.3,
                exited=_exited,
                late="child not ready in time",
            )
        assert 0.3 <= time.monotonic() - started < 5
        assert child.poll() is None  # waiting does not stop it: the caller does
    finally:
        processes.terminate([child.pid])
        child.wait()


def test_wait_ready_stops_waiting_when_aborted(tmp_path: Path) -> None:
    """Setting ``abort`` ends the wait at once with "start-up interrupted"."""
    child = _start(tmp_path, SLEEP)
    abort = threading.Event()
    abort.set()
    try:
        with pytest.raises(NetworkError, match=r"^start-up interrupted$"):
            processes.wait_ready(
                child,
                tmp_path / "ready.json",
                deadline=time.monotonic() + 30,
                exited=_exited,
                late="late",
                abort=abort,
            )
    finally:
        processes.terminate([child.pid])
        child.wait()


def test_wait_ready_async_reports_death_and_deadline(tmp_path: Path) -> None:
    """The coroutine reports a dead child and a late one as the blocking wait does."""
    dead = _start(tmp_path, DIE, "x")
    slow = _start(tmp_path, SLEEP)
    ready = tmp_path / "ready.json"
    try:
        with pytest.raises(NetworkError, match=r"^child exited with 3$"):
            asyncio.run(
                processes.wait_ready_async(
                    dead, ready, deadline=time.monotonic() + 30, exited=_exited, late="late"
                )
            )
        with pytest.raises(NetworkError, match=r"^late$"):
            asyncio.run(
                processes.wait_ready_async(
                    slow, ready, deadline=time.monotonic() + 0.2, exited=_exited, late="late"
                )
            )
    finally:
        processes.terminate([slow.pid])
        slow.wait()


def test_wait_ready_async_returns_the_ready_file(tmp_path: Path) -> None:
    """The coroutine returns the ready file's content once written."""
    ready = tmp_path / "ready.json"
    child = _start(tmp_path, WRITE_READY, str(ready))
    try:
        info = asyncio.run(
            processes.wait_ready_async(
                child, ready, deadline=time.monotonic() + 30, exited=_exited, late="late"
            )
        )
        assert info["address"] == "here"
    finally:
        processes.terminate([child.pid])
        child.wait()


def test_terminate_stops_by_pid_and_reaps(tmp_path: Path) -> None:
    """SIGTERM ends the children, stopped ones too; they are reaped, not left as zombies."""
    children = [_start(tmp_path, SLEEP) for _ in range(2)]
    os.kill(children[1].pid, signal.SIGSTOP)
    processes.terminate([c.pid for c in children])
    for child in children:
        assert not processes.alive(child.pid)
        with pytest.raises(ChildProcessError):
            os.waitpid(child.pid, os.WNOHANG)  # already reaped
        child.wait()


def test_terminate_kills_what_ignores_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that ignores SIGTERM is SIGKILLed once the wait is over."""
    monkeypatch.setattr(processes, "STOP_TIMEOUT_S", 0.5)
    ready = tmp_path / "ready.json"
    code = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "open(sys.argv[1], 'w').write('{}'); time.sleep(60)"
    )
    child = _start(tmp_path, code, str(ready))
    processes.wait_ready(child, ready, deadline=time.monotonic() + 30, exited=_exited, late="l")
    processes.terminate([child.pid])
    child.wait(timeout=5)  # SIGKILL was sent: it ends (TimeoutExpired if it were spared)
    assert not processes.alive(child.pid)


def test_terminate_and_kill_tolerate_a_process_already_gone(tmp_path: Path) -> None:
    """Stopping a pid that has exited (and was reaped) does nothing and raises nothing."""
    child = _start(tmp_path, "pass")
    child.wait(timeout=30)
    processes.terminate([child.pid])
    processes.kill(child.pid)
    assert not processes.alive(child.pid)


def test_kill_sigkills_and_reaps(tmp_path: Path) -> None:
    """kill() ends a process at once (no goodbye) and reaps it."""
    child = _start(tmp_path, SLEEP)
    processes.kill(child.pid)
    assert not processes.alive(child.pid)
    child.wait()


def test_sigterm_as_interrupt_raises_keyboard_interrupt_and_restores() -> None:
    """Inside the block SIGTERM acts as Ctrl-C; after it, the old handler is back."""
    before = signal.getsignal(signal.SIGTERM)
    called: list[str] = []
    with (
        pytest.raises(KeyboardInterrupt),
        processes.sigterm_as_interrupt(first=lambda: called.append("first")),
    ):
        signal.raise_signal(signal.SIGTERM)
    assert called == ["first"]
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_as_interrupt_outside_the_main_thread_changes_nothing() -> None:
    """A worker thread cannot install handlers: the block runs as it is."""
    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []

    def worker() -> None:
        with processes.sigterm_as_interrupt():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [before]


def test_cancel_on_sigterm_cancels_the_task_and_restores() -> None:
    """Inside a coroutine, SIGTERM cancels the current task; the handler is removed after."""

    async def run() -> str:
        with processes.cancel_on_sigterm():
            try:
                signal.raise_signal(signal.SIGTERM)
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                return "cancelled"
        return "not cancelled"  # pragma: no cover

    before = signal.getsignal(signal.SIGTERM)
    assert asyncio.run(run()) == "cancelled"
    assert signal.getsignal(signal.SIGTERM) == before


def test_stop_on_signals_sets_the_event() -> None:
    """A server's stop event is set by SIGTERM (and SIGINT)."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    async def run() -> bool:
        stop = asyncio.Event()
        processes.stop_on_signals(stop)
        try:
            signal.raise_signal(signal.SIGTERM)
            await asyncio.wait_for(stop.wait(), timeout=5)
            return stop.is_set()
        finally:
            loop = asyncio.get_running_loop()
            for sig in before:
                loop.remove_signal_handler(sig)

    assert asyncio.run(run())
    for sig, handler in before.items():
        signal.signal(sig, handler)
