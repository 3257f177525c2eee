"""A party's clock: wall time plus an offset that can change while the party runs.

Envelopes carry their issue and expiry times, and every receiver checks them against its
own clock (docs/protocol.md §7). The simulator injects clock-skew faults by giving one
bureau a clock that is off by some offset, set at start or changed at run time through
its host's control socket (node/host.py). A node or client reads the time only through
its :class:`Clock`, so a skewed bureau behaves like a real bureau whose clock is wrong:
it refuses envelopes it thinks expired or issued in the future, and dates its own
envelopes wrongly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(slots=True)
class Clock:
    """Wall time in milliseconds plus ``offset_ms``, which may be changed at any time."""

    offset_ms: int = 0

    def now_ms(self) -> int:
        """The current time on this clock, in milliseconds since the Unix epoch."""
        return int(time.time() * 1000) + self.offset_ms
