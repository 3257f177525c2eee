"""The classroom's server, over real HTTP, on a real network it brought up itself.

What the page relies on: its assets come from ncbsim alone; a query sent through the API
is really sent through the gateway and comes back with each party's view, the gateway's
holding no plaintext; padding gives every query and every answer one size; the stream
pushes the query's events as they happen; faults and notices act on the real network;
and whatever a browser sends that is wrong gets a clear 4xx sentence, a log line naming
the field (never the value), and no harm to the server.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from room_support import Room, call, planted, query

pytestmark = pytest.mark.integration


def test_the_page_and_its_assets_come_from_ncbsim_alone(room: Room) -> None:
    status, html = call(room, "/")
    assert status == 200
    assert "<html" in html.lower()
    found = re.findall(r'(?:src|href)="([^"]+)"', html)
    # In-page references (an icon of the SVG sprite, "#i-lock") and inline data load nothing.
    urls = [u for u in found if not u.startswith(("#", "data:"))]
    assert urls, "the page loads no asset"
    for url in urls:
        assert url.startswith("/static/"), url  # served here, never a CDN
        status, text = call(room, url)
        assert status == 200, url
        assert not re.search(r"https?://", text), f"{url} names another origin"
    with urllib.request.urlopen(room.url, timeout=30) as response:
        policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "connect-src 'self'" in policy


@pytest.mark.parametrize("name", ["..%2Fserver.py", "server.py", ".hidden", "nothing.js"])
def test_only_the_static_folder_is_served(room: Room, name: str) -> None:
    status, reply = call(room, f"/static/{name}")
    assert status == 404
    assert reply == {"error": "no such file"}


def test_the_state_describes_the_running_network(room: Room) -> None:
    status, state = call(room, "/api/state")
    assert status == 200
    assert state["bureaus"] == ["FR", "DE", "IT", "NL", "GS"]
    assert state["layout"] == "lanes"
    assert state["attacks_enabled"] is True
    assert {p["kind"] for p in state["planted"]["DE"]} == {"document", "person", "vehicle"}
    assert len(state["lesson"]["steps"]) >= 9


def test_a_query_comes_back_with_each_partys_view_and_the_gateways_holds_no_plaintext(
    room: Room,
) -> None:
    doc = planted(room, "DE", "document")
    ex = query(room, "FR", "DE", doc)
    assert ex["outcome"] == "hit"
    views = ex["views"]
    requester, gateway, recipient = (
        json.dumps(views[v]) for v in ("requester", "gateway", "recipient")
    )
    assert doc["number"] in requester
    assert doc["number"] in recipient  # the node opened it and matched the record
    opened = dict(map(tuple, views["recipient"]["rows"]))
    assert (opened["number"], opened["issuer"]) == (doc["number"], doc["issuer"])
    assert doc["number"] not in gateway
    assert doc["number"] not in json.dumps(views["wire"])
    rows = dict(map(tuple, views["gateway"]["rows"]))
    assert (rows["sender"], rows["recipient"]) == ("FR", "DE")
    assert rows["message id"] == ex["message_id"]
    assert re.fullmatch(r"[0-9a-f]+", views["gateway"]["hex"])
    assert "document number" in views["gateway"]["cannot_see"]


def test_padding_makes_a_hit_and_a_no_hit_the_same_size(room: Room) -> None:
    doc = planted(room, "IT", "document")
    hit = query(room, "NL", "IT", doc)
    miss = query(room, "NL", "IT", {**doc, "number": "ZZ0000000"})
    assert (hit["outcome"], miss["outcome"]) == ("hit", "no_hit")
    assert hit["sizes"]["request_bytes"] == miss["sizes"]["request_bytes"]
    assert hit["sizes"]["response_bytes"] == miss["sizes"]["response_bytes"] > 0
    assert len(miss["sizes"]["query_sizes_seen"]) == len(miss["sizes"]["answer_sizes_seen"]) == 1


def test_a_query_to_all_lists_every_other_bureau(room: Room) -> None:
    person = planted(room, "NL", "person")
    ex = query(room, "DE", "ALL", person)
    assert {r["bureau"] for r in ex["recipients"]} == {"FR", "IT", "NL", "GS"}
    outcomes = {r["bureau"]: r["outcome"] for r in ex["recipients"]}
    assert outcomes["NL"] == "hit"
    assert ex["outcome"] == "hit"  # the query's, over every bureau's answer
    assert ex["views"]["recipient"]["party"] == "NL"  # the views follow the bureau that hit


BAD = [
    ({"from": "ZZ", "to": "DE", "kind": "document", "number": "X1", "issuer": "DE"}, "from: ZZ"),
    ({"from": "FR", "to": "QQ", "kind": "document", "number": "X1", "issuer": "DE"}, "to: QQ"),
    ({"from": "FR", "to": "FR", "kind": "document", "number": "X1", "issuer": "DE"}, "itself"),
    ({"from": "FR", "to": "DE", "kind": "document", "number": "SECRET#99", "issuer": "DE"},
     "document number"),
    ({"from": "FR", "to": "DE", "kind": "person", "surname": "Smith", "date_of_birth": "1/2/80"},
     "date of birth"),
    ({"from": "FR", "to": "DE", "kind": "vehicle", "vin": "123"}, "vin"),
    ({"from": "FR", "to": "DE", "kind": "ship"}, "kind"),
    ({"from": ["FR"], "to": "DE", "kind": "document"}, "from"),
    ([1, 2], "JSON object"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "says"), BAD)
def test_bad_input_gets_a_clear_sentence_and_the_log_names_the_field_not_the_value(
    room: Room, body: Any, says: str
) -> None:
    status, reply = call(room, "/api/query", body)
    assert status == 400
    assert says in reply["error"]
    assert "Traceback" not in room.log()
    time.sleep(0.2)  # the log line is written as the reply goes out
    assert "SECRET#99" not in room.log()  # a value typed in the form is never logged
    refused = [line for line in room.output if "classroom_refused" in line]
    assert refused
    assert '"route": "/api/query"' in refused[-1]
    assert call(room, "/api/state")[0] == 200  # and the server goes on


def test_a_body_that_is_not_json_or_too_big_is_refused(room: Room) -> None:
    assert call(room, "/api/query", raw=b"{not json")[0] == 400
    status, reply = call(room, "/api/query", raw=b'{"x": "' + b"a" * 20_000 + b'"}')
    assert status == 413, reply
    assert call(room, "/api/state")[0] == 200


def test_the_stream_pushes_a_querys_events_as_it_travels(room: Room) -> None:
    doc = planted(room, "NL", "document")
    got: list[dict[str, Any]] = []
    hello = threading.Event()
    done = threading.Event()

    stream = urllib.request.urlopen(room.url + "api/stream", timeout=60)

    def listen() -> None:
        # Closed under it at the end: reading then fails, which ends the loop.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            for line in stream:
                if not line.startswith(b"data: "):
                    continue
                message = json.loads(line[6:])
                if message["type"] == "hello":
                    hello.set()
                got.append(message)
                if done.is_set() or len(got) > 500:
                    return

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    assert hello.wait(30), "no hello on the stream"
    sent = time.monotonic()
    ex = query(room, "FR", "NL", doc)
    mid = ex["message_id"]
    wanted = {("client:FR", "query.sealed"), ("NL", "query.opened"), ("NL", "query.answered"),
              ("gateway", "query.relayed"), ("client:FR", "query.returned")}  # fmt: skip
    deadline = time.monotonic() + 30
    seen: dict[tuple[str, str], float] = {}
    while time.monotonic() < deadline and not wanted <= set(seen):
        for message in list(got):
            for event in message.get("events", []):
                if event["message_id"] == mid:
                    seen.setdefault((event["party"], event["kind"]), time.monotonic())
        time.sleep(0.05)
    done.set()
    call(room, "/api/heal", {"all": True})  # a status line: the reader wakes and returns
    reader.join(30)
    stream.close()
    assert wanted <= set(seen), sorted(seen)
    assert any(m["type"] == "exchange" and m["message_id"] == mid for m in got)
    first = min(seen.values()) - sent
    print(f"first event of the query on the stream {first * 1000:.0f} ms after it was sent")


def test_a_killed_bureau_is_down_until_healed(room: Room) -> None:
    status, reply = call(room, "/api/fault", {"fault": "kill", "bureau": "IT"})
    assert status == 200, reply
    try:
        assert reply["down"] == ["IT"]
        doc = planted(room, "IT", "document")
        ex = query(room, "FR", "IT", doc)
        assert ex["outcome"] in {"no_answer", "failed"}  # never a false no-hit
        status, again = call(room, "/api/fault", {"fault": "kill", "bureau": "IT"})
        assert status == 400
        assert "already" in again["error"]
    finally:
        status, healed = call(room, "/api/heal", {"bureau": "IT"})
    assert status == 200, healed
    assert healed["down"] == []
    deadline = time.monotonic() + 60
    while (ex := query(room, "FR", "IT", doc))["outcome"] != "hit":
        assert time.monotonic() < deadline, ex["outcome"]
        time.sleep(0.5)
    status, reply = call(room, "/api/heal", {"bureau": "IT"})
    assert status == 400
    assert "no fault holds IT" in reply["error"]


def test_a_red_notice_is_published_by_gs_and_hits_at_a_border_until_withdrawn(
    room: Room,
) -> None:
    subject = {"surname": "Okonkwo", "given_names": "Adaeze", "date_of_birth": "1984-06-30"}
    person = {"kind": "person", **subject}
    assert query(room, "IT", "DE", person)["outcome"] == "no_hit"
    status, notice = call(room, "/api/notice", {"from": "FR", **subject})
    assert status == 200, notice
    assert notice["state"] == "published"
    deadline = time.monotonic() + 30
    while query(room, "IT", "DE", person)["outcome"] != "hit":
        assert time.monotonic() < deadline, "DE never held the notice's subject"
        time.sleep(0.3)
    status, state = call(room, "/api/state")
    assert any(n["notice_id"] == notice["notice_id"] for n in state["notices"])
    status, withdrawn = call(
        room, "/api/notice/withdraw", {"from": "FR", "notice_id": notice["notice_id"]}
    )
    assert status == 200, withdrawn
    assert withdrawn["state"] == "withdrawn"
    deadline = time.monotonic() + 30
    while query(room, "IT", "DE", person)["outcome"] != "no_hit":
        assert time.monotonic() < deadline, "the withdrawn notice still hits"
        time.sleep(0.3)


def test_serving_beyond_loopback_takes_an_explicit_flag() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ncbsim", "classroom", "--listen", "0.0.0.0"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "ncbsim: --listen 0.0.0.0: the page shows plaintext from the bureaus' side; serving "
        "it beyond this machine takes --allow-remote"
    ]


@pytest.mark.parametrize(
    ("fault", "kind", "down"),
    [("pause", "pause", True), ("partition", "partition", True), ("slow", "latency", False)],
)
def test_a_fault_from_the_page_holds_a_bureau_until_healed(
    room: Room, fault: str, kind: str, down: bool
) -> None:
    doc = planted(room, "NL", "document")
    status, reply = call(room, "/api/fault", {"fault": fault, "bureau": "NL"})
    assert status == 200, reply
    try:
        assert reply["down"] == (["NL"] if down else [])
        assert [(f["fault"], f["targets"]) for f in reply["faults"]] == [(kind, ["NL"])]
        ex = query(room, "FR", "NL", doc)
        if down:
            assert ex["outcome"] in {"no_answer", "failed"}  # never a false no-hit
        else:  # 600 ms each way on NL's link, at least
            assert ex["outcome"] == "hit"
            assert ex["recipients"][0]["ms"] >= 1000
    finally:
        status, healed = call(room, "/api/heal", {"bureau": "NL"})
    assert status == 200, healed
    assert (healed["down"], healed["faults"]) == ([], [])


def test_a_face_search_lists_candidates_and_confirms_the_first(room: Room) -> None:
    """POST /api/face: FR searches DE's faces with a capture the server takes of one of DE's
    enrolled persons; the candidate list (refs, scores, ranks, threshold and cap) and the
    confirmation of candidate 1 come back; the gateway's view holds none of it, and the
    requester's shows the probe's size, never its bytes."""
    status, x = call(room, "/api/face", {"from": "FR", "to": "DE"})
    assert status == 200, x
    assert (x["from"], x["to"], x["kind"]) == ("FR", "DE", "confirm")
    bio = x["biometric"]
    assert (bio["modality"], bio["threshold"], bio["confirm_threshold"]) == ("face", 0.27, 0.34)
    assert (bio["asked"], bio["cap"], bio["probe_bytes"]) == (5, 10, 512)
    listed = bio["candidates"]
    assert 1 <= len(listed) <= 5
    assert [c["rank"] for c in listed] == list(range(1, len(listed) + 1))
    scores = [c["score"] for c in listed]
    assert scores == sorted(scores, reverse=True)
    assert min(scores) >= 0.27
    confirmation = bio["confirmation"]
    assert confirmation["ref"] == listed[0]["ref"]
    assert confirmation["confirmed"] is True  # a border photo of an enrolled person
    assert confirmation["score"] >= 0.34
    assert confirmation["released"] is True
    assert x["outcome"] == "record"
    gateway = json.dumps(x["views"]["gateway"])
    assert listed[0]["ref"] not in gateway
    assert "the probe" in x["views"]["gateway"]["cannot_see"]
    requester = dict(map(tuple, x["views"]["requester"]["rows"]))
    assert requester["probe"] == "512 bytes, not shown"
    assert requester["step 2"].startswith("confirmed, score 0.")
    # Search and confirmation are padded to one size on the wire.
    assert x["sizes"]["request_bytes"] in x["sizes"]["query_sizes_seen"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"from": "FR", "to": "FR"}, "cannot search its own faces"),
        ({"from": "FR", "to": "XX"}, "to: XX is not a bureau"),
        ({"from": "FR"}, "to: required"),
    ],
)
def test_a_face_search_the_room_cannot_run_is_a_clear_sentence(
    room: Room, body: dict[str, str], says: str
) -> None:
    """A face search of oneself or of no bureau is a 400 that says why."""
    status, reply = call(room, "/api/face", body)
    assert status == 400
    assert says in reply["error"]
