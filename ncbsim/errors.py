"""Every exception ncbsim raises on purpose, and how each maps to a gRPC status.

The tree (classes defined elsewhere name their module; the last column is the builtin
each also inherits, so ``except ValueError`` still catches it)::

    NcbsimError
    ├── EnvelopeError         an envelope failed to open (one opaque reason)          ValueError
    │   └── MessageIdReused   a message id reused for another envelope (ncbsim.gateway.mailbox)
    ├── DirectoryError        a directory entry is missing or not signed by the root
    ├── PkiError              PKI material is missing, malformed or inconsistent
    ├── ConfigError           invalid configuration or arguments                      ValueError
    │   ├── ScenarioError     a scenario is invalid (ncbsim.simulations.scenario)
    │   ├── CheckError        a check expression is not valid (ncbsim.simulations.checks)
    │   └── PathError         a check names a path no report holds (ncbsim.simulations.paths)
    ├── IdentityError         the mTLS peer is not who the request claims to be
    │   ├── RevokedError      the mTLS peer's certificate is on the revocation list
    │   └── RightsError       a bureau's user asked beyond the rights its bureau signed
    ├── SessionRefused        a format 2 request for no live session, or past the checkpoint bound
    ├── Replayed              a format 2 request whose seq its session already took
    ├── RoutingError          the recipient bureau is unknown or not registered
    ├── NetworkError          a simulated network's process failed to start or stop
    │   └── NoGatewayError    no gateway was started in the work dir (ncbsim.workdir)
    ├── QueryError            a decoded query is unusable (bad field values)          ValueError
    ├── UnknownCountry        a code names no country ncbsim knows                    KeyError
    ├── MrzError              an MRZ or an MRZ field cannot be written or read        ValueError
    ├── StoreClosedError      a record store was used after it was closed
    └── LimitExceeded         a rate limit, daily quota or size limit was exceeded
        ├── QueueFull         every recipient's queue was full (back-pressure)
        └── QuotaExceeded     a requesting bureau's daily biometric searches are used up

Expected failures are these classes. Anything else is a bug: servers log it and the
caller gets a generic INTERNAL status with no detail (see :func:`status_for`).
``ncbsim.auditlog.AuditWriteError`` stays outside the tree on purpose: it is no fault of
the caller's request, and a server that gets it holds its answer back.
"""

from __future__ import annotations

import grpc


class NcbsimError(Exception):
    """Root of every error ncbsim raises on purpose."""


class EnvelopeError(NcbsimError, ValueError):
    """An envelope could not be opened.

    Like Fernet's ``InvalidToken`` it never says why: wrong recipient, expired, bad
    signature, unknown key and failed decryption all look the same to the caller.
    """

    def __init__(self) -> None:
        super().__init__("envelope rejected")


class DirectoryError(NcbsimError):
    """A directory entry is missing, expired or not signed by the pinned root."""


class PkiError(NcbsimError):
    """PKI material is missing, malformed or inconsistent."""


class ConfigError(NcbsimError, ValueError):
    """Invalid configuration or command-line arguments."""


class IdentityError(NcbsimError):
    """The authenticated mTLS peer is not who the request claims to be."""


class RevokedError(IdentityError):
    """The caller's TLS certificate was revoked (``ncbsim pki revoke``)."""


class RightsError(IdentityError):
    """A bureau's user asked for more than its bureau-signed rights allow (a query kind,
    a message kind, full records): PERMISSION_DENIED, audit reason ``rights``."""


class SessionRefused(NcbsimError):  # noqa: N818 - reads as the refusal it is
    """A query session refused a request (protocol.md §15.5, §15.6): FAILED_PRECONDITION.

    The one distinguishable refusal of format 2. ``"session unknown"``: the recipient
    holds no live session for it (never opened, closed, ended by a bound, a rotation or a
    restart), so the requester opens a new one. ``"checkpoint required"``: the request is
    more than 128 seqs beyond the last one a checkpoint covered. Neither says anything
    about the envelope itself.
    """

    UNKNOWN = "session unknown"
    CHECKPOINT_REQUIRED = "checkpoint required"

    def __init__(self, detail: str = UNKNOWN) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def reason(self) -> str:
        """``session_unknown`` or ``checkpoint_required``, for audit rows and metrics."""
        known = self.detail in _SESSION_DETAILS
        return self.detail.replace(" ", "_") if known else "session_refused"


_SESSION_DETAILS = frozenset({SessionRefused.UNKNOWN, SessionRefused.CHECKPOINT_REQUIRED})


class Replayed(NcbsimError):  # noqa: N818 - reads as the refusal it is
    """A format 2 request that opened under its session's key with a seq the session
    already took (protocol.md §15.5): ALREADY_EXISTS, as a format 1 replay is. Raised only
    after the AEAD opened, so a made-up envelope cannot pass for a replay."""

    def __init__(self) -> None:
        super().__init__("envelope already processed")


class RoutingError(NcbsimError):
    """The recipient bureau is unknown or has no registered node."""


class NetworkError(NcbsimError):
    """A process of a simulated network failed to start, or the work directory is in use."""


class QueryError(NcbsimError, ValueError):
    """A decoded query carries unusable values."""


# The agreed name, read as "raise UnknownCountry"; a KeyError too, as a failed lookup by code.
class UnknownCountry(NcbsimError, KeyError):  # noqa: N818
    """A code that names no country ncbsim knows (:mod:`ncbsim.countries`)."""


class MrzError(NcbsimError, ValueError):
    """An MRZ or an MRZ field that cannot be written or read (:mod:`ncbsim.node.mrz`)."""


