"""The Prüm daily cap: how many biometric searches each requesting bureau made here today.

Prüm lets the owner of a fingerprint or face collection limit how many searches each
partner makes of it a day. :class:`CapLedger` counts them per requesting **bureau** (a
user's searches count for its bureau, :func:`ncbsim.principal.bureau_of`) and per UTC
day, in the node's own SQLite file (``WORKDIR/bureaus/XX/caps.sqlite``, WAL), so that a
restarted node does not give a bureau a fresh day. :meth:`CapLedger.spend` refuses the
search beyond the cap with :class:`~ncbsim.errors.QuotaExceeded`, whose retry-after is
the time left until midnight UTC; a refused search is not counted. Rows of past days are
dropped when the day changes. Only searches are counted: a hit confirmation (step 2) is
not a search.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from ncbsim import private
from ncbsim.errors import ConfigError, QuotaExceeded
from ncbsim.principal import bureau_of

__all__ = ["DAY_MS", "DEFAULT_DAILY_CAP", "CapLedger", "day_of"]

DEFAULT_DAILY_CAP = 500
"""Biometric searches a bureau may make a UTC day at one owner, unless the owner says."""
DAY_MS = 86_400_000

_DDL = """
CREATE TABLE IF NOT EXISTS searches (
    bureau TEXT NOT NULL,
    day    TEXT NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (bureau, day)
)
"""


def day_of(now_ms: int) -> str:
    """The UTC day of ``now_ms``, ``YYYY-MM-DD``."""
    return dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).date().isoformat()


class CapLedger:
    """Per-bureau, per-UTC-day counts of biometric searches, durable in one SQLite file."""

    def __init__(self, path: Path, daily_cap: int = DEFAULT_DAILY_CAP) -> None:
        if daily_cap < 0:
            raise ConfigError("the daily biometric cap cannot be negative")
        self.daily_cap = daily_cap
        self._path = Path(path)
        private.sqlite_file(self._path)
        self._conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute(_DDL)
        self._day = ""

    def used(self, requester: str, now_ms: int) -> int:
        """Searches ``requester``'s bureau made on the UTC day of ``now_ms``."""
        row = self._conn.execute(
            "SELECT count FROM searches WHERE bureau = ? AND day = ?",
            (bureau_of(requester), day_of(now_ms)),
        ).fetchone()
        return int(row[0]) if row else 0

    def spend(self, requester: str, now_ms: int) -> int:
        """Count one search by ``requester``'s bureau; the day's count with it.

        QuotaExceeded (nothing counted) if the bureau has used up today's cap.
        """
        bureau, day = bureau_of(requester), day_of(now_ms)
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if day != self._day:
                conn.execute("DELETE FROM searches WHERE day < ?", (day,))
                self._day = day
            row = conn.execute(
                "SELECT count FROM searches WHERE bureau = ? AND day = ?", (bureau, day)
            ).fetchone()
            count = int(row[0]) if row else 0
            if count >= self.daily_cap:
                raise QuotaExceeded(
                    f"daily cap of {self.daily_cap} biometric searches reached for {bureau}",
                    retry_after_ms=DAY_MS - now_ms % DAY_MS,
                )
            conn.execute(
                "INSERT INTO searches (bureau, day, count) VALUES (?, ?, 1) "
                "ON CONFLICT (bureau, day) DO UPDATE SET count = count + 1",
                (bureau, day),
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return count + 1

    def close(self) -> None:
        """Close the file."""
        self._conn.close()
