"""Error tree: every domain error has its own gRPC status; anything else is a bare INTERNAL."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import grpc
import pytest

from ncbsim import errors
from ncbsim.errors import NcbsimError, status_for

PACKAGES = ["ncbsim"]
INSIDE_LOCUST = {
    "ncbsim.load.locustfile",
    "ncbsim.load.grpc_user",
    "ncbsim.load.gate",
    "ncbsim.load.bureau_user",
}
"""Modules that run inside locust only: importing locust patches this interpreter with
gevent, which would break every later test that starts processes."""


def _import_packages() -> None:
    """Import every module of the project so errors defined anywhere in it are found."""
    for name in PACKAGES:
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            if not module.name.endswith("__main__") and module.name not in INSIDE_LOCUST:
                importlib.import_module(module.name)
    assert "locust" not in sys.modules, "a module imported locust: add it to INSIDE_LOCUST"


def _subclasses(cls: type[NcbsimError]) -> list[type[NcbsimError]]:
    found: list[type[NcbsimError]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


_import_packages()
DOMAIN_ERRORS = sorted(set(_subclasses(NcbsimError)), key=lambda c: c.__qualname__)


def _instance(cls: type[NcbsimError]) -> NcbsimError:
    try:
        return cls("detail for the caller")
    except TypeError:  # EnvelopeError takes no arguments: its message is fixed
        return cls()


def test_discovery_finds_the_documented_errors() -> None:
    """Subclass discovery sees at least every error errors.py documents."""
    documented = {
        errors.EnvelopeError,
        errors.DirectoryError,
        errors.PkiError,
        errors.ConfigError,
        errors.IdentityError,
        errors.RoutingError,
        errors.QueryError,
        errors.UnknownCountry,
        errors.MrzError,
        errors.StoreClosedError,
        errors.LimitExceeded,
        errors.QueueFull,
    }
    assert documented <= set(DOMAIN_ERRORS)


def test_the_drawn_tree_names_every_domain_error() -> None:
    """The tree drawn in errors.py's docstring names every NcbsimError subclass, public ones."""
    doc = errors.__doc__ or ""
    drawn = {line.split("── ")[1].split()[0] for line in doc.splitlines() if "── " in line}
    public = {cls.__name__ for cls in DOMAIN_ERRORS if not cls.__name__.startswith("_")}
    assert public <= drawn


def test_errors_that_are_builtin_errors_still_catch_as_them() -> None:
    """UnknownCountry is a KeyError and MrzError a ValueError, as callers catch them."""
    assert issubclass(errors.UnknownCountry, KeyError)
    assert issubclass(errors.MrzError, ValueError)
    assert status_for(errors.StoreClosedError("closed"))[0] == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("cls", DOMAIN_ERRORS, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_domain_error_has_specific_status(cls: type[NcbsimError]) -> None:
    """Each NcbsimError subclass maps to a status other than INTERNAL/UNKNOWN, message kept."""
    exc = _instance(cls)
    code, detail = status_for(exc)
    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.OK)
    assert detail == str(exc)
    assert detail


def test_envelope_error_status_is_opaque() -> None:
    """EnvelopeError reaches the caller as INVALID_ARGUMENT "envelope rejected" and no more."""
    assert status_for(errors.EnvelopeError()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "envelope rejected",
    )


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("secret: /etc/ncbsim/ca.key"),
        KeyError("FR"),
        ValueError("bad value from a bug"),
        ZeroDivisionError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_other_exception_maps_to_generic_internal(exc: Exception) -> None:
    """An exception that is not an NcbsimError becomes INTERNAL "internal error", no detail."""
    assert status_for(exc) == (grpc.StatusCode.INTERNAL, "internal error")
