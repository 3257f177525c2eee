"""The classroom's lesson mode: the lesson script (:mod:`ncbsim.simulations.lesson`), run
step by step on the page's network by the very code ``ncbsim demo`` runs.

Each step is the demo's :meth:`~ncbsim.simulations._demo_steps.Demo.run_step`: the same
queries, posts, checks and filled captions as the terminal prints, so the page and the
terminal cannot tell the room different stories. What the step showed (its
:class:`~ncbsim.simulations._demo_record.Shown` records) goes to the page as exchange
records, its caption and checks as a ``lesson`` message. The attack steps run through
:mod:`ncbsim.simulations.classroom.attacks` when the network is in classroom mode, and are
skipped (with the reason) when it is not.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from rich.console import Console

from ncbsim.simulations._demo_record import Shown
from ncbsim.simulations._demo_steps import Demo
from ncbsim.simulations.classroom import attacks, inputs, views
from ncbsim.simulations.classroom.attacks import AttackOutcome
from ncbsim.simulations.classroom.room import Classroom
from ncbsim.simulations.demo import DemoConfig
from ncbsim.simulations.lesson import LESSON, caption, fields
from ncbsim.simulations.network import Network


def blank_caption(index: int) -> str:
    """Step ``index``'s caption before it ran: its fields left as ``…``."""
    step = LESSON[index]
    return caption(step, **dict.fromkeys(fields(step), "…"))


class Lessons:
    """Runs lesson steps on ``room``'s network, for the page."""

    def __init__(self, room: Classroom) -> None:
        self.room = room
        self._demo: Demo | None = None

    def demo(self) -> Demo:
        """The demo's step runner on this network (made on first use)."""
        if self._demo is None:
            room = self.room
            config = DemoConfig(
                scenario=room.scenario or "red-notice",
                workdir=room.workdir,
                timeout_s=room.timeout_s,
                deadline_s=room.deadline_s,
            )
            demo = Demo(
                room.network,
                room.bureaus,
                config,
                Console(file=io.StringIO(), width=80),  # the terminal's panels: not shown
                attack_runner=self.attack if room.attacks_enabled() else None,
                buses=room.client_bus,
            )
            room.register(demo.obs)
            self._demo = demo
        return self._demo

    async def close(self) -> None:
        """Close the demo's channels (the server calls this as it stops)."""
        if self._demo is not None:
            await self._demo.close()

    async def attack(self, name: str, asker: str, to: str) -> AttackOutcome:
        """The demo's attack hook: run it, and show it at once with where it was caught."""
        outcome = await attacks.run_attack(
            self.room.observer(asker), self.room.workdir, name, asker, to
        )
        self.room.publish_attack(outcome)
        return outcome

    async def run(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /api/lesson {"step": n}``: run step ``n`` now; its caption, checks and
        records."""
        index = inputs.step(body, len(LESSON))
        lesson = LESSON[index]
        head = {"type": "lesson", "step": index, "total": len(LESSON), "key": lesson.key}
        self.room.hub.publish(
            {**head, "title": lesson.title, "caption": blank_caption(index), "state": "running"}
        )
        async with self.room.lock:
            demo = self.demo()
            # A bureau killed and healed since runs under a new pid: read them afresh.
            demo.network = self.room.network = Network.load(self.room.workdir)
            step = await demo.run_step(index)
        records = [self._record(shown) for shown in step.shown]
        state = "skipped" if step.skipped else ("passed" if step.passed else "failed")
        message = {
            **head,
            "title": step.title,
            "caption": step.caption or step.skipped,
            "state": state,
            "skipped": step.skipped,
            "checks": [[text, ok] for text, ok in step.checks],
        }
        self.room.hub.publish(message)
        return {**message, "passed": step.passed, "records": [r for r in records if r]}

    def _record(self, shown: Shown) -> dict[str, Any] | None:
        """What the page draws of one thing the step showed (None: already drawn)."""
        room = self.room
        extra = shown.extra
        if shown.exchange is not None and shown.query is not None:
            if shown.exchange.sealed.header.message_hex in room.published:
                return None  # an attack, drawn with where it was caught
            return room.publish_exchange(
                shown.asker,
                shown.to,
                shown.query,
                shown.exchange,
                record=shown.record,
                requester_extra=extra.get("requester"),
                recipient_extra=extra.get("recipient"),
            )
        if shown.post is None and shown.gateway_row is None:
            return None
        kind = views.post_kind(shown.post, shown.gateway_row)
        record = views.post_record(
            room.next_id(),
            asker=shown.asker,
            to=shown.to,
            kind=kind,
            row=shown.gateway_row,
            gateway=room.gateway,
            requester=extra.get("requester", []),
            recipient=extra.get("recipient", []),
            reply=extra.get("reply"),
        )
        room.hub.publish(record)
        return record
