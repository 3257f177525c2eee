"""The classroom's pure parts, without a network: the per-browser queues, the checks of
what a page sends, and the gateway's view of an exchange (built from the envelope alone).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ncbsim import pki
from ncbsim.client import Answer, Outcome, seal_query
from ncbsim.directory import Directory
from ncbsim.identity import Identity
from ncbsim.simulations._demo_observer import Exchange
from ncbsim.simulations.classroom import inputs, views
from ncbsim.simulations.classroom.hub import Hub, Viewer
from ncbsim.simulations.classroom.run import ClassroomConfig
from ncbsim.v2 import query_pb2

TODAY = dt.date(2026, 12, 7)
BUREAUS = ["FR", "DE", "IT", "GS"]

# ------------------------------------------------------------------ the queues


def test_a_full_viewer_drops_its_oldest_messages_and_counts_their_events() -> None:
    viewer = Viewer(limit=2)
    viewer.offer({"type": "events", "events": [1, 2, 3]})
    viewer.offer({"type": "status", "text": "a"})
    viewer.offer({"type": "status", "text": "b"})  # the 3-event batch goes
    assert viewer.dropped == 3
    got = asyncio.run(viewer.next(timeout=0.1))
    assert [m["text"] for m in got] == ["a", "b"]


def test_a_stalled_browser_never_holds_up_publishing_or_the_others() -> None:
    async def run() -> tuple[float, list[Any], int]:
        hub = Hub(limit=8)
        stalled, reading = hub.join(), hub.join()
        began = time.perf_counter()
        for i in range(10_000):
            hub.publish({"type": "status", "text": str(i)})
        took = time.perf_counter() - began
        got = await reading.next(timeout=0.1)
        return took, got, stalled.dropped

    took, got, dropped = asyncio.run(run())
    assert [m["text"] for m in got] == [str(i) for i in range(9_992, 10_000)]  # the newest
    assert dropped == 9_992
    print(f"10,000 messages to two browsers published in {took * 1000:.1f} ms")


def test_a_viewer_that_left_gets_nothing_and_its_reader_wakes() -> None:
    async def run() -> list[Any]:
        hub = Hub()
        viewer = hub.join()
        waiting = asyncio.create_task(viewer.next(timeout=30))
        await asyncio.sleep(0.01)
        hub.leave(viewer)
        hub.publish({"type": "status", "text": "late"})
        return await asyncio.wait_for(waiting, 5)

    assert asyncio.run(run()) == []


# ------------------------------------------------------------------ what a page sends


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"from": "ZZ"}, "from: ZZ is not a bureau of this network"),
        ({"from": 7}, "from: expected text"),
        ({"from": "FR", "to": "FR"}, "to: FR cannot send to itself"),
        ({"from": "FR", "to": []}, "to: name at least one bureau, or ALL"),
        ({"from": "F\x00R"}, "from: printable characters only"),
    ],
)
def test_bad_bureaus_are_refused_with_the_field_named(body: dict[str, Any], says: str) -> None:
    def check() -> None:
        asker = inputs.bureau(body, "from", BUREAUS)
        inputs.recipients(body, "to", BUREAUS, asker)

    with pytest.raises(inputs.InputError) as caught:
        check()
    assert str(caught.value) == says
    assert caught.value.field in {"from", "to"}


def test_all_means_every_other_bureau() -> None:
    assert inputs.recipients({"to": "all"}, "to", BUREAUS, "FR") == ["DE", "IT", "GS"]


def test_the_form_is_checked_as_ncbsim_query_checks_it() -> None:
    query = inputs.query({"kind": "document", "number": "c07 gmv2b0", "issuer": "D"}, today=TODAY)
    assert (query.document.number, query.document.issuer) == ("C07GMV2B0", "DE")
    with pytest.raises(inputs.InputError, match=r"^date of birth: expected a date"):
        inputs.query({"kind": "person", "surname": "Ng", "date_of_birth": "3/2/80"}, today=TODAY)
    with pytest.raises(inputs.InputError, match=r"^vehicle: give a VIN or a plate"):
        inputs.query({"kind": "vehicle"}, today=TODAY)


def test_a_lesson_step_and_a_notice_id_are_checked() -> None:
    assert inputs.step({"step": 3}, 14) == 3
    for bad in (-1, 14, "3", True, None):
        with pytest.raises(inputs.InputError, match="step: expected a step number from 0 to 13"):
            inputs.step({"step": bad}, 14)
    with pytest.raises(inputs.InputError, match="notice_id: expected"):
        inputs.notice_id({"notice_id": "xyz"})


def test_the_page_binds_loopback_unless_told_otherwise() -> None:
    assert ClassroomConfig(listen="127.0.0.2").listen == "127.0.0.2"
    with pytest.raises(Exception, match="takes --allow-remote"):
        ClassroomConfig(listen="0.0.0.0")
    assert ClassroomConfig(listen="0.0.0.0", allow_remote=True).allow_remote
    with pytest.raises(Exception, match="is not a TCP port"):
        ClassroomConfig(port=70_000)


# ------------------------------------------------------------------ the gateway's view


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> pki.PkiDir:
    return pki.init(tmp_path_factory.mktemp("pki"), ["FR", "DE"])


def _exchange(keys: pki.PkiDir, query: query_pb2.Query) -> Exchange:
    now = int(time.time() * 1000)
    peer = Directory.pinned(keys).add([(keys.directory / "DE.entry").read_bytes()])[0]
    sealed = seal_query(Identity.load(keys, "FR", now_ms=now), peer, query)
    answer = Answer("DE", Outcome.NO_HIT, None, "", 3.0, sealed.header.message_hex)
    row = {"outcome": "delivered", "status": "OK", "response_bytes": "600"}
    return Exchange(sealed, answer, query, row)


@settings(max_examples=40, deadline=None)
@given(
    number=st.text(alphabet="GHJKLMNPRSTUVWXYZ", min_size=8, max_size=12),
    # Greek letters: nothing of the view's own words or hex can spell them by chance.
    surname=st.text(alphabet=st.characters(min_codepoint=0x3B1, max_codepoint=0x3C9), min_size=3),
)
def test_the_gateway_view_holds_no_query_field(keys: pki.PkiDir, number: str, surname: str) -> None:
    for query in (
        query_pb2.Query(document=query_pb2.DocumentQuery(number=number, issuer="DE")),
        query_pb2.Query(person=query_pb2.PersonQuery(surname=surname, date_of_birth="1970-01-01")),
    ):
        record = views.exchange_record(
            "x1",
            asker="FR",
            to="DE",
            query=query,
            ex=_exchange(keys, query),
            record=None,
            gateway="127.0.0.1:1",
            sizes=views.Sizes(),
        )
        gateway = json.dumps(record["views"]["gateway"], ensure_ascii=False)
        term = number if query.HasField("document") else surname
        assert term in json.dumps(record["views"]["requester"], ensure_ascii=False)
        assert term not in gateway  # the hex is of [0-9a-f]; a term has other letters
        assert term not in json.dumps(record["views"]["wire"], ensure_ascii=False)


def test_the_page_is_package_data() -> None:
    static = Path(views.__file__).with_name("static")
    assert (static / "classroom.html").is_file()
