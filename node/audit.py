"""A bureau's audit trail: one row per envelope it handled, metadata only, never content.

The rows go to an append-only, hash-chained SQLite table (ncbsim.auditlog), written by
both the query path (ncbsim.node.server) and the delivery path (ncbsim.node.postbox). Both await the
commit of an envelope's row before they reply, so an answer, a refusal or a receipt never
leaves before its row is in the file.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import grpc

from ncbsim import envelope
from ncbsim.auditlog import ChainedLog

AUDIT_COLUMNS = (
    ("at_ms", "INTEGER"),
    ("message_id", "TEXT"),
    ("correlation_id", "TEXT"),
    ("sender", "TEXT"),
    ("recipient", "TEXT"),
    ("kind", "TEXT"),
    ("request_bytes", "INTEGER"),
    ("response_bytes", "INTEGER"),
    ("outcome", "TEXT"),
    ("reason", "TEXT"),
    ("status", "TEXT"),
    ("elapsed_ms", "REAL"),
)


class NodeAuditRecord(NamedTuple):
    """One envelope the node handled: ids, sender, kind, sizes, outcome. Never content.

    ``outcome`` is ``answered`` or ``refused``, and for Deliver ``processed``,
    ``duplicate`` or ``rejected`` (ncbsim.node.postbox); ``reason`` says why in a coarse code:
    ``not_gateway``, ``undecodable``, ``unverified``, ``revoked`` (signed with a key the
    root revoked), ``no_directory`` (the sender's entry could not be fetched), ``replay``
    (verified, but this sender's message id was accepted before), ``bad_response_key``
    or ``internal`` (empty when answered). Ids and parties are empty when the envelope's
    header did not parse.
    """

    at_ms: int
    message_id: str
    correlation_id: str
    sender: str
    recipient: str
    kind: str
    request_bytes: int
    response_bytes: int
    outcome: str
    reason: str
    status: str
    elapsed_ms: float


class NodeAuditLog(ChainedLog):
    """A bureau's own append-only, hash-chained audit table (see ncbsim.auditlog)."""

    def __init__(
        self, path: Path, *, batch_wait_s: float = 0.05, synchronous: str = "NORMAL"
    ) -> None:
        super().__init__(
            path,
            AUDIT_COLUMNS,
            indexes=(("sender", "at_ms"),),
            batch_wait_s=batch_wait_s,
            synchronous=synchronous,
        )


def audit_record(
    header: envelope.Header | None,
    *,
    request_bytes: int,
    response_bytes: int,
    outcome: str,
    reason: str,
    status: grpc.StatusCode,
    elapsed_ms: float,
) -> NodeAuditRecord:
    """The row of one handled envelope, stamped now; ids and parties are empty when
    ``header`` is None (the envelope did not parse)."""
    ids = ("", "", "", "", "")
    if header is not None:
        ids = (
            header.message_hex,
            header.correlation_hex,
            header.sender,
            header.recipient,
            envelope.kind_name(header.kind),
        )
    return NodeAuditRecord(
        int(time.time() * 1000),
        *ids,
        request_bytes,
        response_bytes,
        outcome,
        reason,
        status.name,
        elapsed_ms,
    )
