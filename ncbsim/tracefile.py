"""The trace file: finished spans as JSON lines (``--trace-file PATH``, docs/traces.md).

Apart from :mod:`ncbsim.tracing` so that the OpenTelemetry SDK is imported only by a
process that traces.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ncbsim import private
from ncbsim.tracing import trace_id_hex


def _hex_span(span_id: int) -> str:
    return f"{span_id:016x}"


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One finished span as a trace-file line holds it (docs/traces.md).

    ``start`` and ``end`` are Unix times in nanoseconds; ``status`` is UNSET, OK or ERROR;
    ``parent_span_id`` is null for a root span.
    """
    context = span.get_span_context()
    parent = span.parent
    return {
        "trace_id": trace_id_hex(context.trace_id if context else 0),
        "span_id": _hex_span(context.span_id if context else 0),
        "parent_span_id": _hex_span(parent.span_id) if parent is not None else None,
        "name": span.name,
        "kind": span.kind.name,
        "start": span.start_time,
        "end": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "resource": dict(span.resource.attributes),
    }


class JsonLinesExporter(SpanExporter):
    """Appends each finished span to a file as one JSON line (``--trace-file PATH``).

    The file is created 0600 (tightened if it existed) in folders 0700, and appended to,
    so a restarted process adds to the spans of its previous run. Each batch is one
    ``write``: a line is on disk as soon as its span ended (nothing is held in a buffer
    to lose), and the processes sharing a folder never interleave half lines.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = private.open_log(path)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write ``spans``, one line each."""
        data = "".join(json.dumps(span_record(s), separators=(",", ":")) + "\n" for s in spans)
        with self._lock:
            if self._fd is None:
                return SpanExportResult.FAILURE
            try:
                os.write(self._fd, data.encode())
            except OSError:
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Close the file; later spans are dropped."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Nothing is buffered: every line was written when its span ended."""
        return True
