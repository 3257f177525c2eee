"""simulations/supervise.py: which processes a network may signal."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from ncbsim.simulations.supervise import ours


def test_a_process_of_a_sibling_folder_is_notours(tmp_path: Path) -> None:
    """A process naming /x/w2 is not the network /x/w's, though its path starts the same:
    live kill and pause must only ever signal the network's own processes."""
    mine, sibling = tmp_path / "w", tmp_path / "w2"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()", "ncbsim", str(sibling / "run")],
        stdin=subprocess.PIPE,
    )
    try:
        # Right after exec the kernel may show an empty command line for a moment.
        cmdline = Path(f"/proc/{proc.pid}/cmdline")
        deadline = time.monotonic() + 30
        while not cmdline.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ours(proc.pid, sibling)
        assert not ours(proc.pid, mine)
    finally:
        proc.communicate(b"")
    assert not ours(proc.pid, sibling)  # gone: a reused pid would not match either
