"""How each of the classroom's six attacks is run and read (simulations/classroom/attacks.py
is the public side: the list of attacks and :func:`run_attack`).

Each runner sets the classroom-mode gateway's mode file for the asker's envelopes to one
bureau, sends one real query, sets the file back to honest in a ``finally``, and reads
where the attack was caught from the parties: audit rows, the client's answer, the
gateway's audit row and events, and the gateway's own attack record.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from ncbsim import private
from ncbsim.client import Outcome
from ncbsim.directory import Peer
from ncbsim.errors import ConfigError, DirectoryError, reason_for
from ncbsim.simulations import manifest
from ncbsim.simulations._demo_observer import Exchange, Observer
from ncbsim.v2 import query_pb2
from ncbsim.workdir import Workdir

DROP_DEADLINE_S = 3.0
"""The asker's deadline in ``drop-answer``: the gateway holds the call past it."""


@dataclass(frozen=True, slots=True)
class Caught:
    """Where an attack was caught, as the party that caught it recorded it."""

    where: str
    """One of :data:`WHERE`."""
    party: str
    """The bureau code, or ``gateway``."""
    reason: str
    """A short code from the audit row, the gateway's event or the client (``unverified``)."""
    text: str
    """One plain sentence for the room."""


@dataclass(slots=True)
class AttackOutcome:
    """What one attack came to: the query it attacked, where it was caught, what held."""

    name: str
    asker: str
    to: str
    exchange: Exchange | None
    """The attacked query as every party saw it (None for ``swap-key``: nothing was sealed)."""
    caught: Caught | None
    caught_at: str
    """Where it should be caught (``ATTACKS[name].caught_at``)."""
    checks: list[tuple[str, bool]] = field(default_factory=list)
    """Each thing that should hold, and whether it did, read from the parties."""
    query: query_pb2.Query = field(default_factory=query_pb2.Query)
    """What the asker asked (or, for ``swap-key``, meant to ask): a record ``to`` holds."""
    ref: str = ""
    """That record's reference in ``to``'s database (the honest answer's match)."""

    @property
    def passed(self) -> bool:
        """Caught where it should be, and every check held."""
        return (
            self.caught is not None
            and self.caught.where == self.caught_at
            and bool(self.checks)
            and all(ok for _, ok in self.checks)
        )


def set_mode(workdir: Path, mode: dict[str, Any]) -> None:
    """Tell the classroom-mode gateway what to do from its next call on (replaced in one
    step, so it never reads half a file)."""
    path = Workdir(workdir).gateway.attack_mode
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    private.write_text(tmp, json.dumps(mode))
    tmp.replace(path)


# ---------------------------------------------------------------- one attack's context


@dataclass(slots=True)
class Run:
    """What every attack needs: the observer, the parties and the query to attack."""

    obs: Observer
    workdir: Path
    name: str
    asker: str
    to: str
    query: query_pb2.Query
    ref: str
    record_from: int
    """Lines of the gateway's attack record before this attack."""
    caught_at: str
    """Where it should be caught (``ATTACKS[name].caught_at``)."""

    def outcome(
        self, exchange: Exchange | None, caught: Caught | None, checks: list[tuple[str, bool]]
    ) -> AttackOutcome:
        """The outcome of this run."""
        return AttackOutcome(
            self.name,
            self.asker,
            self.to,
            exchange,
            caught,
            self.caught_at,
            checks,
            self.query,
            self.ref,
        )

    def record(self, **match: str) -> list[dict[str, Any]]:
        """The gateway's attack record since this attack began, lines matching ``match``."""
        path = Workdir(self.workdir).gateway.attack_events
        try:
            lines = path.read_text().splitlines()[self.record_from :]
        except FileNotFoundError:
            return []
        found = []
        for line in lines:
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if all(str(entry.get(k, "")) == v for k, v in match.items()):
                    found.append(entry)
        return found

    def hit(self, exchange: Exchange) -> bool:
        """Whether the asker got the genuine hit on the record asked about."""
        answer = exchange.answer
        return answer.outcome == Outcome.HIT and self.ref in {m.ref for m in answer.matches}

    def third(self) -> str:
        """A bureau of the network other than the asker and the one asked."""
        bureaus = [p.bureau for p in manifest.read(self.workdir).procs if p.bureau]
        others = [b for b in bureaus if b not in {self.asker, self.to}]
        if not others:
            raise ConfigError("this attack needs a third bureau in the network")
        return others[0]


def document(obs: Observer, to: str) -> tuple[query_pb2.Query, str]:
    """A document check of a record ``to`` holds, visible to every bureau (a sure hit)."""
    rows = obs.pick(
        to,
        "SELECT ref, number, issuer FROM documents WHERE status = 'stolen' ORDER BY id LIMIT 50",
    )
    store = obs.store(to)
    for ref, number, issuer in rows:
        if not store.control(ref).restricted:
            document = query_pb2.DocumentQuery(number=number, issuer=issuer)
            return query_pb2.Query(document=document), ref
    raise ConfigError(f"{to} holds no stolen document every bureau may see, to ask about")


