"""Fixtures for the core tests: the envelope flow FR -> DE and its two directions."""

from __future__ import annotations

import pytest
from envelope_helpers import (
    Flow,
    Leg,
    _answer,
    _ask,
    _identity,
)

from ncbsim import envelope


@pytest.fixture
def flow() -> Flow:
    fr, de, it = _identity("FR"), _identity("DE"), _identity("IT")
    sent = _ask(fr, de)
    return Flow(fr=fr, de=de, it=it, sent=sent, response=_answer(de, sent))


@pytest.fixture(params=["request", "response"])
def leg(request: pytest.FixtureRequest, flow: Flow) -> Leg:
    if request.param == "request":
        return Leg(
            flow.sent.envelope,
            flow.fr,
            flow.open_request,
            flow.de.encryption_key.public_key(),
            envelope.REQUEST_INFO,
        )
    return Leg(
        flow.response,
        flow.de,
        flow.open_response,
        flow.sent.response_key.public_key(),
        envelope.RESPONSE_INFO + flow.sent.header.message_id,
    )
