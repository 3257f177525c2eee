"""Faults applied live to a network of ``ncbsim up``: ``ncbsim fault`` and ``ncbsim heal``.

A fault is given as a scenario file's fault event (the same kinds, keys and parameters,
validated by :func:`ncbsim.simulations.scenario.fault_event`), and stays in force until healed:

- link faults and partitions are the fault daemon's (ncbsim.simulations.faultd), which exists
  only if the network was brought up with ``ncbsim up --faults``; it keeps them, and
  heals one with ``duration_s`` on time by itself;
- process faults (``kill``, ``pause``, and the instantaneous ``restart``, ``resume``) are
  signals to the process serving a bureau, or the gateway (``target = "gateway"``), and
  ``skew`` is a request to the host's control socket. They work on any network. Those
  that last (``kill``, ``pause``, ``skew``) are recorded in ``WORKDIR/run/faults.json``
  until healed; they take no ``duration_s``, since no process stays behind to heal them.

A bureau's host may serve other bureaus too (networks of more than eight bureaus): a
``kill`` or ``pause`` then holds all of them, and the reply says so.

Process faults are events too: when the network has a fault daemon, each one applied or
healed here is published on the daemon's event stream (its ``note`` op: one
``fault.applied`` / ``fault.healed`` per bureau held, correlated by the fault's id), so an
observer of the network (``ncbsim watch``) sees every fault in one place. Without a fault
daemon there is no long-lived process to publish them, and they are not published.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ncbsim.errors import ConfigError, NcbsimError
from ncbsim.simulations import faultd
from ncbsim.simulations.faults import clock, observed, process
from ncbsim.simulations.faults.registry import family
from ncbsim.simulations.manifest import Host
from ncbsim.simulations.network import Network
from ncbsim.simulations.operate import load, locked
from ncbsim.simulations.scenario import GATEWAY, PROXY_FAULTS, FaultEvent, fault_event
from ncbsim.workdir import Workdir

# The process faults in force, in Workdir.live_faults (WORKDIR/run/faults.json):
# ``{"faults": [{"event": TABLE, "started_ms": N, "held": [...]}]}`` (removed by
# ``ncbsim down``, with the network).


def _read(workdir: Path) -> list[dict[str, Any]]:
    path = Workdir(workdir).live_faults
    try:
        entries: list[dict[str, Any]] = json.loads(path.read_text())["faults"]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path}: unreadable ({exc!r}); remove it to forget the live faults"
        ) from None
    return entries


def _write(workdir: Path, entries: list[dict[str, Any]]) -> None:
    path = Workdir(workdir).live_faults
    if not entries:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps({"faults": entries}, indent=2) + "\n")
    tmp.replace(path)


def _kind(entry: Mapping[str, Any]) -> str:
    return str(entry["event"]["fault"])


def _ask_daemon(
    network: Network, message: Mapping[str, Any], *, timeout: float = faultd.REPLY_TIMEOUT_S
) -> dict[str, Any]:
    assert network.faultd is not None
    try:
        return faultd.request(network.faultd.address, message, timeout=timeout)
    except (OSError, ValueError) as exc:
        raise NcbsimError(
            f"the fault daemon (pid {network.faultd.pid}) does not answer ({exc}); "
            f"see {network.faultd.log}"
        ) from None


def _link_faults(network: Network, *, timeout: float = faultd.REPLY_TIMEOUT_S) -> list[Any]:
    """The link faults the fault daemon holds (none without one)."""
    if network.faultd is None:
        return []
    faults: list[Any] = _ask_daemon(network, {"op": "status"}, timeout=timeout).get("faults", [])
    return faults


def _link_faults_if_up(network: Network) -> list[Any]:
    """The link faults in force, or none if the fault daemon does not answer: process
    faults and their heals must work whatever became of it."""
    with contextlib.suppress(NcbsimError):
        return _link_faults(network)
    return []


def in_force(network: Network, *, timeout: float = faultd.REPLY_TIMEOUT_S) -> list[Any]:
    """Every fault in force, oldest first, as ``ncbsim status --json`` lists them."""
    listed = [
        faultd.describe(fault_event(e["event"]), e["started_ms"], held=e["held"])
        for e in _read(network.workdir)
    ]
    with contextlib.suppress(NcbsimError):  # status shows the daemon's row as down
        listed += _link_faults(network, timeout=timeout)
    return sorted(listed, key=lambda f: (f["started_ms"], f["id"]))


def skews(network: Network) -> dict[str, int]:
    """Each bureau's live clock skew (ms), to carry over a restart."""
    offsets: dict[str, int] = {}
    for entry in _read(network.workdir):
        if family(_kind(entry)) == clock.FAMILY:
            for code in entry["event"]["bureaus"]:
                offsets[code] = int(entry["event"]["offset_ms"])
    return offsets


