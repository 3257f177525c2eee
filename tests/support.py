"""Helpers several test folders share. Import them as ``from support import ...``.

They live here, not in ``conftest.py``: with several ``conftest.py`` files (tests/,
tests/fuzz/, tests/load/), ``from conftest import ...`` gets whichever one pytest
imported last, not the one beside this file.
"""

from __future__ import annotations

import os
from pathlib import Path

from ncbsim.simulations import scenario


def ncbsim_pids(workdir: Path) -> list[int]:
    """PIDs of the ncbsim processes whose command line names ``workdir``: what a run left."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"ncbsim" in cmdline and os.fsencode(str(workdir)) in cmdline:
            found.append(int(entry.name))
    return found


def load_scenario(tmp_path: Path, text: str) -> scenario.Scenario:
    """The scenario that ``text`` describes, loaded from ``tmp_path/sim.toml``."""
    path = tmp_path / "sim.toml"
    path.write_text(text)
    return scenario.load(str(path))