def record_lines(workdir: Path) -> int:
    """How many lines the gateway's attack record holds now (where a run starts reading)."""
    path = Workdir(workdir).gateway.attack_events
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


# ---------------------------------------------------------------- the six attacks


def _refusal(row: dict[str, str] | None) -> str:
    """The reason of a refusing audit row, or "" if the row is missing or not a refusal."""
    return row["reason"] if row is not None and row.get("outcome") == "refused" else ""


async def _flip_bit(run: Run) -> AttackOutcome:
    """The gateway flips a bit of the sealed body; ``to``'s node refuses it."""
    set_mode(
        run.workdir,
        {"mode": "alter-request", "variant": "body", "target": run.to, "sender": run.asker},
    )
    try:
        ex = await run.obs.exchange(run.query, run.to, asker=run.asker)
    finally:
        set_mode(run.workdir, {"mode": "honest"})
    mid = ex.sealed.header.message_hex
    reason = _refusal(await run.obs.node_row(run.to, mid))
    caught = (
        Caught(
            "recipient",
            run.to,
            reason,
            f"{run.to}'s node refused the query: its signature did not verify ({reason}).",
        )
        if reason
        else None
    )
    return run.outcome(
        ex,
        caught,
        [
            (
                f"the gateway flipped a bit of {run.asker}'s query",
                bool(run.record(action="altered-request", message_id=mid)),
            ),
            (f"{run.to}'s node refused it: reason {reason or 'none'}", reason == "unverified"),
            (
                f"{run.asker} got {ex.answer.outcome.value}, not a hit or a no-hit",
                ex.answer.outcome == Outcome.FAILED,
            ),
        ],
    )


async def _replay(run: Run) -> AttackOutcome:
    """The gateway forwards the query twice; ``to``'s node refuses the copy."""
    set_mode(run.workdir, {"mode": "replay-request", "target": run.to, "sender": run.asker})
    try:
        ex = await run.obs.exchange(run.query, run.to, asker=run.asker)
    finally:
        set_mode(run.workdir, {"mode": "honest"})
    mid = ex.sealed.header.message_hex
    rows = await run.obs.node_rows(run.to, mid, 2)
    first = rows[0]["outcome"] if rows else ""
    reason = _refusal(rows[1]) if len(rows) > 1 else ""
    caught = (
        Caught(
            "recipient",
            run.to,
            reason,
            f"{run.to}'s node answered the query once and refused the copy: "
            "it had seen that message id before.",
        )
        if reason
        else None
    )
    return run.outcome(
        ex,
        caught,
        [
            (
                f"the gateway delivered {run.asker}'s query twice",
                bool(run.record(action="replayed-request", message_id=mid)),
            ),
            (f"{run.to}'s node answered the first copy", first == "answered"),
            (f"{run.to}'s node refused the second: reason {reason or 'none'}", reason == "replay"),
            (f"{run.asker} got the one genuine answer, a hit", run.hit(ex)),
        ],
    )


def _entry_reason(exc: DirectoryError) -> str:
    """A short code for why a client refused a directory entry."""
    text = str(exc)
    if "not signed by the pinned root" in text:
        return "root_signature"
    if "revoked" in text:
        return "revoked"
    if "outside its validity" in text:
        return "expired"
    return reason_for(exc)


async def _swap_key(run: Run) -> AttackOutcome:
    """The gateway serves ``to``'s entry with its own key; the asker's client refuses it."""
    swap = {"bureau": run.to, "key": "encryption", "how": "altered"}
    set_mode(run.workdir, {"mode": "swap-key", "sender": run.asker, "swap": swap})
    try:
        # The asker looks the bureau up afresh, as a client meeting it first does.
        entry: Peer | DirectoryError = await run.obs.fresh_entry(run.to, asker=run.asker)
    finally:
        set_mode(run.workdir, {"mode": "honest"})
    refused = entry if isinstance(entry, DirectoryError) else None
    reason = _entry_reason(refused) if refused is not None else ""
    caught = (
        Caught(
            "requester",
            run.asker,
            reason,
            f"{run.asker}'s client refused {run.to}'s directory entry: the root's signature "
            "did not match the key in it.",
        )
        if refused is not None
        else None
    )
    served = run.record(rpc="GetDirectory", peer=run.asker, swapped=run.to)
    sealed = run.record(action="received", sender=run.asker, recipient=run.to)
    return run.outcome(
        None,
        caught,
        [
            (f"the gateway served {run.asker} a swapped key for {run.to}", bool(served)),
            (
                f"{run.asker}'s client refused the entry: reason {reason or 'none'}",
                reason == "root_signature",
            ),
            (
                f"{run.asker} sealed nothing to the gateway's key (no envelope to {run.to})",
                not sealed and not run.record(action="sealed-to-attacker"),
            ),
        ],
    )


