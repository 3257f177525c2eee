"""The session's classroom: one real ``ncbsim classroom`` every test of tests/classroom
uses (tests/classroom/room_support.py starts it as a user would, on its own network)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from room_support import Room, start_classroom, stop_classroom


@pytest.fixture(scope="session")
def room(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Room]:
    """The session's classroom, on its own network; stopped at the end."""
    started = start_classroom(tmp_path_factory.mktemp("classroom") / "work")
    try:
        yield started
    finally:
        stop_classroom(started)
