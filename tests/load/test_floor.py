"""The floor of `ncbsim bench`: same-size envelopes through a relay and server that do no work."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from ncbsim import pki, transport
from ncbsim.errors import NetworkError
from ncbsim.load.floor import Fields, FloorProcesses
from ncbsim.processes import alive
from ncbsim.v2 import gateway_pb2, gateway_pb2_grpc


def test_canned_envelope_has_the_given_field_lengths() -> None:
    """A canned envelope's fields have exactly the lengths asked for, with fresh bytes."""
    fields = Fields(82, 99, 64)
    first, second = fields.canned(), fields.canned()
    assert Fields.of(first) == fields
    assert first.sealed != second.sealed
    with pytest.raises(ValueError, match="negative"):
        Fields(1, -1, 1)


@pytest.mark.integration
@pytest.mark.load
def test_relay_forwards_to_the_server_over_mtls_and_stops(
    pki_dir: pki.PkiDir, tmp_path: Path
) -> None:
    """A call through the relay comes back with the server's reply size; stop ends both."""
    reply = Fields(82, 55, 64)

    async def scenario() -> tuple[Fields, dict[str, int]]:
        floor = await FloorProcesses.start(pki_dir, tmp_path / "floor", reply)
        try:
            channel = transport.gateway_channel(floor.relay, pki_dir.tls("FR"))
            async with channel:
                stub = gateway_pb2_grpc.GatewayServiceStub(channel)
                request = gateway_pb2.QueryRequest(envelope=Fields(82, 99, 64).canned())
                response = await stub.Query(request, timeout=10)
            return Fields.of(response.envelope), dict(floor.pids)
        finally:
            floor.stop()

    got, pids = asyncio.run(scenario())
    assert got == reply
    assert set(pids) == {"server", "relay"}
    assert not any(alive(pid) for pid in pids.values())


@pytest.mark.integration
@pytest.mark.load
def test_a_floor_that_cannot_start_says_why(tmp_path: Path) -> None:
    """Without TLS material the server exits; start raises a clear error and leaves nothing."""
    empty = pki.PkiDir(tmp_path / "nothing")

    async def scenario() -> None:
        await FloorProcesses.start(empty, tmp_path / "floor", Fields(1, 1, 1))

    with pytest.raises(NetworkError, match=r"floor server exited with 2: .*missing TLS material"):
        asyncio.run(scenario())
    assert not [
        p
        for p in Path("/proc").glob("[0-9]*/cmdline")
        if str(tmp_path).encode() in _read(p) and p.parent.name != str(os.getpid())
    ]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # the process ended meanwhile
        return b""
