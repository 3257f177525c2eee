"""What each party saw of one exchange, as the JSON the classroom page draws.

An *exchange record* (docs/classroom.md, "The stream") holds one query's four views:

- ``requester``: the plaintext query the asking bureau sealed, and the answer it opened;
- ``gateway``: only what the gateway holds: the routing header parsed from the envelope
  bytes (as the gateway parses it), sizes, its audit row's outcome, and the sealed bytes
  in hex, with the list of what it cannot see. Nothing of the query or the answer is put
  in it: it is built from the envelope and the audit row alone;
- ``recipient``: the query as the recipient's node opened it (with that bureau's key from
  the work directory's PKI, as ``ncbsim demo`` does), and the record it matched;
- ``wire``: what an observer of the TCP connection gets: a mutual-TLS HTTP/2 stream, its
  endpoints, and sizes.

:class:`Sizes` keeps every query and answer envelope size seen, so the page can show that
padding makes them one size each, whatever the answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ncbsim import biometrics, biosearch, envelope
from ncbsim.client import Answer, Outcome
from ncbsim.node.records import Document, Person, Vehicle
from ncbsim.posts import PostOutcome
from ncbsim.simulations import _demo_views as dv
from ncbsim.simulations._demo_observer import Exchange, Row
from ncbsim.v2 import query_pb2

HEX_BYTES = 192
"""How much of the sealed body the gateway view shows, in bytes (the rest is counted)."""
CANNOT_SEE = {
    "document": ["document number", "issuer", "holder's name", "the answer"],
    "person": ["surname", "given names", "date of birth", "the answer"],
    "vehicle": ["VIN", "plate", "the answer"],
    "fetch": ["record reference", "the record", "the answer"],
    "biometric": ["the probe (a face or a fingerprint)", "its modality", "the candidates"],
    "confirm": ["the probe", "the candidate's reference", "whether it was confirmed"],
}
Rows = list[list[str]]


@dataclass(slots=True)
class Sizes:
    """Envelope sizes seen so far: queries and answers (padding makes each one size)."""

    queries: set[int] = field(default_factory=set)
    answers: set[int] = field(default_factory=set)

    def add(self, request_bytes: int, response_bytes: int) -> None:
        """Note one exchange's sizes (0: no answer came back)."""
        if request_bytes:
            self.queries.add(request_bytes)
        if response_bytes:
            self.answers.add(response_bytes)


def best_outcome(answers: list[Answer]) -> str:
    """A query's outcome over all its answers: a hit if any bureau hit, else the first's."""
    hits = [a for a in answers if a.outcome in (Outcome.HIT, Outcome.RECORD)]
    return (hits or answers)[0].outcome.value


def rows(pairs: list[tuple[str, str]]) -> Rows:
    """Pairs as the page's two-column rows."""
    return [[key, value] for key, value in pairs]


def query_kind(query: query_pb2.Query) -> str:
    """``document``, ``person``, ``vehicle``, ``fetch``, ``biometric`` or ``confirm``."""
    return query.WhichOneof("query") or "empty"


def biometric_view(query: query_pb2.Query, answer: Answer) -> dict[str, Any] | None:
    """What the page draws of a biometric search (its candidate list, with the threshold
    and the owner's cap) or of a confirmation (its outcome); None for any other query.
    Refs, scores and ranks only: a probe is biometric data, and its bytes are never here."""
    which = query.WhichOneof("query")
    if which not in ("biometric", "confirm"):
        return None
    asked = getattr(query, which)
    modality = biometrics.from_wire(asked.modality)
    block: dict[str, Any] = {
        "modality": modality,
        "threshold": biometrics.THRESHOLDS[modality]["search"],
        "confirm_threshold": biometrics.THRESHOLDS[modality]["confirm"],
        "cap": biometrics.MAX_CANDIDATES,
        "probe_bytes": len(asked.template),
    }
    if which == "biometric":
        block["asked"] = query.biometric.max_candidates or biometrics.DEFAULT_CANDIDATES
        block["candidates"] = [
            {"rank": c.rank, "ref": c.ref, "score": round(c.score, 3)}
            for c in biosearch.candidates(answer)
        ]
        return block
    response = answer.response
    done = response is not None and response.HasField("confirmation")
    confirmation = response.confirmation if done and response is not None else None
    block["confirmation"] = {
        "ref": query.confirm.ref,
        "answered": confirmation is not None,
        "confirmed": bool(confirmation and confirmation.confirmed),
        "score": round(confirmation.score, 3) if confirmation is not None else None,
        "released": bool(confirmation and confirmation.record.WhichOneof("record")),
    }
    return block


