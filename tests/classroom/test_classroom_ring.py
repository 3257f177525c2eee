"""A network too large for lanes: the page draws a ring of bureaus with the gateway in the
centre and traffic as arcs, and lanes for the few bureaus the trainer picks; in Debian's
Chromium, on a classroom of its own (14 bureaus with few records)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from room_support import Room, call, planted, start_classroom, stop_classroom

pytestmark = pytest.mark.integration

CODES = ["FR", "DE", "IT", "ES", "NL", "BE", "PT", "AT", "CH", "PL", "SE", "NO", "DK", "FI"]
SCENARIO = f"""name = "ring-test"
description = "Fourteen bureaus with few records: more than the page draws as lanes."
bureaus = {CODES!r}
seed = 14

[records]
documents = 60
persons = 30
vehicles = 30
planted = 3

[traffic]
duration_s = 1.0
rate_per_s = 1.0
"""


@pytest.fixture(scope="module")
def ring_room(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Room]:
    folder = tmp_path_factory.mktemp("ring")
    (folder / "ring.toml").write_text(SCENARIO.replace("'", '"'))
    started = start_classroom(folder / "work", str(folder / "ring.toml"))
    try:
        yield started
    finally:
        stop_classroom(started)


@pytest.fixture
def ring_page(browser: Any, ring_room: Room) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 720}, bypass_csp=True)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.goto(ring_room.url)
    opened.wait_for_selector("#conn[data-state=open]", timeout=30_000)
    try:
        yield opened
    finally:
        context.close()
    assert errors == []


def test_a_large_network_is_a_ring_with_lanes_for_the_bureaus_picked(
    ring_page: Any, ring_room: Room
) -> None:
    status, state = call(ring_room, "/api/state")
    assert (state["layout"], state["lanes"]) == ("ring", [])
    assert ring_page.locator("#stage").get_attribute("data-layout") == "ring"
    assert ring_page.locator("#ring canvas, canvas#ring").count() >= 1
    ring_page.locator("#picker-codes").fill("pl fi")
    ring_page.locator("#picker-codes").press("Enter")
    for lane in ("PL", "gateway", "FI"):
        ring_page.wait_for_selector(f"g.lane-head[data-lane={lane}]", timeout=30_000)
    assert ring_page.locator("g.lane-head[data-lane=FR]").count() == 0
    doc = planted(ring_room, "FI", "document")
    fields = {k: v for k, v in doc.items() if k != "label"}
    status, ex = call(ring_room, "/api/query", {"from": "PL", "to": "FI", **fields})
    assert status == 200, ex
    assert ex["outcome"] == "hit"
    ring_page.wait_for_selector(
        f"g.arrow[data-message='{ex['message_id']}'][data-from=PL]", timeout=30_000
    )
    # Its four legs (PL to the gateway to FI and back), in the lanes and as arcs.
    ring_page.wait_for_function("window.ncbsimStats.arrows >= 4", timeout=30_000)
