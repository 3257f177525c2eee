"""A live progress bar over a simulation's traffic, with running counts.

On a terminal it is a rich progress bar (elapsed over total seconds, then sent, answered,
no-answer, failed and in-flight counts). Elsewhere (CI logs, a pipe) it prints one plain
line per 5 s of elapsed time, and a last line when it closes, so logs stay short.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType

from rich import progress as rich_progress
from rich.console import Console, RenderableType
from rich.text import Text

__all__ = ["PLAIN_EVERY_S", "Progress"]

#: Seconds of elapsed time between two plain lines when the console is not a terminal.
PLAIN_EVERY_S = 5.0


def _describe(counts: dict[str, int], in_flight: int) -> str:
    return (
        f"sent {counts.get('sent', 0)}  answered {counts.get('answered', 0)}  "
        f"no-answer {counts.get('no_answer', 0)}  failed {counts.get('failed', 0)}  "
        f"in flight {in_flight}"
    )


class _TwoLines(rich_progress.Progress):
    """A rich progress bar with the live counts on a line of their own (fits 80 columns)."""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        for task in self.tasks:
            yield Text("  " + str(task.fields.get("status", "")), overflow="fold")


class Progress:
    """Context manager showing a run's progress; call :meth:`update` as often as you like.

    ``total_s`` is the traffic duration; ``label`` names the run (the scenario).
    """

    def __init__(self, console: Console, *, total_s: float, label: str) -> None:
        """Prepare the display on ``console``; nothing is shown until the ``with`` starts."""
        self._console = console
        self._total_s = max(total_s, 0.0)
        self._label = label
        self._plain = not console.is_terminal
        self._bar: rich_progress.Progress | None = None
        self._task: rich_progress.TaskID | None = None
        self._next_line_s = PLAIN_EVERY_S
        self._last: tuple[float, str] | None = None
        self._printed: str | None = None

    def __enter__(self) -> Progress:
        """Start the bar (terminal) or get ready to print plain lines."""
        if not self._plain:
            self._bar = _TwoLines(
                rich_progress.TextColumn("[bold]{task.description}"),
                rich_progress.BarColumn(bar_width=None),
                rich_progress.TextColumn("{task.completed:>5.1f}/{task.total:.0f} s"),
                console=self._console,
                transient=False,
                expand=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self._label, total=self._total_s or 1.0, status="")
        return self

    def update(self, elapsed_s: float, counts: dict[str, int], in_flight: int) -> None:
        """Show ``elapsed_s`` of ``total_s`` and the running ``counts`` (outcomes.counts)."""
        status = _describe(counts, in_flight)
        self._last = (elapsed_s, status)
        if self._bar is not None and self._task is not None:
            done = min(elapsed_s, self._total_s) if self._total_s else 1.0
            self._bar.update(self._task, completed=done, status=status)
        elif self._plain and elapsed_s >= self._next_line_s:
            self._line(elapsed_s, status)
            while self._next_line_s <= elapsed_s:
                self._next_line_s += PLAIN_EVERY_S

    def _line(self, elapsed_s: float, status: str) -> None:
        self._printed = status
        self._console.print(
            f"{self._label}: {elapsed_s:5.1f}/{self._total_s:.0f} s  {status}",
            highlight=False,
            soft_wrap=True,
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the bar; in plain mode, print the final counts if not printed already."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self._plain and self._last is not None and self._last[1] != self._printed:
            self._line(*self._last)
