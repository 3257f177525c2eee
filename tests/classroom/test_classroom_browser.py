"""The classroom page in a real browser: Debian's Chromium, headless, driven by Playwright.

The page is the one ``ncbsim classroom`` serves on its own network (the session's
``room``); each test does what a trainer does in front of a room, with the mouse and the
keyboard, and checks what the room would see: the arrows of a query sent from the form,
the gateway's view with hex and without the query's plaintext (a canary, checked in the
DOM), each attack caught where it is caught, a killed bureau marked down, the lesson played
to its end, and a clear message for bad input with the form ready again. No test passes
with a console error or an uncaught exception in the page.

The browser and the ``page`` fixture are tests/classroom/conftest.py's: Debian's
Chromium, never Playwright's own download; without it these tests skip, saying so.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from typing import Any

import pytest
from room_support import Room

pytestmark = pytest.mark.integration

WAIT_MS = 30_000
# A document number no bureau holds, of letters no hex string has (N, R, Y, W, Q):
# if it shows anywhere in the gateway's view, the view leaked plaintext.
CANARY = "CANARYQW" + str(os.getpid() % 10_000).zfill(4)


def _state(room: Room) -> dict[str, Any]:
    with urllib.request.urlopen(room.url + "api/state", timeout=30) as response:
        state: dict[str, Any] = json.loads(response.read())
    return state


def _send_query(page: Any, asker: str, to: str, **fields: str) -> None:
    """Fill the query form as a trainer does and send it."""
    form = page.locator("#query-form")
    form.locator("select[name=from]").select_option(asker)
    form.locator("select[name=to]").select_option(to)
    form.locator("select[name=kind]").select_option(fields.pop("kind", "document"))
    for name, value in fields.items():
        form.locator(f"[name={name}]").fill(value)
    form.locator("button[type=submit]").click()


def _latest_exchange(page: Any, before: int) -> dict[str, str]:
    """Wait for an exchange newer than the ``before`` first ones; its gateway rows."""
    page.wait_for_function(
        f"document.querySelectorAll('[data-exchange]').length > {before}", timeout=WAIT_MS
    )
    rows = page.locator("section[data-view=gateway] tr")
    pairs = {}
    for i in range(rows.count()):
        cells = rows.nth(i).locator("th, td").all_text_contents()
        if len(cells) >= 2:
            pairs[cells[0].strip()] = cells[1].strip()
    return pairs


def _exchanges(page: Any) -> int:
    return int(page.evaluate("document.querySelectorAll('[data-exchange]').length"))


def test_a_query_sent_from_the_form_appears_as_arrows_and_hits(page: Any, room: Room) -> None:
    before = _exchanges(page)
    form = page.locator("#query-form")
    form.locator("select[name=from]").select_option("FR")
    form.locator("select[name=to]").select_option("DE")
    form.locator("select[name=kind]").select_option("document")
    planted = form.locator("select[name=planted] option")
    assert planted.count() > 0, "no planted record offered for DE"
    form.locator("select[name=planted]").select_option(index=planted.count() - 1)
    clicked = time.monotonic()
    form.locator("button[type=submit]").click()
    page.wait_for_selector("g.arrow[data-from=FR][data-kind=query]", timeout=WAIT_MS)
    first_arrow = time.monotonic() - clicked
    rows = _latest_exchange(page, before)
    mid = rows["message id"]
    legs = [("query", "FR", "gateway"), ("query", "gateway", "DE"),
            ("answer", "DE", "gateway"), ("answer", "gateway", "FR")]  # fmt: skip
    for kind, source, target in legs:
        page.wait_for_selector(
            f"g.arrow[data-message='{mid}'][data-kind={kind}]"
            f"[data-from={source}][data-to={target}]",
            state="attached",
            timeout=WAIT_MS,
        )
    assert "hit" in page.locator("section[data-view=requester]").text_content()
    print(f"first arrow drawn {first_arrow * 1000:.0f} ms after the click")


def test_the_gateway_view_shows_hex_and_never_the_canary(page: Any) -> None:
    before = _exchanges(page)
    _send_query(page, "IT", "NL", kind="document", number=CANARY, issuer="NL")
    _latest_exchange(page, before)
    page.locator("[data-show-view=gateway]").click()
    gateway = page.locator("section[data-view=gateway]")
    assert gateway.is_visible()
    assert re.search(r"([0-9a-f]{4}\s*){8}", gateway.inner_text()), "no hex shown"
    for view in ("requester", "recipient"):
        assert CANARY in page.locator(f"section[data-view={view}]").text_content()
    leaked = page.evaluate(
        """canary => [...document.querySelectorAll('[data-view=gateway]')]
             .filter(el => el.outerHTML.includes(canary)).length""",
        CANARY,
    )
    assert leaked == 0
    page.keyboard.press("4")  # the wire view, by its key
    assert page.locator("section[data-view=wire]").is_visible()
    assert CANARY not in page.locator("section[data-view=wire]").text_content()


ATTACK_WHERE = {
    "flip-bit": "recipient",
    "replay": "recipient",
    "swap-key": "requester",
    "redirect": "other",
    "drop-answer": "requester",
    "spoof-sender": "gateway",
}


@pytest.mark.parametrize("name", list(ATTACK_WHERE))
def test_each_attack_is_caught_where_it_is_caught(page: Any, room: Room, name: str) -> None:
    listed = {a["name"]: a["caught_at"] for a in _state(room)["attacks"]}
    assert listed[name] == ATTACK_WHERE[name]
    page.locator("#attack-from").select_option("FR")
    page.locator("#attack-to").select_option("DE")
    before = _exchanges(page)
    page.locator(f"[data-attack='{name}']").click()
    page.wait_for_function(
        f"document.querySelectorAll('[data-exchange]').length > {before}", timeout=WAIT_MS
    )
    banner = page.locator(f".caught[data-where={ATTACK_WHERE[name]}]").first
    banner.wait_for(timeout=WAIT_MS)
    assert banner.is_visible()
    assert page.locator(f"[data-attack='{name}']").is_enabled()  # ready for the next


def test_a_killed_bureau_is_marked_down_until_healed(page: Any) -> None:
    page.locator("#fault-bureau").select_option("NL")
    page.locator("[data-fault=kill]").click()
    lane = page.locator("g.lane-head[data-lane=NL]")
    page.wait_for_selector("g.lane-head.down[data-lane=NL]", timeout=WAIT_MS)
    assert lane.get_attribute("data-status")
    page.locator("[data-heal]").click()
    page.wait_for_selector(
        "g.lane-head[data-lane=NL]:not(.down)", state="attached", timeout=WAIT_MS
    )


def test_bad_input_is_a_clear_message_and_the_form_is_ready_again(page: Any) -> None:
    _send_query(page, "FR", "DE", kind="document", number="no#such!", issuer="DE")
    message = page.locator("#messages .message.error").first
    message.wait_for(timeout=WAIT_MS)
    assert "document number" in message.inner_text()
    assert page.locator("#query-form button[type=submit]").is_enabled()


def test_the_lesson_plays_to_its_end(page: Any) -> None:
    page.locator("#lesson-start").click()
    total = len(_state_steps(page))
    for _ in range(total + 2):
        if page.locator("#lesson[data-state=done]").count():
            break
        page.wait_for_selector("#lesson:not([data-state=running])", timeout=120_000)
        if page.locator("#lesson[data-state=done]").count():
            break
        page.locator("#lesson-next").click()
    page.wait_for_selector("#lesson[data-state=done]", timeout=120_000)
    states = page.evaluate(
        "[...document.querySelectorAll('#lesson-steps li')].map(li => li.dataset.state)"
    )
    assert states == ["passed"] * total, list(zip(states, _titles(page), strict=True))
    caption = page.locator("#caption").inner_text()
    assert caption.strip()
    assert "…" not in caption  # the step's caption as it ran, every field filled


def test_a_diffusion_and_a_red_notice_from_the_forms_reach_every_bureau(page: Any) -> None:
    form = page.locator("#diffuse-form")
    form.locator("select[name=from]").select_option("IT")
    form.locator("[name=subject]").fill("Convoy of stolen cars heading north")
    form.locator("button[type=submit]").click()
    page.wait_for_selector(
        "#messages .message.info:has-text('IT diffused an alert to 4 bureaus: stored')",
        timeout=WAIT_MS,
    )
    page.wait_for_selector("g.arrow[data-kind=diffusion][data-from=IT]", timeout=WAIT_MS)
    notice = page.locator("#notice-form")
    notice.locator("select[name=from]").select_option("NL")
    notice.locator("[name=surname]").fill("Vasquez-Lind")
    notice.locator("[name=given_names]").fill("Oriane")
    notice.locator("[name=date_of_birth]").fill("1979-02-11")
    notice.locator("button[type=submit]").click()
    published = page.locator("#notices li:has-text('VASQUEZ-LIND')")
    published.filter(has_text="published").wait_for(timeout=WAIT_MS)
    page.wait_for_selector("g.arrow[data-kind=notice][data-from=gateway]", timeout=WAIT_MS)
    published.locator("[data-withdraw]").click()
    published.filter(has_text="withdrawn").wait_for(timeout=WAIT_MS)


def _titles(page: Any) -> list[str]:
    titles: list[str] = page.locator("#lesson-steps li").all_inner_texts()
    return titles


def _state_steps(page: Any) -> list[Any]:
    steps: list[Any] = page.evaluate(
        "fetch('/api/state').then(r => r.json()).then(s => s.lesson.steps)"
    )
    return steps


def test_a_face_search_from_the_form_draws_the_candidate_list_and_its_confirmation(
    page: Any,
) -> None:
    """The face search form: the requester's view draws the candidate list (rank, ref,
    score, the threshold and the cap) and the confirmation of candidate 1; the gateway's
    view has neither, and the arrows run between FR's and DE's lanes."""
    before = _exchanges(page)
    form = page.locator("#face-form")
    form.locator("select[name=from]").select_option("FR")
    form.locator("select[name=to]").select_option("DE")
    form.locator("button[type=submit]").click()
    page.wait_for_selector(
        "#messages .message.info:has-text('Face search FR → DE')", timeout=WAIT_MS
    )
    page.wait_for_function(
        f"document.querySelectorAll('[data-exchange]').length >= {before + 2}", timeout=WAIT_MS
    )
    page.locator("#view-requester").click()
    requester = page.locator("section[data-view=requester]")
    table = requester.locator("table.candidates")
    table.wait_for(timeout=WAIT_MS)
    assert "score ≥ 0.27, 5 asked, the owner's cap 10" in table.locator("caption").inner_text()
    rows = table.locator("tbody tr")
    assert 1 <= rows.count() <= 5
    first = rows.nth(0).locator("td").all_text_contents()
    assert first[0] == "1"
    assert re.fullmatch(r"[a-z2-7]{20}", first[1])
    assert re.fullmatch(r"0\.\d{3}", first[2])
    confirmation = requester.locator("p.confirmation")
    assert confirmation.get_attribute("data-confirmed") == "true"
    text = confirmation.inner_text()
    assert f"Step 2: {first[1]} confirmed, score 0." in text
    assert "the owner released the person" in text
    assert "512 bytes of template, sealed; never shown" in requester.inner_text()
    page.locator("#view-gateway").click()
    gateway = page.locator("section[data-view=gateway]").text_content()
    assert first[1] not in gateway
    assert not page.locator("section[data-view=gateway] table.candidates").count()
    page.wait_for_selector(
        "g.arrow[data-kind=answer][data-from=gateway][data-to=FR]",
        state="attached",
        timeout=WAIT_MS,
    )
