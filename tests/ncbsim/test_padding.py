"""Query bodies are padded to fixed sizes, so their length tells the gateway nothing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ncbsim import padding
from ncbsim.v2 import query_pb2, records_pb2


def _hits(count: int) -> query_pb2.Answer:
    return query_pb2.Answer(
        hits=query_pb2.Hits(
            matches=[
                query_pb2.Match(
                    ref=f"ref{i:017d}",
                    kind=records_pb2.RECORD_KIND_PERSON,
                    score=0.93,
                    handling=records_pb2.HANDLING_CODE_H2,
                )
                for i in range(count)
            ]
        )
    )


def _record() -> query_pb2.Answer:
    person = records_pb2.Person(
        ref="r" * 20,
        surname="W" * 64,
        given_names="G" * 64,
        date_of_birth="1980-02-03",
        nationality="DE",
        sex="F",
        flag="wanted",
        summary="S" * 400,
    )
    return query_pb2.Answer(
        record=query_pb2.Record(person=person, handling=records_pb2.HANDLING_CODE_H3)
    )


def test_every_kind_of_answer_has_the_same_size() -> None:
    """No hit, one to five hits, a record, not found and an error are all 1,024 bytes."""
    answers = [
        *(_hits(n) for n in range(6)),
        _record(),
        query_pb2.Answer(not_found=query_pb2.NotFound()),
        query_pb2.Answer(error=query_pb2.QueryError(message="date_of_birth: bad")),
    ]
    sizes = {len(padding.padded(a, padding.RESPONSE_BYTES)) for a in answers}
    assert sizes == {padding.RESPONSE_BYTES}


def test_every_query_has_the_same_size() -> None:
    """Short and longest-allowed queries of every kind are all 256 bytes."""
    key = bytes(32)
    queries = [
        query_pb2.Query(response_key=key, document=query_pb2.DocumentQuery(number="1")),
        query_pb2.Query(
            response_key=key,
            person=query_pb2.PersonQuery(
                surname="S" * 64, given_names="G" * 64, date_of_birth="1980-02-03"
            ),
        ),
        query_pb2.Query(
            response_key=key, vehicle=query_pb2.VehicleQuery(vin="V" * 17, plate="P" * 64)
        ),
        query_pb2.Query(response_key=key, fetch=query_pb2.FetchQuery(ref="r" * 64)),
    ]
    sizes = {len(padding.padded(q, padding.REQUEST_BYTES)) for q in queries}
    assert sizes == {padding.REQUEST_BYTES}


@given(st.binary(max_size=5000), st.sampled_from([16, 256, 1024]))
def test_padded_body_parses_back_to_the_message(payload: bytes, minimum: int) -> None:
    """Whatever the size, the padded bytes have the target length and parse back to the
    same message (the padding field aside): the non-minimal length prefix included."""
    message = query_pb2.Answer(error=query_pb2.QueryError(message=payload.hex()))
    data = padding.padded(message, minimum)
    assert len(data) == padding.target_size(len(message.SerializeToString()), minimum)
    assert len(data) % minimum == 0
    parsed = query_pb2.Answer.FromString(data)
    assert parsed.error.message == payload.hex()
    assert set(parsed.padding) <= {0}


def test_larger_bodies_go_to_the_next_doubling() -> None:
    big = query_pb2.Answer(error=query_pb2.QueryError(message="x" * 1500))
    assert len(padding.padded(big, padding.RESPONSE_BYTES)) == 2048


@pytest.mark.parametrize("natural", range(100, 140))
def test_sizes_around_a_varint_boundary_are_exact(natural: int) -> None:
    """127 or 128 bytes of padding need one or two bytes of length prefix; every case
    lands on the target exactly."""
    message = query_pb2.Answer(error=query_pb2.QueryError(message="m" * (natural - 3)))
    assert len(padding.padded(message, 256)) == 256


def test_a_message_without_padding_field_is_refused() -> None:
    with pytest.raises(TypeError, match="padding field 15"):
        padding.padded(query_pb2.Hits(), 256)
