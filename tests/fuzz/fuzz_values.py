"""Values the fuzz tests share: the fixed clock and the integer ranges of protobuf fields."""

from __future__ import annotations

from hypothesis import strategies as st

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z; every open passes now_ms explicitly
BUREAUS = ["FR", "DE", "IT"]
INT64 = st.integers(-(2**63), 2**63 - 1)
UINT32 = st.integers(0, 2**32 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)
