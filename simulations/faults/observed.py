"""A fault as events: the views of ``fault.applied``, ``fault.healed`` and ``fault.failed``.

The simulation engine (ncbsim.simulations.faults.schedule) and the fault daemon
(ncbsim.simulations.faultd) describe the faults they apply and heal the same way, one
event per target (a bureau code, or "gateway"), all of one fault sharing its id as the
events' correlation id:

- ``fault``: the kind (``partition``, ``delay``, ``kill``, ...);
- ``target``: the bureau or "gateway" it holds;
- ``peer``: the other end of a link fault ("gateway": a bureau's link to it), "" else;
- ``detail``: the direction of a link fault and the parameters in force, as short
  ``key=value`` codes (``direction=both,delay_ms=200``), never prose;
- ``until_s`` (applied, when it heals by itself): seconds after the traffic started for
  the engine, Unix time for the fault daemon.
"""

from __future__ import annotations

from ncbsim.events import MAX_TEXT, ViewValue
from ncbsim.simulations.faults.registry import family
from ncbsim.simulations.scenario import GATEWAY, FaultEvent

APPLIED = "fault.applied"
HEALED = "fault.healed"
FAILED = "fault.failed"
LINK = "link"


def targets(event: FaultEvent) -> list[str]:
    """What ``event`` holds, one event each: its bureaus, or ["gateway"]."""
    return [GATEWAY] if event.target == GATEWAY else list(event.bureaus)


def detail(event: FaultEvent) -> str:
    """The direction (of a link fault) and parameters as ``k=v`` codes, at most 64 chars."""
    parts = [f"direction={event.direction}"] if family(event.fault) == LINK else []
    parts += [f"{key}={value:g}" for key, value in sorted(event.params.items())]
    out = ""
    for part in parts:  # whole codes only: cut before one that does not fit
        joined = f"{out},{part}" if out else part
        if len(joined) > MAX_TEXT:
            break
        out = joined
    return out


def view(event: FaultEvent, target: str) -> dict[str, ViewValue]:
    """The view of a ``fault.applied`` or ``fault.healed`` of ``event`` on ``target``."""
    out: dict[str, ViewValue] = {"fault": event.fault, "target": target}
    if family(event.fault) == LINK:
        out["peer"] = GATEWAY
    text = detail(event)
    if text:
        out["detail"] = text
    return out


def failed(event: FaultEvent, target: str, action: str, exc: BaseException) -> dict[str, ViewValue]:
    """The view of a ``fault.failed``: which action (fault or heal) and the error's type."""
    return {
        "fault": event.fault,
        "target": target,
        "action": action,
        "reason": type(exc).__name__[:MAX_TEXT],
    }
