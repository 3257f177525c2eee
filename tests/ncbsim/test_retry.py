"""Gateway calls that fail in passing are retried with the very same envelopes, and only
those (ncbsim/retry.py, through the mailer): a restart, a lost reply, a rate limit with a
hint; a full queue and a gateway down past the deadline are reported, not retried."""

from __future__ import annotations

import asyncio

import pytest
from support import FakeGateway, run_mailer

from ncbsim import mail, pki, posts
from ncbsim.client import BureauClient
from ncbsim.serving import start_server

BUREAUS = ["FR", "DE", "IT", "NL", "GS"]


@pytest.fixture(scope="module")
def pki_bureaus() -> list[str]:
    """``module_pki``: four bureaus and the General Secretariat."""
    return BUREAUS


def test_retry_after_unavailable_resends_the_same_envelopes(module_pki: pki.PkiDir) -> None:
    """A gateway that is restarting gets the very same bytes again; each copy is stored once."""
    fake = FakeGateway(module_pki, script=["unavailable", "unavailable"])
    outcome = run_mailer(module_pki, fake, lambda m: m.diffuse(["DE", "IT"], "S", "T"))
    assert outcome.attempts == 3
    assert len(fake.calls) == 3
    assert fake.calls[0] == fake.calls[1] == fake.calls[2]
    assert [c.status for c in outcome.copies] == ["accepted"] * 3
    assert len(fake.stored) == 3


def test_retry_after_a_lost_reply_finds_the_copies_stored(module_pki: pki.PkiDir) -> None:
    """Stored but the reply lost: the retry is a duplicate with the original sequence."""
    fake = FakeGateway(module_pki, script=["store_then_unavailable"])
    outcome = run_mailer(module_pki, fake, lambda m: m.message("DE", "Call me"))
    (copy,) = outcome.copies
    assert copy.status == "duplicate"
    assert copy.stored
    assert copy.sequence == fake.stored[copy.message_id][0] == 1
    assert len(fake.stored) == 1
    assert fake.calls[0] == fake.calls[1]


def test_rate_limit_with_a_hint_is_retried(module_pki: pki.PkiDir) -> None:
    """A rate limit that clears before the deadline is waited out, not reported."""
    fake = FakeGateway(module_pki, script=["rate_limited"])
    outcome = run_mailer(module_pki, fake, lambda m: m.message("DE", "hello"))
    assert outcome.stored
    assert outcome.attempts == 2


def test_queue_full_is_reported_not_retried(module_pki: pki.PkiDir) -> None:
    """A full recipient queue is back-pressure for the caller: queue_full, one attempt."""
    fake = FakeGateway(module_pki, script=["queue_full"])
    outcome = run_mailer(module_pki, fake, lambda m: m.message("DE", "hello"))
    (copy,) = outcome.copies
    assert copy.status == "queue_full"
    assert not outcome.stored
    assert "queue for DE is full" in copy.detail
    assert outcome.attempts == 1
    assert fake.stored == {}


def test_gateway_down_until_the_deadline_fails_every_copy(module_pki: pki.PkiDir) -> None:
    """When the gateway never comes back within timeout_s the copies are failed, not lost."""
    fake = FakeGateway(module_pki, script=["unavailable"] * 100)

    async def use(mailer: mail.Mailer) -> posts.PostOutcome:
        return await mailer.diffuse(["DE"], "S", "T", timeout_s=0.6)

    outcome = run_mailer(module_pki, fake, use)
    assert [c.status for c in outcome.copies] == ["failed", "failed"]
    assert "UNAVAILABLE" in outcome.copies[0].detail
    assert outcome.attempts >= 3
    print(f"attempts within 0.6 s: {outcome.attempts}")


def test_unreachable_gateway_fails_the_post(module_pki: pki.PkiDir) -> None:
    """With no gateway listening, every addressee gets a failed copy after timeout_s."""

    async def main() -> posts.PostOutcome:
        # A port that was just free: nothing listens on it.
        served = await start_server(
            module_pki.tls("gateway"), "127.0.0.1:0", [], register=lambda s: None
        )
        address = served.address
        await served.server.stop(0)
        async with BureauClient.open(module_pki, "FR", address) as client:
            return await mail.Mailer(client).message("DE", "hello", timeout_s=0.5)

    outcome = asyncio.run(main())
    assert [(c.recipient, c.status) for c in outcome.copies] == [("DE", "failed")]
    assert "UNAVAILABLE" in outcome.copies[0].detail
