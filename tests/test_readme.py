"""The README is the front door: its command blocks, run in order as a new user pastes them.

Every fenced ``sh`` block of README.md runs, top to bottom, in one bash at the
repository's root (as the README says), with ``/tmp/ncbsim`` moved into the test's own
temporary folder. A block says it is not run with ``<!-- readme-test: skip: REASON -->``
on the line before its fence; the reason is required and the skipped blocks are listed.
A command must exit 0, or what its comment says: ``# exit 1: ...``, ``# exit 0 or 1: ...``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import ncbsim_pids

from ncbsim.simulations.network import Network

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
WORKDIRS = "/tmp/ncbsim"
"""Where the README keeps its sections' work directories."""
SKIP = re.compile(r"^<!-- readme-test: skip: (?P<reason>\S.*?) -->$")
EXIT = re.compile(r"#\s*exit (?P<first>\d+)(?:\s+or\s+(?P<second>\d+))?\b")
FENCE = re.compile(r"^```(?P<lang>\S*)\s*$")
OUTPUTS = ("runs", "load-reports")
"""Where commands write when not told otherwise: the README must always tell them."""


@dataclass(frozen=True)
class Block:
    """One fenced ``sh`` block: where it starts, its text, and why it is skipped, if it is."""

    line: int
    text: str
    skip: str | None


@dataclass(frozen=True)
class Command:
    """One command as typed (continuation lines joined) and the exit codes it may give."""

    line: int
    text: str
    exits: tuple[int, ...]


def blocks(markdown: str) -> list[Block]:
    """The ``sh`` blocks of ``markdown``, in order, with their skip reasons."""
    found: list[Block] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and not lines[index].startswith("```"):
            body.append(lines[index])
            index += 1
        index += 1
        if fence["lang"] != "sh":
            continue
        before = lines[start - 1].strip() if start > 0 else ""
        skip = SKIP.match(before)
        found.append(Block(start + 1, "\n".join(body), skip["reason"] if skip else None))
    return found


def commands(block: Block) -> list[Command]:
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    found: list[Command] = []
    pending: list[str] = []
    first = 0
    for offset, line in enumerate(block.text.splitlines(), start=1):
        if not pending:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            first = block.line + offset
        pending.append(line)
        if line.rstrip().endswith("\\"):
            continue
        text = "\n".join(pending)
        pending = []
        expected = EXIT.search(text)
        exits = (0,)
        if expected is not None:
            exits = tuple(int(c) for c in expected.group("first", "second") if c is not None)
        found.append(Command(first, text, exits))
    return found


def script(runnable: list[Block], workdirs: Path) -> str:
    """One bash script of every command, each checked against the exit codes it may give."""
    out = ["set -uo pipefail"]
    for block in runnable:
        for command in commands(block):
            text = command.text.replace(WORKDIRS, str(workdirs))
            allowed = "|".join(str(c) for c in command.exits)
            where = f"README.md:{command.line}"
            out += [
                f"printf '\\n$ %s\\n' {shlex.quote(text)}",
                "{",
                text,
                "}",
                "rc=$?",
                f'case $rc in {allowed}) ;; *) echo "{where}: exit $rc, expected {allowed}"'
                " >&2; exit 97;; esac",
            ]
    out.append('echo "README: every command ran"')
    return "\n".join(out) + "\n"


def test_every_sh_block_is_run_or_says_why_not() -> None:
    """Each sh block of the README is run by the test below, or names its reason; and the
    parser sees the commands a reader sees (continuations joined, expected exits read)."""
    found = blocks(README.read_text())
    skipped = [b for b in found if b.skip is not None]
    assert len(found) >= 10
    assert all(b.skip and len(b.skip) > 20 for b in skipped)
    assert len(skipped) <= len(found) // 2, [b.line for b in skipped]
    runnable = [c for b in found if b.skip is None for c in commands(b)]
    texts = [c.text for c in runnable]
    assert any(t.startswith("ncbsim up quickstart") for t in texts)
    assert any(c.exits == (1,) for c in runnable)


def test_commands_join_continuations_and_read_expected_exits() -> None:
    """The parser joins backslash continuations and reads `# exit N` / `# exit N or M`."""
    block = Block(
        10,
        "# a comment\nncbsim a \\\n  --b  # exit 1: why\n\nncbsim c   # exit 0 or 1: v\nx # y",
        None,
    )
    assert commands(block) == [
        Command(12, "ncbsim a \\\n  --b  # exit 1: why", (1,)),
        Command(15, "ncbsim c   # exit 0 or 1: v", (0, 1)),
        Command(16, "x # y", (0,)),
    ]


def _outputs() -> dict[str, list[str]]:
    return {
        name: sorted(p.name for p in (ROOT / name).iterdir()) if (ROOT / name).is_dir() else []
        for name in OUTPUTS
    }


def _clean_up(workdirs: Path) -> None:
    """Stop whatever the README left running under ``workdirs``, even after a failure."""
    for manifest in workdirs.rglob("network.json"):
        with contextlib.suppress(Exception):  # keep cleaning up the rest
            Network.load(manifest.parent).stop()
    for pid in ncbsim_pids(workdirs):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.integration
@pytest.mark.timeout(1200)
def test_readme_commands_run_in_order(tmp_path: Path) -> None:
    """Pasted top to bottom at the repository's root, every command of the README runs
    and exits as its comment says (0 unless `# exit N`), and nothing lands in the
    repository's default output folders."""
    workdirs = tmp_path / "ncbsim"
    runnable = [b for b in blocks(README.read_text()) if b.skip is None]
    (tmp_path / "readme.sh").write_text(script(runnable, workdirs))
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("NCBSIM_LOG_LEVEL", None)
    before = _outputs()
    log = tmp_path / "readme.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", str(tmp_path / "readme.sh")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode = proc.wait(timeout=1100)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            _clean_up(workdirs)
    text = log.read_text(errors="replace")
    assert returncode == 0, text[-6000:]
    assert text.rstrip().endswith("README: every command ran")
    assert _outputs() == before
