"""Helpers several test folders share. Import them as ``from support import ...``.

They live here, not in ``conftest.py``: with several ``conftest.py`` files (tests/,
tests/fuzz/, tests/load/), ``from conftest import ...`` gets whichever one pytest
imported last, not the one beside this file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import grpc

from ncbsim import envelope, mail, pki
from ncbsim.client import BureauClient
from ncbsim.errors import QueueFull
from ncbsim.serving import start_server
from ncbsim.simulations import scenario
from ncbsim.v2 import directory_pb2, gateway_pb2, gateway_pb2_grpc

T = TypeVar("T")


def ncbsim_pids(workdir: Path) -> list[int]:
    """PIDs of the ncbsim processes whose command line names ``workdir``: what a run left."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"ncbsim" in cmdline and os.fsencode(str(workdir)) in cmdline:
            found.append(int(entry.name))
    return found


def load_scenario(tmp_path: Path, text: str) -> scenario.Scenario:
    """The scenario that ``text`` describes, loaded from ``tmp_path/sim.toml``."""
    path = tmp_path / "sim.toml"
    path.write_text(text)
    return scenario.load(str(path))


class FakeGateway(gateway_pb2_grpc.GatewayServiceServicer):
    """Serves directory entries, stores posted envelopes by message id, fails on a script.

    ``script`` holds one action per Post call: ``accept`` (the default), ``unavailable``
    (refuse before storing), ``stall`` (hang past the caller's deadline),
    ``store_then_unavailable`` (store, then fail the reply, as a gateway that crashed
    after its commit), ``queue_full`` and ``rate_limited``.
    """

    def __init__(self, directory: pki.PkiDir, *, script: list[str] | None = None) -> None:
        self.pki = directory
        self.script = list(script or [])
        self.calls: list[list[bytes]] = []
        self.stored: dict[bytes, tuple[int, envelope.Envelope]] = {}
        self.posted: list[gateway_pb2.PostedMessage] = []
        self.page_size = 2
        self.directory_calls: list[list[str]] = []

    async def GetDirectory(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.GetDirectoryRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GetDirectoryResponse:
        self.directory_calls.append(list(request.bureaus))
        signed = self.pki.signed_entries(list(request.bureaus) or None)
        return gateway_pb2.GetDirectoryResponse(
            entries=[directory_pb2.SignedDirectoryEntry.FromString(s) for s in signed]
        )

    def _store(self, request: gateway_pb2.PostRequest) -> list[gateway_pb2.PostResult]:
        results = []
        for env in request.envelopes:
            header = envelope.Header.parse(env.header)
            status = gateway_pb2.POST_STATUS_DUPLICATE
            if header.message_id not in self.stored:
                status = gateway_pb2.POST_STATUS_ACCEPTED
                self.stored[header.message_id] = (len(self.stored) + 1, env)
            results.append(
                gateway_pb2.PostResult(
                    message_id=header.message_id,
                    recipient=header.recipient,
                    status=status,
                    sequence=self.stored[header.message_id][0],
                    accepted_at_ms=int(time.time() * 1000),
                )
            )
        return results

    async def Post(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.PostRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.PostResponse:
        self.calls.append([e.SerializeToString() for e in request.envelopes])
        action = self.script.pop(0) if self.script else "accept"
        if action == "unavailable":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "gateway restarting")
        if action == "stall":  # a gateway that hangs: the caller's deadline ends the call
            await asyncio.sleep(2)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "too late")
        if action == "store_then_unavailable":
            self._store(request)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset")
        if action == "queue_full":  # as the gateway refuses it: QueueFull's trailers
            full = QueueFull("queue for DE is full (3 messages waiting); retry later", 500)
            context.set_trailing_metadata(full.trailing_metadata())
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(full))
        if action == "rate_limited":
            context.set_trailing_metadata((("retry-after-ms", "30"),))
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "rate limit for FR: retry after 30 ms"
            )
        return gateway_pb2.PostResponse(results=self._store(request))

    async def Receipts(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.ReceiptsRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.ReceiptsResponse:
        rows = [m for m in self.posted if m.sequence > request.after_sequence]
        page = rows[: self.page_size]
        return gateway_pb2.ReceiptsResponse(messages=page, more=len(rows) > len(page))


@contextlib.asynccontextmanager
async def mailer_on(
    directory: pki.PkiDir, fake: FakeGateway, bureau: str = "FR"
) -> AsyncIterator[mail.Mailer]:
    """``fake`` served on an mTLS loopback socket, and a mailer of ``bureau`` connected to it."""
    served = await start_server(
        directory.tls("gateway"),
        "127.0.0.1:0",
        [],
        register=lambda s: gateway_pb2_grpc.add_GatewayServiceServicer_to_server(fake, s),
    )
    try:
        async with BureauClient.open(directory, bureau, served.address) as client:
            yield mail.Mailer(client)
    finally:
        await served.server.stop(0)


def run_mailer(
    directory: pki.PkiDir, fake: FakeGateway, use: Callable[[mail.Mailer], Awaitable[T]]
) -> T:
    """Run ``use`` with a mailer of FR connected to ``fake``, and return what it returns."""

    async def main() -> T:
        async with mailer_on(directory, fake) as mailer:
            return await use(mailer)

    return asyncio.run(main())
