"""The simulation report's schema: every path of ``report.json``, what it counts, its unit.

This is the one definition of the report's shape. The report builders (report.py,
outcomes.py, simulate.py) take their count and percentile keys and the query kinds a
scenario can send from here; simulations/paths.py reads it to refuse a check path that a
scenario's report cannot have, to compare a finished report with it, and to write
docs/scenarios.md's table of report paths.

Counts of queries are in one of two units, always named: a **query** is one request as
the simulator sends it (one to ALL, or to several bureaus, is one query; a step-2 fetch is
a query of its own), and a **pair** is one (query, recipient): a query to ALL in a network
of six bureaus makes five pairs. ``queries.*`` counts pairs; ``requests`` counts queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ncbsim.rights import ROLES
from ncbsim.simulations.schema_nodes import Ctx, Each, Leaf, Node, Table, When

if TYPE_CHECKING:
    from ncbsim.simulations.scenario import Scenario

__all__ = [
    "COUNT_KEYS",
    "KIND_ORDER",
    "LATENCY_KEYS",
    "MESSAGE_LATENCY_KEYS",
    "REPORT",
    "Ctx",
    "Each",
    "Leaf",
    "Node",
    "Table",
    "When",
    "kinds",
    "posts",
]

COUNT_KEYS = ("sent", "answered", "hit", "no_hit", "no_answer", "failed", "refused")
"""The keys of every table of pair counts, in order."""
LATENCY_KEYS = ("p50", "p95", "p99", "max")
"""The keys of every latency table but the messages' one."""
MESSAGE_LATENCY_KEYS = ("p50", "p99", "max")
KIND_ORDER = ("document", "person", "vehicle", "multi", "fetch", "fingerprint", "face", "confirm")
"""Every query kind a report may hold, in the order the report lists them."""
BIOMETRIC_KINDS = ("fingerprint", "face")
"""Biometric searches: a candidate list, confirmed by a step-2 ``confirm``."""
FATES = ("delivered", "expired", "rejected", "pending", "lost")
_ALL = "ALL"
_GATEWAY = "gateway"
_POST_EVENTS = ("diffusion", "message", "notice", "withdraw")

PAIRS = "pairs"
QUERIES = "queries"
NODES_OBSERVED_UP_TO = 32
"""A run observes its gateway's and nodes' events up to this many bureaus; past it (the
``all-members`` scale test) only the gateway's (ncbsim.simulations.observing)."""


def observed_parties(bureaus: Sequence[str]) -> list[str]:
    """The parties whose events a run of ``bureaus`` observes: the gateway, and the nodes
    of a network of at most :data:`NODES_OBSERVED_UP_TO` bureaus."""
    nodes = list(bureaus) if len(bureaus) <= NODES_OBSERVED_UP_TO else []
    return [_GATEWAY, *nodes]


# ---------------------------------------------------------------- what a scenario makes exist


def kinds(s: Scenario) -> tuple[str, ...]:
    """The query kinds the scenario can send: the report's ``kinds`` has each, zero or not.

    Every kind of ``traffic.mix`` with a weight above 0; ``person`` always (the canary
    query that checks the gateway's files is a person search); ``fetch`` if hit queries
    may be followed by a step-2 fetch; and the kinds of the timeline's queries (one to
    several bureaus, or ALL, is ``multi``); ``confirm`` if biometric hits may be
    confirmed.
    """
    weights = s.traffic.mix.weights()
    found = {k for k, w in weights.items() if w > 0} | {"person"}
    single = any(weights[k] > 0 for k in ("document", "person", "vehicle"))
    if single and s.traffic.hit_ratio > 0 and s.traffic.fetch_ratio > 0:
        found.add("fetch")
    if biometric_kinds(s) and s.traffic.hit_ratio > 0 and s.traffic.fetch_ratio > 0:
        found.add("confirm")
    for event in s.queries():
        query = event.query
        found.add("multi" if query.to == (_ALL,) or len(query.to) > 1 else query.kind)
        if query.fetch:
            found.add("fetch")
    return tuple(k for k in KIND_ORDER if k in found)


def biometric_kinds(s: Scenario) -> tuple[str, ...]:
    """The biometric searches the scenario sends (the report's ``biometric`` has each)."""
    weights = s.traffic.mix.weights()
    return tuple(k for k in BIOMETRIC_KINDS if weights[k] > 0)


def _biometric(s: Scenario, ctx: Ctx) -> Sequence[str]:
    return biometric_kinds(s)


def posts(s: Scenario) -> bool:
    """Whether the scenario posts one-way messages (then the report has ``messages``)."""
    return s.messages.rate_per_s > 0 or any(e.kind in _POST_EVENTS for e in s.events)


