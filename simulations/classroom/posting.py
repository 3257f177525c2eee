"""The classroom's one-way posts: a diffusion, a red notice GS publishes, its withdrawal.

They go through :class:`ncbsim.mail.Mailer`, as ``ncbsim diffuse`` and ``ncbsim notice``
send them, as the bureau the page names. GS, a node of the network, reviews a notice
request and publishes the notice to every bureau; the classroom reads GS's registry
(its inbox database, read-only) to tell the page what GS decided.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ncbsim.countries import GENERAL_SECRETARIAT
from ncbsim.node.inbox import Inbox
from ncbsim.posts import notice_draft
from ncbsim.simulations.classroom import inputs
from ncbsim.workdir import Workdir

if TYPE_CHECKING:
    from ncbsim.simulations.classroom.room import Classroom


def notices(workdir: Path, bureaus: list[str]) -> list[dict[str, str]]:
    """The notices GS knows (none without a GS node): its registry, read-only."""
    path = Workdir(workdir).bureau(GENERAL_SECRETARIAT).inbox
    if GENERAL_SECRETARIAT not in bureaus or not path.is_file():
        return []
    inbox = Inbox.read(path)
    try:
        rows = inbox.notices()
    finally:
        inbox.close()
    return [
        {
            "notice_id": row.notice_id.hex(),
            "requester": row.requested_by,
            "state": row.status_name,
            "label": f"{row.color_name} notice: {row.subject.surname.upper()} "
            f"{row.subject.given_names}",
        }
        for row in rows
    ]


class Posting:
    """Posts as the page's bureaus, on ``room``'s network."""

    def __init__(self, room: Classroom) -> None:
        self.room = room

    def notices(self) -> list[dict[str, str]]:
        """The notices GS knows."""
        return notices(self.room.workdir, self.room.bureaus)

    async def diffuse(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Post a diffusion (an alert) to the bureaus named, or ALL."""
        asker = inputs.bureau(body, "from", self.room.bureaus)
        to = inputs.recipients(body, "to", self.room.bureaus, asker)
        subject = inputs.text(body, "subject", limit=120)
        text = inputs.text(body, "text", required=False, limit=inputs.MAX_TEXT)
        everyone = body.get("to") == inputs.ALL
        mailer = await self.room.mailer(asker)
        async with self.room.lock:
            outcome = await mailer.diffuse(
                [inputs.ALL] if everyone else to, subject, text, timeout_s=self.room.timeout_s
            )
        reply = {
            "post_id": outcome.post_hex,
            "recipients": len(outcome.copies),
            "outcome": "stored" if outcome.stored else "not stored",
        }
        self.room.publish_status(
            f"{asker} diffused an alert to {len(outcome.copies)} bureaus: {reply['outcome']}."
        )
        return reply

    async def notice(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Ask GS for a red notice on a person; GS reviews and publishes it."""
        if GENERAL_SECRETARIAT not in self.room.bureaus:
            raise inputs.InputError("notices need a GS node; this network has none", "from")
        asker = inputs.bureau(body, "from", self.room.bureaus)
        subject = inputs.subject(body, today=dt.date.today())
        summary = inputs.text(body, "summary", required=False, limit=200) or (
            "Classroom exercise: arrest warrant"
        )
        mailer = await self.room.mailer(asker)
        async with self.room.lock:
            outcome = await mailer.post_notice_request(
                notice_draft("red", subject, summary), timeout_s=self.room.timeout_s
            )
        notice_id = outcome.notice_id.hex()
        state = await self._await_notice(notice_id, {"published", "refused"})
        self.room.publish_status(
            f"{asker} asked GS for a red notice: GS {state or 'has not decided'}."
        )
        self.room.hub.publish({"type": "notices", "notices": self.notices()})
        return {"notice_id": notice_id, "state": state or "requested", "stored": outcome.stored}

    async def withdraw(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Ask GS to withdraw a notice the bureau requested."""
        asker = inputs.bureau(body, "from", self.room.bureaus)
        notice_id = inputs.notice_id(body)
        known = {n["notice_id"]: n for n in self.notices()}
        if notice_id.hex() not in known:
            raise inputs.InputError("notice_id: GS knows no such notice", "notice_id")
        mailer = await self.room.mailer(asker)
        async with self.room.lock:
            outcome = await mailer.withdraw_notice(notice_id, timeout_s=self.room.timeout_s)
        state = await self._await_notice(notice_id.hex(), {"withdrawn"})
        self.room.publish_status(
            f"{asker} asked GS to withdraw the notice: {state or 'not withdrawn (yet)'}."
        )
        self.room.hub.publish({"type": "notices", "notices": self.notices()})
        return {"notice_id": notice_id.hex(), "state": state, "stored": outcome.stored}

    async def _await_notice(self, notice_id: str, states: set[str]) -> str:
        deadline = time.monotonic() + self.room.timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # GS may be mid-write
                for notice in self.notices():
                    if notice["notice_id"] == notice_id and notice["state"] in states:
                        return notice["state"]
            await asyncio.sleep(0.05)
        return ""