class StoreClosedError(NcbsimError):
    """A record store was used after ``RecordStore.close`` (:mod:`ncbsim.node.store`)."""


RETRY_AFTER_KEY = "retry-after-ms"
"""Trailing metadata: milliseconds to wait before this caller is served again."""
PUSHBACK_KEY = "grpc-retry-pushback-ms"
"""gRPC's standard pushback trailer (gRFC A6): a client with a retry policy waits this
long before its next attempt; a negative value tells it not to retry at all."""


class LimitExceeded(NcbsimError):  # noqa: N818 - reads as the status it becomes
    """A bureau sent more than its limits allow: RESOURCE_EXHAUSTED.

    ``retry_after_ms`` is how long until the same call would fit, or None when it
    never can (more envelopes in one call than the burst or the daily quota).
    """

    def __init__(self, detail: str, retry_after_ms: int | None = None) -> None:
        super().__init__(detail)
        self.retry_after_ms = retry_after_ms

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        """``retry-after-ms`` and ``grpc-retry-pushback-ms`` (-1: do not retry)."""
        if self.retry_after_ms is None:
            return ((PUSHBACK_KEY, "-1"),)
        value = str(self.retry_after_ms)
        return ((RETRY_AFTER_KEY, value), (PUSHBACK_KEY, value))


class QuotaExceeded(LimitExceeded):
    """A daily cap is used up at the recipient bureau: a requesting bureau's daily
    biometric searches (Prüm): RESOURCE_EXHAUSTED, audit reason ``daily_cap``, with
    ``retry_after_ms`` until the next UTC day."""


QUEUE_FULL_KEY = "ncbsim-queue-full"
"""Trailing metadata ("1") on a Post refused because every recipient's queue is full."""


class QueueFull(LimitExceeded):
    """Every copy of a Post found its recipient's queue full: RESOURCE_EXHAUSTED with
    :data:`QUEUE_FULL_KEY`, so a sender tells back-pressure from its own rate limit."""

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return (*super().trailing_metadata(), (QUEUE_FULL_KEY, "1"))


def is_queue_full(exc: grpc.aio.AioRpcError) -> bool:
    """Whether a failed call is a Post refused because the recipients' queues are full."""
    trailers = exc.trailing_metadata() or ()
    return exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and any(
        key == QUEUE_FULL_KEY for key, _ in trailers
    )


def cannot_write(path: object, exc: OSError) -> NcbsimError:
    """The one-line error for an output that cannot be written: ``PATH: cannot write:
    REASON``, the reason being the OSError's (a file where a folder must be is named)."""
    reason = exc.strerror or str(exc)
    if isinstance(exc, FileExistsError) and exc.filename is not None:  # mkdir met a file
        reason = f"{exc.filename} is not a folder"
    return NcbsimError(f"{path}: cannot write: {reason}")


_STATUS: dict[type[NcbsimError], grpc.StatusCode] = {
    EnvelopeError: grpc.StatusCode.INVALID_ARGUMENT,
    DirectoryError: grpc.StatusCode.FAILED_PRECONDITION,
    PkiError: grpc.StatusCode.FAILED_PRECONDITION,
    ConfigError: grpc.StatusCode.INVALID_ARGUMENT,
    IdentityError: grpc.StatusCode.PERMISSION_DENIED,
    RevokedError: grpc.StatusCode.UNAUTHENTICATED,
    RightsError: grpc.StatusCode.PERMISSION_DENIED,
    QuotaExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    RoutingError: grpc.StatusCode.NOT_FOUND,
    SessionRefused: grpc.StatusCode.FAILED_PRECONDITION,
    Replayed: grpc.StatusCode.ALREADY_EXISTS,
    NetworkError: grpc.StatusCode.UNAVAILABLE,
    QueryError: grpc.StatusCode.INVALID_ARGUMENT,
    UnknownCountry: grpc.StatusCode.INVALID_ARGUMENT,
    MrzError: grpc.StatusCode.INVALID_ARGUMENT,
    StoreClosedError: grpc.StatusCode.UNAVAILABLE,
    LimitExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    QueueFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


_REASON: dict[type[NcbsimError], str] = {
    EnvelopeError: "bad_envelope",
    DirectoryError: "no_directory",
    PkiError: "pki",
    ConfigError: "invalid_argument",
    IdentityError: "identity_mismatch",
    RevokedError: "revoked",
    RightsError: "rights",
    QuotaExceeded: "daily_cap",
    RoutingError: "unknown_recipient",
    SessionRefused: "session_refused",
    Replayed: "replay",
    NetworkError: "unavailable",
    QueryError: "bad_query",
    UnknownCountry: "unknown_country",
    MrzError: "bad_mrz",
    StoreClosedError: "unavailable",
    LimitExceeded: "rate_limited",
    QueueFull: "queue_full",
}


def reason_for(exc: BaseException) -> str:
    """A short, stable code for why a request was refused: the label of the refusal
    metrics and the ``reason`` of refusal events (docs/events.md). A class may refine it
    with a ``reason`` attribute of its own; anything unexpected is ``internal``."""
    own = getattr(exc, "reason", None)
    if isinstance(own, str) and own:
        return own
    for cls in type(exc).__mro__:
        if cls in _REASON:
            return _REASON[cls]
    return "internal"


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status and client-safe detail for an exception.

    Domain errors keep their message, which never holds payload or key material.
    Anything else becomes INTERNAL with a generic detail, so no internals leak.
    """
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls], str(exc)
    return grpc.StatusCode.INTERNAL, "internal error"
