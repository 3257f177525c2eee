"""One-way message traffic in a simulation: the sender of the posts, and their drain.

The posts come from :func:`ncbsim.simulations.message_plan.plan`. :class:`Messenger`
sends them as the scenario's bureaus through :class:`ncbsim.mail.Mailer`, one post at a
time per sender (so each sender's posts reach the gateway in their order). A post is
retried with the same sealed envelopes while the gateway is down, never sealed again.
Every copy is recorded: recipient, message id, whether the gateway stored it.

After the traffic, :meth:`Messenger.drain` waits (at most ``messages.drain_s``) until every
stored copy is in its recipient's inbox (``ncbsim.node.inbox``, read-only) or settled otherwise
at the gateway (expired or rejected, from ``Mailer.receipts``). GS's copies of the
notices it publishes, refuses or withdraws are followed the same way: read from GS's own
receipts at the gateway (kind NOTICE), and waited for while GS's outbox still holds some.
:meth:`Messenger.report` then gives the report's ``messages`` table, counted in
:mod:`ncbsim.simulations.message_report`; the scenario's checks read it (nothing lost,
nothing processed twice, order kept), and ``message_report.scan_gateway`` finds any text
of the posts at the gateway.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import grpc
import structlog
from google.protobuf.message import Message

from ncbsim import envelope
from ncbsim.client import BureauClient
from ncbsim.countries import GENERAL_SECRETARIAT
from ncbsim.errors import NcbsimError
from ncbsim.events import ViewValue
from ncbsim.mail import Mailer
from ncbsim.messages import color as color_value
from ncbsim.node.inbox import Inbox, NoticeRow
from ncbsim.posts import PostOutcome
from ncbsim.principal import bureau_of, is_user
from ncbsim.simulations.message_plan import MessagePlan, PlannedPost
from ncbsim.simulations.message_report import (
    CopyRecord,
    Inboxes,
    PostRecord,
    notice_table,
    out_of_order,
    read_inboxes,
)
from ncbsim.simulations.outcomes import latency
from ncbsim.simulations.run_events import client
from ncbsim.simulations.scenario import Scenario
from ncbsim.simulations.schema import MESSAGE_LATENCY_KEYS
from ncbsim.v2 import messages_pb2
from ncbsim.workdir import Workdir

log = structlog.get_logger()

KINDS = {
    "diffusion": envelope.DIFFUSION,
    "message": envelope.MESSAGE,
    "notice": envelope.NOTICE_REQUEST,
    "withdraw": envelope.NOTICE_REQUEST,
}
_POLL_S = 0.25
_RECEIPTS_TIMEOUT_S = 5.0


class Messenger:
    """Sends a scenario's posts as its bureaus, then follows every copy to its fate.

    ``now_s`` is the engine's clock (seconds since traffic start), ``event`` records an
    event of the schema (the engine's ``event``: each post's ``post.sealed`` and
    ``post.returned``, as its sender's client saw them), ``down`` names what a fault
    holds down now (bureau codes, and ``"gateway"``): the drain does not wait for copies
    to a bureau that is down.
    """

    def __init__(
        self,
        scenario: Scenario,
        workdir: Path,
        message_plan: MessagePlan,
        *,
        now_s: Callable[[], float],
        event: Callable[..., None],
        down: Callable[[], set[str]],
    ) -> None:
        self.scenario = scenario
        self.workdir = workdir
        self.plan = message_plan
        self._now_s = now_s
        self._event = event
        self._down = down
        self.mailers: dict[str, Mailer] = {}
        self.records: list[PostRecord] = []
        self.notice_ids = {
            p.notice: os.urandom(envelope.MESSAGE_ID_LEN)
            for p in message_plan.posts
            if p.kind == "notice" and p.notice is not None
        }
        self._users = [u.principal for u in scenario.users]
        parties = [*scenario.bureaus, *self._users]  # who may send: bureaus and users
        self._locks = {code: asyncio.Lock() for code in parties}
        self._orders = dict.fromkeys(parties, 0)
        self._inboxes = Inboxes()
        self.drain_s = 0.0
        self.notice_posts: dict[bytes, PostRecord] = {}  # GS's notice posts, by post id
        self._outbox = 0  # envelopes GS's outbox still held at the last reading

    @property
    def active(self) -> bool:
        """Whether the run sends any post."""
        return bool(self.plan.posts)

    def senders(self) -> list[str]:
        """The bureaus the run needs a client as: its senders, and GS if notices are
        requested (to read GS's notice copies at the gateway)."""
        codes = list(dict.fromkeys(p.sender for p in self.plan.posts))
        if any(p.kind in ("notice", "withdraw") for p in self.plan.posts):
            codes.append(GENERAL_SECRETARIAT)
        return list(dict.fromkeys(codes))

    def attach(self, clients: Mapping[str, BureauClient]) -> None:
        """Post through these clients (one per sender)."""
        self.mailers = {code: Mailer(clients[code]) for code in self.senders()}

    # ------------------------------------------------------------ sending

    async def run(self, t0: float) -> None:
        """Send every post at its planned time (monotonic ``t0`` + ``at_s``); wait for all."""
        tasks: list[asyncio.Task[None]] = []
        try:
            for post in self.plan.posts:
                delay = t0 + post.at_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                due_ms = int(time.time() * 1000)  # its planned time, on the wall clock
                tasks.append(asyncio.create_task(self._send(post, due_ms)))
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    def _body(self, post: PlannedPost) -> Message:
        if post.kind == "diffusion":
            return messages_pb2.Diffusion(subject=post.subject, text=post.text)
        if post.kind == "message":
            return messages_pb2.CaseMessage(
                thread=f"sim-{post.label}", subject=post.subject, text=post.text
            )
        assert post.notice is not None
        notice_id = self.notice_ids[post.notice]
        if post.kind == "withdraw":
            return messages_pb2.NoticeRequest(
                withdraw=messages_pb2.NoticeWithdrawal(notice_id=notice_id, reason=post.text)
            )
        return messages_pb2.NoticeRequest(
            publish=messages_pb2.NoticeDraft(
                notice_id=notice_id,
                color=cast("messages_pb2.NoticeColor", color_value(post.color)),
                subject=self.plan.subjects[post.notice],
                summary=post.summary,
                text=post.text,
            )
        )

    async def _send(self, post: PlannedPost, due_ms: int) -> None:
        """One post, after the sender's earlier ones (its order at the gateway)."""
        mailer = self.mailers[post.sender]
        async with self._locks[post.sender]:
            order = self._orders[post.sender]
            self._orders[post.sender] += 1
            record = PostRecord(post, order, self._now_s(), due_ms)
            self.records.append(record)
            try:
                outcome = await mailer.post(
                    KINDS[post.kind],
                    self._body(post),
                    list(post.to),
                    ttl_ms=int(post.ttl_s * 1000),
                    timeout_s=self.scenario.messages.post_timeout_s,
                )
            except Exception as exc:
                log.exception("post_crashed", label=post.label)
                record.done_s = self._now_s()
                self._events(record, {"outcome": "failed", "reason": type(exc).__name__})
                return
        self._record(record, outcome)

    def _record(self, record: PostRecord, outcome: PostOutcome) -> None:
        record.post_id = outcome.post_id
        record.done_s = self._now_s()
        record.copies = [
            CopyRecord(c.recipient, c.message_id, c.stored, c.status, c.sequence)
            for c in outcome.copies
        ]
        stored = sum(c.stored for c in record.copies)
        whole = stored == len(record.copies)
        returned: dict[str, ViewValue] = {
            "stored": stored,
            "attempts": outcome.attempts,
            "outcome": "stored" if whole else "partly_stored" if stored else "not_stored",
        }
        self._events(record, returned, outcome.post_hex)

    def _events(
        self, record: PostRecord, returned: dict[str, ViewValue], post_id: str = ""
    ) -> None:
        """The sender's client's view of one post: sealed when sent, and the gateway's reply.

        Both are correlated by the post id, as the gateway's events of its copies are.
        """
        post = record.post
        party = client(post.sender)
        recipients = len(record.copies) or len(post.to)  # the copies, once the gateway said
        sealed: dict[str, ViewValue] = {"recipients": recipients, "kind": post.kind}
        self._event("post.sealed", sealed, party=party, t_s=record.sent_s, correlation_id=post_id)
        elapsed = round((record.done_s - record.sent_s) * 1000, 2)
        view = {"recipients": recipients, "elapsed_ms": elapsed, **returned}
        self._event("post.returned", view, party=party, t_s=record.done_s, correlation_id=post_id)

    # ------------------------------------------------------------ notice queries

    async def notice_ref(self, notice: str, target: str) -> str | None:
        """The person record ``target`` made of notice event ``notice``'s subject, if any.

        The ground truth of a query for the subject: the target holds the record while
        its copy of the notice is published (and not withdrawn).
        """
        notice_id = self.notice_ids.get(notice)
        if notice_id is None:
            return None

        def read() -> NoticeRow | None:
            try:
                inbox = Inbox.read(Workdir(self.workdir).bureau(target).inbox)
            except NcbsimError:
                return None
            try:
                return inbox.notice(notice_id)
            finally:
                inbox.close()

        row = await asyncio.to_thread(read)
        if row is None or row.status != messages_pb2.NOTICE_STATUS_PUBLISHED:
            return None
        return row.record_ref or None

    # ------------------------------------------------------------ drain

    def _copies(self, *, own: bool = False) -> list[tuple[PostRecord, CopyRecord]]:
        """Stored copies: the run's own, and (unless ``own``) GS's notice copies."""
        records = self.records if own else [*self.records, *self.notice_posts.values()]
        return [(r, c) for r in records for c in r.copies if c.stored]

    async def _notice_copies(self) -> None:
        """Add GS's notice copies the gateway stored since the last reading, and note
        how many envelopes GS's outbox still holds (not yet accepted by the gateway)."""
        mailer = self.mailers.get(GENERAL_SECRETARIAT)
        if mailer is None or GATEWAY_DOWN in self._down():
            return
        self._outbox = await asyncio.to_thread(_outbox_size, self.workdir)
        known = [c.sequence for r in self.notice_posts.values() for c in r.copies]
        try:
            rows = await mailer.receipts(max(known, default=0), timeout_s=_RECEIPTS_TIMEOUT_S)
        except (grpc.aio.AioRpcError, NcbsimError) as exc:
            log.info("receipts_unavailable", sender=GENERAL_SECRETARIAT, error=type(exc).__name__)
            return
        seen = {c.message_id for r in self.notice_posts.values() for c in r.copies}
        for row in rows:
            if row.kind != envelope.NOTICE or row.message_id in seen:
                continue
            record = self.notice_posts.get(row.post_id)
            if record is None:
                label = f"gs-notice-{row.post_id.hex()[:8]}"
                planned = PlannedPost(label, 0.0, "notice_copy", GENERAL_SECRETARIAT, (), 0.0)
                record = PostRecord(planned, len(self.notice_posts), 0.0, 0, row.post_id)
                self.notice_posts[row.post_id] = record
            record.copies.append(
                CopyRecord(row.recipient, row.message_id, True, "accepted", row.sequence)
            )

    async def drain(self) -> None:
        """Wait until every stored copy is settled, or ``messages.drain_s`` has passed.

        Settled: in its recipient's inbox (delivered), or expired or rejected at the
        gateway. Copies to a bureau that is down at the end are not waited for, nor any
        while the gateway is down. GS's notice copies count too, and the drain also waits
        while GS's outbox holds envelopes the gateway has not accepted yet.
        """
        began = time.monotonic()
        deadline = began + self.scenario.messages.drain_s
        while True:
            await self._notice_copies()
            await self._settle(final=False)
            down = self._down()
            waiting = [
                c for _, c in self._copies() if not c.fate and bureau_of(c.recipient) not in down
            ]
            outbox = self._outbox > 0 and GENERAL_SECRETARIAT not in down
            if (not waiting and not outbox) or GATEWAY_DOWN in down:
                break
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(_POLL_S)
        await self._notice_copies()
        await self._settle(final=True)
        self.drain_s = round(time.monotonic() - began, 3)

    async def _settle(self, *, final: bool) -> None:
        """Read the inboxes, then the gateway's word on copies not in them.

        The final reading takes every bureau's whole inbox (duplicates, order, notices);
        the others only those of recipients still waiting for a copy.
        """
        bureaus = list(self.scenario.bureaus)
        if not final:
            unsettled = {bureau_of(c.recipient) for _, c in self._copies() if not c.fate}
            bureaus = [b for b in bureaus if b in unsettled]
        inboxes = await asyncio.to_thread(
            read_inboxes, self.workdir, bureaus, full=final, users=self._users
        )
        held = {
            code: {(i.sender, i.message_id): i.processed_at_ms for i in items}
            for code, items in inboxes.items.items()
        }
        held.update(inboxes.user_mail)  # a user's copies, kept for it by its bureau's node
        for record, copy in self._copies():
            processed = held.get(copy.recipient, {}).get((record.post.sender, copy.message_id))
            if processed is not None:
                copy.fate, copy.processed_at_ms = "delivered", processed
        if final:
            self._inboxes = inboxes
        await self._gateway_states()
        if final:
            down = self._down()
            for _, copy in self._copies():
                if copy.fate:
                    continue
                down_now = bureau_of(copy.recipient) in down  # a user's copy waits for its node
                waiting = down_now and copy.gateway_state != "delivered"
                # Stored and waiting for its recipient, or in the mailbox of a gateway
                # that is down: not lost. Anything else unaccounted for is.
                copy.fate = "pending" if waiting or GATEWAY_DOWN in down else "lost"

    async def _gateway_states(self) -> None:
        """Expired and rejected copies, from each sender's receipts at the gateway."""
        if GATEWAY_DOWN in self._down():
            return  # a fault holds it down: nobody to ask
        unsettled: dict[str, list[CopyRecord]] = {}
        for record, copy in self._copies():
            if not copy.fate:
                unsettled.setdefault(record.post.sender, []).append(copy)
        for sender, copies in unsettled.items():
            after = max(min(c.sequence for c in copies) - 1, 0)
            try:
                rows = await self.mailers[sender].receipts(after, timeout_s=_RECEIPTS_TIMEOUT_S)
            except (grpc.aio.AioRpcError, NcbsimError) as exc:
                log.info("receipts_unavailable", sender=sender, error=type(exc).__name__)
                continue
            states = {r.message_id: r.state for r in rows}
            for copy in copies:
                copy.gateway_state = states.get(copy.message_id, "")
                if copy.gateway_state in ("expired", "rejected"):
                    copy.fate = copy.gateway_state

    # ------------------------------------------------------------ accounting

    def _fates(self, copies: Sequence[CopyRecord] | None = None) -> dict[str, int]:
        if copies is None:
            copies = [c for _, c in self._copies()]
        fates = [c.fate for c in copies]
        return {k: fates.count(k) for k in ("delivered", "expired", "rejected", "pending", "lost")}

    def report(self) -> dict[str, Any]:
        """The report's ``messages`` table (docs/scenarios.md)."""
        gs_copies = [c for r in self.notice_posts.values() for c in r.copies]
        copies = [c for r in self.records for c in r.copies] + gs_copies
        fates = self._fates()
        delays = [  # the run's own copies only: GS's have no planned time
            float(c.processed_at_ms - r.due_ms)
            for r, c in self._copies(own=True)
            if c.fate == "delivered"
        ]
        lat = latency(delays)
        return {
            "sent": len(self.records) + len(self.notice_posts),
            "recipients": len(copies),
            "accepted": sum(c.stored for c in copies),
            "not_accepted": sum(not c.stored for c in copies),
            **fates,
            "duplicates_processed": self._inboxes.duplicates,
            "out_of_order": out_of_order(self.records, self._inboxes),
            "latency_ms": {k: lat[k] for k in MESSAGE_LATENCY_KEYS},
            "drain_s": self.drain_s,
            "notices": notice_table(self.notice_ids, self.records, self._inboxes),
            "notice_copies": {"recipients": len(gs_copies), **self._fates(gs_copies)},
            **self._to_users(copies),
        }

    def _to_users(self, copies: Sequence[CopyRecord]) -> dict[str, Any]:
        """``users``: the copies addressed to the scenario's users (also in the totals),
        and their fates; nothing for a scenario without users."""
        if not self._users:
            return {}
        mine = [c for c in copies if is_user(c.recipient)]
        return {"users": {"recipients": len(mine), **self._fates(mine)}}

    def probes(self) -> list[str]:
        """Strings of the posts none may reach the gateway's files: each text's unique
        probe, and each notice's subject (surname) and summary."""
        found = [p.probe for p in self.plan.posts if p.probe]
        found += [p.summary for p in self.plan.posts if p.kind == "notice" and p.summary]
        found += [subject.surname for subject in self.plan.subjects.values()]
        return list(dict.fromkeys(found))


GATEWAY_DOWN = "gateway"
"""What :attr:`Messenger._down` names when the gateway itself is down."""


def _outbox_size(workdir: Path) -> int:
    """How many envelopes GS's outbox holds (0 if GS has no inbox yet)."""
    try:
        inbox = Inbox.read(Workdir(workdir).bureau(GENERAL_SECRETARIAT).inbox)
    except NcbsimError:
        return 0
    try:
        return inbox.outbox_size()
    finally:
        inbox.close()
