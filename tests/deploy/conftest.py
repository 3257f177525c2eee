"""Fixtures of the deployment tests: renders made once per test session.

Rendering all 196 members (a PKI of 196 bureaus, 66 pods' manifests) takes about 3 s on
the development machine, and validating its 216 objects about 4 s: each scenario is
rendered once per session (per xdist worker) and shared by the tests that only read it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ncbsim.simulations.deploy import render


@pytest.fixture(scope="session")
def rendered(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str], render.Rendered]:
    """``rendered(scenario)``: that scenario rendered with the defaults, once a session.
    Tests must not change what it wrote."""
    cache: dict[str, render.Rendered] = {}

    def get(name: str) -> render.Rendered:
        if name not in cache:
            out: Path = tmp_path_factory.mktemp(f"render-{name}")
            cache[name] = render.render(render.Options(scenario=name, out=out))
        return cache[name]

    return get
