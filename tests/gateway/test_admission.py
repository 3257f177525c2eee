"""Admission rules (gateway/admission.py) as plain functions, without gRPC or a server.

Every Post rule and the query header bounds are also tested through the RPCs
(test_posts.py, test_relay.py); these cover what only the functions show: the header
check queries and posts share, a MultiQuery's distinct recipients and metering, and the
rows a refused call is audited with.
"""

from __future__ import annotations

import os

import pytest
from gateway_support import FakeClock, fake_limiter, forged_post, now_ms

from ncbsim import envelope, session
from ncbsim.errors import EnvelopeError, IdentityError, RoutingError
from ncbsim.gateway import admission
from ncbsim.gateway.limits import LimitExceeded
from ncbsim.protocol import MAX_ENVELOPES_PER_CALL


class _Directory:
    """Knows FR, DE and IT; MC only sends."""

    def known(self, bureau: str) -> bool:
        return bureau in {"FR", "DE", "IT", "MC"}

    def send_only(self, bureau: str) -> bool:
        return bureau == "MC"


def _query(recipient: str = "DE", **fields: object) -> envelope.Envelope:
    return forged_post(recipient=recipient, kind=envelope.QUERY_REQUEST, **fields)


def test_a_call_without_a_bureau_certificate_is_refused_before_its_header_is_read() -> None:
    """No peer: IdentityError, even for bytes that are no header at all."""
    with pytest.raises(IdentityError, match="a bureau certificate is required"):
        admission.check_header(None, envelope.Envelope(header=b"\xff"), admission.QUERY_KINDS)


@pytest.mark.parametrize(
    ("kinds", "kind"),
    [
        (admission.QUERY_KINDS, envelope.DIFFUSION),
        (admission.QUERY_KINDS, envelope.NOTICE),
        (envelope.ONE_WAY_KINDS, envelope.QUERY_REQUEST),
    ],
)
def test_the_shared_header_check_takes_only_its_paths_kinds(kinds: object, kind: int) -> None:
    """A one-way envelope sent to the query path, or a query posted, is EnvelopeError."""
    item = forged_post(kind=kind)
    with pytest.raises(EnvelopeError):
        admission.check_header("FR", item, kinds)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kind", [envelope.QUERY_REQUEST, session.SESSION_OPEN, session.SESSION_CLOSE]
)
def test_the_query_path_takes_format_2_sessions(kind: int) -> None:
    """Query and MultiQuery relay a session's OPEN, its requests and its CLOSE, in
    format 2 (docs/protocol.md §15); the replies' kinds, and other versions, are refused,
    and one-way envelopes stay format 1."""
    fields = {"version": 2, "suite": 1, "session_id": os.urandom(16), "seq": 1}
    item = forged_post(kind=kind, **fields)
    assert admission.admit_query("FR", item, _Directory()).kind == kind
    for bad in (session.SESSION_ACCEPT, session.SESSION_CLOSED, envelope.QUERY_RESPONSE):
        with pytest.raises(EnvelopeError):
            admission.admit_query("FR", forged_post(kind=bad, **fields), _Directory())
    with pytest.raises(EnvelopeError):
        newer = forged_post(kind=kind, **{**fields, "version": 3})
        admission.admit_query("FR", newer, _Directory())
    with pytest.raises(EnvelopeError):
        admission.check_header("FR", forged_post(**fields), envelope.ONE_WAY_KINDS)


def test_the_shared_header_check_binds_the_sender_to_the_caller() -> None:
    """Another bureau's name as sender is IdentityError on both paths."""
    for kinds, item in (
        (admission.QUERY_KINDS, _query()),
        (envelope.ONE_WAY_KINDS, forged_post()),
    ):
        with pytest.raises(IdentityError, match="does not match the authenticated bureau"):
            admission.check_header("IT", item, kinds)
        assert admission.check_header("FR", item, kinds).sender == "FR"


