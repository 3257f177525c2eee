"""The classroom page's static files, checked without a browser.

The page is plain HTML, CSS and ES modules that ncbsim serves itself: every file it loads is
in ``simulations/classroom/static``, nothing points off the machine, nothing needs a looser
Content-Security-Policy than the server's ``'self'``, and the ids the browser tests and the
trainer's keyboard rely on are there.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "simulations" / "classroom" / "static"
SERVED = {".html", ".js", ".css", ".svg", ".json", ".png"}  # what the server's /static serves
SVG_NS = "http://www.w3.org/2000/svg"  # a namespace name, never fetched
MAX_LINES = 500


class _Page(HTMLParser):
    """The tags of the page with their attributes, and the text of inline scripts/styles."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "style" or (tag == "script" and not dict(attrs).get("src")):
            self._open = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == self._open:
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open and data.strip():
            self.inline.append(data)


def _page() -> _Page:
    page = _Page()
    page.feed((STATIC / "classroom.html").read_text(encoding="utf-8"))
    return page


def _assets() -> list[Path]:
    return sorted(p for p in STATIC.iterdir() if p.is_file())


def _scripts() -> list[Path]:
    return [p for p in _assets() if p.suffix == ".js"]


def test_every_file_the_page_loads_is_in_the_static_folder() -> None:
    """Each src/href of the page under /static/ names a file of the folder."""
    page = _page()
    loaded = [
        a.get("src") or a.get("href") or ""
        for tag, a in page.tags
        if tag in {"script", "link"} and a.get("rel") != "icon"
    ]
    assert loaded, "the page loads no script or stylesheet"
    for ref in loaded:
        assert ref.startswith("/static/"), ref
        assert (STATIC / ref.removeprefix("/static/")).is_file(), ref


def test_every_module_import_resolves_to_a_file_of_the_folder() -> None:
    """``import ... from "./x.js"`` in each module names a sibling file."""
    pattern = re.compile(r"""(?:import|export)\s[^;]*?from\s+["']([^"']+)["']""", re.S)
    for script in _scripts():
        for ref in pattern.findall(script.read_text(encoding="utf-8")):
            assert ref.startswith("./"), f"{script.name} imports {ref} (not a sibling)"
            assert (STATIC / ref[2:]).is_file(), f"{script.name} imports missing {ref}"


def test_the_entry_module_reaches_every_script() -> None:
    """Every .js file is imported by the page's module graph (none is dead weight)."""
    seen: set[str] = set()
    todo = ["classroom.js"]
    pattern = re.compile(r"""from\s+["']\./([^"']+)["']""")
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += pattern.findall((STATIC / name).read_text(encoding="utf-8"))
    assert seen == {p.name for p in _scripts()}


def test_no_asset_points_off_the_machine() -> None:
    """No http(s):// or protocol-relative URL, @import or CDN in any asset."""
    for asset in _assets():
        text = asset.read_text(encoding="utf-8").replace(SVG_NS, "")
        assert not re.search(r"https?://", text), asset.name
        assert not re.search(r"""["'(]\s*//[a-z0-9]""", text, re.I), asset.name
        assert "@import" not in text, asset.name


def test_only_files_the_server_serves() -> None:
    """Every asset has a suffix the static route serves, in one flat folder."""
    for item in STATIC.iterdir():
        assert item.is_file(), f"{item.name}: the static route serves no sub-folder"
        assert item.suffix in SERVED, item.name


def test_the_page_needs_no_inline_code_or_style() -> None:
    """No inline script, style element, style attribute or on* handler (CSP 'self')."""
    page = _page()
    assert page.inline == []
    for tag, attrs in page.tags:
        assert "style" not in attrs, tag
        assert not [a for a in attrs if a.startswith("on")], tag
    for script in _scripts():
        text = script.read_text(encoding="utf-8")
        assert 'setAttribute("style"' not in text, script.name
        assert not re.search(r"""\bstyle:\s*[`"']""", text), script.name


@pytest.mark.parametrize(
    "sink", ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function("]
)
def test_scripts_put_text_in_as_text(sink: str) -> None:
    """No HTML sink or eval: a bureau's value with markup in it shows as it is."""
    for script in _scripts():
        assert sink not in script.read_text(encoding="utf-8"), f"{script.name}: {sink}"


def test_the_controls_the_tests_and_keys_use_are_there() -> None:
    """The ids and names of the page's contract (docs of issue 18) are all in the HTML."""
    page = _page()
    ids = {a["id"] for _, a in page.tags if a.get("id")}
    wanted = {
        "pause", "step", "back", "replay", "pace", "query-form", "diffuse-form", "notice-form",
        "attack-from", "attack-to", "fault-bureau", "heal-all", "lesson", "lesson-start",
        "lesson-next", "lesson-prev", "caption", "lesson-progress", "messages", "conn",
        "help", "notices", "attacks", "faults",
    }  # fmt: skip
    assert wanted <= ids, wanted - ids
    names = {a.get("name") for tag, a in page.tags if tag in {"input", "select"}}
    fields = {"number", "issuer", "surname", "given_names", "date_of_birth", "vin", "planted"}
    assert fields <= names, fields - names
    views = [a.get("data-view") for tag, a in page.tags if "data-view" in a]
    assert views == ["requester", "gateway", "recipient", "wire"]
    assert any("data-heal" in a for _, a in page.tags)


def test_every_icon_used_is_drawn_in_the_sprite() -> None:
    """Each ``#i-...`` symbol the page or a script uses is a <symbol> of the page."""
    page = _page()
    symbols = {a["id"] for tag, a in page.tags if tag == "symbol" and a.get("id")}
    used = set(re.findall(r"#(i-[a-z-]+)", (STATIC / "classroom.html").read_text("utf-8")))
    for script in _scripts():
        used |= set(re.findall(r"""["']#(i-[a-z-]+)["']""", script.read_text("utf-8")))
    assert used, "no icon used"
    assert used <= symbols, used - symbols


def test_files_stay_small() -> None:
    """Each asset is under about 500 lines, one job each."""
    for asset in _assets():
        lines = asset.read_text(encoding="utf-8").count("\n")
        assert lines <= MAX_LINES, f"{asset.name}: {lines} lines"
