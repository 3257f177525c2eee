"""A run's faults: the scenario's fault and heal events, applied and healed at their times.

The simulation engine (ncbsim.simulations.engine) owns one :class:`FaultSchedule`. It applies
each fault at its ``at_s`` through the fault's family (ncbsim.simulations.faults.link, process,
clock; kernel in real-network mode), heals it after its ``duration_s`` or at its heal
event, and records each as a FaultRecord with its window. A failed action is recorded in
the report (and fails a check), never fatal to the run.

Each is an event of the simulator too (ncbsim.simulations.faults.observed): one
``fault.applied`` per target once its action is done, dated when the action began (the
fault's ``start_s``), one ``fault.healed`` likewise, and a ``fault.failed`` for an action
that failed; all correlated by the fault's id.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from ncbsim.simulations.faults import clock, kernel, link, observed, process
from ncbsim.simulations.faults.registry import INSTANT_FAULTS, PROXY_FAULTS, family
from ncbsim.simulations.outcomes import FaultRecord
from ncbsim.simulations.scenario import GATEWAY, FaultEvent, HealEvent

if TYPE_CHECKING:
    from ncbsim.simulations.engine import Engine
    from ncbsim.simulations.netns import KernelFaults

log = structlog.get_logger()


@dataclass(slots=True)
class _Active:
    record: FaultRecord
    event: FaultEvent
    held: set[str] = field(default_factory=set)  # bureaus a kill or pause still holds


class FaultSchedule:
    """The faults of ``engine``'s scenario: in force, applied, healed and recorded.

    ``kernel`` and ``namespace_of`` are set in real-network mode: the kernel family then
    does the link kinds it knows (ncbsim.simulations.faults.kernel) in the bureau's namespace.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.active: dict[str, _Active] = {}
        # Link faults in force per bureau (id -> event): healing one re-applies the rest.
        self.link_faults: dict[str, dict[str, FaultEvent]] = {
            b: {} for b in engine.scenario.bureaus
        }
        self.kernel: KernelFaults | None = None
        self.namespace_of: Callable[[str], str] | None = None

    def in_kernel(self, fault: str) -> bool:
        """Whether ``fault`` is kernel state here (real-network mode)."""
        return self.kernel is not None and fault in kernel.KINDS

    def uses_proxy(self, fault: str) -> bool:
        """Whether ``fault`` is done by the fault proxy (not by the kernel in this mode)."""
        return fault in PROXY_FAULTS and not self.in_kernel(fault)

    def _kernel(self, code: str) -> tuple[KernelFaults, str]:
        """The kernel's faults, and the namespace of ``code``'s host (real-network mode)."""
        assert self.kernel is not None
        assert self.namespace_of is not None
        return self.kernel, self.namespace_of(code)

    def down(self) -> set[str]:
        """What a kill or pause holds down now: bureau codes, and "gateway"."""
        return {
            code
            for active in self.active.values()
            if active.record.kind in process.HEALS
            for code in active.held
        }

    def close(self) -> list[FaultRecord]:
        """The faults never healed, open until the end (the run is over)."""
        return [_with_end(active.record, None) for active in self.active.values()]

    async def run(self) -> None:
        """Apply and heal every fault event at its time (from the engine's traffic start)."""
        engine = self.engine
        healers: list[asyncio.Task[None]] = []
        try:
            for event in engine.scenario.events:
                if not isinstance(event, FaultEvent | HealEvent):
                    continue  # sent by the traffic loop or the messenger at its time
                delay = engine._t0 + event.at_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if isinstance(event, HealEvent):
                    await self._guarded("heal", event.heal, self.heal(event.heal))
                    continue
                await self._guarded("fault", event.id, self.apply(event), event)
                # Healed on time even if applying failed partway: undo what did apply.
                if event.duration_s is not None and event.fault not in INSTANT_FAULTS:
                    healers.append(asyncio.create_task(self._heal_later(event)))
            if healers:
                await asyncio.gather(*healers)
        finally:
            for task in healers:
                task.cancel()

    async def _guarded(
        self,
        action: str,
        fault_id: str,
        step: Awaitable[None],
        event: FaultEvent | None = None,
    ) -> bool:
        """Run one fault action; a failure is recorded (and fails a check), not fatal."""
        active = self.active.get(fault_id)  # a heal takes it out of force: look first
        if event is None and active is not None:
            event = active.event
        try:
            await step
        except Exception as exc:
            log.exception("fault_failed", id=fault_id, action=action)
            error = f"{action} {fault_id}: {type(exc).__name__}: {exc}"[:300]
            self.engine.result.extra.setdefault("fault_errors", []).append(error)
            if event is not None:
                for target in observed.targets(event):
                    view = observed.failed(event, target, action, exc)
                    self.engine.event(observed.FAILED, view, correlation_id=fault_id)
            return False
        return True

    def _emit(self, kind: str, event: FaultEvent, target: str, t_s: float, **extra: float) -> None:
        """One ``fault.applied`` or ``fault.healed`` of ``event`` on ``target``, at ``t_s``."""
        view = {**observed.view(event, target), **extra}
        self.engine.event(kind, view, t_s=t_s, correlation_id=event.id)

    async def _heal_later(self, event: FaultEvent) -> None:
        assert event.duration_s is not None
        delay = self.engine._t0 + event.at_s + event.duration_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await self._guarded("heal", event.id, self.heal(event.id))

    async def apply(self, event: FaultEvent) -> None:
        """Apply ``event`` now, to each of its bureaus or to the gateway."""
        engine = self.engine
        fault = event.fault
        start = engine.now_s()  # the fault's time: before its action, as for a heal
        on_gateway = event.target == GATEWAY
        heals = {} if event.duration_s is None else {"until_s": event.at_s + event.duration_s}
        record = FaultRecord(
            id=event.id,
            kind=fault,
            # The gateway's outage cuts every bureau off: its windows are everyone's answers.
            bureaus=tuple(engine.scenario.bureaus) if on_gateway else tuple(event.bureaus),
            direction=event.direction,
            params=dict(event.params),
            start_s=start,
            end_s=start if fault in INSTANT_FAULTS else None,
            settle_s=event.settle_s,
        )
        # In force before acting: a heal of another fault that runs while this one's
        # action awaits re-applies it, and a failure part way is still healed on time.
        if fault in INSTANT_FAULTS:
            engine.result.faults.append(record)
        else:
            held = set(event.targets) if fault in process.HEALS else set()
            self.active[event.id] = _Active(record, event, held)
            if self.uses_proxy(fault):
                for code in event.bureaus:
                    self.link_faults[code][event.id] = event
        if on_gateway:
            await self._process(fault, None)
            self._emit(observed.APPLIED, event, GATEWAY, start, **heals)
        for code in event.bureaus:
            resets = await self._apply_one(fault, code, event)
            extra = heals if resets is None else {**heals, "connections": resets}
            self._emit(observed.APPLIED, event, code, start, **extra)
        if fault in INSTANT_FAULTS:
            self.release(process.RELEASES.get(fault), event, start)

    def release(self, kind: str | None, event: FaultEvent, at_s: float) -> None:
        """A restart or resume frees its bureaus; a kill or pause ends with its last one."""
        for key, active in list(self.active.items()):
            if active.record.kind != kind:
                continue
            for target in observed.targets(active.event):  # as its heal would end it
                if target in active.held and target in event.targets:
                    self._emit(observed.HEALED, active.event, target, at_s)
            active.held -= set(event.targets)
            if not active.held:
                del self.active[key]
                self.engine.result.faults.append(_with_end(active.record, at_s))

    async def _apply_one(self, fault: str, code: str, event: FaultEvent) -> int | None:
        """Apply ``fault`` to ``code``; the connections a reset cut (None: not a reset)."""
        engine = self.engine
        if self.in_kernel(fault):
            await kernel.apply(*self._kernel(code), event)
        elif family(fault) == link.FAMILY:
            return await link.apply(engine.links[code], event)
        elif family(fault) == process.FAMILY:
            await self._process(fault, code)
        elif family(fault) == clock.FAMILY:
            await self._skew(code, int(event.params["offset_ms"]))
        else:  # pragma: no cover - the scenario loader knows every kind
            raise ValueError(f"unknown fault {fault}")
        return None

    async def _process(self, fault: str, code: str | None) -> None:
        """Do process fault ``fault`` to ``code``'s host, or to the gateway if None."""
        network = self.engine.network
        assert network is not None
        host = None if code is None else network.host_of(code)
        # A restarted host's bureaus keep their clock skews.
        offsets = {b: self.engine.clocks[b].offset_ms for b in host.bureaus} if host else {}
        await asyncio.to_thread(process.apply, network, fault, host, clock_offsets=offsets)

    async def _skew(self, code: str, offset_ms: int) -> None:
        network = self.engine.network
        assert network is not None
        await clock.apply(Path(network.host_of(code).control), code, offset_ms)
        self.engine.clocks[code].offset_ms = offset_ms

    async def relink(self, code: str) -> None:
        """Set ``code``'s link to exactly the link faults still in force on it."""
        await link.heal(self.engine.links[code], self.link_faults[code].values())

    async def heal(self, fault_id: str) -> None:
        """End fault ``fault_id`` now, if it is still in force."""
        active = self.active.pop(fault_id, None)
        if active is None:
            return
        engine = self.engine
        kind = active.record.kind
        end = engine.now_s()  # the heal's time: when its action begins
        if active.event.target == GATEWAY:
            try:
                if GATEWAY in active.held:
                    await self._process(process.HEALS[kind], None)
            finally:
                engine.result.faults.append(_with_end(active.record, end))
            self._emit(observed.HEALED, active.event, GATEWAY, end)
            return
        for code in active.record.bureaus:
            self.link_faults[code].pop(fault_id, None)
        try:
            for code in active.record.bureaus:
                if self.in_kernel(kind):
                    await kernel.heal(*self._kernel(code), fault_id)
                elif self.uses_proxy(kind):
                    await self.relink(code)
                elif family(kind) == process.FAMILY and code in active.held:
                    await self._process(process.HEALS[kind], code)
                elif family(kind) == clock.FAMILY:
                    await self._skew(code, 0)
                self._emit(observed.HEALED, active.event, code, end)
        finally:  # in the report even if its heal failed (that fails a check too)
            engine.result.faults.append(_with_end(active.record, end))


def _with_end(record: FaultRecord, end_s: float | None) -> FaultRecord:
    return dataclasses.replace(record, end_s=end_s)
