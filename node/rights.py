"""What a bureau's user may ask of this node: the pure check of one opened query against
the rights its bureau signed into the user's entry (docs/users.md, "Acting as a user").

The gateway sees only a query's envelope, so it can tell that a user may query at all,
not what it asks: the kind of a query is inside the encryption. Only the answering node
sees it, so the node enforces, for a requester whose verified entry carries rights
(a bureau's user; a bureau itself carries none and may ask anything):

- the query's kind, one of :data:`ncbsim.users.QUERY_KINDS` (``document``, ``person``,
  ``vehicle``, and for a biometric search its modality, ``fingerprint`` or ``face``),
  must be in ``rights.query_kinds``;
- step 2, ``fetch`` of a full record and ``confirm`` of a biometric candidate, needs
  ``rights.full_records`` (and a confirmation, the modality among the query kinds);
- a user without ``full_records`` (hit-only, such as a border officer) gets its step-1
  answers with every reference emptied: hit or no-hit, scores and handling codes, and
  nothing to ask a step 2 with.

A query outside the rights raises :class:`~ncbsim.errors.RightsError`: the node refuses
it PERMISSION_DENIED, audited with reason ``rights``. Its detail never names the kind,
which the gateway relaying the status must not learn.
"""

from __future__ import annotations

from typing import Protocol

from ncbsim.errors import RightsError
from ncbsim.v2 import query_pb2

__all__ = ["QueryRights", "check_query", "hit_only", "query_kind", "without_refs"]

_MODALITIES = {
    query_pb2.MODALITY_FINGERPRINT: "fingerprint",
    query_pb2.MODALITY_FACE: "face",
}
STEP_TWO = frozenset({"fetch", "confirm"})
"""Kinds that release more than a hit: a full record, or a confirmed identification."""


class QueryRights(Protocol):
    """The part of :class:`ncbsim.users.Rights` a node reads."""

    @property
    def query_kinds(self) -> frozenset[str]: ...

    @property
    def full_records(self) -> bool: ...


def query_kind(query: query_pb2.Query) -> str:
    """The kind a query counts as for rights: ``document``, ``person``, ``vehicle``,
    ``fetch``, ``confirm``, or a biometric search's modality (``fingerprint``, ``face``;
    ``biometric`` for an unknown one). Empty if the query names none."""
    which = query.WhichOneof("query")
    if which == "biometric":
        return _MODALITIES.get(query.biometric.modality, "biometric")
    return which or ""


def check_query(rights: QueryRights | None, query: query_pb2.Query) -> str:
    """The query's kind if ``rights`` allow it (None: a bureau, always); else RightsError.

    A query naming no kind passes: the answer path refuses it as unusable, as it does
    for a bureau.
    """
    kind = query_kind(query)
    if rights is None or not kind:
        return kind
    if kind in STEP_TWO:
        allowed = rights.full_records
        if kind == "confirm":
            modality = _MODALITIES.get(query.confirm.modality, "biometric")
            allowed = allowed and modality in rights.query_kinds
    else:
        allowed = kind in rights.query_kinds
    if not allowed:
        raise RightsError("the query is outside the rights the user's bureau signed")
    return kind


def hit_only(rights: QueryRights | None) -> bool:
    """Whether answers to this requester carry no references (a user without full records)."""
    return rights is not None and not rights.full_records


def without_refs(answer: query_pb2.Answer) -> query_pb2.Answer:
    """``answer`` with the reference of every match and candidate emptied (in place, and
    returned): a hit-only answer. The match count, scores and handling stay."""
    which = answer.WhichOneof("result")
    if which == "hits":
        for match in answer.hits.matches:
            match.ref = ""
    elif which == "candidates":
        for candidate in answer.candidates.candidates:
            candidate.ref = ""
    return answer
