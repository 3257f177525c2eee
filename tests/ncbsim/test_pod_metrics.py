"""One metrics page for a host's nodes: every family once, each sample labelled by bureau."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ncbsim.metrics import NodeMetrics
from ncbsim.pod_metrics import pod_registry


def _page(registry: CollectorRegistry) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The registry's text page as Prometheus reads it: each sample name's (labels, value)."""
    text = generate_latest(registry).decode()
    families = list(text_string_to_metric_families(text))
    names = [f.name for f in families]
    assert len(names) == len(set(names)), "a family appears twice on the page"
    page: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in families:
        for sample in family.samples:
            page.setdefault(sample.name, []).append((sample.labels, sample.value))
    return page


def test_each_nodes_samples_carry_its_bureau_and_families_appear_once() -> None:
    """Two nodes' refusals come out under one family, told apart by ``bureau``."""
    fr, de = NodeMetrics("FR"), NodeMetrics("DE")
    fr.refused("Handle", "replay")
    de.refused("Handle", "replay")
    de.refused("Handle", "revoked")
    page = _page(pod_registry({"FR": fr.registry, "DE": de.registry}))
    refusals = {
        (labels["bureau"], labels["reason"]): value
        for labels, value in page["ncbsim_refusals_total"]
    }
    assert refusals[("FR", "replay")] == 1
    assert refusals[("DE", "replay")] == 1
    assert refusals[("DE", "revoked")] == 1
    assert ("FR", "revoked") not in refusals
    # Every sample of every family names its bureau, and only the two hosted ones.
    bureaus = {labels["bureau"] for samples in page.values() for labels, _ in samples}
    assert bureaus == {"FR", "DE"}


def test_the_page_is_read_at_scrape_time() -> None:
    """A count made after the pod registry was built shows on the next scrape."""
    fr = NodeMetrics("FR")
    registry = pod_registry({"FR": fr.registry})
    before = sum(v for labels, v in _page(registry)["ncbsim_replays_total"])
    fr.replay()
    fr.replay()
    after = sum(v for labels, v in _page(registry)["ncbsim_replays_total"])
    assert after - before == 2


def test_a_bureau_label_of_the_node_is_kept_as_exported_bureau() -> None:
    """A family that labels by bureau itself keeps that value as ``exported_bureau``."""
    own = CollectorRegistry()
    Gauge("peer_up", "Peers seen.", ["bureau"], registry=own).labels(bureau="IT").set(1)
    page = _page(pod_registry({"FR": own}))
    assert page["peer_up"] == [({"bureau": "FR", "exported_bureau": "IT"}, 1.0)]
