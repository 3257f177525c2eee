"""The lesson's two steps where something fails on the way, as ``ncbsim demo`` runs them:
a multi-bureau query with one bureau's node frozen (``down``), and an envelope with one
ciphertext bit flipped (``tampered``).

Like the other query steps (ncbsim.simulations._demo_steps), each goes through the
gateway's real RPCs as the asking bureau, shows what each party saw, and checks that the
failure was caught where the lesson says.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

import grpc

from ncbsim.client import Outcome
from ncbsim.simulations import _demo_observer as o
from ncbsim.simulations import _demo_views as v
from ncbsim.simulations._demo_record import Step
from ncbsim.v2 import query_pb2

if TYPE_CHECKING:
    from ncbsim.simulations._demo_steps import Demo

__all__ = ["step_down", "step_tampered"]


def _document(number: str, issuer: str) -> query_pb2.Query:
    return query_pb2.Query(document=query_pb2.DocumentQuery(number=number, issuer=issuer))


def _outcome(row: o.Row | None) -> str:
    return "no row" if row is None else row["outcome"]


async def step_down(demo: Demo, step: Step) -> None:
    """A query to every other bureau while one is stopped: it is no-answer."""
    to = [b for b in demo.members if b != demo.asker]
    holder, down = to[0], to[-1]
    pid = demo.network.node(down).pid
    shared = [p.bureau for p in demo.network.procs if p.pid == pid and p.bureau != down]
    if not step.check(f"{down}'s node runs in a process of its own", not shared):
        return
    rows = demo.obs.pick(
        holder,
        "SELECT ref, number, issuer FROM documents WHERE status = 'lost' ORDER BY id LIMIT 1",
    )
    if not step.check(f"{holder} holds a lost document to ask about", rows):
        return
    ref, number, issuer = rows[0]
    query = _document(number, issuer)
    os.kill(pid, signal.SIGSTOP)
    try:
        sealed, answers = await demo.obs.multi(query, to, deadline_s=demo.config.deadline_s)
    finally:
        os.kill(pid, signal.SIGCONT)
    by = {a.bureau: a for a in answers}
    rows_by = {r: await demo.obs.gateway_row(sealed[r].header.message_hex) for r in to}
    opened = demo.obs.open_as(holder, sealed[holder].envelope)
    event = await demo.obs.gateway_event(sealed[holder].header.message_hex)
    demo.confirm(step, query, sealed[holder].envelope, opened, rows_by[holder], event=event)
    step.check(
        f"{down} (stopped) listed as no-answer within {demo.config.deadline_s:g} s",
        by[down].outcome == Outcome.NO_ANSWER,
    )
    step.check(
        f"gateway audit: {down} no_answer",
        _outcome(rows_by[down]) == "no_answer",
    )
    answered = {Outcome.HIT, Outcome.NO_HIT}
    step.check(
        "every other bureau answered",
        all(by[b].outcome in answered for b in to if b != down),
    )
    step.check(f"{holder} answered hit", ref in [m.ref for m in by[holder].matches])
    routed = [
        (r, f"{len(sealed[r].envelope.sealed)} B, {_outcome(row)}") for r, row in rows_by.items()
    ]
    for r in to:  # the frozen node opened nothing: it never saw its copy
        seen = demo.obs.open_as(r, sealed[r].envelope) if r != down else None
        first = r == holder
        ex = o.Exchange(sealed[r], by[r], seen, rows_by[r], None, event if first else None)
        per_bureau = [("per bureau", ""), *routed] if first else []
        demo.exchanged(step, query, ex, ref if first else "", gateway=per_bureau)
    demo.show(
        step,
        (
            v.asker_panel(demo.asker, query, ", ".join(to)),
            v.gateway_panel(
                sealed[holder].envelope,
                rows_by[holder],
                [("per bureau", "")],
                routed,
                event=event,
            ),
            v.answerer_panel(
                holder,
                opened,
                demo.obs.record(holder, ref),
                [(down, "stopped: sees nothing")],
            ),
            v.reply_panel(demo.asker, "all", v.merged_reply(answers)),
        ),
        asker=demo.asker,
        deadline=f"{demo.config.deadline_s:g}",
        down=down,
        pid=pid,
    )


async def step_tampered(demo: Demo, step: Step) -> None:
    """One flipped ciphertext bit; the gateway relays it, the node refuses it."""
    to = demo.members[1]
    query = _document("X0000000", to)
    ex = await demo.obs.exchange(query, to, tamper=True)
    code = ex.error.code() if ex.error is not None else grpc.StatusCode.OK
    node = await demo.obs.node_row(to, ex.sealed.header.message_hex)
    demo.confirm(step, None, ex.sealed.envelope, ex.opened, ex.gateway_row, event=ex.gateway_event)
    step.check(
        f"{demo.asker} got the refusal: INVALID_ARGUMENT",
        code == grpc.StatusCode.INVALID_ARGUMENT and ex.answer.outcome == Outcome.FAILED,
    )
    step.check(
        f"{to}'s node audit: refused, reason unverified",
        node is not None and (node["outcome"], node["reason"]) == ("refused", "unverified"),
    )
    step.check("the envelope does not open with the recipient's key", ex.opened is None)
    step.check(
        "the gateway relayed it to the node: it cannot tell",
        _outcome(ex.gateway_row) == "refused" and node is not None,
    )
    node_pairs = (
        [("audit", "no row!")]
        if node is None
        else [
            ("audit", f"{node['outcome']}, reason {node['reason']}"),
            ("status", node["status"]),
        ]
    )
    error = (
        [("answer", "refused"), ("status", code.name)]
        if ex.error is not None
        else v.answer_fields(ex.answer)
    )
    shown = demo.exchanged(
        step,
        query,
        ex,
        requester=[("tampered", "1 bit of ciphertext flipped")],
        recipient=node_pairs,
        reply=error,
    )
    demo.show(step, demo.views(shown), asker=demo.asker, to=to)