def _bureaus(s: Scenario, ctx: Ctx) -> Sequence[str]:
    return s.bureaus


def _kinds(s: Scenario, ctx: Ctx) -> Sequence[str]:
    return kinds(s)


def _faults(s: Scenario, ctx: Ctx) -> Sequence[str]:
    return [e.id for e in s.faults()]


def _params(s: Scenario, ctx: Ctx) -> Sequence[str]:
    return list(s.fault(ctx[1]).params)


def _queries(s: Scenario, ctx: Ctx) -> Sequence[str]:
    return [e.id for e in s.queries()]


def _roles(s: Scenario, ctx: Ctx) -> Sequence[str]:
    held = {u.role for u in s.users}
    return [r for r in ROLES if r in held]


def _has_users(s: Scenario, ctx: Ctx) -> bool:
    return bool(s.users)


_NO_USERS = "this scenario declares no users ([[users]])"


def _observed(s: Scenario, ctx: Ctx) -> Sequence[str]:
    return observed_parties(s.bureaus)


def _notices(s: Scenario, ctx: Ctx) -> Sequence[str]:
    return [e.id for e in s.events if e.kind == "notice"]


# ---------------------------------------------------------------- the schema

_COUNT_DOCS = {
    "sent": "every pair",
    "answered": "pairs answered: hit + no_hit",
    "hit": "answered with a match (a step-2 fetch that returned the record too)",
    "no_hit": "answered without a match (a fetch of an unknown reference too)",
    "no_answer": "pairs the deadline passed without an answer",
    "failed": "pairs that ended in an error (refusals aside)",
    "refused": "pairs refused PERMISSION_DENIED: a user's query beyond the rights its bureau"
    " signed, refused by the gateway or the owner",
}


def _counts(doc: str, *, latency: Table | None = None) -> Table:
    """A table of pair counts (``<count>``), with a latency table if given."""
    fields: dict[str, Node] = {k: Leaf(f"{doc}: {_COUNT_DOCS[k]}", PAIRS) for k in COUNT_KEYS}
    if latency is not None:
        fields["latency_ms"] = latency
    return Table(fields, group=("<count>", f"{doc}, by outcome", PAIRS), grouped=COUNT_KEYS)


def _latency(doc: str, unit: str, keys: Sequence[str] = LATENCY_KEYS) -> Table:
    fields: dict[str, Node] = {k: Leaf(f"{doc} ({k})", unit) for k in keys}
    return Table(fields, group=("<p>", doc, unit), grouped=tuple(keys))


def _stats(who: str, *, pairs_latency: bool = False, requests: bool = True) -> Table:
    fields: dict[str, Node] = {}
    if requests:
        fields["requests"] = Leaf(f"queries {who}, each once", QUERIES)
    fields["queries"] = _counts(f"pairs {who}")
    if pairs_latency:
        fields["latency_ms"] = _latency(
            f"latency of the answers to the pairs {who}", "ms, per pair"
        )
    else:
        fields["latency_ms"] = _latency(
            f"latency of the queries {who}, until their last answer", "ms, per query"
        )
    return Table(fields)


def _window(doc: str) -> Table:
    return _counts(doc, latency=_latency(f"latency of the answers: {doc}", "ms, per pair"))


_FAULT = Table(
    {
        "kind": Leaf("the fault's kind", "text", "text"),
        "bureaus": Leaf(
            "the bureaus it held (every bureau for a fault of the gateway)", "codes", "list"
        ),
        "direction": Leaf("to-bureau, from-bureau or both", "text", "text"),
        "params": Each(
            "<param>",
            "a parameter of that fault",
            _params,
            Leaf("the fault's parameter as in force (its default if not set)", "as its name says"),
        ),
        "start_s": Leaf("when it started, after the traffic started", "s"),
        "end_s": Leaf("when it ended; null if never healed", "s", nullable=True),
        "settle_s": Leaf("the settle time before the after window", "s"),
        "during": _window(
            "pairs sent to the fault's bureaus at or after its start and answered before its end"
        ),
        "others": _window("pairs sent to all other bureaus during the fault by bureaus outside it"),
        "after": _window("pairs sent to the fault's bureaus from end_s + settle_s on"),
        "recovered_s": Leaf(
            "from the heal until every faulted bureau answered again; null if one never did",
            "s",
            nullable=True,
        ),
        "target": When(
            "a fault of the gateway",
            "only a fault of the gateway has a target",
            lambda s, ctx: s.fault(ctx[1]).target == _GATEWAY,
            Leaf('"gateway"', "text", "text"),
        ),
    }
)


