"""The classroom's six attacks, each run against a classroom-mode gateway and shown caught.

A network started by ``ncbsim classroom`` (``Network.start(..., attacks=True)``) runs the
classroom-mode gateway (``ncbsim gateway --classroom-attacks``, ncbsim.gateway.attacks),
which reads the attack to apply from ``WORKDIR/gateway/attack.json`` on every call.
:func:`run_attack` sets that file (for envelopes of the asker to one bureau only), sends
ONE real query through the gateway as the asker (a document check of a record the
bureau holds, so the honest answer would be a hit), sets the file back to honest in a
``finally``, and then reads where the attack was caught from the parties themselves: the
nodes' audit rows, the client's answer, the gateway's audit row and events, and the
gateway's own record of what it did (``attack-events.jsonl``). Nothing is assumed: an
attack that was not caught where :data:`ATTACKS` says comes back with ``passed`` false.

``spoof-sender`` needs no gateway mode: the asker, connected with its own certificate,
seals an envelope whose header names another bureau, and the honest gateway refuses it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from ncbsim.errors import ConfigError
from ncbsim.simulations import manifest
from ncbsim.simulations._demo_observer import Observer
from ncbsim.simulations.classroom import _attack_runs as runs
from ncbsim.simulations.classroom._attack_runs import AttackOutcome, Caught, set_mode

__all__ = [
    "ATTACKS",
    "WHERE",
    "Attack",
    "AttackOutcome",
    "Caught",
    "attacks_enabled",
    "run_attack",
    "set_mode",
]

WHERE = ("requester", "gateway", "recipient", "other")
"""Where an attack can be caught: the asker's client, the gateway, the bureau asked, or
another party (the bureau a query was redirected to)."""


@dataclass(frozen=True, slots=True)
class Attack:
    """One attack the room can trigger, and where the network catches it."""

    name: str
    title: str
    """What the gateway (or a bureau) does, as the page's button and heading say it."""
    caption: str
    """What the room should see, in two plain sentences."""
    caught_at: str
    """One of :data:`WHERE`."""


ATTACKS: dict[str, Attack] = {
    a.name: a
    for a in (
        Attack(
            "flip-bit",
            "The gateway flips one bit of a query",
            "The gateway changes one bit of the sealed query on its way. The bureau asked "
            "checks the signature before anything else, and refuses it.",
            "recipient",
        ),
        Attack(
            "replay",
            "The gateway delivers a query twice",
            "The gateway forwards the same sealed query a second time. The bureau asked "
            "remembers every message id it has seen, and refuses the copy.",
            "recipient",
        ),
        Attack(
            "swap-key",
            "The gateway swaps a bureau's key in the directory",
            "The gateway serves the asker a directory entry with its own encryption key in "
            "it. The asker checks the root's signature on the entry, refuses it, and never "
            "seals anything to the gateway's key.",
            "requester",
        ),
        Attack(
            "redirect",
            "The gateway redirects a query to another bureau",
            "The gateway delivers a query meant for one bureau to another. That bureau "
            "cannot open it: it was sealed to someone else.",
            "other",
        ),
        Attack(
            "drop-answer",
            "The gateway drops the answer",
            "The gateway lets the query through but throws the answer away. The asker "
            "reports no answer by its deadline, never a false no-hit.",
            "requester",
        ),
        Attack(
            "spoof-sender",
            "A bureau claims to be another",
            "A bureau seals a query whose header names another bureau as its sender. The "
            "gateway compares the header with the caller's certificate and refuses it.",
            "gateway",
        ),
    )
}
"""The six attacks, by name (the page lists them in this order)."""


def attacks_enabled(workdir: Path) -> bool:
    """Whether the network running in ``workdir`` was started with the classroom-mode
    gateway (``ncbsim classroom``); False too when no network runs there."""
    try:
        return manifest.read(workdir).classroom_attacks
    except ConfigError:
        return False


def _require(workdir: Path) -> None:
    """ConfigError unless ``workdir`` runs a network started by ``ncbsim classroom``."""
    read = manifest.read(workdir)  # ConfigError: no network there
    if not read.classroom_attacks:
        raise ConfigError(
            "attacks need a network started by `ncbsim classroom`; this one "
            f"(scenario {read.data.get('scenario', '?')} in {workdir}) was started by "
            "`ncbsim up`, `simulate` or `demo`, whose gateway is always honest"
        )


_LOCKS: dict[tuple[int, Path], asyncio.Lock] = {}


def _lock(workdir: Path) -> asyncio.Lock:
    """One attack at a time per network (the mode file holds one), in this event loop."""
    key = (id(asyncio.get_running_loop()), workdir.resolve())
    return _LOCKS.setdefault(key, asyncio.Lock())


async def run_attack(obs: Observer, workdir: Path, name: str, asker: str, to: str) -> AttackOutcome:
    """Run attack ``name`` on a query from ``asker`` to ``to`` and read where it was caught.

    ConfigError if ``workdir``'s network was not started by ``ncbsim classroom``, the
    attack is unknown, or the bureaus are not of the network. The gateway is honest
    again when this returns or raises. Start ``obs``'s stream first
    (:meth:`Observer.start_stream`) to have the gateway's events in the exchange.
    """
    _require(workdir)
    if name not in ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; one of: {', '.join(ATTACKS)}")
    bureaus = {p.bureau for p in manifest.read(workdir).procs if p.bureau}
    for code in (asker, to):
        if code not in bureaus:
            raise ConfigError(
                f"{code} is not a bureau of this network ({', '.join(sorted(bureaus))})"
            )
    if asker == to:
        raise ConfigError("an attack needs two bureaus: the asker and the one asked")
    async with _lock(workdir):
        query, ref = runs.document(obs, to)
        run = runs.Run(
            obs,
            workdir,
            name,
            asker,
            to,
            query,
            ref,
            runs.record_lines(workdir),
            ATTACKS[name].caught_at,
        )
        return await runs.RUNS[name](run)
