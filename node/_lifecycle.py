"""A node's files and background parts, opened and closed with it (node/server.py's
``run_node``): its databases, its metrics endpoint, the cancelling of its tasks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from ncbsim.metrics import NodeMetrics
from ncbsim.metrics import serve as serve_metrics
from ncbsim.node.audit import NodeAuditLog
from ncbsim.node.config import NodeConfig
from ncbsim.node.hits import HitLog
from ncbsim.node.inbox import Inbox
from ncbsim.node.proofs import ProofLog
from ncbsim.node.replay import ReplayCache
from ncbsim.node.store import RecordStore

__all__ = ["cancel", "open_files", "serve_metrics_until"]


def open_files(
    stack: contextlib.AsyncExitStack[bool | None], config: NodeConfig
) -> tuple[ReplayCache, RecordStore, NodeAuditLog, HitLog, Inbox, ProofLog]:
    """The bureau's databases, each closed again when ``stack`` closes."""
    replay = ReplayCache(config.files.replay, clock_skew_ms=config.clock_skew_ms)
    stack.callback(replay.close)
    store = RecordStore(config.files.records)
    stack.callback(store.close)
    audit = NodeAuditLog(config.files.audit)
    stack.callback(audit.close)
    hits = HitLog(config.files.hits)
    stack.callback(hits.close)
    inbox = Inbox(config.files.inbox)
    stack.callback(inbox.close)
    proofs = ProofLog.open(config.files.proofs)
    stack.callback(proofs.close)
    return replay, store, audit, hits, inbox, proofs


def serve_metrics_until(
    stack: contextlib.AsyncExitStack, metrics: NodeMetrics, listen: str, *, any_address: bool
) -> str:
    """Serve ``metrics`` on ``listen`` (any address only with ``any_address``) until
    ``stack`` closes; its address ("" if off)."""
    endpoint = serve_metrics(metrics, listen, any_address=any_address)
    if endpoint is None:
        return ""
    stack.callback(endpoint.close)
    return endpoint.address


async def cancel(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until they have ended."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
