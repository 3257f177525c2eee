"""Fixtures of tests/gateway (helpers to import are in gateway_support.py)."""

from __future__ import annotations

import pytest
from gateway_support import BUREAUS, SEND_ONLY

from ncbsim import pki


@pytest.fixture(scope="module")
def pki_bureaus() -> list[str]:
    """tests/gateway's PKIs (``pki_dir``, ``module_pki``): FR, DE, IT and the General
    Secretariat."""
    return BUREAUS


@pytest.fixture(scope="module")
def gateway_pki(module_pki: pki.PkiDir) -> pki.PkiDir:
    """The module's PKI of ``BUREAUS`` and MC, a send-only bureau (it runs no node)."""
    pki.add_bureau(module_pki, SEND_ONLY, requester_only=True)
    return module_pki