async def _redirect(run: Run) -> AttackOutcome:
    """The gateway delivers the query to a third bureau, whose node refuses it."""
    other = run.third()
    mode = {"mode": "reroute", "variant": "forward", "target": run.to, "to": other}
    set_mode(run.workdir, {**mode, "sender": run.asker})
    try:
        ex = await run.obs.exchange(run.query, run.to, asker=run.asker)
    finally:
        set_mode(run.workdir, {"mode": "honest"})
    mid = ex.sealed.header.message_hex
    reason = _refusal(await run.obs.node_row(other, mid))
    caught = (
        Caught(
            "other",
            other,
            reason,
            f"{other}'s node refused the query meant for {run.to}: "
            f"it was not sealed to {other} ({reason}).",
        )
        if reason
        else None
    )
    outcome = ex.answer.outcome
    return run.outcome(
        ex,
        caught,
        [
            (
                f"the gateway delivered {run.asker}'s query for {run.to} to {other}",
                bool(run.record(action="rerouted", message_id=mid, to=other)),
            ),
            (f"{other}'s node refused it: reason {reason or 'none'}", reason == "unverified"),
            (
                f"{run.asker} got {outcome.value}, not a hit or a no-hit",
                outcome in (Outcome.FAILED, Outcome.NO_ANSWER),
            ),
            (f"{run.to} never saw it", await run.obs.node_row(run.to, mid) is None),
        ],
    )


async def _drop_answer(run: Run) -> AttackOutcome:
    """The gateway discards the answer; the asker reports no answer, not a no-hit."""
    set_mode(
        run.workdir,
        {"mode": "drop", "variant": "hang", "target": run.to, "sender": run.asker},
    )
    try:
        ex = await run.obs.exchange(run.query, run.to, asker=run.asker, timeout_s=DROP_DEADLINE_S)
    finally:
        set_mode(run.workdir, {"mode": "honest"})
    mid = ex.sealed.header.message_hex
    row = await run.obs.node_row(run.to, mid)
    outcome = ex.answer.outcome
    caught = (
        Caught(
            "requester",
            run.asker,
            outcome.value,
            f"{run.asker}'s client reported no answer from {run.to} by its deadline, not a no-hit.",
        )
        if outcome == Outcome.NO_ANSWER
        else None
    )
    return run.outcome(
        ex,
        caught,
        [
            (
                f"the gateway dropped {run.to}'s answer",
                bool(run.record(action="dropped", message_id=mid)),
            ),
            (
                f"{run.to}'s node did answer (its audit row)",
                row is not None and row.get("outcome") == "answered",
            ),
            (
                f"{run.asker} got {outcome.value}, never a false no-hit",
                outcome == Outcome.NO_ANSWER,
            ),
        ],
    )


async def _spoof_sender(run: Run) -> AttackOutcome:
    """The asker claims another bureau's name in the header; the gateway refuses it."""
    claimed = run.third()
    ex = await run.obs.exchange(run.query, run.to, asker=run.asker, claim=claimed)
    mid = ex.sealed.header.message_hex
    status = ex.error.code() if ex.error is not None else grpc.StatusCode.OK
    row = ex.gateway_row
    event = ex.gateway_event
    # The gateway's reason is in its event; its audit row has the status, not the reason.
    reason = str(event.view.get("reason", "")) if event is not None else ""
    if not reason and "does not match the authenticated bureau" in ex.answer.detail:
        reason = "identity_mismatch"  # what the client was told, when no stream is followed
    refused = row is not None and row.get("status") == "PERMISSION_DENIED"
    caught = (
        Caught(
            "gateway",
            "gateway",
            reason,
            f"The gateway refused it: the header says {claimed}, the certificate says {run.asker}.",
        )
        if refused and reason
        else None
    )
    return run.outcome(
        ex,
        caught,
        [
            (
                f"{run.asker} sealed a query whose header names {claimed} as its sender",
                ex.sealed.header.sender == claimed,
            ),
            (
                f"the gateway refused it: {status.name}, reason {reason or 'none'}",
                status == grpc.StatusCode.PERMISSION_DENIED and reason == "identity_mismatch",
            ),
            (f"the gateway's audit row says {row.get('status') if row else 'nothing'}", refused),
            (f"{run.to} never saw it", await run.obs.node_row(run.to, mid) is None),
        ],
    )


RUNS: dict[str, Callable[[Run], Awaitable[AttackOutcome]]] = {
    "flip-bit": _flip_bit,
    "replay": _replay,
    "swap-key": _swap_key,
    "redirect": _redirect,
    "drop-answer": _drop_answer,
    "spoof-sender": _spoof_sender,
}
