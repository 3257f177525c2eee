"""Tracing: the trace-file format, the attribute rule, and the interceptors' parent links.

The interceptors run over real grpc.aio servers on loopback (plain TCP: what is under
test is the metadata and the spans, not TLS; tests/integration/test_traces.py covers mTLS).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ncbsim import rpctrace, tracefile, tracing

SERVICE = "test.Relay"


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_span_record_is_one_json_line_in_a_private_file(tmp_path: Path) -> None:
    """A finished span is appended as one JSON line with ids, names, times and status, 0600."""
    path = tmp_path / "traces" / "spans.jsonl"
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(tracefile.JsonLinesExporter(path)))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("outer") as outer, tracer.start_as_current_span("inner"):
        pass
    provider.shutdown()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["name"] for line in lines] == ["inner", "outer"]
    inner, root = lines
    assert set(inner) == {
        "trace_id",
        "span_id",
        "parent_span_id",
        "name",
        "kind",
        "start",
        "end",
        "status",
        "attributes",
        "resource",
    }
    assert inner["trace_id"] == root["trace_id"] == f"{outer.get_span_context().trace_id:032x}"
    assert inner["parent_span_id"] == root["span_id"]
    assert root["parent_span_id"] is None
    assert root["kind"] == "INTERNAL"
    assert root["status"] == "UNSET"
    assert root["start"] <= inner["start"] <= inner["end"] <= root["end"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_only_listed_attributes_are_accepted() -> None:
    """note() and span() refuse an attribute key outside ATTRIBUTES and a long text."""
    with pytest.raises(ValueError, match="not one of"):
        tracing._check({"ncbsim.surname": "DUPONT"})
    with pytest.raises(ValueError, match="longer than a code"):
        tracing._check({"ncbsim.kind": "x" * 65})
    assert tracing._check({"ncbsim.recipients": 3}) == {"ncbsim.recipients": 3}


def test_setup_without_an_exporter_traces_nothing(tmp_path: Path) -> None:
    """No --trace-file and no OTLP endpoint: no tracer, no interceptor, invalid spans."""
    assert tracing.setup("client", "client:DE", None, otlp_endpoint="") is None
    assert tracing.active_tracer() is None
    assert rpctrace.client_interceptors("client:DE") == []
    assert rpctrace.server_interceptors("gateway") == []
    with tracing.span("ncbsim.query", party="client:DE") as span:
        assert not span.get_span_context().is_valid
    with pytest.raises(ValueError, match="unknown service"):
        tracing.setup("printer", "x", tmp_path / "t.jsonl")


Handler = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]


async def _server(
    tracer: trace.Tracer, party: str, handlers: dict[str, Any]
) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server(interceptors=[rpctrace.ServerTracing(tracer, party)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


def _channel(tracer: trace.Tracer, address: str, party: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        address,
        interceptors=[
            rpctrace.ClientTracing(tracer, party),
            rpctrace.StreamClientTracing(tracer, party),
        ],
    )


def _by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def test_chain_of_parents_through_a_relay() -> None:
    """client -> relay(server) -> relay(client) -> node(server): one trace, each span the
    parent of the next; the relay forwards a fresh traceparent, never the caller's metadata."""
    provider, exporter = _provider()
    tracer = provider.get_tracer("t")
    seen: dict[str, Any] = {}

    async def main() -> None:
        async def node_handle(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            seen["node_metadata"] = dict(context.invocation_metadata() or ())
            return b"answer:" + request

        node, node_address = await _server(
            tracer, "FR", {"Handle": grpc.unary_unary_rpc_method_handler(node_handle)}
        )
        to_node = _channel(tracer, node_address, "gateway")

        async def relay_query(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            response: bytes = await to_node.unary_unary(f"/{SERVICE}/Handle")(request)
            return response

        relay, relay_address = await _server(
            tracer, "gateway", {"Query": grpc.unary_unary_rpc_method_handler(relay_query)}
        )
        try:
            async with _channel(tracer, relay_address, "client:DE") as channel:
                metadata = (
                    ("tracestate", "vendor=secret"),
                    ("baggage", "term=DUPONT"),
                    ("x-custom", "copied?"),
                )
                with tracer.start_as_current_span("ncbsim.query"):
                    reply = await channel.unary_unary(f"/{SERVICE}/Query")(
                        b"sealed", metadata=metadata
                    )
            assert reply == b"answer:sealed"
        finally:
            await to_node.close()
            await relay.stop(None)
            await node.stop(None)

    asyncio.run(main())
    spans = exporter.get_finished_spans()
    query = _by_name(spans, "ncbsim.query")[0]
    client = next(s for s in _by_name(spans, f"{SERVICE}/Query") if s.kind == trace.SpanKind.CLIENT)
    relay_server = next(
        s for s in _by_name(spans, f"{SERVICE}/Query") if s.kind == trace.SpanKind.SERVER
    )
    relay_client = next(
        s for s in _by_name(spans, f"{SERVICE}/Handle") if s.kind == trace.SpanKind.CLIENT
    )
    node_server = next(
        s for s in _by_name(spans, f"{SERVICE}/Handle") if s.kind == trace.SpanKind.SERVER
    )
    chain = [query, client, relay_server, relay_client, node_server]
    assert len({s.context.trace_id for s in chain}) == 1
    for parent, child in itertools.pairwise(chain):
        assert child.parent is not None
        assert child.parent.span_id == parent.context.span_id
    # The node saw a traceparent naming the relay's client span, and nothing of the caller's.
    node_metadata = seen["node_metadata"]
    assert node_metadata["traceparent"].split("-")[2] == f"{relay_client.context.span_id:016x}"
    assert not {"tracestate", "baggage", "x-custom"} & set(node_metadata)
    assert relay_server.attributes is not None
    assert dict(relay_server.attributes) == {
        "rpc.system": "grpc",
        "rpc.service": SERVICE,
        "rpc.method": "Query",
        "ncbsim.party": "gateway",
        "ncbsim.peer": "",
        "ncbsim.request_bytes": len(b"sealed"),
        "ncbsim.response_bytes": len(b"answer:sealed"),
        "rpc.grpc.status_code": 0,
    }
    for span in spans:  # the caller's tracestate and baggage went nowhere
        assert "secret" not in json.dumps(tracefile.span_record(span))
        assert "DUPONT" not in json.dumps(tracefile.span_record(span))


def test_refusal_and_stream_status_codes() -> None:
    """An aborted call ends both spans with its status code (ERROR); a server stream's
    CLIENT and SERVER spans end with the stream, OK."""
    provider, exporter = _provider()
    tracer = provider.get_tracer("t")

    async def refuse(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not you")
        raise AssertionError("unreachable")

    async def stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        for i in range(3):
            yield bytes([i])

    async def main() -> None:
        server, address = await _server(
            tracer,
            "gateway",
            {
                "Refuse": grpc.unary_unary_rpc_method_handler(refuse),
                "Stream": grpc.unary_stream_rpc_method_handler(stream),
            },
        )
        try:
            async with _channel(tracer, address, "client:DE") as channel:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await channel.unary_unary(f"/{SERVICE}/Refuse")(b"x")
                assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
                items = [i async for i in channel.unary_stream(f"/{SERVICE}/Stream")(b"y")]
                assert items == [b"\x00", b"\x01", b"\x02"]
                await asyncio.sleep(0.05)  # the CLIENT span of the stream ends in a task
        finally:
            await server.stop(None)

    asyncio.run(main())
    spans = exporter.get_finished_spans()
    refusals = _by_name(spans, f"{SERVICE}/Refuse")
    assert sorted(s.kind.name for s in refusals) == ["CLIENT", "SERVER"]
    for span in refusals:
        assert span.attributes is not None
        assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.PERMISSION_DENIED.value[0]
        assert span.status.status_code == trace.StatusCode.ERROR
        assert not span.status.description  # the detail text is never recorded
    streams = _by_name(spans, f"{SERVICE}/Stream")
    assert sorted(s.kind.name for s in streams) == ["CLIENT", "SERVER"]
    for span in streams:
        assert span.attributes is not None
        assert span.attributes["rpc.grpc.status_code"] == 0