def _copies(doc: str, of: str) -> Table:
    """Some copies (also in the messages' totals) and their fates."""
    fates: dict[str, Node] = {f: Leaf(f"of {of}: {f}", "copies") for f in FATES}
    return Table({"recipients": Leaf(f"{doc} (also in the totals above)", "copies"), **fates})


_MESSAGES = Table(
    {
        "sent": Leaf(
            "posts sent, GS's notice posts included (read from GS's receipts at the gateway)",
            "posts",
        ),
        "recipients": Leaf("copies of those posts, one per recipient", "copies"),
        "accepted": Leaf("copies the gateway stored (now or, on a retry, before)", "copies"),
        "not_accepted": Leaf(
            "copies it did not (queue full, or unreachable until post_timeout_s)", "copies"
        ),
        "delivered": Leaf("accepted copies in their recipient's inbox after the drain", "copies"),
        "expired": Leaf("accepted copies that expired at the gateway", "copies"),
        "rejected": Leaf("accepted copies their recipient refused", "copies"),
        "pending": Leaf(
            "accepted copies still queued for a bureau (or in a gateway) that a fault holds"
            " down at the end",
            "copies",
        ),
        "lost": Leaf("accepted copies none of the above: lost", "copies"),
        "duplicates_processed": Leaf(
            "processings beyond the first, over every bureau's inbox (a message id processed"
            " twice, or one post under two message ids); 0 means exactly once",
            "processings",
        ),
        "out_of_order": Leaf(
            "copies a recipient processed after a later post of the same sender (the run's own"
            " posts; GS's notice copies are not counted)",
            "copies",
        ),
        "latency_ms": _latency(
            "from a post's planned time to its recipient processing it, over the run's own"
            " delivered copies; a post that waited for its sender's earlier ones or for the"
            " gateway counts the wait (p50, p99, max)",
            "ms, per copy",
            MESSAGE_LATENCY_KEYS,
        ),
        "drain_s": Leaf("how long the drain after the traffic waited", "s"),
        "notices": Each(
            "<id>",
            "a notice event id",
            _notices,
            Table(
                {
                    "published": Leaf("whether GS published the notice", "true/false", "bool"),
                    "holders": Leaf("bureaus (GS aside) that received it published", "bureaus"),
                    "withdrawn": Leaf("bureaus that now hold it withdrawn", "bureaus"),
                    "published_s": Leaf(
                        "from the request to GS's review; null if not published",
                        "s",
                        nullable=True,
                    ),
                    "all_held_s": Leaf(
                        "from the request to the last bureau holding it; null if none does",
                        "s",
                        nullable=True,
                    ),
                }
            ),
        ),
        "users": When(
            "a scenario with [[users]]",
            _NO_USERS,
            _has_users,
            _copies("copies addressed to the scenario's users", "the users' copies"),
        ),
        "notice_copies": _copies(
            "GS's copies of the notices it published, refused or withdrawn", "GS's notice copies"
        ),
    }
)

