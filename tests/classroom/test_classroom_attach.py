"""A classroom attached to a network that ``ncbsim up`` started: it shows and acts, but its
gateway is honest, so every attack is refused with a clear 409 naming ``ncbsim classroom``;
and the network stays up when the classroom stops.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from room_support import call, planted, query, start_classroom, stop_classroom
from support import run_ncbsim

pytestmark = pytest.mark.integration

SMALL = Path(__file__).resolve().parents[1] / "scenarios" / "small.toml"


def test_an_attached_classroom_refuses_attacks_and_leaves_the_network_up(tmp_path: Path) -> None:
    work = tmp_path / "work"
    up = run_ncbsim("up", SMALL, "--workdir", work, "--detach", timeout=180)
    assert up.returncode == 0, up.stderr
    try:
        gateway = json.loads((work / "network.json").read_text())
        assert "--classroom-attacks" not in json.dumps(gateway)  # an honest gateway
        room = start_classroom(work, "quickstart")  # the scenario is ignored: it attaches
        try:
            assert any(line.startswith("Attaching to the network in") for line in room.output)
            status, state = call(room, "/api/state")
            assert state["attacks_enabled"] is False
            assert state["bureaus"] == ["FR", "DE", "IT", "NL"]
            status, reply = call(
                room, "/api/attack", {"name": "flip-bit", "from": "FR", "to": "DE"}
            )
            assert status == 409
            assert "attacks need a network started by `ncbsim classroom`" in reply["error"]
            assert query(room, "FR", "DE", planted(room, "DE", "document"))["outcome"] == "hit"
        finally:
            stop_classroom(room, network_too=False)
        assert room.proc.returncode == 0
        pids = [p["pid"] for p in json.loads((work / "network.json").read_text())["processes"]]
        for pid in pids:
            os.kill(pid, 0)  # every process of the network still runs
        assert run_ncbsim("status", "--workdir", work).returncode == 0
    finally:
        run_ncbsim("down", "--workdir", work)
