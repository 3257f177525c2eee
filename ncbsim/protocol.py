"""The protocol's caps: the numbers every client, node and the gateway hold to alike.

Each cap is defined here once and imported wherever a call is built or checked, so a
client never batches past what the gateway admits. The transport's own message limit
is :data:`ncbsim.transport.MAX_MESSAGE_BYTES`; docs/protocol.md lists them all.
"""

from __future__ import annotations

from ncbsim.transport import MAX_MESSAGE_BYTES

MAX_ENVELOPES_PER_CALL = 256
"""Most envelopes in one MultiQuery or Post call: the gateway refuses a call with none or
more (INVALID_ARGUMENT), so every client cuts its batches to this many."""

MAX_BATCH_BYTES = 3 * MAX_MESSAGE_BYTES // 4
"""Envelope bytes in one call that carries many (a client's or GS's Post, the gateway's
Deliver): a batch stops before its envelopes pass this size (3 MiB), well inside gRPC's
4 MiB message limit with room for framing. A batch holds at least one envelope whatever
its size."""
