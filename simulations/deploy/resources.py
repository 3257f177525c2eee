"""Resource requests and limits of the pods, from figures measured on this project's
2-core development machine (a busy, shared one: the figures are rough).

Measured (ncbsim 0.1.0, Python 3.11, loopback; RSS from /proc/PID/status after start
and after 40 document queries per hosted bureau, CPU from /proc/PID/stat)::

    process                 records/bureau (d/p/v/bio)   RSS MiB ready -> after   CPU s to ready
    gateway                 -                            86 -> 88                 0.7-1.0
    host, K=1               2000/500/500/50              100 -> 101               0.74
    host, K=3               2000/500/500/50              104 -> 105               0.85
    host, K=6               2000/500/500/50              109 -> 111               0.98
    host, K=1               6000/2000/2000/0             86 -> 88                 0.76
    host, K=3               6000/2000/2000/0             90 -> 92                 0.84
    datagen, one bureau     2000/500/500/50              85 peak                  1.7
    datagen, one bureau     6000/2000/2000/0             98 peak                  2.2
    per query (document)    host 1.5-1.75 ms CPU, gateway 1.6-2.3 ms CPU

Cross-check: the README's all-members run (196 bureaus in two hosts and a gateway) peaks
at 679-730 MiB for the whole tree, about 2.4 MiB a bureau beyond the three processes.

So a host costs about 86 MiB, plus about 2 MiB a bureau, plus 14 MiB once biometrics
are enrolled (numpy and the index); its records stay in SQLite on the volume (about
2.6 MiB a bureau at 10,000 records). The formula below adds 25% to the measured memory
for the request and doubles that for the limit (record generation at first start, query
bursts). CPU: a request of 50m plus 10m a bureau (idle nodes; 20 queries/s cost about
35m), a limit of one core, which keeps start-up near the measured second. The memory
limit also covers the first start's record generation, as long as the pod generates one
bureau at a time (98 MiB peak each, measured above).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

HOST_BASE_MIB = 86
PER_BUREAU_MIB = 2
BIOMETRICS_MIB = 14
GATEWAY_MIB = 88
HEADROOM = 1.25
RECORDS_MIB_PER_10K = 2.6


def _mib(value: float) -> str:
    return f"{int(math.ceil(value / 16) * 16)}Mi"  # whole 16 MiB steps


@dataclass(frozen=True, slots=True)
class Sizing:
    """One container's requests and limits, in Kubernetes quantities."""

    memory_request: str
    memory_limit: str
    cpu_request: str
    cpu_limit: str

    def to_k8s(self) -> dict[str, Any]:
        """The ``resources`` object of a container."""
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


def gateway() -> Sizing:
    """The gateway: measured 88 MiB."""
    request = GATEWAY_MIB * HEADROOM
    return Sizing(_mib(request), _mib(2 * request), "100m", "1")


def bureaus(count: int, *, biometrics: bool) -> Sizing:
    """A host of ``count`` bureaus: 86 MiB + 2 MiB a bureau (+14 MiB with biometrics)."""
    measured = HOST_BASE_MIB + PER_BUREAU_MIB * count + (BIOMETRICS_MIB if biometrics else 0)
    request = measured * HEADROOM
    return Sizing(_mib(request), _mib(2 * request), f"{50 + 10 * count}m", "1")


def load(*, master: bool) -> Sizing:
    """A locust master or worker: not measured here for the pods; a worker is a gevent
    process of gRPC clients (like a host, about 100 MiB), the master only aggregates."""
    if master:
        return Sizing("128Mi", "256Mi", "100m", "1")
    return Sizing("160Mi", "320Mi", "250m", "1")


def storage(count: int, records: int) -> str:
    """A volume for ``count`` bureaus of ``records`` records each: 4x the measured
    database size (the audit, inbox and hit logs grow beside it), at least 256 MiB."""
    measured = count * RECORDS_MIB_PER_10K * max(records, 1) / 10_000
    return _mib(max(256, 4 * measured + 64))
