"""One Prometheus page for many parties: each party's families, labelled with its bureau.

A host process serves several bureau nodes, each with its own registry
(:class:`ncbsim.metrics.NodeMetrics`) and, on one machine, its own endpoint. A pod is
one scrape target, so ``ncbsim host --pod-metrics-listen`` serves one page instead:
:class:`BureauLabelled` reads every node's registry at scrape time through
prometheus_client's public API (``CollectorRegistry.collect``) and yields each family
once, holding every bureau's samples, each with an added label ``bureau="XX"``. A
sample that already has a ``bureau`` label keeps it as ``exported_bureau``, as
Prometheus renames a target's label that clashes with its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

__all__ = ["BUREAU_LABEL", "BureauLabelled", "pod_registry"]

BUREAU_LABEL = "bureau"


class BureauLabelled(Collector):
    """The families of several registries, merged by name, each sample labelled with the
    bureau whose registry it came from."""

    def __init__(self, registries: Mapping[str, CollectorRegistry]) -> None:
        self._registries = dict(registries)

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for bureau, registry in sorted(self._registries.items()):
            for family in registry.collect():
                out = merged.get(family.name)
                if out is None:
                    out = Metric(family.name, family.documentation, family.type, family.unit)
                    merged[family.name] = out
                for sample in family.samples:
                    labels = dict(sample.labels)
                    if BUREAU_LABEL in labels:
                        labels["exported_" + BUREAU_LABEL] = labels.pop(BUREAU_LABEL)
                    labels[BUREAU_LABEL] = bureau
                    out.add_sample(
                        sample.name, labels, sample.value, sample.timestamp, sample.exemplar
                    )
        yield from merged.values()


def pod_registry(registries: Mapping[str, CollectorRegistry]) -> CollectorRegistry:
    """A registry whose page holds every one of ``registries`` (bureau code -> registry),
    labelled by bureau: what ``--pod-metrics-listen`` serves."""
    registry = CollectorRegistry()
    registry.register(BureauLabelled(registries))
    return registry