def released(network: Network, targets: list[str]) -> None:
    """``targets`` (bureaus, or "gateway") run again: kills and pauses no longer hold them."""
    entries = []
    for entry in _read(network.workdir):
        if _kind(entry) in process.HEALS:
            freed = [t for t in entry["held"] if t in targets]
            if freed:  # the kill or pause ends for those, as a heal would end it
                _note(network, observed.HEALED, fault_event(entry["event"]), freed)
            entry["held"] = [t for t in entry["held"] if t not in targets]
            if not entry["held"]:
                continue
        entries.append(entry)
    _write(network.workdir, entries)


def _held(entries: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """What live kills and pauses hold: target -> (kind, fault id)."""
    return {
        target: (_kind(e), str(e["event"]["id"]))
        for e in entries
        if _kind(e) in process.HEALS
        for target in e["held"]
    }


def _hosts(network: Network, bureaus: tuple[str, ...]) -> list[Host]:
    return list({id(h): h for h in (network.host_of(code) for code in bureaus)}.values())


def _set_clock(network: Network, code: str, offset_ms: int) -> None:
    try:
        asyncio.run(clock.apply(Path(network.host_of(code).control), code, offset_ms))
    except (OSError, TimeoutError) as exc:
        raise NcbsimError(f"{code}'s host does not answer on its control socket ({exc})") from None
    except RuntimeError as exc:  # the host refused: "could not set FR's clock: ..."
        raise NcbsimError(str(exc)) from None


def _note(network: Network, kind: str, event: FaultEvent, targets: list[str]) -> None:
    """Publish ``kind`` for ``targets`` on the fault daemon's stream, if there is one.

    Best effort: the fault is done (or healed) already; a daemon that does not answer
    only means observers do not see it.
    """
    if network.faultd is None:
        return
    for target in targets:
        message = {
            "op": "note",
            "kind": kind,
            "view": observed.view(event, target),
            "id": event.id,
        }
        try:
            faultd.request(network.faultd.address, message, timeout=_NOTE_TIMEOUT_S)
        except (OSError, ValueError):
            return


_NOTE_TIMEOUT_S = 2.0


# ---------------------------------------------------------------- fault


def apply(workdir: Path, table: Mapping[str, Any]) -> dict[str, Any]:
    """Apply the fault ``table`` (a scenario fault event; ``at_s`` and ``id`` optional).

    Returns ``{"fault": {...}, "detail": "..."}``. Raises NcbsimError (ScenarioError for
    a table a scenario file could not hold) and changes nothing if it cannot be applied.
    """
    table = {"at_s": 0, **table}
    fault_event({**table, "id": table.get("id") or "live"})  # a bad table fails first
    load(workdir)
    with locked(workdir):
        network = Network.load(workdir)
        entries = _read(network.workdir)
        used = {str(e["event"]["id"]) for e in entries}
        used |= {str(f["id"]) for f in _link_faults_if_up(network)}
        if table.get("id") in used:
            raise ConfigError(
                f"a fault with id {table['id']!r} is already in force; heal it first"
                f" (ncbsim heal --workdir {workdir} {table['id']})"
            )
        if not table.get("id"):
            n = 1
            while f"{table['fault']}_{n}" in used:
                n += 1
            table["id"] = f"{table['fault']}_{n}"
        event = fault_event(table)
        codes = [p.bureau for p in network.procs if p.bureau]
        for code in event.bureaus:
            if code not in codes:
                raise ConfigError(f"{code} is not a bureau of this network ({', '.join(codes)})")
        if event.fault in PROXY_FAULTS:
            return _link(network, dict(table), event)
        if event.duration_s is not None:
            raise ConfigError(
                f"duration_s: a live {event.fault} lasts until `ncbsim heal` (nothing would"
                " be left running to end it)"
            )
        return _process(network, entries, dict(table), event)


def _link(network: Network, table: dict[str, Any], event: FaultEvent) -> dict[str, Any]:
    if network.faultd is None:
        raise NcbsimError(
            f"a {event.fault} fault needs the fault proxy on the bureaus' links, and this "
            "network was not brought up with --faults; bring it up again with "
            f"`ncbsim down --workdir {network.workdir}` and "
            f"`ncbsim up {network.scenario} --workdir {network.workdir} --faults --detach`"
        )
    reply = _ask_daemon(network, {"op": "fault", "event": table})
    if not reply.get("ok"):
        raise NcbsimError(f"{event.fault}: {reply.get('error')}")
    on = ", ".join(event.bureaus)
    if "connections_reset" in reply:  # an instant link fault: a reset
        detail = f"reset {reply.get('connections_reset', 0)} connections of {on}'s link"
    else:
        until = f" for {event.duration_s:g} s" if event.duration_s is not None else ""
        detail = f"{event.fault} {event.id} on {on}{until}"
    return {"fault": reply["fault"], "detail": detail}


def _process(
    network: Network, entries: list[dict[str, Any]], table: dict[str, Any], event: FaultEvent
) -> dict[str, Any]:
    fault = event.fault
    held = _held(entries)
    targets = list(event.targets)
    now_ms = int(time.time() * 1000)
    if family(fault) == clock.FAMILY:
        for code in targets:
            other = next((e for e in entries if _kind(e) == fault and code in e["held"]), None)
            if other is not None:
                raise ConfigError(f"{code}'s clock is already skewed by {other['event']['id']!r}")
        for code in targets:
            _set_clock(network, code, int(event.params["offset_ms"]))
        entries.append({"event": table, "started_ms": now_ms, "held": targets})
        _write(network.workdir, entries)
        _note(network, observed.APPLIED, event, targets)
        detail = f"{', '.join(targets)}: clock {int(event.params['offset_ms']):+d} ms"
        return {"fault": faultd.describe(event, now_ms, held=targets), "detail": detail}
    if fault in process.HEALS:
        # Every bureau of the hosts the signal reaches, not only those named: a host
        # serving a paused FR cannot be killed through DE.
        reached = targets
        if targets != [GATEWAY]:
            reached = [c for host in _hosts(network, tuple(targets)) for c in host.bureaus]
        for target in reached:
            if target in held:
                kind, by = held[target]
                done = {"kill": "killed", "pause": "paused"}.get(kind, f"held by {kind}")
                raise ConfigError(f"{target} is already {done} by {by!r}")
        hit = _hold(network, fault, event)
        entries.append({"event": table, "started_ms": now_ms, "held": hit})
        _write(network.workdir, entries)
        _note(network, observed.APPLIED, event, hit)
        detail = f"{fault} {event.id}: {', '.join(hit)} {'killed' if fault == 'kill' else 'paused'}"
        extra = sorted(set(hit) - set(targets))
        if extra:
            detail += f" ({', '.join(extra)} share a host process with {', '.join(targets)})"
        return {"fault": faultd.describe(event, now_ms, held=hit), "detail": detail}
    cause = process.RELEASES[fault]
    for target in targets:
        if held.get(target, ("", ""))[0] != cause:
            how = "--gateway" if target == GATEWAY else f"--bureau {target}"
            raise ConfigError(
                f"no live {cause} holds {target}; to restart a running process use "
                f"`ncbsim restart --workdir {network.workdir} {how}`"
                if fault == "restart"
                else f"no live pause holds {target}"
            )
    started = _release(network, fault, targets)
    released(network, started)
    _note(network, observed.APPLIED, event, started)
    return {"fault": faultd.describe(event, now_ms), "detail": f"{fault}: {', '.join(started)}"}


def _hold(network: Network, fault: str, event: FaultEvent) -> list[str]:
    """Kill or pause the processes of ``event``'s targets; every target they held."""
    if event.target == GATEWAY:
        _running(network, network.gateway.pid, "the gateway", "--gateway")
        process.apply(network, fault, None)
        return [GATEWAY]
    hosts = _hosts(network, event.bureaus)
    for host in hosts:  # all checked before any is hit
        _running(
            network,
            host.pid,
            f"the host of {', '.join(host.bureaus)}",
            f"--bureau {host.bureaus[0]}",
        )
    hit: list[str] = []
    for host in hosts:
        process.apply(network, fault, host)
        hit += host.bureaus
    return hit


def _running(network: Network, pid: int, what: str, option: str) -> None:
    if not network.runs(pid):
        raise NcbsimError(
            f"{what} (pid {pid}) is not running; start it again with "
            f"`ncbsim restart --workdir {network.workdir} {option}`"
        )


def _release(network: Network, fault: str, targets: list[str]) -> list[str]:
    """Restart (after a kill) or resume (after a pause) ``targets``; every target freed."""
    if targets == [GATEWAY]:
        if fault == "restart":
            if not network.runs(network.gateway.pid):
                process.apply(network, fault, None)
        elif network.runs(network.gateway.pid):
            process.apply(network, fault, None)
        return [GATEWAY]
    freed: list[str] = []
    for host in _hosts(network, tuple(targets)):
        if fault == "restart":
            if not network.runs(host.pid):
                process.apply(network, fault, host, clock_offsets=skews(network))
        elif network.runs(host.pid):
            process.apply(network, fault, host)
        freed += host.bureaus
    return freed


# ---------------------------------------------------------------- heal


def heal(workdir: Path, ids: list[str], *, everything: bool = False) -> list[str]:
    """End the live faults ``ids`` (or every one); a line saying what each heal did."""
    load(workdir)
    with locked(workdir):
        network = Network.load(workdir)
        entries = _read(network.workdir)
        links = {str(f["id"]) for f in _link_faults_if_up(network)}
        mine = {str(e["event"]["id"]): e for e in entries}
        if everything:
            ids = [*mine, *links]
        unknown = [i for i in ids if i not in mine and i not in links]
        if unknown:
            listed = ", ".join(sorted([*mine, *links])) or "none"
            raise ConfigError(f"no fault {unknown[0]!r} is in force (in force: {listed})")
        lines = []
        for fault_id in dict.fromkeys(ids):
            if fault_id in mine:
                lines.append(_heal_process(network, mine[fault_id]))
            else:
                reply = _ask_daemon(network, {"op": "heal", "id": fault_id})
                if not reply.get("ok"):  # healed by its duration_s meanwhile
                    lines.append(f"{fault_id}: {reply.get('error')}")
                    continue
                lines.append(f"healed {fault_id} ({reply['fault']['kind']})")
        return lines


def _heal_process(network: Network, entry: dict[str, Any]) -> str:
    event = fault_event(entry["event"])
    kind = event.fault
    held = list(entry["held"])
    # Out of the record first: a restart below then carries only the skews that remain.
    _write(
        network.workdir,
        [e for e in _read(network.workdir) if e["event"]["id"] != event.id],
    )
    if family(kind) == clock.FAMILY:
        for code in held:
            if network.runs(network.host_of(code).pid):
                _set_clock(network, code, 0)
        _note(network, observed.HEALED, event, held)
        return f"healed {event.id}: {', '.join(held)} back on time"
    freed = _release(network, process.HEALS[kind], held)
    _note(network, observed.HEALED, event, freed)
    verb = "restarted" if kind == "kill" else "resumed"
    return f"healed {event.id}: {', '.join(freed)} {verb}"
