"""The Prüm daily cap ledger: counted per requesting bureau and UTC day, durable, refused beyond."""

from __future__ import annotations

from pathlib import Path

import pytest

from ncbsim.errors import ConfigError, QuotaExceeded
from ncbsim.node.caps import DAY_MS, CapLedger, day_of

NOON = 1_765_000_000_000 - 1_765_000_000_000 % DAY_MS + DAY_MS // 2  # a UTC noon


def test_a_bureau_gets_its_cap_then_quota_exceeded_until_midnight(tmp_path: Path) -> None:
    """Two searches fit a cap of 2; the third is refused, retry-after = time to midnight UTC."""
    ledger = CapLedger(tmp_path / "caps.sqlite", daily_cap=2)
    assert [ledger.spend("FR", NOON), ledger.spend("FR", NOON + 1)] == [1, 2]
    with pytest.raises(QuotaExceeded) as caught:
        ledger.spend("FR", NOON + 2)
    assert caught.value.retry_after_ms == DAY_MS // 2 - 2
    assert ledger.used("FR", NOON) == 2  # the refused one was not counted


def test_users_spend_their_bureaus_cap_and_bureaus_are_apart(tmp_path: Path) -> None:
    """FR/cdg-border-12 counts for FR; IT has its own count."""
    ledger = CapLedger(tmp_path / "caps.sqlite", daily_cap=2)
    ledger.spend("FR/cdg-border-12", NOON)
    ledger.spend("FR", NOON)
    with pytest.raises(QuotaExceeded):
        ledger.spend("FR/other-user", NOON)
    assert ledger.spend("IT", NOON) == 1


def test_counts_survive_a_reopen_and_a_new_day_starts_afresh(tmp_path: Path) -> None:
    """A restarted node keeps the day's counts; the next UTC day starts at zero."""
    path = tmp_path / "caps.sqlite"
    ledger = CapLedger(path, daily_cap=1)
    ledger.spend("FR", NOON)
    ledger.close()
    again = CapLedger(path, daily_cap=1)
    with pytest.raises(QuotaExceeded):
        again.spend("FR", NOON + 1000)
    assert again.spend("FR", NOON + DAY_MS) == 1
    assert day_of(NOON + DAY_MS) != day_of(NOON)
    assert again.used("FR", NOON) == 0  # the past day's row was dropped
    again.close()


def test_a_negative_cap_is_refused(tmp_path: Path) -> None:
    """A cap below zero is a configuration error."""
    with pytest.raises(ConfigError):
        CapLedger(tmp_path / "caps.sqlite", daily_cap=-1)
