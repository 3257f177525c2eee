"""What an event costs the query path when no one is watching, and when someone is.

Usage: python scripts/bench_emit.py [--calls 1000000] [--repeats 7]

Times, in nanoseconds per call (the median of ``--repeats`` timings of ``--calls``
calls each), on the emitting side only:

- a plain Python function call with the same arguments (the floor: any call costs this);
- ``gateway.observed.relayed(bus, row)`` with no subscriber: what the gateway pays per
  relayed envelope for its event while no one observes;
- ``EventBus.emit`` with no subscriber (a call site that builds its view dict inline);
- both again with one subscriber that never reads (the view checked, the event built and
  put in a full buffer, the oldest dropped): what observing costs.

"Nothing measurable": the gateway's relay takes milliseconds per envelope (docs/bench.md),
so tens of nanoseconds without a subscriber are below a millionth of it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from ncbsim.eventbus import EventBus
from ncbsim.gateway import observed
from ncbsim.gateway.audit import AuditRecord

ROW = AuditRecord(
    1, "Query", "DE", "aa" * 16, "bb" * 16, "DE", "FR", "query", 0, 0, 1312, 3360, "delivered",
    "OK", 3.4,
)  # fmt: skip


def _plain(bus: EventBus, row: AuditRecord) -> None:
    """The floor: a call that does nothing with its arguments."""


def _ns_per_call(fn: Callable[[], object], calls: int, repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        timings.append((time.perf_counter_ns() - started) / calls)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    quiet, watched = EventBus("gateway"), EventBus("gateway")
    watched.subscribe(buffer=1024)  # never read: full after 1024, then drops the oldest

    def inline(bus: EventBus) -> Callable[[], None]:
        return lambda: bus.emit(
            "query.relayed",
            {"sender": "DE", "recipient": "FR", "bytes": 1312, "outcome": "delivered"},
            trace_id="",
        )

    heavy = max(args.calls // 20, 1000)  # with a subscriber each call is much slower
    rows = [
        ("plain function call", lambda: _plain(quiet, ROW), args.calls),
        ("observed.relayed, no subscriber", lambda: observed.relayed(quiet, ROW), args.calls),
        ("bus.emit with inline view, no subscriber", inline(quiet), args.calls),
        ("observed.relayed, 1 subscriber (not reading)",
         lambda: observed.relayed(watched, ROW), heavy),
        ("bus.emit with inline view, 1 subscriber", inline(watched), heavy),
    ]  # fmt: skip
    floor = None
    for label, fn, calls in rows:
        ns = _ns_per_call(fn, calls, args.repeats)
        floor = ns if floor is None else floor
        print(f"{label:<46} {ns:8.1f} ns/call  ({ns - floor:+7.1f} ns over a plain call)")


if __name__ == "__main__":
    main()
