"""A reusable locust user for gRPC over mTLS: sync stubs under gevent, every call reported.

Locust's users run as gevent greenlets, so gRPC must be told to cooperate with
gevent (:func:`init_gevent`) before the first channel exists, and calls go through
the ordinary *synchronous* stubs. Each call a task makes is timed and reported
through ``environment.events.request``, as locust's own gRPC example does, so it
lands in locust's statistics, CSV and HTML reports under its own name.

A task wraps one logical request in :meth:`GrpcUser.call`::

    with self.call("document") as call:
        reply = stub.Query(request, timeout=5)
        call.response_length = reply.ByteSize()
        if not good(reply):
            call.fail("wrong answer")

A ``grpc.RpcError`` inside the block is reported as a failure with its status
code and the user carries on; any other exception is reported, then re-raised so
locust also counts it as an error in the user's code.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import grpc
from locust import User

from ncbsim import transport
from ncbsim.pki import TlsFiles

_gevent_ready = False


def init_gevent() -> None:
    """Let gRPC cooperate with gevent. Call once, before any channel is created."""
    global _gevent_ready  # noqa: PLW0603 - a process-wide, once-only switch
    if not _gevent_ready:
        import grpc.experimental.gevent as grpc_gevent

        grpc_gevent.init_gevent()
        _gevent_ready = True


class CallFailedError(Exception):
    """A call that completed but must count as failed (a wrong or unverifiable answer)."""


@dataclass(slots=True)
class Call:
    """The request being measured: set its size, or mark it failed."""

    name: str
    response_length: int = 0
    failure: Exception | None = None

    def fail(self, reason: str) -> None:
        """Count this request as failed, with ``reason`` in locust's failure report."""
        self.failure = CallFailedError(reason)


class GrpcUser(User):
    """A locust user that talks gRPC over mTLS with sync stubs."""

    abstract = True
    request_type: ClassVar[str] = "grpc"

    def __init__(self, environment: Any) -> None:
        init_gevent()
        super().__init__(environment)
        self._channels: list[grpc.Channel] = []

    def secure_channel(self, address: str, tls: TlsFiles, *, peer_name: str) -> grpc.Channel:
        """A sync mTLS channel to ``address`` whose server must be named ``peer_name``."""
        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls.root, private_key=tls.key, certificate_chain=tls.cert
        )
        options = [*transport.channel_options(), ("grpc.ssl_target_name_override", peer_name)]
        channel = grpc.secure_channel(address, credentials, options=options)
        self._channels.append(channel)
        return channel

    @contextmanager
    def call(self, name: str, *, request_type: str | None = None) -> Iterator[Call]:
        """Time the enclosed request and report it to locust under ``name``.

        ``request_type`` (default: the class's ``request_type``) is locust's "Type"
        column; a gate may judge some types and not others.
        """
        call = Call(name)
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            yield call
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            call.failure = CallFailedError(f"gRPC {code.name if code else 'error'}")
        except Exception as exc:
            error = exc
            call.failure = exc
            raise
        finally:
            self.environment.events.request.fire(
                request_type=request_type or self.request_type,
                name=name,
                response_time=(time.perf_counter() - started) * 1000,
                response_length=call.response_length,
                exception=call.failure,
                context={"user": type(self).__name__, "error": error is not None},
            )

    def on_stop(self) -> None:
        """Close this user's channels."""
        for channel in self._channels:
            channel.close()
        self._channels.clear()
