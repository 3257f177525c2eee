"""The clock family: ``skew`` sets a bureau's clock offset through its host's control socket.

The heal sets the offset back to 0. Used by the simulation engine and by the live faults
of ``ncbsim fault`` (ncbsim.simulations.live_faults).
"""

from __future__ import annotations

from pathlib import Path

from ncbsim.simulations.faults.kinds import Kind, Param

FAMILY = "clock"
KINDS = {
    "skew": Kind(family=FAMILY, params={"offset_ms": Param("int", True, nonzero=True)}),
}


async def apply(control_socket: Path, code: str, offset_ms: int) -> None:
    """Set bureau ``code``'s clock ``offset_ms`` ahead (behind if < 0) through its host's
    control socket. Raises RuntimeError if the host refuses, OSError if it does not answer."""
    from ncbsim.node.host import control  # the node's host; only when a fault is applied

    reply = await control(control_socket, {"op": "clock", "bureau": code, "offset_ms": offset_ms})
    if not reply.get("ok"):
        raise RuntimeError(f"could not set {code}'s clock: {reply.get('error')}")


async def heal(control_socket: Path, code: str) -> None:
    """Set bureau ``code``'s clock back on time."""
    await apply(control_socket, code, 0)
