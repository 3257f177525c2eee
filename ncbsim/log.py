"""Structured JSON logging through structlog, configured once by the CLI.

Library code only calls ``structlog.get_logger()``. Every line about an envelope
carries its ``message_id`` and ``correlation_id``: the request handlers pass them as
keywords (binding context variables for every request costs more than most requests'
logging, which is nothing; docs/bench.md has the figure), and bind them with
:func:`structlog.contextvars.bound_contextvars` only around rare slow paths whose
callees log (a node fetching a sender's directory entry).
Nothing in ncbsim logs a payload or a key: log only header fields and sizes.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

LEVELS = ("debug", "info", "warning", "error")


def configure(level: str = "info", *, stream: TextIO | None = None, role: str = "") -> None:
    """Render every event as one JSON line with a timestamp and the process role."""
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if role:
        processors.append(_add_role(role))
    processors += [
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer(),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=True,
    )


def _add_role(role: str) -> structlog.typing.Processor:
    def processor(
        _logger: object, _name: str, event: structlog.typing.EventDict
    ) -> structlog.typing.EventDict:
        event.setdefault("role", role)
        return event

    return processor