REPORT = Table(
    {
        "scenario": Leaf("the scenario's name", "text", "text"),
        "bureaus": Leaf("the scenario's bureau codes", "codes", "list"),
        "queries": _counts("pairs of the whole run"),
        "latency_ms": _latency("latency of every query, until its last answer", "ms, per query"),
        "requests": Leaf("queries sent, each once", QUERIES),
        "per_bureau": Each(
            "<XX>",
            "one of the scenario's bureaus",
            _bureaus,
            Table(
                {
                    "as_recipient": _stats("sent to it", pairs_latency=True, requests=False),
                    "as_requester": _stats("it and its users sent"),
                }
            ),
        ),
        "kinds": Each("<kind>", "a kind this scenario sends", _kinds, _stats("of this kind")),
        "users": When(
            "a scenario with [[users]]",
            _NO_USERS,
            _has_users,
            _stats("its users sent (also in their bureau's as_requester)"),
        ),
        "roles": When(
            "a scenario with [[users]]",
            _NO_USERS,
            _has_users,
            Each(
                "<role>",
                "a role of the scenario's users",
                _roles,
                _stats("users of this role sent"),
            ),
        ),
        "faults": Each("<id>", "a fault event id", _faults, _FAULT),
        "slowest_queries": Leaf(
            "the 10 slowest queries, slowest first: label, kind, requester, recipients,"
            " latency_ms, outcome (mixed if its pairs differ), sent_s and trace_id (null"
            " unless --traces; its spans are in traces/, docs/traces.md)",
            "list",
            "list",
        ),
        "prepare_s": Leaf("making the PKI and the records", "s"),
        "startup_s": Leaf("starting every process until all serve", "s"),
        "warmup_s": Leaf("loading the requesters' directories", "s"),
        "traffic_s": Leaf("the traffic, until the last answer", "s"),
        "shutdown_s": Leaf("stopping everything", "s"),
        "hosts": Leaf("bureau host processes", "processes"),
        "processes": Leaf("every process of the network, the gateway included", "processes"),
        "late_sends": Leaf(
            "queries sent more than 0.1 s after their planned time (all max_in_flight busy)",
            QUERIES,
        ),
        "max_send_delay_s": Leaf("the largest delay of a query's sending", "s"),
        "observation": Table(
            {
                "dropped": Leaf(
                    "events of the network the run missed: dropped by a party's buffer or by"
                    " the simulator's queue when it fell behind",
                    "events",
                ),
                "events": Each(
                    "<party>",
                    f'"gateway", and each bureau up to {NODES_OBSERVED_UP_TO} bureaus',
                    _observed,
                    Leaf("events of that party written into timeline.jsonl", "events"),
                ),
            }
        ),
        "fault_errors": Leaf(
            "one line per fault action that failed; present only then",
            "list",
            "list",
            optional=True,
        ),
        "messages": When(
            "a scenario that posts messages",
            "this scenario posts no messages (messages.rate_per_s is 0 and no diffusion,"
            " message or notice event)",
            lambda s, ctx: posts(s),
            _MESSAGES,
        ),
        "netns": When(
            'engine.mode = "netns"',
            'only engine.mode = "netns" runs in network namespaces',
            lambda s, ctx: s.engine.mode == "netns",
            Table(
                {
                    "prefix": Leaf("the run's namespace prefix", "text", "text"),
                    "engine_namespace": Leaf("where the engine ran", "text", "text"),
                    "namespaces": Leaf("network namespaces created", "namespaces"),
                }
            ),
        ),
        "peak_rss_mib": Leaf(
            "peak resident memory of the whole process tree (simulator, gateway, hosts): the sum"
            " of each process's RSS, sampled every 0.5 s",
            "MiB",
        ),
        "biometric": When(
            "a scenario whose traffic.mix has fingerprint or face searches",
            "this scenario sends no biometric search (traffic.mix.fingerprint and face are 0)",
            lambda s, ctx: bool(biometric_kinds(s)),
            Each(
                "<modality>",
                "fingerprint or face, if the scenario sends it",
                _biometric,
                Table(
                    {
                        "searches": Leaf(
                            "answered searches aimed at an enrolled subject (planted)", QUERIES
                        ),
                        "found": Leaf("of those, with the subject in the candidate list", QUERIES),
                        "first": Leaf("of those, with the subject ranked first", QUERIES),
                        "rank1": Leaf("first / searches (0 when none): the rank-1 rate", "share"),
                        "strangers": Leaf(
                            "answered searches of a subject enrolled nowhere", QUERIES
                        ),
                        "false_candidates": Leaf(
                            "of those, with a candidate all the same (a false match at the"
                            " search threshold, for step 2 to turn down)",
                            QUERIES,
                        ),
                        "confirmed": Leaf(
                            "step-2 confirmations of a planted subject that released its person",
                            QUERIES,
                        ),
                    }
                ),
            ),
        ),
        "planted": Table(
            {
                "queries": Leaf(
                    "pairs aimed at a planted record (biometric searches: see biometric)", PAIRS
                ),
                "hit": Leaf("of those, answered with the planted record", PAIRS),
                "missed": Leaf("answered without it (wrong)", PAIRS),
                "unanswered": Leaf("not answered (no_answer or failed)", PAIRS),
            }
        ),
        "explicit": Each(
            "<id>",
            "a query event id",
            _queries,
            Table(
                {
                    "outcome": Leaf(
                        "what came back: its fetch's outcome if it fetched, else the answer of"
                        " the bureau that holds the planted record",
                        "text",
                        "text",
                    ),
                    "outcomes": Leaf("every outcome of its pairs", "list", "list"),
                    "expected": Leaf("its expect, null if none", "text", "text", nullable=True),
                    "passed": Leaf("whether it came back as expected", "true/false", "bool"),
                }
            ),
        ),
        "checks": Leaf(
            "every check: name, passed, detail, expect", "list", "list", after_checks=True
        ),
        "passed": Leaf("whether every check passed", "true/false", "bool", after_checks=True),
        "duration_s": Leaf("the whole run, wall clock", "s", after_checks=True),
        "workdir": Leaf(
            "the kept work directory; null if temporary",
            "text",
            "text",
            nullable=True,
            after_checks=True,
        ),
        "run_dir": Leaf("the run directory", "text", "text", after_checks=True),
        "traces": Leaf(
            "the run's traces folder (sim.jsonl, gateway.jsonl, host-N.jsonl); null"
            " without --traces",
            "text",
            "text",
            nullable=True,
            after_checks=True,
        ),
    }
)
"""The whole report.json, as a finished run writes it."""
