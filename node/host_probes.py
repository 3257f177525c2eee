"""What a host process shows its pod: one health port and one metrics page for all its bureaus.

In a pod the kubelet probes gRPC health without TLS, and Prometheus scrapes one target
per pod. ``ncbsim host --health-listen`` serves a plaintext ``grpc.health.v1.Health`` of
the host's own (ncbsim.serving.start_health_port): ``ncbsim.bureau.XX`` turns SERVING
when bureau XX is registered and serving, ``""`` once every bureau is, and all turn
NOT_SERVING for good as soon as the host begins to stop. ``--pod-metrics-listen`` serves
every node's registry on one page, each sample labelled ``bureau="XX"``
(ncbsim.pod_metrics).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from grpc_health.v1 import health, health_pb2

from ncbsim.config import check_address
from ncbsim.errors import ConfigError
from ncbsim.metrics import Endpoint, NodeMetrics
from ncbsim.metrics import serve as serve_metrics
from ncbsim.pod_metrics import pod_registry
from ncbsim.serving import HealthPort, listen_problem, start_health_port

__all__ = ["BUREAU_HEALTH_PREFIX", "HostProbes", "check_health_listen"]

BUREAU_HEALTH_PREFIX = "ncbsim.bureau."
"""A hosted bureau's health service name: ``ncbsim.bureau.FR``."""

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HostProbes:
    """The host's health statuses (always kept) and, if asked, the ports serving them
    and the bureaus' metrics."""

    def __init__(self, metrics: Mapping[str, NodeMetrics]) -> None:
        self.metrics = dict(metrics)
        self.health = health.aio.HealthServicer()
        self.health_port: HealthPort | None = None
        self.endpoint: Endpoint | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._watch: asyncio.Task[None] | None = None

    async def start(
        self,
        stop: asyncio.Event,
        *,
        health_listen: str | None = None,
        pod_metrics_listen: str | None = None,
        any_address: bool = False,
    ) -> None:
        """Every status NOT_SERVING; serve them on ``health_listen`` and the metrics on
        ``pod_metrics_listen`` (any address only with ``any_address``); turn all
        NOT_SERVING for good once ``stop`` is set. ConfigError if a port cannot be had."""
        for name in ("", *(BUREAU_HEALTH_PREFIX + code for code in sorted(self.metrics))):
            await self.health.set(name, _NOT_SERVING)
        self._watch = asyncio.create_task(self._stop_on(stop))
        if pod_metrics_listen is not None:
            registry = pod_registry({code: m.registry for code, m in self.metrics.items()})
            self.endpoint = serve_metrics(registry, pod_metrics_listen, any_address=any_address)
        if health_listen is not None:
            self.health_port = await start_health_port(self.health, health_listen)

    def addresses(self) -> dict[str, str]:
        """For the ready file: ``health`` and ``pod_metrics`` ("" when not served)."""
        return {
            "health": self.health_port.address if self.health_port else "",
            "pod_metrics": self.endpoint.address if self.endpoint else "",
        }

    def bureau_serving(self, code: str) -> None:
        """Bureau ``code`` is registered and serving (a node's ``on_ready``: not async)."""
        task = asyncio.create_task(self.health.set(BUREAU_HEALTH_PREFIX + code, _SERVING))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def all_serving(self) -> None:
        """Every bureau serves: after their own statuses, ``""`` turns SERVING."""
        await asyncio.gather(*self._pending)
        await self.health.set("", _SERVING)

    async def _stop_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        await self.health.enter_graceful_shutdown()

    async def close(self) -> None:
        """NOT_SERVING for good (if not yet), then free both ports."""
        await self.health.enter_graceful_shutdown()
        if self._watch is not None:
            self._watch.cancel()
        if self.health_port is not None:
            await self.health_port.stop()
        if self.endpoint is not None:
            self.endpoint.close()


def check_health_listen(listen: str) -> None:
    """``--health-listen``: a HOST:PORT that can be bound now; ConfigError (one line) else."""
    try:
        check_address(listen)
    except ConfigError as exc:
        raise ConfigError(f"--health-listen: {exc}") from None
    problem = listen_problem(listen)
    if problem is not None:
        raise ConfigError(f"--health-listen {listen}: {problem}")
