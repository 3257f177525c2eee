"""The classroom page's static files, checked without a browser.

The page is plain HTML, CSS and ES modules that ncbsim serves itself: every file it loads is
in ``simulations/classroom/static``, nothing points off the machine, nothing needs a looser
Content-Security-Policy than the server's ``'self'``, and the ids the browser tests and the
trainer's keyboard rely on are there.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

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


# ---------------------------------------------------------------- the page's pure modules
# mapping.js (what each event draws) and order.js (arrows back in event order) hold no DOM;
# they run under Node when this machine has it (the browser tests cover them anyway).

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed on this machine")


def _node(script: str) -> Any:
    """Run an ES module body with the static folder's modules importable; its JSON output."""
    prelude = f"const dir = {json.dumps(STATIC.as_uri())};\n"
    done = subprocess.run(
        [str(NODE), "--input-type=module", "-e", prelude + script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _event(kind: str, party: str, /, **view: Any) -> Any:
    """An event as the stream sends it (docs/events.md), of envelope m1, at time 1."""
    return {"kind": kind, "party": party, "message_id": "m1", "correlation_id": "c1",
            "time": 1.0, "view": view}  # fmt: skip


@needs_node
def test_a_query_draws_its_arrows_between_the_right_lanes() -> None:
    """Sealed, opened, answered, relayed, returned: FR→gw, gw→DE, DE→gw, gw→FR, FR's badge."""
    events = [
        _event("query.sealed", "client:FR", recipient="DE", bytes=560),
        _event("query.opened", "DE", sender="FR", bytes=560),
        _event("query.answered", "DE", sender="FR", response_bytes=600),
        _event("query.relayed", "gateway", sender="FR", recipient="DE", outcome="delivered"),
        _event("query.returned", "client:FR", recipient="DE", outcome="hit"),
        _event("query.relayed", "gateway", sender="FR", recipient="IT", outcome="no_answer"),
        _event("query.refused", "DE", reason="unverified"),
        _event("post.delivered", "gateway", sender="GS", recipient="IT", kind="notice"),
        _event("post.delivered", "IT", sender="GS", recipient="IT", kind="notice"),
        _event("fault.applied", "faultd", fault="pause", target="IT"),
        _event("attack.applied", "gateway", attack="flip-bit", sender="FR", recipient="DE"),
        _event("scenario.phase", "sim", phase="check"),
    ]
    drawn = _node(
        f"const m = await import(dir + '/mapping.js');\n"
        f"const out = {json.dumps(events)}.map((e) => m.arrowsFor(e).map((a) =>\n"
        f"  [a.kind, a.from, a.to, a.message, Boolean(a.sealed), a.label]));\n"
        f"console.log(JSON.stringify(out));"
    )
    shapes = [[tuple(a[:3]) for a in arrows] for arrows in drawn]
    assert shapes == [
        [("query", "FR", "gateway")],
        [("query", "gateway", "DE")],
        [("answer", "DE", "gateway")],
        [("answer", "gateway", "FR")],
        [("outcome", "FR", "FR")],
        [("no_answer", "gateway", "gateway")],
        [("refused", "DE", "DE")],
        [("notice", "gateway", "IT"), ("receipt", "IT", "gateway")],
        [],  # the node's own post.delivered: the gateway's already drew the copy
        [("fault", "IT", "IT")],
        [("attack", "gateway", "gateway")],
        [],
    ]
    assert all(a[3] == "m1" for arrows in drawn for a in arrows)
    assert drawn[0][0][4], "a query is sealed"
    assert not drawn[7][1][4], "a receipt is not"
    assert "unverified" in drawn[6][0][5]
    assert "PAUSED" in drawn[9][0][5]


@needs_node
def test_a_users_envelopes_run_on_its_bureaus_lane() -> None:
    """A border officer FR/cdg-border-12 acts through FR: its query leaves FR's lane, its
    answer comes back to FR's, and the ring draws the same."""
    user = "FR/cdg-border-12"
    events = [
        _event("query.sealed", f"client:{user}", recipient="DE", bytes=1239),
        _event("query.relayed", "gateway", sender=user, recipient="DE", outcome="delivered"),
        _event("query.returned", f"client:{user}", recipient="DE", outcome="hit"),
    ]
    drawn = _node(
        f"const m = await import(dir + '/mapping.js');\n"
        f"const es = {json.dumps(events)};\n"
        f"const arrows = es.map((e) => m.arrowsFor(e).map((a) => [a.kind, a.from, a.to]));\n"
        f"const ring = es.slice(0, 2).map((e) => m.ringFor(e));\n"
        f"console.log(JSON.stringify({{arrows, ring}}));"
    )
    assert drawn["arrows"] == [
        [["query", "FR", "gateway"]],
        [["answer", "gateway", "FR"]],
        [["outcome", "FR", "FR"]],
    ]
    assert drawn["ring"] == [
        {"from": "FR", "to": "DE", "kind": "query"},
        {"from": "DE", "to": "FR", "kind": "answer"},
    ]


@needs_node
def test_lane_status_names_each_fault() -> None:
    """A paused bureau reads PAUSED, a partitioned one CUT, one down with no fault DOWN."""
    status = _node(
        "const m = await import(dir + '/mapping.js');\n"
        "console.log(JSON.stringify(m.laneStatus(\n"
        "  [{fault: 'pause', targets: ['IT']}, {fault: 'partition', targets: ['ES']},\n"
        "   {fault: 'slow', targets: ['NL']}], ['IT', 'ES', 'DE'])));"
    )
    assert status == {"IT": "PAUSED", "ES": "CUT", "NL": "SLOW", "DE": "DOWN"}


@needs_node
def test_arrows_are_put_back_in_the_order_things_happened() -> None:
    """A late batch is sorted by time, and the client's outcome waits for the gateway's relay."""
    order = _node(
        "const { Reorder } = await import(dir + '/order.js');\n"
        "const got = [];\n"
        "const r = new Reorder((specs) => got.push(...specs.map((s) => s.event)),"
        " { hold: 10, wait: 2000 });\n"
        "const spec = (event, time) => ({ event, time, message: 'm1' });\n"
        "r.add([spec('query.returned', 4), spec('query.sealed', 1), spec('query.opened', 2)]);\n"
        "await new Promise((ok) => setTimeout(ok, 50));\n"
        "r.add([spec('query.relayed', 3)]);\n"
        "await new Promise((ok) => setTimeout(ok, 50));\n"
        "console.log(JSON.stringify(got));"
    )
    assert order == ["query.sealed", "query.opened", "query.relayed", "query.returned"]


@needs_node
def test_hex_is_shown_in_two_byte_words() -> None:
    """The gateway's hex reads as 4-digit words, 8 to a line."""
    text = _node(
        "globalThis.document = undefined;\n"
        "const { hexWords } = await import(dir + '/views.js');\n"
        "console.log(JSON.stringify(hexWords('00112233445566778899aabbccddeeff0011')));"
    )
    assert text == "0011 2233 4455 6677 8899 aabb ccdd eeff\n0011"
