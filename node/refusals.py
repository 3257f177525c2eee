"""Queries the owner refuses once it has opened them: the status, the audit row, the trailers.

Most unusable queries get an answer with an error body (:mod:`ncbsim.node.answer`). A few
are refused outright, after the envelope opened, by both Handle paths (format 1 in
:mod:`ncbsim.node.server`, format 2 in :mod:`ncbsim.node.sessions`): a malformed or
oversized biometric probe (:class:`~ncbsim.errors.QueryError`, INVALID_ARGUMENT), a bureau
over its daily biometric cap (:class:`~ncbsim.errors.QuotaExceeded`, RESOURCE_EXHAUSTED,
retry-after until midnight UTC), a user beyond its rights
(:class:`~ncbsim.errors.RightsError`, PERMISSION_DENIED). Each is audited with its reason
(``bad_query``, ``daily_cap``, ``rights``) before the refusal goes out; the detail names
no query term. Anything else the answer path raises is a bug: logged, audited
``internal`` and refused INTERNAL with no detail, as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NoReturn

import grpc
import structlog

from ncbsim import envelope
from ncbsim.errors import IdentityError, LimitExceeded, QueryError, reason_for, status_for
from ncbsim.serving import abort

__all__ = ["REFUSED", "refuse"]

log = structlog.get_logger()

REFUSED = (QueryError, LimitExceeded, IdentityError)
"""What the answer path raises to refuse a query rather than answer it."""


async def refuse(  # noqa: PLR0917 - the shape of the handlers' own refusals
    audited: Callable[..., Awaitable[None]],
    request: envelope.Envelope,
    header: envelope.Header,
    started: float,
    context: grpc.aio.ServicerContext,
    exc: Exception,
) -> NoReturn:
    """Audit the refusal of an opened query with ``exc``'s reason, then abort the call
    (INTERNAL, logged, for an exception that is not one of :data:`REFUSED`)."""
    if not isinstance(exc, REFUSED):
        ids = {"message_id": header.message_hex, "correlation_id": header.correlation_hex}
        log.error("handle_failed", sender=header.sender, exc_info=exc, **ids)
        await audited(request, header, started, grpc.StatusCode.INTERNAL, "internal")
        await abort(context, grpc.StatusCode.INTERNAL, "internal error")
    status, detail = status_for(exc)
    await audited(request, header, started, status, reason_for(exc))
    trailers = exc.trailing_metadata() if isinstance(exc, LimitExceeded) else ()
    await abort(context, status, detail, trailers)
