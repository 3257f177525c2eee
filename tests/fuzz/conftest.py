"""Hypothesis settings for the fuzz tests: deterministic and bounded, for CI.

``derandomize=True`` makes every run draw the same examples, so a failure in CI
reproduces locally without a saved seed; ``database=None`` keeps hypothesis from writing
``.hypothesis/`` into the tree; ``deadline=None`` because one example may legitimately
take a while on a loaded 2-core runner (a gRPC round trip, an SQLite lookup): time is
bounded by ``max_examples`` (tests that do expensive work set a smaller one), not by a
per-example timer that would flake. No health check is suppressed here; a test that
needs to is explicit about it and says why.
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile(
    "ncbsim-ci",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=100,
    print_blob=False,
)
settings.load_profile("ncbsim-ci")