def test_a_query_to_a_bureau_the_directory_does_not_know_is_a_routing_error() -> None:
    """An unknown recipient is RoutingError naming it."""
    with pytest.raises(RoutingError, match="unknown bureau 'ZZ'"):
        admission.admit_query("FR", _query("ZZ"), _Directory())


def test_a_multi_query_names_each_recipient_once_and_is_metered_even_if_refused() -> None:
    """Two envelopes to DE: EnvelopeError for the call, after both were counted."""
    clock = FakeClock()
    limiter = fake_limiter(clock, rate=1.0, burst=3)
    items = [_query("DE"), _query("DE")]
    with pytest.raises(EnvelopeError):
        admission.admit_queries(
            "FR", items, 100, max_bytes=10_000, limiter=limiter, directory=_Directory()
        )
    with pytest.raises(LimitExceeded):  # 2 of 3 tokens spent by the refused call
        limiter.take("FR", 2)
    items = [_query("DE", sender="IT"), _query("FR", sender="IT")]
    admitted = admission.admit_queries(
        "IT", items, 100, max_bytes=10_000, limiter=limiter, directory=_Directory()
    )
    assert [header.recipient for _, header in admitted] == ["DE", "FR"]


@pytest.mark.parametrize("count", [0, MAX_ENVELOPES_PER_CALL + 1])
def test_a_call_of_no_envelopes_or_too_many_is_refused_unmetered(count: int) -> None:
    """0 or 257 envelopes: EnvelopeError before the limiter counts anything."""
    limiter = fake_limiter(FakeClock(), burst=5)
    items = [_query()] * count
    with pytest.raises(EnvelopeError):
        admission.admit_queries(
            "FR", items, 100, max_bytes=10_000, limiter=limiter, directory=_Directory()
        )
    limiter.take("FR", 5)  # the whole burst is still there


def test_an_envelope_is_sized_only_when_the_request_is_over_the_limit() -> None:
    """check_batch reads each envelope's size only if the request could hold one too large."""
    item = forged_post()
    size = item.ByteSize()
    admission.check_batch([item], size, size)
    admission.check_batch([item], size - 1, size - 1)  # the request is within: not sized
    with pytest.raises(LimitExceeded, match=f"request of {size} bytes"):
        admission.check_batch([item], size + 10, size - 1)


def test_a_refused_call_is_audited_by_envelope_or_once_if_too_odd_to_list() -> None:
    """One (size, header) per envelope, None for a header that does not parse; a single
    row with the request's size for none or too many envelopes."""
    good, bad = forged_post(), envelope.Envelope(header=b"\xff", sealed=b"s")
    rows = admission.refused_rows([good, bad], 999)
    assert [(size, header is None) for size, header in rows] == [
        (good.ByteSize(), False),
        (bad.ByteSize(), True),
    ]
    assert rows[0][1] == envelope.unverified_header(good)
    assert admission.refused_rows([], 7) == [(7, None)]
    assert admission.refused_rows([good] * (MAX_ENVELOPES_PER_CALL + 1), 9) == [(9, None)]


def test_admitted_posts_carry_their_bytes_and_digest_read_at_one_time() -> None:
    """admit_posts reads the clock once, after metering, and keeps each envelope's bytes."""
    times: list[int] = []

    def clock() -> int:
        times.append(now_ms())
        return times[-1]

    items = [forged_post(recipient="DE"), forged_post(recipient="IT", message_id=os.urandom(16))]
    admitted = admission.admit_posts(
        "FR",
        items,
        100,
        max_bytes=10_000,
        limiter=fake_limiter(FakeClock()),
        directory=_Directory(),
        clock_ms=clock,
    )
    assert len(times) == 1
    assert [i.data for i in admitted] == [item.SerializeToString() for item in items]
    assert [i.sha256 for i in admitted] == [envelope.envelope_digest(item) for item in items]
    assert [i.header.recipient for i in admitted] == ["DE", "IT"]
