"""Property-based fuzzing of the node's answer to any query, and of the MRZ and VIN parsers.

Each test states the one contract a caller relies on: the parser either returns a
well-formed result or raises its documented error, never anything else.
"""

from __future__ import annotations

import datetime as dt
import random
import string

from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from support import document_query

from ncbsim.errors import MrzError
from ncbsim.node import mrz, vin
from ncbsim.node.answer import answer
from ncbsim.node.store import RecordStore
from ncbsim.v2 import query_pb2

# ----------------------------------------------------------------------------- answer


FIELD_TEXT = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=string.ascii_uppercase + string.digits + "<- ", max_size=20),
    st.sampled_from(["", " ", "\x00", "DE", "D", "DEU", "ÄÖÜß", "X" * 64, "X" * 65]),
    st.text(min_size=5000, max_size=20_000).filter(lambda s: len(s.strip()) > 64),
)
DATES = st.one_of(
    FIELD_TEXT,
    st.from_regex(r"\A\d{4}-\d{2}-\d{2}\Z"),
    st.dates().map(dt.date.isoformat),
    st.sampled_from(["2020-02-30", "0000-00-00", "9999-99-99", "1980-2-3", "1980-02-03"]),
)
QUERIES = st.one_of(
    st.builds(
        query_pb2.Query,
        document=st.builds(query_pb2.DocumentQuery, number=FIELD_TEXT, issuer=FIELD_TEXT),
    ),
    st.builds(
        query_pb2.Query,
        person=st.builds(
            query_pb2.PersonQuery, surname=FIELD_TEXT, given_names=FIELD_TEXT, date_of_birth=DATES
        ),
    ),
    st.builds(
        query_pb2.Query,
        vehicle=st.builds(query_pb2.VehicleQuery, vin=FIELD_TEXT, plate=FIELD_TEXT),
    ),
    st.builds(query_pb2.Query, fetch=st.builds(query_pb2.FetchQuery, ref=FIELD_TEXT)),
    st.builds(query_pb2.Query, response_key=st.binary(max_size=40)),  # empty oneof
)


def _assert_one_result(response: query_pb2.Answer) -> None:
    assert isinstance(response, query_pb2.Answer)
    which = response.WhichOneof("result")
    assert which in ("hits", "record", "not_found", "error")
    if which == "error":
        assert response.error.message
    response.SerializeToString()  # a response the node can seal


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(QUERIES)
def test_answer_returns_a_response_for_any_query(
    records: RecordStore, request: query_pb2.Query
) -> None:
    """answer() never raises: any field values get hits, a record, not-found or an error.

    ``too_slow`` is suppressed because the 20 000-character strings are slow to generate
    on purpose (they test the length limit), not because the code under test is slow.
    """
    response = answer(records, request)
    event(str(response.WhichOneof("result")))
    _assert_one_result(response)


@given(st.binary(max_size=300))
def test_answer_returns_a_response_for_any_decodable_body(
    records: RecordStore, body: bytes
) -> None:
    """A body that decodes as a Query, whatever its bytes, gets a response."""
    try:
        request = query_pb2.Query.FromString(body)
    except DecodeError:
        return
    _assert_one_result(answer(records, request))


def test_answer_finds_what_the_store_holds(records: RecordStore) -> None:
    """Control for the tests above: a held document is a hit, so the store is not empty."""
    doc = records.sample("document", 1, random.Random(3))[0]
    response = answer(
        records,
        document_query(doc.number, "DE"),
    )
    assert [m.ref for m in response.hits.matches] == [doc.ref]


# ----------------------------------------------------------------------------- MRZ and VIN


MRZ_CHARS = string.ascii_uppercase + string.digits + "<"
MRZ_LINES = st.one_of(
    st.text(alphabet=MRZ_CHARS, min_size=44, max_size=44),
    st.text(alphabet=MRZ_CHARS, min_size=40, max_size=48),
    st.text(max_size=50),
)


@given(
    st.one_of(
        st.text(max_size=120), st.lists(MRZ_LINES, max_size=3), st.tuples(MRZ_LINES, MRZ_LINES)
    )
)
def test_mrz_parse_and_validate_never_raise_anything_else(text: str | list[str]) -> None:
    """parse_td3 returns a TD3 or raises MrzError; validate_td3 only ever answers a bool."""
    valid = mrz.validate_td3(text)
    assert isinstance(valid, bool)
    try:
        parsed = mrz.parse_td3(text)
    except MrzError:
        assert not valid
        return
    assert len(parsed.number) <= 9


@given(
    st.dates(min_value=dt.date(1930, 1, 1), max_value=dt.date(2029, 12, 31)),
    st.text(alphabet=string.ascii_uppercase + string.digits, min_size=1, max_size=9),
    st.text(alphabet=string.ascii_letters + " -'", min_size=1, max_size=30).filter(
        lambda s: any(c.isalpha() for c in s)
    ),
)
def test_built_mrz_validates_and_parses_back(born: dt.date, number: str, surname: str) -> None:
    """Control: an MRZ built from fields validates and parses back to its number."""
    lines = mrz.build_td3(
        issuing_state="D",
        surname=surname,
        given_names="Anna",
        number=number,
        nationality="D",
        date_of_birth=born,
        sex="F",
        date_of_expiry=dt.date(2030, 1, 1),
    )
    assert mrz.validate_td3(lines)
    assert mrz.parse_td3(" ".join(lines)).number == number


VIN_SHAPE = r"^[0-9A-HJ-NPR-Z]{17}$"


@given(
    st.one_of(
        st.text(max_size=30), st.from_regex(r"\A[0-9A-HJ-NPR-Z]{17}\Z"), st.from_regex(VIN_SHAPE)
    )
)
def test_vin_is_valid_only_ever_answers_a_bool(text: str) -> None:
    """is_valid never raises, and agrees with check_digit on well-shaped VINs."""
    valid = vin.is_valid(text)
    assert isinstance(valid, bool)
    if valid:
        clean = text.strip().upper()
        assert clean[vin.CHECK_POSITION] == vin.check_digit(clean)


@given(st.from_regex(r"\A[0-9A-HJ-NPR-Z]{17}\Z"))
def test_vin_check_digit_of_17_vin_characters(text: str) -> None:
    """check_digit of any 17 VIN characters is one of 0-9 or X, ignoring position 9."""
    digit = vin.check_digit(text)
    assert digit in "0123456789X"
    assert vin.check_digit(text[:8] + "0" + text[9:]) == digit


@example("1HGCM82633A004352\n")
@given(st.text(max_size=30))
def test_vin_check_digit_raises_only_value_error(text: str) -> None:
    """check_digit returns a digit for 17 VIN characters and ValueError for anything else."""
    try:
        digit = vin.check_digit(text)
    except ValueError:
        return
    assert digit in "0123456789X"
