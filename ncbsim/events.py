"""The one event schema of ncbsim: what a party did and saw, metadata only.

Every process (the gateway, each node, a host, the simulator, the fault daemon, a client
the CLI started) describes what it does as :class:`Event` values of this schema, version
:data:`SCHEMA_VERSION`. The same fields travel as JSON lines (``timeline.jsonl``,
``ncbsim watch --events``) and as ``ObservedEvent`` messages of the ``Observe`` RPC
(``proto/ncbsim/v2/observe.proto``). docs/events.md is the reader's version of this
module; a test keeps the two in step.

An event's ``view`` is what its party can see: sizes, ids, counts, codes and outcomes.
It never holds a payload, a query term, a record, a key or a message text. That is kept
by construction, not by care at each call site: every kind names the only view keys it
may carry (:data:`KINDS`), and a text value is at most :data:`MAX_TEXT` characters of a
code's alphabet (:func:`check_view`). Anything else is refused when the event is made.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from ncbsim.v2 import observe_pb2

SCHEMA_VERSION = 1
"""Raised when a field changes meaning or goes away; adding a kind or a view key does not."""

MAX_TEXT = 64
"""The longest text value of a view: enough for a code, an outcome or a status name."""

_TEXT = re.compile(r"[A-Za-z0-9_.:\-/ =,*]*")
"""The alphabet of text values: codes, names, outcomes, host:port. No free prose."""

ViewValue = str | int | float | bool
_NO_VIEW: Mapping[str, ViewValue] = MappingProxyType({})

_ENVELOPE = ("sender", "recipient", "kind", "bytes")

KINDS: dict[str, tuple[str, ...]] = {
    # Processes
    "process.started": ("role", "pid", "address", "bureaus"),
    "process.stopped": ("role", "pid", "reason"),
    # Queries: client -> gateway -> node -> gateway -> client
    "query.sealed": ("recipient", "recipients", "bytes", "kind"),
    "query.relayed": (*_ENVELOPE, "response_bytes", "outcome", "status", "elapsed_ms"),
    "query.opened": ("sender", "bytes"),
    "query.answered": ("sender", "bytes", "response_bytes", "elapsed_ms"),
    "query.refused": (*_ENVELOPE, "reason", "status", "rpc"),
    "query.returned": ("recipient", "outcome", "status", "elapsed_ms", "response_bytes"),
    # One-way posts (messages, notices, diffusions)
    "post.sealed": ("recipient", "recipients", "kind", "bytes"),
    "post.accepted": (*_ENVELOPE, "outcome", "sequence"),
    "post.delivered": (*_ENVELOPE, "attempts", "lag_ms", "outcome"),
    "post.expired": (*_ENVELOPE, "attempts", "age_ms"),
    "post.rejected": (*_ENVELOPE, "reason"),
    "post.refused": (*_ENVELOPE, "reason", "status"),
    # A call that carries no envelope refused (control plane, Observe)
    "call.refused": ("rpc", "peer", "reason", "status"),
    "post.returned": ("recipients", "stored", "attempts", "outcome", "elapsed_ms", "reason"),
    # Faults of a scenario or of `ncbsim fault`
    "fault.applied": ("fault", "target", "peer", "detail", "until_s", "connections"),
    "fault.healed": ("fault", "target", "peer", "detail"),
    "fault.failed": ("fault", "target", "action", "reason"),
    # Keys, revocation, directory
    "key.rotated": ("bureau", "key_id", "purpose"),
    "bureau.revoked": ("bureau", "reason"),
    "directory.refreshed": ("entries", "source"),
    "revocation.refreshed": ("revoked", "source"),
    # The classroom-mode gateway (ncbsim classroom only) applied an attack
    "attack.applied": ("attack", "variant", "sender", "recipient"),
    # Simulation scenario progress
    "scenario.phase": (
        "phase",
        "scenario",
        "elapsed_s",
        "planned",
        "requests",
        "pairs",
        "check",
        "passed",
    ),
}
"""Every event kind and the only view keys it may carry. docs/events.md explains each."""


_ALLOWED = {kind: frozenset(keys) for kind, keys in KINDS.items()}
_NUMBERS = (int, float, bool)


def check_view(kind: str, view: Mapping[str, ViewValue]) -> dict[str, ViewValue]:
    """``view`` as a plain dict, if ``kind`` is known and every key and value is allowed.

    Raises ValueError naming the offending key otherwise: an unknown kind, a key the kind
    does not list, a value that is not a str/int/float/bool, or a text value that is too
    long or not of a code's alphabet (so no prose, no payload, can pass through).
    """
    allowed = _ALLOWED.get(kind)
    if allowed is None:
        raise ValueError(f"unknown event kind {kind!r}")
    if not allowed.issuperset(view):
        bad = sorted(set(view) - allowed)[0]
        raise ValueError(f"event {kind}: view key {bad!r} is not in its schema")
    for key, value in view.items():
        if type(value) is str:
            if len(value) > MAX_TEXT or _TEXT.fullmatch(value) is None:
                raise ValueError(f"event {kind}: view {key!r} is not a short code")
        elif not isinstance(value, _NUMBERS):
            raise ValueError(f"event {kind}: view {key!r} has type {type(value).__name__}")
    return dict(view)


class EnvelopeRow(Protocol):
    """What the gateway's and the nodes' audit rows both say of an envelope."""

    @property
    def sender(self) -> str: ...
    @property
    def recipient(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def request_bytes(self) -> int: ...


def envelope_view(row: EnvelopeRow) -> dict[str, ViewValue]:
    """The envelope keys of a view (``sender``, ``recipient``, ``kind``, ``bytes``) from an
    audit row; an empty value (a header that did not parse) is left out."""
    view: dict[str, ViewValue] = {"bytes": row.request_bytes}
    for key, value in (("sender", row.sender), ("recipient", row.recipient), ("kind", row.kind)):
        if value:
            view[key] = value
    return view


class Event(NamedTuple):
    """One thing one party did or saw. Build it with :func:`make` (which checks the view).

    A named tuple: immutable, and cheap to build on the query path.
    """

    kind: str
    party: str
    time: float
    """Unix time in seconds, as the emitting process's clock read it."""
    view: Mapping[str, ViewValue] = _NO_VIEW
    message_id: str = ""
    correlation_id: str = ""
    trace_id: str = ""
    seq: int = 0
    """Per emitting bus, from 1: a subscriber that sees a gap missed events."""
    schema: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (one line of timeline.jsonl or of ``watch --events``)."""
        return {
            "schema": self.schema,
            "seq": self.seq,
            "time": round(self.time, 6),
            "party": self.party,
            "kind": self.kind,
            "ids": {
                "message_id": self.message_id,
                "correlation_id": self.correlation_id,
                "trace_id": self.trace_id,
            },
            "view": dict(self.view),
        }

    def to_json(self) -> str:
        """One JSON line, without the newline."""
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    def to_proto(self) -> observe_pb2.ObservedEvent:
        """This event as the ``Observe`` stream carries it."""
        msg = observe_pb2.ObservedEvent(
            schema=self.schema,
            seq=self.seq,
            time=self.time,
            party=self.party,
            kind=self.kind,
            message_id=self.message_id,
            correlation_id=self.correlation_id,
            trace_id=self.trace_id,
        )
        for key, value in self.view.items():
            slot = msg.view[key]
            if isinstance(value, bool):
                slot.flag = value
            elif isinstance(value, int):
                slot.integer = value
            elif isinstance(value, float):
                slot.real = value
            else:
                slot.text = value
        return msg


def make(
    kind: str,
    party: str,
    time: float,
    view: Mapping[str, ViewValue] | None = None,
    *,
    message_id: str = "",
    correlation_id: str = "",
    trace_id: str = "",
    seq: int = 0,
) -> Event:
    """A checked event: ValueError if the kind or a view key or value is not allowed."""
    return Event(
        kind=kind,
        party=party,
        time=time,
        view=check_view(kind, view or {}),
        message_id=message_id,
        correlation_id=correlation_id,
        trace_id=trace_id,
        seq=seq,
    )


def from_dict(data: Mapping[str, Any]) -> Event:
    """Parse the JSON form; ValueError if it is not an event of this schema."""
    try:
        schema = int(data["schema"])
        if schema != SCHEMA_VERSION:
            raise ValueError(f"event schema {schema}, expected {SCHEMA_VERSION}")
        ids = data.get("ids") or {}
        return make(
            str(data["kind"]),
            str(data["party"]),
            float(data["time"]),
            dict(data.get("view") or {}),
            message_id=str(ids.get("message_id", "")),
            correlation_id=str(ids.get("correlation_id", "")),
            trace_id=str(ids.get("trace_id", "")),
            seq=int(data.get("seq", 0)),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not an event: {exc!r}") from None


def from_json(line: str) -> Event:
    """Parse one JSON line; ValueError if it is not an event of this schema."""
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("not an event: not a JSON object")
    return from_dict(data)


def from_proto(msg: observe_pb2.ObservedEvent) -> Event:
    """The event of an ``Observe`` stream message."""
    view: dict[str, ViewValue] = {}
    for key, slot in msg.view.items():
        which = slot.WhichOneof("value")
        if which is not None:
            view[key] = getattr(slot, which)
    return Event(
        kind=msg.kind,
        party=msg.party,
        time=msg.time,
        view=view,
        message_id=msg.message_id,
        correlation_id=msg.correlation_id,
        trace_id=msg.trace_id,
        seq=msg.seq,
        schema=msg.schema,
    )
