"""The floor of ``ncbsim bench``: a plain mTLS gRPC two-hop relay that does no work.

Two programs, each run as its own process, the way the gateway and a node are::

    python -m ncbsim.load.floor server --dir PKI --header-bytes H --sealed-bytes S \
        --signature-bytes G
    python -m ncbsim.load.floor relay --dir PKI --server HOST:PORT

The **relay** serves ``ncbsim.v2.GatewayService/Query`` with the gateway's certificate and
forwards each envelope, untouched, over one persistent mTLS channel to the server's
``ncbsim.v2.BureauService/Handle``. The **server** holds bureau DE's certificate and answers
every call with the same canned envelope, whose fields have the given lengths.

Both use what the real programs use (grpc.aio, :func:`ncbsim.serving.start_server`,
the same credentials, channel options and messages), and nothing else: no crypto, no
lookup, no audit and no logging on the call path. Each writes a ready file once it
serves and stops on SIGINT or SIGTERM. :class:`FloorProcesses` starts and stops the
pair for the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import structlog

from ncbsim import log as logsetup
from ncbsim import processes, transport
from ncbsim.errors import NcbsimError, NetworkError
from ncbsim.pki import PkiDir
from ncbsim.serving import start_server, wait_for_shutdown, write_ready_file
from ncbsim.v2 import bureau_pb2, bureau_pb2_grpc, envelope_pb2, gateway_pb2, gateway_pb2_grpc

log = structlog.get_logger()

SERVER_BUREAU = "DE"  # the floor server stands in for this bureau's node
CONNECT_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Fields:
    """The lengths of an envelope's three fields, which set its size on the wire."""

    header: int
    sealed: int
    signature: int

    def __post_init__(self) -> None:
        if min(self.header, self.sealed, self.signature) < 0:
            raise ValueError("field lengths cannot be negative")

    @classmethod
    def of(cls, envelope: envelope_pb2.Envelope) -> Fields:
        """The field lengths of ``envelope``; ``signature`` counts every byte that
        authenticates it beyond the AEAD: the signature and, in format 2, the checkpoint
        (about one request in 32 carries one)."""
        authenticating = len(envelope.signature) + len(envelope.checkpoint)
        return cls(len(envelope.header), len(envelope.sealed), authenticating)

    def canned(self) -> envelope_pb2.Envelope:
        """An envelope whose fields hold random bytes of these lengths."""
        return envelope_pb2.Envelope(
            header=os.urandom(self.header),
            sealed=os.urandom(self.sealed),
            signature=os.urandom(self.signature),
        )


# ----------------------------------------------------------------------------- the programs


class FloorServer(bureau_pb2_grpc.BureauServiceServicer):  # type: ignore[misc]
    """Bureau.Handle that answers every call with one canned envelope."""

    def __init__(self, reply: envelope_pb2.Envelope) -> None:
        self._reply = bureau_pb2.HandleResponse(envelope=reply)

    async def Handle(  # noqa: N802 - gRPC method name
        self, request: bureau_pb2.HandleRequest, context: grpc.aio.ServicerContext
    ) -> bureau_pb2.HandleResponse:
        return self._reply


