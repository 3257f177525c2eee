"""Peak resident memory of a run's whole process tree, sampled in a thread."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

__all__ = ["MemorySampler", "descendants"]

_MEMORY_EVERY_S = 0.5


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (children of all its threads, recursively)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    todo += [int(c) for c in (task / "children").read_text().split()]
    return found


class MemorySampler:
    """Peak resident memory of the whole process tree: this process and all below it.

    A thread reads ``VmRSS`` of every process every half second and keeps the highest
    sum: the record generators, the gateway and the hosts included. RSS counts shared
    pages once per process, so the figure is an upper bound. ``pids`` adds processes
    that are not our descendants (none on loopback).
    """

    def __init__(self) -> None:
        self.pids: list[int] = []
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory", daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> int:
        """Sum of VmRSS (KiB) over the tree now; updates the peak."""
        total = 0
        for pid in dict.fromkeys([*descendants(os.getpid()), *self.pids]):
            with contextlib.suppress(OSError, ValueError, IndexError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        self.peak_kib = max(self.peak_kib, total)
        return total

    def _run(self) -> None:
        while not self._stop.wait(_MEMORY_EVERY_S):
            self.sample()
