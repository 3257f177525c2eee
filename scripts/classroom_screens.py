"""Regenerate the classroom's screenshots (docs/classroom/*.png) for docs/classroom.md.

Starts ``ncbsim classroom`` as a user does (a subprocess on a free loopback port; the
address is read from its "Classroom: http://..." line), drives the page in headless
Chromium from Debian's ``chromium`` package at 1280x720 through the main views, and writes
one PNG per view. A second classroom, on a generated scenario of 40 bureaus with few
records, shows the ring layout of a large network. Everything it started is stopped by
PID at the end, whatever happened.

    .venv/bin/python scripts/classroom_screens.py            # every screenshot
    .venv/bin/python scripts/classroom_screens.py --only small  # not the 40-bureau ring

The PNGs are committed, so they are reduced to a 256-colour palette (Pillow, which
matplotlib already brings in) to keep them small.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "classroom"
CHROMIUM = Path("/usr/bin/chromium")
WIDTH, HEIGHT = 1280, 720
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
START_TIMEOUT_S = 300.0
WAIT_MS = 60_000
_URL = re.compile(r"Classroom: (http://\S+/)")

# The ring's network: 40 bureaus (INTERPOL members), few records, so it is up quickly.
# fmt: off
RING_BUREAUS = (
    "FR", "DE", "IT", "ES", "NL", "BE", "PT", "IE", "GB", "CH",
    "AT", "PL", "CZ", "SE", "NO", "DK", "FI", "GR", "TR", "MA",
    "DZ", "TN", "EG", "NG", "KE", "ZA", "BR", "AR", "CL", "MX",
    "US", "CA", "JP", "KR", "CN", "IN", "AU", "NZ", "SG", "TH",
)
# fmt: on
RING_SCENARIO = f"""# Made by scripts/classroom_screens.py: a network large enough for the ring.
name = "classroom-ring"
description = "Forty bureaus with few records, for the classroom's ring screenshot."
bureaus = {json.dumps(list(RING_BUREAUS))}
seed = 40

[records]
documents = 40
persons = 20
vehicles = 20
planted = 2

[traffic]
duration_s = 2.0
rate_per_s = 1.0