class FloorRelay(gateway_pb2_grpc.GatewayServiceServicer):  # type: ignore[misc]
    """Gateway.Query that forwards each envelope untouched to the floor server."""

    def __init__(self, server: bureau_pb2_grpc.BureauServiceStub) -> None:
        self._server = server

    async def Query(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.QueryRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.QueryResponse:
        handled: bureau_pb2.HandleResponse = await self._server.Handle(
            bureau_pb2.HandleRequest(envelope=request.envelope), timeout=context.time_remaining()
        )
        return gateway_pb2.QueryResponse(envelope=handled.envelope)


async def serve_server(pki: PkiDir, listen: str, reply: Fields, ready_file: Path | None) -> None:
    """Run the floor server until SIGINT or SIGTERM."""
    service = FloorServer(reply.canned())
    served = await start_server(
        pki.tls(SERVER_BUREAU),
        listen,
        [bureau_pb2.DESCRIPTOR.services_by_name["BureauService"].full_name],
        register=lambda server: bureau_pb2_grpc.add_BureauServiceServicer_to_server(
            service, server
        ),
    )
    await served.set_serving(True)
    log.info("floor_server_listening", address=served.address, reply_fields=asdict(reply))
    write_ready_file(ready_file, role="floor-server", address=served.address)
    try:
        await wait_for_shutdown()
    finally:
        await served.server.stop(grace=1)


async def serve_relay(pki: PkiDir, listen: str, server: str, ready_file: Path | None) -> None:
    """Run the floor relay until SIGINT or SIGTERM, connected to the floor server first."""
    tls = pki.tls("gateway")
    channel = transport.bureau_channel(server, tls, SERVER_BUREAU)
    try:
        try:
            await asyncio.wait_for(channel.channel_ready(), timeout=CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise NetworkError(f"floor server at {server} not reachable") from None
        service = FloorRelay(bureau_pb2_grpc.BureauServiceStub(channel))
        served = await start_server(
            tls,
            listen,
            [gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name],
            register=lambda s: gateway_pb2_grpc.add_GatewayServiceServicer_to_server(service, s),
        )
        await served.set_serving(True)
        log.info("floor_relay_listening", address=served.address, server=server)
        write_ready_file(ready_file, role="floor-relay", address=served.address)
        try:
            await wait_for_shutdown()
        finally:
            await served.server.stop(grace=1)
    finally:
        await channel.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m load.floor",
        description="The floor of `ncbsim bench`: a plain mTLS gRPC relay and server.",
    )
    parser.add_argument("--log-level", choices=logsetup.LEVELS, default="info")
    sub = parser.add_subparsers(dest="role", required=True, metavar="ROLE")
    for name, text in (("server", "answer Bureau/Handle"), ("relay", "relay Gateway/Query")):
        role = sub.add_parser(name, help=text)
        role.add_argument("--dir", type=Path, required=True, help="PKI directory")
        role.add_argument("--listen", default="127.0.0.1:0", help="host:port (port 0: any)")
        role.add_argument("--ready-file", type=Path, help="write pid and address once serving")
        if name == "server":
            for part in ("header", "sealed", "signature"):
                role.add_argument(
                    f"--{part}-bytes", type=int, required=True, help=f"length of the reply's {part}"
                )
        else:
            role.add_argument("--server", required=True, help="floor server host:port")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the floor relay or server in the foreground. Returns the exit status."""
    args = _parser().parse_args(argv)
    logsetup.configure(args.log_level, role=f"floor-{args.role}")
    pki = PkiDir(args.dir)
    try:
        if args.role == "server":
            reply = Fields(args.header_bytes, args.sealed_bytes, args.signature_bytes)
            asyncio.run(serve_server(pki, args.listen, reply, args.ready_file))
        else:
            asyncio.run(serve_relay(pki, args.listen, args.server, args.ready_file))
    except (NcbsimError, ValueError) as exc:
        print(f"floor {args.role}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


# ----------------------------------------------------------------------------- for the bench


@dataclass(slots=True)
class FloorProcesses:
    """A running floor server and relay, started by this process and stopped by pid."""

    folder: Path
    relay: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    _children: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    async def start(
        cls, pki: PkiDir, folder: Path, reply: Fields, *, log_level: str = "info"
    ) -> FloorProcesses:
        """Start the server, then the relay in front of it; return once both serve.

        Logs and ready files go to ``folder``. If either fails, both are stopped.
        """
        floor = cls(folder)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            sizes = [
                f"--header-bytes={reply.header}",
                f"--sealed-bytes={reply.sealed}",
                f"--signature-bytes={reply.signature}",
            ]
            server = await floor._spawn("server", pki, sizes, log_level)
            await floor._spawn("relay", pki, ["--server", server], log_level)
        except BaseException:
            floor.stop()
            raise
        return floor

    async def _spawn(self, role: str, pki: PkiDir, extra: list[str], log_level: str) -> str:
        """Start one program and wait for its ready file; returns its address."""
        ready = self.folder / f"{role}.json"
        ready.unlink(missing_ok=True)
        log_path = self.folder / f"{role}.log"
        args = ["--log-level", log_level, role, "--dir", str(pki.root)]
        args += ["--listen", "127.0.0.1:0", "--ready-file", str(ready), *extra]
        with log_path.open("ab") as out:
            # Keep gRPC core's own (non-JSON) chatter out of the JSON logs.
            child = processes.spawn(
                [sys.executable, "-m", "ncbsim.load.floor", *args],
                out,
                env={"GRPC_VERBOSITY": "ERROR"},
            )
        self._children.append(child)
        self.pids[role] = child.pid
        info = await processes.wait_ready_async(
            child,
            ready,
            deadline=time.monotonic() + READY_TIMEOUT_S,
            exited=lambda code: (
                f"floor {role} exited with {code}: {processes.log_tail(log_path, 3)}"
            ),
            late=f"floor {role} not ready after {READY_TIMEOUT_S:.0f}s",
        )
        address = str(info["address"])
        if role == "relay":
            self.relay = address
        return address

    def stop(self) -> None:
        """SIGTERM each process we started (relay first), then SIGKILL what is left; reap all."""
        processes.terminate([c.pid for c in reversed(self._children) if c.poll() is None])
        for child in self._children:
            child.wait()  # already reaped: settles the Popen object
        self._children.clear()


if __name__ == "__main__":
    sys.exit(main())
