"""The query client's multi-bureau reply: one bad recipient fails alone, and a gateway
outage still lists every bureau ALL stands for.

The gateway here is a small in-process servicer on a real mTLS loopback socket. It serves
the PKI folder's directory entries and answers each envelope of a MultiQuery as its
recipient bureau would (a no-hit, sealed to the requester), so an answered row proves
the bureau was asked. An outage is the real thing: the server is stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import pytest
from support import SessionsGateway, document_query

from ncbsim import pki, rekey
from ncbsim.client import ALL, Answer, BureauClient, Outcome
from ncbsim.errors import DirectoryError
from ncbsim.serving import Served, start_server
from ncbsim.v2 import gateway_pb2_grpc

T = TypeVar("T")

BUREAUS = ["FR", "DE", "IT", "NL"]
QUERY = document_query("X1234567", "FR")


AnsweringGateway = SessionsGateway
"""Each bureau answers no-hit to what it gets, in format 2 sessions (tests/support.py)."""


@asynccontextmanager
async def _served(directory: pki.PkiDir, fake: AnsweringGateway) -> AsyncIterator[Served]:
    served = await start_server(
        directory.tls("gateway"),
        "127.0.0.1:0",
        [],
        register=lambda s: gateway_pb2_grpc.add_GatewayServiceServicer_to_server(fake, s),
    )
    try:
        yield served
    finally:
        await served.server.stop(0)


def _as_de(
    directory: pki.PkiDir, use: Callable[[BureauClient, Served, AnsweringGateway], Awaitable[T]]
) -> T:
    """Run ``use`` with DE's client connected to an answering gateway."""

    async def main() -> T:
        fake = AnsweringGateway(directory)
        async with (
            _served(directory, fake) as served,
            BureauClient.open(directory, "DE", served.address) as client,
        ):
            return await use(client, served, fake)

    return asyncio.run(main())


@pytest.fixture(scope="module")
def pki_bureaus() -> list[str]:
    """FR, DE, IT and NL: the PKI (``module_pki``) the tests that revoke nothing share."""
    return BUREAUS


def _rows(answers: list[Answer]) -> dict[str, Outcome]:
    return {a.bureau: a.outcome for a in answers}


def test_a_revoked_bureau_fails_alone_and_the_others_are_asked(pki_dir: pki.PkiDir) -> None:
    """After `pki revoke FR`, a query to FR,IT fails FR's row, saying it is revoked, while
    IT is asked and answers."""
    rekey.revoke(pki_dir, "FR")

    async def ask(
        client: BureauClient, _: Served, fake: AnsweringGateway
    ) -> tuple[list[Answer], list[str]]:
        return await client.multi_query(QUERY, ["FR", "IT"]), fake.asked

    answers, asked = _as_de(pki_dir, ask)
    assert _rows(answers) == {"FR": Outcome.FAILED, "IT": Outcome.NO_HIT}
    assert "revoked" in answers[0].detail
    assert asked == ["IT"]


def test_a_bureau_missing_from_the_directory_fails_alone(module_pki: pki.PkiDir) -> None:
    """A bureau with no directory entry (ES, not in this network) fails its own row only;
    the others in the list are asked and answer."""

    async def ask(client: BureauClient, *_: object) -> list[Answer]:
        return await client.multi_query(QUERY, ["IT", "ES", "NL"])

    answers = _as_de(module_pki, ask)
    assert _rows(answers) == {"IT": Outcome.NO_HIT, "ES": Outcome.FAILED, "NL": Outcome.NO_HIT}
    assert answers[1].detail == "no verified directory entry for ES"


def test_all_during_an_outage_lists_every_bureau_of_the_directory_held(
    module_pki: pki.PkiDir,
) -> None:
    """With the gateway gone, a query to ALL from a client that has seen the directory
    lists every other bureau, each no-answer, instead of one row named ALL."""

    async def ask(client: BureauClient, served: Served, _: AnsweringGateway) -> list[Answer]:
        await client.peers.load_all()
        await served.server.stop(0)
        return await client.multi_query(QUERY, [ALL], timeout=2)

    answers = _as_de(module_pki, ask)
    assert _rows(answers) == {b: Outcome.NO_ANSWER for b in ("FR", "IT", "NL")}
    assert all(a.detail.startswith("gateway: UNAVAILABLE") for a in answers)


def test_an_explicit_list_during_an_outage_lists_each_bureau(module_pki: pki.PkiDir) -> None:
    """With the gateway gone and no directory held, a query to FR,IT lists FR and IT as
    no-answer."""

    async def ask(client: BureauClient, served: Served, _: AnsweringGateway) -> list[Answer]:
        await served.server.stop(0)
        return await client.multi_query(QUERY, ["FR", "IT"], timeout=2)

    answers = _as_de(module_pki, ask)
    assert _rows(answers) == {"FR": Outcome.NO_ANSWER, "IT": Outcome.NO_ANSWER}


def test_all_during_an_outage_without_a_directory_says_so(module_pki: pki.PkiDir) -> None:
    """A client that never reached the gateway cannot tell who ALL is: it says so, and
    invents no row."""

    async def ask(client: BureauClient, served: Served, _: AnsweringGateway) -> list[Answer]:
        await served.server.stop(0)
        return await client.multi_query(QUERY, [ALL], timeout=2)

    with pytest.raises(DirectoryError, match="holds no verified directory yet"):
        _as_de(module_pki, ask)
