"""Data-owner control end to end: restrictions and hit notifications on running nodes.

The owner changes a record's control with ``ncbsim.node.admin.restrict`` (``ncbsim record
restrict``) while its node runs; the next query obeys it. Queries go through the real
gateway over mTLS, sealed end to end.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest
from support import query_for

from ncbsim.client import Answer, BureauClient, Outcome
from ncbsim.node import admin
from ncbsim.node.hits import HitEvent, read_hits
from ncbsim.node.records import NO_CONTROL, Document
from ncbsim.node.store import RecordStore
from ncbsim.pki import PkiDir
from ncbsim.simulations.network import Network
from ncbsim.v2 import query_pb2, records_pb2
from ncbsim.workdir import Workdir

pytestmark = pytest.mark.integration

OWNER = "DE"


def _open_document(network: Network, seed: int) -> Document:
    """A DE document with no control yet."""
    store = RecordStore(Workdir(network.workdir).bureau(OWNER).records)
    try:
        docs = store.sample("document", 50, random.Random(seed))
        return next(d for d in docs if store.control(d.ref) == NO_CONTROL)
    finally:
        store.close()


def _doc_query(doc: Document) -> query_pb2.Query:
    return query_for(doc)


def _fetch(ref: str) -> query_pb2.Query:
    return query_pb2.Query(fetch=query_pb2.FetchQuery(ref=ref))


def _ask_all(network: Network, asks: list[tuple[str, query_pb2.Query]]) -> list[Answer]:
    """Each (requester, query) sent to DE in turn, through the gateway."""

    async def run() -> list[Answer]:
        answers = []
        for requester, query in asks:
            client = BureauClient.open(PkiDir(network.workdir), requester, network.gateway.address)
            async with client:
                answers.append(await client.query(query, OWNER))
        return answers

    return asyncio.run(run())


def _hits_for(network: Network, ref: str, expected: int) -> list[HitEvent]:
    """DE's hit notifications on ``ref``, waiting for the node's writer to store them."""
    path = Workdir(network.workdir).bureau(OWNER).hits
    deadline = time.monotonic() + 15
    while True:
        found = read_hits(path, ref=ref)
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.mark.attack(
    "a deny-listed bureau checks and fetches a record the owner hid from it",
    adversary="rogue bureau",
    expect="no-hit, then NotFound identical to an unknown reference; owner notified",
)
def test_deny_list_hides_record_and_owner_is_notified(network: Network) -> None:
    """IT is denied: no hit, NotFound; FR sees the hit with H2; DE's hits file has all four."""
    doc = _open_document(network, seed=21)
    admin.restrict(
        Workdir(network.workdir).bureau(OWNER).records,
        doc.ref,
        admin.ControlChange(access="deny", bureaus=frozenset({"IT"}), handling=2, notify=True),
    )
    fr_check, fr_fetch, it_check, it_fetch, it_unknown = _ask_all(
        network,
        [
            ("FR", _doc_query(doc)),
            ("FR", _fetch(doc.ref)),
            ("IT", _doc_query(doc)),
            ("IT", _fetch(doc.ref)),
            ("IT", _fetch("nosuchreference00000")),
        ],
    )
    # FR: a hit and the record, each carrying the owner's handling code.
    assert fr_check.outcome == Outcome.HIT
    assert [(m.ref, m.handling) for m in fr_check.matches] == [
        (doc.ref, records_pb2.HANDLING_CODE_H2)
    ]
    assert fr_fetch.outcome == Outcome.RECORD
    assert fr_fetch.response is not None
    assert fr_fetch.response.record.handling == records_pb2.HANDLING_CODE_H2
    assert fr_fetch.response.record.document.number == doc.number
    # IT: nothing, and the withheld record reads exactly like a reference never issued.
    assert it_check.outcome == Outcome.NO_HIT
    assert it_fetch.outcome == Outcome.NOT_FOUND
    assert it_unknown.outcome == Outcome.NOT_FOUND
    assert it_fetch.response is not None
    assert it_unknown.response is not None
    assert it_fetch.response.SerializeToString() == it_unknown.response.SerializeToString()
    # DE recorded who asked, how, and with which message id; never the document number.
    events = _hits_for(network, doc.ref, 4)
    assert [(e.requester, e.query_kind, e.outcome, e.message_id) for e in events] == [
        ("FR", "document", "hit", fr_check.message_id),
        ("FR", "fetch", "released", fr_fetch.message_id),
        ("IT", "document", "withheld", it_check.message_id),
        ("IT", "fetch", "withheld", it_fetch.message_id),
    ]
    hits_file = Workdir(network.workdir).bureau(OWNER).hits
    for path in hits_file.parent.glob(hits_file.name + "*"):
        assert doc.number.encode() not in path.read_bytes()
    node_log = Path(network.node(OWNER).log)
    text = node_log.read_text()
    assert "record_hit" in text
    assert doc.number not in text


def test_allow_list_applies_to_the_running_node_at_once(network: Network) -> None:
    """Open, then allow-listed to NL only: FR's next check misses, NL's still hits."""
    doc = _open_document(network, seed=22)
    (before,) = _ask_all(network, [("FR", _doc_query(doc))])
    assert before.outcome == Outcome.HIT
    admin.restrict(
        Workdir(network.workdir).bureau(OWNER).records,
        doc.ref,
        admin.ControlChange(access="allow", bureaus=frozenset({"NL"})),
    )
    fr_after, nl_after, nl_fetch = _ask_all(
        network, [("FR", _doc_query(doc)), ("NL", _doc_query(doc)), ("NL", _fetch(doc.ref))]
    )
    assert fr_after.outcome == Outcome.NO_HIT
    assert [m.ref for m in nl_after.matches] == [doc.ref]
    assert nl_fetch.outcome == Outcome.RECORD
    # No notify flag: a hit is answered, and nothing is recorded for the owner.
    assert read_hits(Workdir(network.workdir).bureau(OWNER).hits, ref=doc.ref) == []
