"""Fixtures of tests/gateway (helpers to import are in gateway_support.py)."""

from __future__ import annotations

import pytest
from gateway_support import BUREAUS, SEND_ONLY

from ncbsim import pki


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> pki.PkiDir:
    """One PKI for the module: FR, DE, IT, the General Secretariat, and MC, a send-only
    bureau (it runs no node)."""
    directory = pki.init(tmp_path_factory.mktemp("pki") / "pki", BUREAUS)
    pki.add_bureau(directory, SEND_ONLY, requester_only=True)
    return directory
