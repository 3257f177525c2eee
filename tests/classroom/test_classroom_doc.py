"""docs/classroom.md against the code it describes, without a network or a browser.

The trainer's guide must not drift from what the classroom does: its step list is the
lesson script's own Markdown, its screenshots exist at the projector's 1280x720, its route
table is the server's route table, its stream table lists exactly the message types the
code publishes, and its keys table every shortcut of the page.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from ncbsim.simulations import lesson
from ncbsim.simulations.classroom import server

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "classroom.md"
SHOTS = ROOT / "docs" / "classroom"
CODE = ROOT / "simulations" / "classroom"
KEYS_JS = CODE / "static" / "keys.js"
BEGIN, END = "<!-- lesson:begin -->\n", "<!-- lesson:end -->\n"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _section(heading: str) -> str:
    """The text under ``heading`` (a whole Markdown heading line) up to the next heading."""
    text = _doc()
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    following = re.search(r"^#{1,6} ", text[start:], re.MULTILINE)
    return text[start : start + following.start()] if following else text[start:]


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk; AssertionError if it is not a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert head[12:16] == b"IHDR", f"{path.name}: no IHDR chunk first"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_the_step_list_is_the_lesson_scripts_own() -> None:
    """The steps between the markers are exactly ``lesson.trainer_guide()``."""
    text = _doc()
    assert text.count(BEGIN) == 1
    assert text.count(END) == 1
    between = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert between == lesson.trainer_guide(), (
        "docs/classroom.md's lesson steps differ from simulations/lesson.py: paste "
        "trainer_guide()'s output between the markers"
    )


def test_every_screenshot_exists_at_1280x720_and_none_is_unused() -> None:
    """Each image the guide shows is a 1280x720 PNG in docs/classroom/, with a caption,
    and every PNG there is shown."""
    text = _doc()
    shown = re.findall(r"!\[([^\]]+)\]\((classroom/[^)\s]+)\)", text)
    assert len(shown) >= 8
    for alt, relative in shown:
        path = DOC.parent / relative
        assert path.is_file(), f"{relative} is missing (scripts/classroom_screens.py makes it)"
        assert relative.endswith(".png")
        assert _png_size(path) == (1280, 720), relative
        assert len(alt) > 20, f"{relative}: say what the picture shows"
        after = text.split(f"]({relative})", 1)[1].lstrip("\n")
        assert after.startswith("*"), f"{relative}: an italic caption follows each picture"
    files = {f"classroom/{p.name}" for p in SHOTS.glob("*.png")}
    assert files == {relative for _, relative in shown}


def test_the_route_table_is_the_servers() -> None:
    """Every route the app registers is in the guide's table, and the table has no other."""
    rows = re.findall(r"^\| `(GET|POST)` \| `(/[^`]*)` \|", _section("### HTTP routes"), re.M)
    assert len(rows) == len(set(rows)), "a route is listed twice"
    assert set(rows) == set(server.ROUTES)


def test_the_stream_table_lists_every_message_type_the_code_publishes() -> None:
    """The ``"type": "..."`` of every message in simulations/classroom/*.py is documented,
    and the guide lists no type the code never sends."""
    published = set()
    for module in CODE.glob("*.py"):
        published |= set(re.findall(r'"type":\s*"([a-z_]+)"', module.read_text()))
    assert {"hello", "events", "exchange", "status", "bureaus", "lesson"} <= published
    documented = re.findall(r"^\| `([a-z_]+)` \|", _section("### Message types"), re.M)
    assert len(documented) == len(set(documented))
    assert set(documented) == published


def test_the_keys_table_lists_every_shortcut_of_the_page() -> None:
    """Each key of the page's shortcut table (keys.js) is in the guide's Keys table."""
    source = KEYS_JS.read_text()
    table = source.split("const table = {", 1)[1].split("\n  };", 1)[0]
    keys = re.findall(r'^\s{4}("[^"]+"|\w+):', table, re.M)
    names = {"ArrowRight": "→", "ArrowLeft": "←", '" "': "space"}
    wanted = {names.get(k, k.strip('"')) for k in keys}
    assert len(wanted) >= 20
    documented = set(re.findall(r"<kbd>([^<]+)</kbd>", _section("### Keys")))
    assert wanted - documented == set()
    assert {"Esc", "⏎"} <= documented  # the keys handled outside the table


def test_the_lead_has_a_place_for_the_scale_figures() -> None:
    """The section for the 196-member benchmark exists and says where its figures go."""
    assert "bench_classroom.py" in _section("## At scale: all 196 members")
