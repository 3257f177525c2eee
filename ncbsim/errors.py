"""Every exception ncbsim raises on purpose, and how each maps to a gRPC status.

The tree::

    NcbsimError
    ├── EnvelopeError          an envelope failed to open (one opaque reason)   ValueError
    ├── DirectoryError         a directory entry is missing or not signed by the root
    ├── PkiError               PKI material is missing, malformed or inconsistent
    ├── ConfigError            invalid configuration or arguments                ValueError
    ├── IdentityError          the mTLS peer is not who the request claims to be
    ├── RoutingError           the recipient bureau is unknown or not registered
    ├── NetworkError           a simulated network's process failed to start or stop
    └── QueryError             a decoded query is unusable (bad field values)  ValueError

Expected failures are these classes. Anything else is a bug: servers log it and the
caller gets a generic INTERNAL status with no detail (see :func:`status_for`).
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


class RoutingError(NcbsimError):
    """The recipient bureau is unknown or has no registered node."""


class NetworkError(NcbsimError):
    """A process of a simulated network failed to start, or the work directory is in use."""


class QueryError(NcbsimError, ValueError):
    """A decoded query carries unusable values."""


_STATUS: dict[type[NcbsimError], grpc.StatusCode] = {
    EnvelopeError: grpc.StatusCode.INVALID_ARGUMENT,
    DirectoryError: grpc.StatusCode.FAILED_PRECONDITION,
    PkiError: grpc.StatusCode.FAILED_PRECONDITION,
    ConfigError: grpc.StatusCode.INVALID_ARGUMENT,
    IdentityError: grpc.StatusCode.PERMISSION_DENIED,
    RoutingError: grpc.StatusCode.NOT_FOUND,
    NetworkError: grpc.StatusCode.UNAVAILABLE,
    QueryError: grpc.StatusCode.INVALID_ARGUMENT,
}


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status and client-safe detail for an exception.

    Domain errors keep their message, which never holds payload or key material.
    Anything else becomes INTERNAL with a generic detail, so no internals leak.
    """
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls], str(exc)
    return grpc.StatusCode.INTERNAL, "internal error"
