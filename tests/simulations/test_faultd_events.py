"""The fault daemon's events: its faults applied and healed (the timed heal too), the
process faults it is told of (``note``), streamed to a local-socket subscriber (``observe``)
with a bounded buffer; in one loop over a real Unix socket, without a network."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from ncbsim.events import Event, from_dict
from ncbsim.simulations.faultd import FaultDaemon


async def _observe(
    sock: Path, kinds: list[str] | None = None, buffer: int = 64
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A subscriber of the daemon's stream, its first reply checked."""
    reader, writer = await asyncio.open_unix_connection(str(sock))
    request: dict[str, Any] = {"op": "observe", "buffer": buffer}
    if kinds is not None:
        request["kinds"] = kinds
    writer.write(json.dumps(request).encode() + b"\n")
    await writer.drain()
    assert json.loads(await reader.readline()) == {"ok": True, "observing": True}
    return reader, writer


async def _next(reader: asyncio.StreamReader) -> tuple[Event, int]:
    data = json.loads(await asyncio.wait_for(reader.readline(), 30))
    return from_dict(data), int(data["dropped"])


async def _ask(sock: Path, message: dict[str, Any]) -> dict[str, Any]:
    reader, writer = await asyncio.open_unix_connection(str(sock))
    writer.write(json.dumps(message).encode() + b"\n")
    await writer.drain()
    reply: dict[str, Any] = json.loads(await reader.readline())
    writer.close()
    await writer.wait_closed()
    return reply


def test_observer_sees_a_partition_applied_and_healed(tmp_path: Path) -> None:
    """A partition of DE and IT is a fault.applied per bureau, then, healed by its own
    duration, a fault.healed per bureau; all party faultd, correlated by the fault's id."""

    async def main() -> None:
        sock = tmp_path / "faultd.sock"
        daemon = FaultDaemon(["DE", "IT"])
        server = await asyncio.start_unix_server(daemon.serve_control, path=str(sock))
        try:
            await daemon.start()
            reader, writer = await _observe(sock, kinds=["fault."])
            table = {"at_s": 0, "id": "cut", "fault": "partition", "bureaus": ["DE", "IT"]}
            reply = await _ask(sock, {"op": "fault", "event": {**table, "duration_s": 0.2}})
            assert reply["ok"], reply
            seen = [await _next(reader) for _ in range(4)]
            events = [e for e, _ in seen]
            assert [(e.kind, e.view["target"]) for e in events] == [
                ("fault.applied", "DE"),
                ("fault.applied", "IT"),
                ("fault.healed", "DE"),
                ("fault.healed", "IT"),
            ]
            assert {e.party for e in events} == {"faultd"}
            assert {e.correlation_id for e in events} == {"cut"}
            assert {e.view["fault"] for e in events} == {"partition"}
            assert events[0].view["peer"] == "gateway"
            until = float(events[0].view["until_s"])  # Unix time of the timed heal
            assert events[0].time <= until <= events[2].time + 1
            assert [e.seq for e in events] == sorted(e.seq for e in events)
            assert all(dropped == 0 for _, dropped in seen)
            writer.close()
            await writer.wait_closed()
        finally:
            server.close()
            await daemon.close()

    asyncio.run(main())


def test_note_publishes_process_faults_and_refuses_anything_else(tmp_path: Path) -> None:
    """`note` publishes a fault.* event of the schema; another kind, a view key outside
    the schema or prose is refused, and nothing is published for it."""

    async def main() -> None:
        sock = tmp_path / "faultd.sock"
        daemon = FaultDaemon([])
        server = await asyncio.start_unix_server(daemon.serve_control, path=str(sock))
        try:
            reader, writer = await _observe(sock)
            view = {"fault": "kill", "target": "NL"}
            bad = [
                {"op": "note", "kind": "query.relayed", "view": view, "id": "k"},
                {"op": "note", "kind": "fault.applied", "view": {"name": "MULLER"}, "id": "k"},
                {"op": "note", "kind": "fault.applied", "view": {"detail": "x (y)"}, "id": "k"},
                {"op": "note", "kind": "fault.applied", "view": ["x"], "id": "k"},
            ]
            for message in bad:
                reply = await _ask(sock, message)
                assert reply["ok"] is False, message
            ok = {"op": "note", "kind": "fault.applied", "view": view, "id": "kill_1"}
            assert (await _ask(sock, ok))["ok"]
            event, _ = await _next(reader)
            assert (event.kind, dict(event.view), event.correlation_id) == (
                "fault.applied",
                view,
                "kill_1",
            )
            writer.close()
            await writer.wait_closed()
        finally:
            server.close()
            await daemon.close()

    asyncio.run(main())


def test_a_subscriber_that_does_not_read_loses_the_oldest_and_is_told(tmp_path: Path) -> None:
    """With a buffer of 2 and a subscriber not reading, the daemon goes on answering;
    what the subscriber later reads says how many events it missed."""

    async def main() -> None:
        sock = tmp_path / "faultd.sock"
        daemon = FaultDaemon([])
        server = await asyncio.start_unix_server(daemon.serve_control, path=str(sock))
        try:
            reader, writer = await _observe(sock, buffer=2)
            # Emitted faster than the stream task gets to run: no await between them.
            for i in range(10):
                daemon.bus.emit("fault.applied", {"fault": "kill", "target": f"B{i}"})
            first, dropped = await _next(reader)
            assert dropped == 8
            assert first.view["target"] == "B8"
            assert (await _next(reader))[0].view["target"] == "B9"
            assert (await _ask(sock, {"op": "status"}))["ok"]  # still answering
            writer.close()
            await writer.wait_closed()
        finally:
            server.close()
            await daemon.close()

    asyncio.run(main())


def test_a_bad_observe_request_is_refused(tmp_path: Path) -> None:
    """A buffer out of range or kinds that are not strings: one error line, no stream."""

    async def main() -> None:
        sock = tmp_path / "faultd.sock"
        daemon = FaultDaemon([])
        server = await asyncio.start_unix_server(daemon.serve_control, path=str(sock))
        try:
            for bad in ({"buffer": 0}, {"buffer": True}, {"kinds": "fault."}, {"kinds": [1]}):
                reader, writer = await asyncio.open_unix_connection(str(sock))
                writer.write(json.dumps({"op": "observe", **bad}).encode() + b"\n")
                await writer.drain()
                reply = json.loads(await reader.readline())
                assert reply["ok"] is False, bad
                assert "buffer" in reply["error"]
                assert await reader.readline() == b""  # closed
                writer.close()
                await writer.wait_closed()
            assert daemon.bus.observed is False
        finally:
            server.close()
            await daemon.close()

    asyncio.run(main())