def hex_words(data: bytes, limit: int = HEX_BYTES) -> str:
    """The first ``limit`` bytes as hex (the page groups and wraps it)."""
    return data[:limit].hex()


def requester_view(
    asker: str,
    to: str,
    query: query_pb2.Query,
    answers: list[Answer],
    extra: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """The asking bureau: its plaintext query, and every answer as it opened it."""
    pairs = [("asks", to), *dv.query_fields(query), *(extra or [])]
    for answer in answers:
        prefix = f"{answer.bureau}: " if len(answers) > 1 else ""
        for key, value in dv.answer_fields(answer):
            pairs.append((prefix + key, value))
    return {"party": asker, "rows": rows(pairs)}


def gateway_view(sent: envelope.Envelope, row: Row | None, kind: str) -> dict[str, Any]:
    """The gateway: header fields in clear, sizes, its audit row, the sealed bytes in hex."""
    header = envelope.unverified_header(sent)
    pairs = [
        ("sender", header.sender),
        ("recipient", header.recipient),
        ("kind", "query request"),
        ("message id", header.message_hex),
        ("correlation", header.correlation_hex),
        ("expires", dv.utc_time(header.expires_at_ms)),
        ("sealed", f"{len(sent.sealed):,} bytes"),
        ("envelope", f"{sent.ByteSize():,} bytes"),
    ]
    if row is None:
        pairs.append(("audit", "no row"))
    else:
        pairs.append(("audit", f"{row['outcome']}, {row['status']}"))
        if row.get("response_bytes", "0") != "0":
            pairs.append(("answer", f"{int(row['response_bytes']):,} bytes, sealed"))
    return {
        "party": "gateway",
        "rows": rows(pairs),
        "hex": hex_words(sent.sealed),
        "hex_total": len(sent.sealed),
        "cannot_see": CANNOT_SEE.get(kind, ["the query", "the answer"]),
    }


def recipient_view(
    to: str,
    opened: query_pb2.Query | None,
    record: Document | Person | Vehicle | None,
    answer: Answer | None,
    extra: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """The recipient's node: the query it opened, the record it matched, its answer."""
    pairs = [("opened", "refused: did not verify")] if opened is None else dv.query_fields(opened)
    if record is not None:
        pairs += [("matched", ""), *dv.record_fields(record)]
    if answer is not None and opened is not None:
        pairs.append(("answered", dv.outcome_name(answer.outcome)))
    pairs += extra or []
    return {"party": to, "rows": rows(pairs)}


def wire_view(asker: str, gateway: str, request_bytes: int, response_bytes: int) -> dict[str, Any]:
    """An observer of the connection: endpoints, protocol and sizes, nothing inside."""
    pairs = [
        ("between", f"{asker}'s client and the gateway at {gateway}"),
        ("protocol", "TLS, both ends authenticated (mTLS); HTTP/2 (gRPC) inside"),
        ("sees", "who connects to the gateway, when, and how many bytes"),
        ("query", f"about {request_bytes:,} bytes inside TLS records"),
        ("answer", f"about {response_bytes:,} bytes" if response_bytes else "none"),
    ]
    return {
        "party": "wire",
        "rows": rows(pairs),
        "cannot_see": ["sender", "recipient", "message id", "any query field", "the answer"],
    }


def exchange_record(
    ident: str,
    *,
    asker: str,
    to: str,
    query: query_pb2.Query,
    ex: Exchange,
    record: Document | Person | Vehicle | None,
    gateway: str,
    sizes: Sizes,
    answers: list[Answer] | None = None,
    action: str = "query",
    attack: str | None = None,
    caught: dict[str, str] | None = None,
    checks: list[list[Any]] | None = None,
    recipient_extra: list[tuple[str, str]] | None = None,
    requester_extra: list[tuple[str, str]] | None = None,
    biometric: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One exchange as the page gets it (``type: exchange``); ``answers``: every bureau's
    answer of a query to several (``ex`` is then the one whose views are drawn).
    ``biometric``: the candidate list and confirmation drawn (default: this exchange's,
    :func:`biometric_view`; the requester's panel alone shows it)."""
    sent = ex.sealed.envelope
    row = ex.gateway_row
    response_bytes = int(row["response_bytes"]) if row and row.get("response_bytes") else 0
    request_bytes = sent.ByteSize()
    sizes.add(request_bytes, response_bytes)
    kind = query_kind(query)
    every = answers if answers is not None else [ex.answer]
    return {
        "type": "exchange",
        "id": ident,
        "action": action,
        "attack": attack,
        "from": asker,
        "to": to,
        "kind": kind,
        "message_id": ex.sealed.header.message_hex,
        "correlation_id": ex.sealed.header.correlation_hex,
        "outcome": best_outcome(every),
        "recipients": [
            {"bureau": a.bureau, "outcome": a.outcome.value, "ms": round(a.latency_ms, 1)}
            for a in every
        ],
        "caught": caught,
        "checks": checks or [],
        "biometric": biometric if biometric is not None else biometric_view(query, ex.answer),
        "sizes": {
            "request_bytes": request_bytes,
            "response_bytes": response_bytes,
            "query_sizes_seen": sorted(sizes.queries),
            "answer_sizes_seen": sorted(sizes.answers),
        },
        "views": {
            "requester": requester_view(asker, to, query, every, requester_extra),
            "gateway": gateway_view(sent, row, kind),
            "recipient": recipient_view(
                ex.answer.bureau, ex.opened, record, ex.answer, recipient_extra
            ),
            "wire": wire_view(asker, gateway, request_bytes, response_bytes),
        },
    }


POST_CANNOT_SEE = {
    "diffusion": ["subject", "text", "attachments"],
    "notice": ["the person named", "the summary", "the text"],
    "notice_request": ["the person named", "the summary", "the text"],
    "message": ["subject", "text", "attachments"],
}
_ROW_KEYS = ("sender", "recipient", "kind", "message_id", "request_bytes", "outcome", "status")
"""What the gateway view of a post shows of the gateway's audit row: metadata only."""


def post_record(
    ident: str,
    *,
    asker: str,
    to: str,
    kind: str,
    row: Row | None,
    gateway: str,
    requester: list[tuple[str, str]],
    recipient: list[tuple[str, str]],
    reply: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """One copy of a post (a diffusion, a notice or its request) as the page gets it."""
    gateway_rows = [("audit", "no row")] if row is None else []
    if row is not None:
        gateway_rows = [(key.replace("_", " "), row[key]) for key in _ROW_KEYS if key in row]
    size = int(row["request_bytes"]) if row and row.get("request_bytes", "").isdigit() else 0
    return {
        "type": "exchange",
        "id": ident,
        "action": "post",
        "attack": None,
        "from": asker,
        "to": to,
        "kind": kind,
        "message_id": row.get("message_id", "") if row else "",
        "correlation_id": row.get("correlation_id", "") if row else "",
        "outcome": row.get("outcome", "") if row else "",
        "recipients": [],
        "caught": None,
        "checks": [],
        "sizes": None,
        "views": {
            "requester": {"party": asker, "rows": rows(requester + (reply or []))},
            "gateway": {
                "party": "gateway",
                "rows": rows(gateway_rows),
                "hex": "",
                "hex_total": size,
                "cannot_see": POST_CANNOT_SEE.get(kind, ["the message"]),
            },
            "recipient": {"party": to, "rows": rows(recipient)},
            "wire": wire_view(asker, gateway, size, 0),
        },
    }


def post_kind(post: PostOutcome | None, row: Row | None) -> str:
    """A post's kind name (``diffusion``, ``notice``, ``notice_request``, ``message``)."""
    if row is not None and row.get("kind"):
        return row["kind"]
    return envelope.kind_name(post.kind) if post is not None else "message"
