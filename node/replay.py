"""A bureau's durable replay cache: each request envelope is answered at most once.

The node records ``(sender, message_id)`` of every request that verified and opened,
with the envelope's ``expires_at_ms``, in SQLite (WAL, ``synchronous=NORMAL``). A
commit in that mode is a write to the WAL file without fsync, so it survives a crash or
a restart of the process (though not a power cut in the last moments). A restarted node
therefore refuses an envelope it answered before, for the envelope's whole validity.

The key is the pair ``(sender, message_id)``, not the message id alone. Message ids are
16 random bytes chosen by the sender, so two honest senders never collide; but the
header travels in clear, and the gateway (or whoever it leaks headers to) could have
another bureau send a valid envelope of its own with a message id it saw, ahead of the
real one, and so get the real one refused. Scoped to the signed sender, an id can only
be spent by the bureau that signed it.

A row is kept until ``expires_at_ms + clock_skew_ms``. After ``expires_at_ms`` the
receiver refuses the envelope as expired anyway (docs/protocol.md §7.1), so the cache
need not remember it; the extra skew covers the receiver's own clock stepping back.
Expired rows are pruned in the same connection, at most once every ``prune_interval_s``
and at most ``prune_batch`` rows at a time, so no call does unbounded work.

:meth:`ReplayCache.first_time` runs on the event loop, like the record lookups: one
``INSERT OR IGNORE`` in its own transaction (a WAL append, no fsync), small next to the
rest of a query's CPU. A prune runs at most once a second while it keeps up (a full batch
lets the next call prune again). docs/bench.md has the measured costs.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from ncbsim import private
from ncbsim.envelope import CLOCK_SKEW_MS
from ncbsim.errors import NcbsimError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    sender TEXT NOT NULL,
    message_id BLOB NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    PRIMARY KEY (sender, message_id)
) WITHOUT ROWID
"""
_INDEX = "CREATE INDEX IF NOT EXISTS seen_expires ON seen (expires_at_ms)"
_COLUMNS = ["sender", "message_id", "expires_at_ms"]
_INSERT = "INSERT OR IGNORE INTO seen (sender, message_id, expires_at_ms) VALUES (?, ?, ?)"
_PRUNE = """
DELETE FROM seen WHERE (sender, message_id) IN (
    SELECT sender, message_id FROM seen WHERE expires_at_ms < ? LIMIT ?
)
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


class ReplayCache:
    """The set of ``(sender, message_id)`` a bureau has accepted and not yet seen expire.

    One connection, used from one thread (the node's event loop). ``busy_timeout_ms``
    bounds how long a call waits for a lock another connection holds; past it the call
    raises :class:`~ncbsim.errors.NcbsimError` rather than block the loop.
    """

    def __init__(
        self,
        path: Path,
        *,
        clock_skew_ms: int = CLOCK_SKEW_MS,
        prune_interval_s: float = 1.0,
        prune_batch: int = 1_000,
        busy_timeout_ms: int = 200,
    ) -> None:
        self.path = path
        self._skew_ms = clock_skew_ms
        self._prune_interval_s = prune_interval_s
        self._prune_batch = prune_batch
        self._next_prune = 0.0
        try:
            private.sqlite_file(path)  # who asked what, when: the bureau's alone
            self._conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000)
        except (OSError, sqlite3.Error) as exc:
            raise NcbsimError(f"cannot open the replay cache at {path}: {exc}") from None
        try:
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute(_SCHEMA)
            columns = [row[1] for row in self._conn.execute("PRAGMA table_info(seen)")]
            if columns == _COLUMNS:
                self._conn.execute(_INDEX)
        except sqlite3.OperationalError as exc:
            self._conn.close()
            raise NcbsimError(f"the replay cache at {path} is unusable: {exc}") from None
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise NcbsimError(f"{path} is not an SQLite replay cache: {exc}") from None
        if columns != _COLUMNS:
            self._conn.close()
            raise NcbsimError(f"{path} is not a replay cache (its seen table has {columns})")

    def first_time(
        self, message_id: bytes, sender: str, expires_at_ms: int, *, now_ms: int | None = None
    ) -> bool:
        """Record ``(sender, message_id)``; True if it was new, False if seen before.

        Atomic: of two calls with the same pair, from any connections, exactly one
        returns True. Raises :class:`~ncbsim.errors.NcbsimError` if the database is
        locked or broken; a caller must then refuse the envelope, not answer it.
        """
        now = _now_ms() if now_ms is None else now_ms
        try:
            self._maybe_prune(now)
            inserted = self._conn.execute(_INSERT, (sender, message_id, expires_at_ms)).rowcount
        except sqlite3.Error as exc:
            raise NcbsimError(f"replay cache at {self.path} failed: {exc}") from None
        return inserted == 1

    def prune(self, now_ms: int | None = None) -> int:
        """Delete up to ``prune_batch`` rows expired more than the clock skew ago; the count."""
        now = _now_ms() if now_ms is None else now_ms
        try:
            return self._conn.execute(_PRUNE, (now - self._skew_ms, self._prune_batch)).rowcount
        except sqlite3.Error as exc:
            raise NcbsimError(f"replay cache at {self.path} failed: {exc}") from None

    def _maybe_prune(self, now_ms: int) -> None:
        clock = time.monotonic()
        if clock < self._next_prune:
            return
        deleted = self.prune(now_ms)
        # A full batch means more may be waiting: allow the next prune on the next call.
        if deleted < self._prune_batch:
            self._next_prune = clock + self._prune_interval_s

    def __len__(self) -> int:
        """How many pairs are remembered (expired ones included until pruned)."""
        count: int = self._conn.execute("SELECT count(*) FROM seen").fetchone()[0]
        return count

    def close(self) -> None:
        """Close the connection; everything recorded is already committed."""
        self._conn.close()