[engine]
startup_timeout_s = 240
"""


@dataclass
class Classroom:
    """A running ``ncbsim classroom``: its process, page address and what it printed."""

    proc: subprocess.Popen[str]
    workdir: Path
    url: str = ""
    lines: list[str] = field(default_factory=list)


def start(workdir: Path, scenario: str | None) -> Classroom:
    """``ncbsim classroom [SCENARIO] --workdir W --port 0``, once it prints its address."""
    command = [sys.executable, "-m", "ncbsim", "classroom", "--workdir", str(workdir)]
    command += ["--port", "0"] + ([scenario] if scenario else [])
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
        cwd=ROOT,
    )
    room = Classroom(proc, workdir)
    found = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            room.lines.append(line.rstrip("\n"))
            match = _URL.search(line)
            if match and not found.is_set():
                room.url = match.group(1)
                found.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not found.wait(0.2):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(room)
            tail = "\n".join(room.lines[-30:])
            raise RuntimeError(f"ncbsim classroom did not start:\n{tail}")
    print(f"  {room.url} ({scenario or 'default scenario'})", flush=True)
    return room


def stop(room: Classroom) -> None:
    """SIGTERM the classroom by its PID (it stops its own network); SIGKILL its process
    group and ``ncbsim down`` its work folder if it does not stop within a minute."""
    if room.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(room.proc.pid, signal.SIGTERM)
        try:
            room.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(room.proc.pid, signal.SIGKILL)
            room.proc.wait()
            down = [sys.executable, "-m", "ncbsim", "down", "--workdir", str(room.workdir)]
            subprocess.run(down, cwd=ROOT, capture_output=True, timeout=120, check=False)


@contextlib.contextmanager
def running(workdir: Path, scenario: str | None = None) -> Iterator[Classroom]:
    """A classroom for the duration of the ``with``; stopped even on failure."""
    room: Classroom | None = None
    try:
        room = start(workdir, scenario)
        yield room
    finally:
        if room is not None:
            stop(room)


class Shots:
    """The page in one browser tab, and the PNGs taken of it."""

    def __init__(self, page: Any, out: Path) -> None:
        self.page = page
        self.out = out
        self.taken: list[Path] = []

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.page.wait_for_selector("#conn[data-state=open]", timeout=WAIT_MS)
        self.page.locator("#pace").select_option("fast")
        # The side panel scrolls smoothly for the room; a screenshot wants it where it ends.
        self.page.add_style_tag(content="#side-scroll { scroll-behavior: auto !important; }")

    def exchanges(self) -> int:
        return int(self.page.evaluate("document.querySelectorAll('[data-exchange]').length"))

    def wait_exchange(self, before: int) -> None:
        self.page.wait_for_function(
            f"document.querySelectorAll('[data-exchange]').length > {before}", timeout=WAIT_MS
        )

    def settle(self, seconds: float = 1.5) -> None:
        """Wait until every queued arrow is drawn, then a moment for the last to land."""
        self.page.wait_for_selector("#queue-info[data-queued='0']", state="attached")
        self.page.wait_for_timeout(int(seconds * 1000))
        self.page.wait_for_selector("#queue-info[data-queued='0']", state="attached")

    def key(self, key: str) -> None:
        self.page.locator("body").focus()
        self.page.evaluate("document.activeElement && document.activeElement.blur()")
        self.page.keyboard.press(key)

    def side_to(self, selector: str) -> None:
        """Scroll the side panel so the first element matching ``selector`` is at its top."""
        self.page.evaluate(
            """sel => {
                 const el = document.querySelector(sel);
                 const box = document.querySelector('#side-scroll');
                 if (el && box) box.scrollTop += el.getBoundingClientRect().top
                   - box.getBoundingClientRect().top - 8;
               }""",
            selector,
        )

    def take(self, name: str) -> None:
        path = self.out / f"{name}.png"
        self.page.mouse.move(WIDTH - 1, HEIGHT - 1)  # no hover effect on the picture
        self.page.screenshot(path=str(path))
        shrink(path)
        self.taken.append(path)
        print(f"  {path} ({path.stat().st_size // 1024} KiB)", flush=True)


def shrink(path: Path) -> None:
    """Re-save ``path`` with a 256-colour palette (the page's flat colours survive it)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - matplotlib brings Pillow in
        return
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def send_query(page: Any, asker: str, to: str, kind: str = "document") -> None:
    """Fill the query form with a planted record of ``to`` (a sure hit) and send it."""
    form = page.locator("#query-form")
    form.locator("select[name=from]").select_option(asker)
    form.locator("select[name=to]").select_option(to)
    form.locator("select[name=kind]").select_option(kind)
    planted = form.locator("select[name=planted] option")
    if planted.count():
        form.locator("select[name=planted]").select_option(index=planted.count() - 1)
    form.locator("button[type=submit]").click()


def small_network(shots: Shots) -> None:
    """The default scenario: a query in each view, a notice, an attack, a kill, the lesson."""
    for shoot in (views, notice, attack, killed, lesson):
        shoot(shots)


def views(shots: Shots) -> None:
    """FR asks DE about a planted record: the exchange as each of the four parties sees it."""
    page = shots.page
    before = shots.exchanges()
    send_query(page, "FR", "DE")
    shots.wait_exchange(before)
    shots.settle()
    for number, view in enumerate(("requester", "gateway", "recipient", "wire"), 1):
        shots.key(str(number))
        page.wait_for_selector(f"section[data-view={view}]:not([hidden])")
        shots.side_to("#exchange-head")
        shots.take(f"view-{view}")
        if view == "gateway":  # the rest of its view: the sealed bytes, what it cannot see
            shots.side_to("section[data-view=gateway] .hex")
            shots.take("view-gateway-sealed")


def notice(shots: Shots) -> None:
    """FR requests a red notice; GS publishes it to every bureau, which send receipts."""
    page = shots.page
    form = page.locator("#notice-form")
    form.locator("select[name=from]").select_option("FR")
    form.locator("[name=surname]").fill("MARCHETTI")
    form.locator("[name=given_names]").fill("Lorenzo Paolo")
    form.locator("[name=date_of_birth]").fill("1979-04-12")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#notices li", timeout=WAIT_MS)
    page.wait_for_selector(
        "g.arrow[data-kind=notice][data-from=gateway][data-to=NL]",
        state="attached",
        timeout=WAIT_MS,
    )
    shots.settle(2.5)
    shots.key("o")
    page.locator("#notices").scroll_into_view_if_needed()
    shots.take("notice-published")


def attack(shots: Shots) -> None:
    """The gateway flips a bit of FR's query to DE: caught at the recipient (red banner)."""
    page = shots.page
    shots.key("1")
    page.locator("#attack-from").select_option("FR")
    page.locator("#attack-to").select_option("DE")
    before = shots.exchanges()
    page.locator("[data-attack='flip-bit']").click()
    shots.wait_exchange(before)
    page.wait_for_selector(".caught[data-where=recipient]", timeout=WAIT_MS)
    shots.settle()
    shots.side_to("#exchange-head")
    shots.take("attack-caught")


def killed(shots: Shots) -> None:
    """NL killed, and IT's query to it: no answer; then every fault healed."""
    page = shots.page
    page.locator("#fault-bureau").select_option("NL")
    page.locator("[data-fault=kill]").click()
    page.wait_for_selector("g.lane-head.down[data-lane=NL]", timeout=WAIT_MS)
    before = shots.exchanges()
    send_query(page, "IT", "NL")
    shots.wait_exchange(before)
    shots.settle()
    shots.key("k")
    shots.take("bureau-killed")
    page.locator("#heal-all").click()
    page.wait_for_selector(
        "g.lane-head[data-lane=NL]:not(.down)", state="attached", timeout=WAIT_MS
    )


def lesson(shots: Shots) -> None:
    """The lesson played to its fifth step (the tampered envelope), its caption showing."""
    page = shots.page
    page.locator("#lesson-start").click()
    for _ in range(4):
        page.wait_for_selector("#lesson[data-state=ready]", state="attached", timeout=120_000)
        page.locator("#lesson-next").click()
    page.wait_for_selector("#lesson:not([data-state=running])", timeout=120_000)
    page.wait_for_selector("#caption:not([hidden])", timeout=WAIT_MS)
    shots.settle()
    page.locator("#lesson").scroll_into_view_if_needed()
    shots.take("lesson")


def ring_network(shots: Shots) -> None:
    """A 40-bureau network: the ring, lanes picked for three bureaus, a query to ALL."""
    page = shots.page
    page.wait_for_selector("#ring-wrap:not([hidden])", timeout=WAIT_MS)
    page.locator("#picker-codes").fill("FR DE BR JP")
    page.locator("#picker button[type=submit]").click()
    before = shots.exchanges()
    send_query(page, "FR", "ALL")
    shots.wait_exchange(before)
    page.wait_for_timeout(250)  # the arcs fade in about 2 s: take them while they show
    shots.take("ring")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the PNGs")
    parser.add_argument("--chromium", type=Path, default=CHROMIUM)
    parser.add_argument(
        "--only",
        choices=("small", "ring"),
        help="only the default scenario's screenshots, or only the 40-bureau ring",
    )
    args = parser.parse_args(argv)
    if not args.chromium.exists():
        print(f"classroom_screens: no browser at {args.chromium} (apt-get install chromium)")
        return 2
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ncbsim-screens-") as tmp, sync_playwright() as play:
        browser = play.chromium.launch(executable_path=str(args.chromium), args=FLAGS)
        try:
            # bypass_csp: Playwright's waits evaluate strings; the page itself needs none.
            context = browser.new_context(
                viewport={"width": WIDTH, "height": HEIGHT}, bypass_csp=True
            )
            shots = Shots(context.new_page(), args.out)
            runs: list[tuple[str | None, Callable[[Shots], None]]] = []
            if args.only != "ring":
                runs.append((None, small_network))
            if args.only != "small":
                scenario = Path(tmp) / "ring.toml"
                scenario.write_text(RING_SCENARIO)
                runs.append((str(scenario), ring_network))
            for number, (scenario_arg, drive) in enumerate(runs):
                with running(Path(tmp) / f"work{number}", scenario_arg) as room:
                    shots.open(room.url)
                    drive(shots)
        except (RuntimeError, PlaywrightError) as exc:  # everything started is stopped
            print(f"classroom_screens: {exc}", file=sys.stderr)
            return 1
        finally:
            browser.close()
    print(f"{len(shots.taken)} screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
