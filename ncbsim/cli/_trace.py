"""``--trace-file PATH`` and ``--trace-dir DIR``: the trace options every command shares."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["add_trace_file_option", "traced"]


def add_trace_file_option(parser: argparse.ArgumentParser, *, default: object = None) -> None:
    """``--trace-file PATH``: append this process's spans to PATH as JSON lines."""
    parser.add_argument(
        "--trace-file",
        type=Path,
        metavar="PATH",
        default=default,
        help="append this process's OpenTelemetry spans to PATH, one JSON line each "
        "(docs/traces.md); OTEL_EXPORTER_OTLP_ENDPOINT exports them over OTLP too",
    )


@contextmanager
def traced(service: str, party: str, trace_file: Path | None) -> Iterator[None]:
    """Trace the block as ``service`` for ``party`` (ncbsim.tracing.setup); every span
    is flushed when it ends, however it ends."""
    from ncbsim import tracing

    tracer = tracing.setup(service, party, trace_file)
    try:
        yield
    finally:
        if tracer is not None:
            tracer.shutdown()
