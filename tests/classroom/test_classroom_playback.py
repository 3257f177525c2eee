"""The trainer's playback controls, with the keys the room sees them pressed: pause holds
the arrows (they queue), step plays one, back takes the last one back, resume plays the
rest, replay re-animates an exchange, and the pace changes; in Debian's Chromium."""

from __future__ import annotations

from typing import Any

import pytest
from room_support import Room, call, planted

pytestmark = pytest.mark.integration

WAIT_MS = 30_000


def _drawn(page: Any, mid: str) -> int:
    return int(page.locator(f"g.arrow[data-message='{mid}']").count())


def _wait_drawn(page: Any, mid: str, test: str) -> None:
    """Wait until the count of ``mid``'s arrows in the diagram passes ``test`` (``== 1``)."""
    count = f"document.querySelectorAll(\"g.arrow[data-message='{mid}']\").length"
    page.wait_for_function(f"{count} {test}", timeout=WAIT_MS)


def _queued(page: Any) -> int:
    return int(page.locator("#queue-info").get_attribute("data-queued") or 0)


def test_pause_step_back_resume_replay_and_pace_from_the_keyboard(page: Any, room: Room) -> None:
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("Space")
    assert page.locator("#pause").get_attribute("aria-pressed") == "true"
    status, ex = call(room, "/api/query", {"from": "IT", "to": "DE", **_fields(room)})
    assert status == 200, ex
    mid = ex["message_id"]
    page.wait_for_function("Number(document.querySelector('#queue-info').dataset.queued) >= 4")
    assert _drawn(page, mid) == 0  # paused: the query's arrows wait
    queued = _queued(page)
    page.keyboard.press("ArrowRight")  # step: one arrow
    _wait_drawn(page, mid, "== 1")
    assert _queued(page) == queued - 1
    page.keyboard.press("ArrowLeft")  # back: it returns to the queue
    _wait_drawn(page, mid, "== 0")
    assert _queued(page) == queued
    page.keyboard.press("f")  # fast, then resume: every arrow plays
    assert page.locator("#pace").input_value() == "fast"
    page.keyboard.press("Space")
    assert page.locator("#pause").get_attribute("aria-pressed") == "false"
    _wait_drawn(page, mid, ">= 4")
    page.wait_for_function("Number(document.querySelector('#queue-info').dataset.queued) == 0")
    page.keyboard.press("r")  # replay the selected exchange: its arrows move again
    page.wait_for_selector(f"g.arrow.moving[data-message='{mid}']", timeout=WAIT_MS)
    page.keyboard.press("s")
    assert page.locator("#pace").input_value() == "slow"


def _fields(room: Room) -> dict[str, str]:
    doc = planted(room, "DE", "document")
    return {k: v for k, v in doc.items() if k != "label"}
