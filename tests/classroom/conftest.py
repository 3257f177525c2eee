"""The session's classroom: one real ``ncbsim classroom`` every test of tests/classroom
uses (tests/classroom/room_support.py starts it as a user would, on its own network); and
the browser the page tests drive: Debian's Chromium, headless, through Playwright.

Chromium comes from Debian's ``chromium`` package (``.ci/run`` installs it); Playwright's
own browser download is never used. Without it, and without root to install it, the page
tests skip, saying so.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from room_support import Room, start_classroom, stop_classroom

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 720}


@pytest.fixture(scope="session")
def room(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Room]:
    """The session's classroom, on its own network; stopped at the end."""
    started = start_classroom(tmp_path_factory.mktemp("classroom") / "work")
    try:
        yield started
    finally:
        stop_classroom(started)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, with a fresh profile; closed at the end of the module.

    Not shared by the whole session: Playwright's synchronous API keeps an event loop
    running in this thread while it is open, and the tests of other modules that call
    ``asyncio.run`` need none to be."""
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian's chromium is not installed (apt-get install chromium; "
            ".ci/run installs it when run as root)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as play:
        launched = play.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any, room: Room) -> Iterator[Any]:
    """The classroom page at 1280x720, connected to its stream; fails the test on any
    console error or uncaught exception in the page."""
    # bypass_csp: Playwright's waits evaluate strings, which the page's own policy
    # (script-src 'self', no eval) would refuse; the page itself needs no such bypass.
    context = browser.new_context(viewport=VIEWPORT, bypass_csp=True)
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

    def console(msg: Any) -> None:
        # A 4xx reply to a bad request is logged by the browser itself; the page's own
        # errors are not "Failed to load resource".
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            problems.append(f"console: {msg.text}")

    opened.on("console", console)
    opened.goto(room.url)
    opened.wait_for_selector("#conn[data-state=open]", timeout=30_000)
    try:
        yield opened
    finally:
        context.close()
    assert problems == []
