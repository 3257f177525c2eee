"""OpenTelemetry traces of ncbsim: one tracer per process, its exporters and its privacy rule.

:func:`setup` gives a process (gateway, node host, client command, simulator) a
``TracerProvider`` whose resource names the program (``service.name``
``ncbsim-gateway``, ``ncbsim-node``, ``ncbsim-client`` or ``ncbsim-sim``) and the party
(``ncbsim.party``). Exporters: none by default, and then nothing is traced at all (no
interceptor is installed, :func:`span` yields an invalid span); ``--trace-file PATH``
writes every finished span as one JSON line (:class:`JsonLinesExporter`, a file 0600);
OTLP over gRPC (the standard exporter, batched) when the standard
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set. Spans are flushed when the process exits,
SIGTERM included.

The gRPC side (client and server interceptors, W3C ``traceparent`` propagation) is in
:mod:`ncbsim.rpctrace`. docs/traces.md lists the spans and what they tell.

Privacy: a span attribute is one of :data:`ATTRIBUTES`, each a code, a count or a size,
never a payload, a query term, a name, a text or a key. :func:`note` and :func:`span`
refuse any other key, so a slip is a ``ValueError`` in the tests, not a leak.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from ncbsim.config import otlp_endpoint_from_env

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = [
    "ATTRIBUTES",
    "SERVICES",
    "Tracing",
    "active_tracer",
    "current_trace_id",
    "note",
    "setup",
    "span",
    "trace_id_hex",
]

SERVICES = {
    "gateway": "ncbsim-gateway",
    "node": "ncbsim-node",
    "client": "ncbsim-client",
    "sim": "ncbsim-sim",
}
"""``service.name`` of each program."""

ATTRIBUTES = frozenset(
    {
        "rpc.system",  # "grpc"
        "rpc.service",  # e.g. ncbsim.v2.GatewayService
        "rpc.method",  # e.g. Query
        "rpc.grpc.status_code",  # the call's status, as its number
        "ncbsim.party",  # who made the span: "gateway", "FR", "client:DE"
        "ncbsim.peer",  # the authenticated mTLS peer: a bureau code, "gateway", "operator"
        "ncbsim.request_bytes",  # size of the request message (sealed envelopes)
        "ncbsim.response_bytes",  # size of the response message
        "ncbsim.kind",  # the envelope kind of the header: query, message, diffusion...
        "ncbsim.recipients",  # how many bureaus a query or a post went to
        "ncbsim.envelopes",  # how many envelopes one call carried
    }
)
"""Every span attribute key ncbsim sets: codes, counts and sizes the gateway sees anyway."""

_INSTRUMENTATION = "ncbsim"


def _check(attributes: Mapping[str, Any]) -> dict[str, str | int | bool]:
    """``attributes`` if every key is allowed and every value a short code or a number."""
    checked: dict[str, str | int | bool] = {}
    for key, value in attributes.items():
        if key not in ATTRIBUTES:
            raise ValueError(f"span attribute {key!r} is not one of tracing.ATTRIBUTES")
        if isinstance(value, str) and len(value) > 64:
            raise ValueError(f"span attribute {key!r} is longer than a code")
        if not isinstance(value, str | int | bool):
            raise ValueError(f"span attribute {key!r} must be a str, an int or a bool")
        checked[key] = value
    return checked


# ----------------------------------------------------------------- the trace file


def trace_id_hex(trace_id: int) -> str:
    """A trace id as W3C writes it: 32 lower-case hex digits."""
    return f"{trace_id:032x}"


# ----------------------------------------------------------------- the process's tracer


@dataclass(slots=True)
class Tracing:
    """The tracing of this process, from :func:`setup`."""

    provider: TracerProvider
    tracer: trace.Tracer
    trace_file: Path | None
    otlp: bool

    def shutdown(self) -> None:
        """Flush every exporter and stop tracing (idempotent)."""
        if _state.current is self:
            _state.current = None
        self.provider.shutdown()


@dataclass(slots=True)
class _State:
    current: Tracing | None = None
    global_set: bool = False
    """The API allows one global provider per process: set by the first setup."""


_state = _State()


def active_tracer() -> trace.Tracer | None:
    """The tracer of this process, or None when it exports spans nowhere."""
    return _state.current.tracer if _state.current is not None else None


def setup(
    service: str,
    party: str,
    trace_file: Path | None = None,
    *,
    otlp_endpoint: str | None = None,
) -> Tracing | None:
    """Trace this process as ``service`` (a key of :data:`SERVICES`) for ``party``.

    ``trace_file`` appends finished spans as JSON lines; ``otlp_endpoint`` (default: the
    standard ``OTEL_EXPORTER_OTLP_ENDPOINT``) exports them over OTLP/gRPC in batches,
    the exporter reading its other standard settings (headers, certificate, timeout)
    from the environment itself. With neither, nothing is set up and None is returned:
    no span is made anywhere in the process. The provider is shut down (spans flushed)
    when the process exits, and a SIGTERM that would otherwise kill the process without
    a goodbye makes it exit cleanly instead (status 143).
    """
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r} (expected {', '.join(SERVICES)})")
    endpoint = otlp_endpoint if otlp_endpoint is not None else otlp_endpoint_from_env()
    if trace_file is None and not endpoint:
        return None
    # The SDK is imported only by a process that traces: every CLI start pays for it else.
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    from ncbsim.tracefile import JsonLinesExporter

    resource = Resource.create({"service.name": SERVICES[service], "ncbsim.party": party})
    provider = TracerProvider(resource=resource, shutdown_on_exit=True)
    if trace_file is not None:
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(trace_file)))
    if endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    if _state.current is not None:
        _state.current.shutdown()
    traced = Tracing(provider, provider.get_tracer(_INSTRUMENTATION), trace_file, bool(endpoint))
    _state.current = traced
    if not _state.global_set:
        trace.set_tracer_provider(provider)
        _state.global_set = True
    _exit_on_sigterm()
    return traced


def _exit_on_sigterm() -> None:
    """Make an unhandled SIGTERM a clean exit (atexit runs, spans are flushed). A handler
    installed already (or later: a server's event loop) is left in charge."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


# ----------------------------------------------------------------- spans of ncbsim's own


def note(**attributes: str | int | bool) -> None:
    """Add allowed attributes to the current span (nothing when no span records)."""
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes(_check({f"ncbsim.{k}": v for k, v in attributes.items()}))


@contextmanager
def span(
    name: str,
    *,
    party: str,
    root: bool = False,
    kind: SpanKind = SpanKind.INTERNAL,
    **attributes: str | int | bool,
) -> Iterator[trace.Span]:
    """A span of ncbsim's own around a block, current inside it; ``root`` starts a new
    trace instead of continuing the current one. Keyword attributes are ``ncbsim.*``
    ones (:data:`ATTRIBUTES`). An exception marks it ERROR, without its message.
    Without tracing it yields the invalid span (its trace id is 0)."""
    tracer = active_tracer()
    if tracer is None:
        yield trace.INVALID_SPAN
        return
    attrs = _check({"ncbsim.party": party, **{f"ncbsim.{k}": v for k, v in attributes.items()}})
    parent = otel_context.Context() if root else None
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=attrs,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException:
            current.set_status(StatusCode.ERROR)
            raise


def current_trace_id() -> str:
    """The current span's trace id in hex, or "" when no span records."""
    context = trace.get_current_span().get_span_context()
    return trace_id_hex(context.trace_id) if context.is_valid else ""
