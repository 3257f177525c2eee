"""The simulation engine: a scenario's schedule and timeline, run against real processes.

It prepares the network (PKI and records), puts the fault proxies in front of the bureaus
whose links the timeline touches, starts the gateway and the bureau host processes, sends
the seeded schedule of queries open-loop at its planned times, applies the timeline's
faults and heals them (ncbsim.simulations.faults.schedule), and records every answer with its
timing. Checking and reporting
are the caller's (ncbsim.simulations.simulate).

What it did and what its clients saw are events of the one schema (ncbsim.events), kept
by its :class:`~ncbsim.simulations.run_events.Recorder` for ``timeline.jsonl``; during the
traffic it also observes the network's own events (ncbsim.simulations.observe_net) and
keeps them beside its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import structlog
from rich.console import Console

from ncbsim import tracing
from ncbsim.client import ALL, Answer, BureauClient, Outcome
from ncbsim.clock import Clock
from ncbsim.directory import Directory
from ncbsim.events import ViewValue
from ncbsim.pki import PkiDir
from ncbsim.principal import bureau_of
from ncbsim.processes import terminate
from ncbsim.simulations import message_plan, messaging, run_events
from ncbsim.simulations import network as net
from ncbsim.simulations.faults import link as link_faults
from ncbsim.simulations.faults.schedule import FaultSchedule
from ncbsim.simulations.memory import MemorySampler
from ncbsim.simulations.observing import RunObserver
from ncbsim.simulations.outcomes import (
    AnswerRecord,
    QueryRecord,
    RunResult,
    Sent,
    counts,
    outcome_of,
)
from ncbsim.simulations.prepare import prepare
from ncbsim.simulations.progress import Progress
from ncbsim.simulations.proxy import Link
from ncbsim.simulations.scenario import PROCESS_FAULTS, QueryEvent, Scenario
from ncbsim.simulations.schema import posts
from ncbsim.simulations.traffic import Planned, Planner, open_stores, second_step

log = structlog.get_logger()

_WARMUP_CONCURRENCY = 16


class Engine:
    """Runs one scenario in ``workdir``: prepare, start, drive, fault, stop."""

    def __init__(
        self,
        scenario: Scenario,
        workdir: Path,
        *,
        console: Console | None = None,
        log_level: str = "info",
        trace_dir: Path | None = None,
        observe: bool = True,
    ) -> None:
        self.scenario = scenario
        self.trace_dir = trace_dir
        """Where the network's processes append their spans (None: untraced)."""
        self.workdir = workdir.resolve()
        self.console = console or Console()
        self.log_level = log_level
        self.result = RunResult()
        self.event = self.result.recorder.emit
        """Record an event of the schema (at ``t_s``, default now) and publish it live."""
        self.links: dict[str, Link] = {}
        self.clocks = {b: Clock() for b in scenario.bureaus}
        self.clients: dict[str, BureauClient] = {}
        self.network: net.Network | None = None
        self.addresses: dict[str, str] = {}
        self._t0 = 0.0
        self._in_flight = 0
        self._answers: list[AnswerRecord] = []
        self._abort = threading.Event()  # interrupts a start-up under way in its thread
        self._started: list[subprocess.Popen[bytes]] = []
        self.faults = FaultSchedule(self)
        self._late: list[float] = []
        self.messenger: messaging.Messenger | None = None  # made once the plan is drawn
        self.phase = "loading the scenario"  # what the run is doing, for an interruption
        self.stopped = "nothing had started"  # what _stop stopped, for an interruption
        self._stopping_s = 0.0  # when the run began to stop, seconds after traffic start
        self.observe = observe
        """Whether to observe the network's own events (off: to measure what it costs)."""
        self.observer = RunObserver.of(self.workdir, scenario.bureaus)

    # ------------------------------------------------------------------ helpers

    def now_s(self) -> float:
        """Seconds since the traffic started (negative before)."""
        return round(time.monotonic() - self._t0, 4)

    def phase_event(self, phase: str, **counts: ViewValue) -> None:
        """A ``scenario.phase`` event now: ``elapsed_s`` is the time since traffic start."""
        view: dict[str, ViewValue] = {"phase": phase, "elapsed_s": self.now_s(), **counts}
        name = run_events.code(self.scenario.name)
        if name:
            view["scenario"] = name
        self.event("scenario.phase", view)

    def _proxied(self) -> list[str]:
        mode = self.scenario.engine.proxy
        if mode == "none":
            return []
        if mode == "all":
            return list(self.scenario.bureaus)
        named = {
            b for e in self.scenario.faults() if self.faults.uses_proxy(e.fault) for b in e.bureaus
        }
        return [b for b in self.scenario.bureaus if b in named]

    def _solo(self) -> set[str]:
        return {b for e in self.scenario.faults() if e.fault in PROCESS_FAULTS for b in e.bureaus}

    # ------------------------------------------------------------------ run

    async def run(self) -> RunResult:
        """Run the whole scenario; always stops what it started."""
        scenario = self.scenario
        self._t0 = time.monotonic() + 10**6  # "before the traffic" until it starts
        with MemorySampler() as memory:
            try:
                plan = await self._boot()
                if self.observe:
                    await self.observer.start()  # connects while the clients warm up
                warm = time.monotonic()
                self.phase = "loading the requesters' directories"
                await self._open_clients(plan)
                self.result.timings["warmup_s"] = round(time.monotonic() - warm, 3)
                self._t0 = time.monotonic()
                self.result.recorder.start(self._t0)
                self.phase = "running traffic"
                self.phase_event("traffic_start", planned=len(plan))
                await self._traffic(plan, memory)
                self._traffic_done()
                self.phase = "waiting for the messages to drain"
                await self._settle_messages()
                await self.observer.stop()  # the events still in flight, then no more
            finally:
                with contextlib.suppress(asyncio.CancelledError):  # never keeps _stop from running
                    await self.observer.stop()
                stopping = time.monotonic()
                self._stopping_s = self.now_s()
                await self._stop()
                self.result.timings["shutdown_s"] = round(time.monotonic() - stopping, 3)
                memory.sample()
        self.result.extra["peak_rss_mib"] = round(memory.peak_kib / 1024, 1)
        self.result.observed = self.observer.events
        self.result.extra["observation"] = self.observer.report()
        self.result.faults += self.faults.close()  # never healed: open until the end
        self.result.faults.sort(key=lambda f: f.start_s)
        log.info("simulation_done", scenario=scenario.name, queries=len(self.result.queries))
        return self.result

    async def _boot(self) -> list[Planned]:
        """Prepare the PKI and the records, start the network; the plan of queries.

        Cancelled part way, it lets the thread at work stop what it started first.
        """
        began = time.monotonic()
        self.phase = "preparing the PKI and the records"
        preparing = asyncio.ensure_future(asyncio.to_thread(self._prepare))
        try:
            plan = await asyncio.shield(preparing)
        except asyncio.CancelledError:
            self._abort.set()  # stop generating records after those under way
            with contextlib.suppress(Exception):
                await preparing
            raise
        self.result.timings["prepare_s"] = round(time.monotonic() - began, 3)
        self.phase = "starting the network"
        await self._start_links()
        started = time.monotonic()
        starting = asyncio.ensure_future(asyncio.to_thread(self._start_network))
        try:
            self.network = await asyncio.shield(starting)
        except asyncio.CancelledError:
            # The start-up thread goes on: stop it, and let it stop what it started.
            # If it finished all the same, keep the network, so _stop stops it.
            self._abort.set()
            with contextlib.suppress(Exception):
                self.network = await starting
            raise
        self.result.timings["startup_s"] = round(time.monotonic() - started, 3)
        self.result.extra["hosts"] = len(self.network.hosts)
        self.result.extra["processes"] = len(self.network.pids())
        return plan

    def _traffic_done(self) -> None:
        """The traffic's end: its time, how late sends were, and a timeline event."""
        self.result.run_end_s = self.now_s()
        self.result.timings["traffic_s"] = round(self.result.run_end_s, 3)
        self.result.extra["late_sends"] = sum(late > 0.1 for late in self._late)
        self.result.extra["max_send_delay_s"] = round(max(self._late, default=0.0), 3)
        self.phase_event(  # the queries, each once, and their (query, recipient) pairs
            "traffic_end",
            requests=len(self.result.queries),
            pairs=sum(len(q.answers) for q in self.result.queries),
        )

    def _prepare(self) -> list[Planned]:
        prepare(self.workdir, self.scenario, abort=self._abort)
        stores = open_stores(self.workdir, self.scenario)
        try:
            plan = Planner(self.scenario, stores).plan()
            posts = message_plan.plan(self.scenario, stores)
        finally:
            for store in stores.values():
                store.close()
        # A query for a notice's subject: its ground truth is known once the notice is out.
        for item in plan:
            notice = self._notice_of(item)
            if notice is not None:
                item.query = message_plan.subject_query(posts.subjects[notice])
                item.expect_hit = dict.fromkeys(item.expect_hit)
                item.probes = []
        self.messenger = messaging.Messenger(
            self.scenario,
            self.workdir,
            posts,
            now_s=self.now_s,
            event=self.event,
            down=self.faults.down,
        )
        return plan

    def _notice_of(self, item: Planned) -> str | None:
        """The notice event whose subject a timeline query searches for, if any."""
        if not item.explicit:
            return None
        event = self.scenario.event(item.label)
        return event.query.notice if isinstance(event, QueryEvent) else None

    async def _settle_messages(self) -> None:
        """After the traffic: follow every post's copies to their fate, for the report.

        A scenario that may post has ``messages`` in its report even if its seed drew no
        post (simulations/schema.py): all zero then.
        """
        messenger = self.messenger
        if messenger is None:
            return
        if messenger.active:
            await messenger.drain()
            self.phase_event("drained")
            self.result.message_probes = messenger.probes()
        if messenger.active or posts(self.scenario):
            self.result.extra["messages"] = messenger.report()

    async def _start_links(self) -> None:
        for code in self._proxied():
            self.links[code] = await link_faults.start_link(
                code, self.addresses, seed=self.scenario.seed
            )

    def _placement(self) -> net.Placement:
        """Where the processes run and listen (the real-network mode overrides it)."""
        return net.LOOPBACK

    def _start_network(self) -> net.Network:
        scenario = self.scenario
        placement = self._placement()
        layout = net.plan_hosts(scenario.bureaus, hosts=scenario.engine.hosts, solo=self._solo())
        gateway_for = {b: link.to_gateway.address for b, link in self._linked()}
        advertise_for = {b: link.to_bureau.address for b, link in self._linked()}

        def on_gateway(address: str) -> None:
            self.addresses["gateway"] = address

        network = net.Network.start(
            self.workdir,
            scenario,
            log_level=self.log_level,
            hosts=layout,
            gateway_for=gateway_for,
            advertise_for=advertise_for,
            ready_timeout_s=scenario.engine.startup_timeout_s,
            on_gateway=on_gateway,
            abort=self._abort,
            started=self._started,
            placement=placement,
            trace_dir=self.trace_dir,
        )
        for host in network.hosts:
            self.addresses.update(host.addresses)
        return network

    def _linked(self) -> list[tuple[str, Any]]:
        return [(b, link) for b, link in self.links.items() if link.to_gateway and link.to_bureau]

    async def _open_clients(self, plan: list[Planned]) -> None:
        assert self.network is not None
        pki = PkiDir(self.workdir)
        gateway = self.network.gateway.address
        self.addresses["gateway"] = gateway
        requesters = dict.fromkeys(p.requester for p in plan)
        if self.messenger is not None:
            requesters.update(dict.fromkeys(self.messenger.senders()))
        shared = Directory.pinned(pki)  # each entry verified once, not once per requester
        for code in requesters:  # a bureau, or one of its users (FR/x) on its link and clock
            bureau = bureau_of(code)
            link = self.links.get(bureau)
            address = link.to_gateway.address if link and link.to_gateway else gateway
            self.clients[code] = BureauClient.open(
                pki, code, address, clock=self.clocks[bureau], directory=shared
            )
        # Warm up as running bureaus are: directory verified, channel connected.
        limit = asyncio.Semaphore(_WARMUP_CONCURRENCY)

        async def warm(client: BureauClient) -> None:
            async with limit:
                await client.peers.load_all()

        await asyncio.gather(*(warm(c) for c in self.clients.values()))
        if self.messenger is not None:
            self.messenger.attach(self.clients)

    def interrupted(self) -> str:
        """What an interruption stopped, and when: for the user, once the run has stopped."""
        at = f" at {self._stopping_s:.1f} s" if self.phase == "running traffic" else ""
        return f"interrupted while {self.phase}{at}: {self.stopped}"

    async def _stop(self) -> None:
        for client in self.clients.values():
            with contextlib.suppress(Exception):
                await client.close()
        if self.network is not None:
            network = self.network
            await asyncio.to_thread(network.stop)
            self.phase_event("network_down")  # its time: when the last process had stopped
            self.stopped = (
                f"stopped the gateway and {len(self.scenario.bureaus)} bureaus"
                f" ({len(network.pids())} processes)"
            )
        else:  # start-up failed or was interrupted: stop whatever it had started
            live = [c for c in self._started if c.poll() is None]
            if live:
                await asyncio.to_thread(terminate, [c.pid for c in live])
                self.stopped = f"stopped the {len(live)} processes that had started"
        for link in self.links.values():
            await link.close()

    # ------------------------------------------------------------------ traffic

    async def _traffic(self, plan: list[Planned], memory: MemorySampler) -> None:
        traffic = self.scenario.traffic
        limit = asyncio.Semaphore(traffic.max_in_flight)
        tasks: set[asyncio.Task[None]] = set()
        timeline = asyncio.create_task(self.faults.run())
        posting = asyncio.create_task(
            self.messenger.run(self._t0) if self.messenger is not None else asyncio.sleep(0)
        )
        end = max([traffic.duration_s, *(p.at_s for p in plan)])
        with Progress(self.console, total_s=end, label=self.scenario.name) as progress:
            ticker = asyncio.create_task(self._tick(progress, memory))
            try:
                for item in plan:
                    delay = self._t0 + item.at_s - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await limit.acquire()
                    task = asyncio.create_task(self._send(item, limit))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                rest = self._t0 + end - time.monotonic()
                if rest > 0:
                    await asyncio.sleep(rest)
                await timeline
                if tasks:
                    await asyncio.gather(*tasks)
                await posting
            finally:
                timeline.cancel()
                posting.cancel()
                ticker.cancel()
                for task in tasks:
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await timeline
                progress.update(self.now_s(), counts(self._answers), 0)

    async def _tick(self, progress: Progress, memory: MemorySampler) -> None:
        while True:
            progress.update(self.now_s(), counts(self._answers), self._in_flight)
            if self.network is not None:
                memory.pids = self.network.pids()
            await asyncio.sleep(0.25)

    async def _send(self, item: Planned, limit: asyncio.Semaphore) -> None:
        self._in_flight += 1
        try:
            client = self.clients[item.requester]
            timeout = self.scenario.traffic.deadline_ms / 1000
            sent_s = self.now_s()
            self._late.append(max(0.0, sent_s - item.at_s))
            notice = self._notice_of(item)
            if notice is not None and self.messenger is not None:
                for target in list(item.expect_hit):
                    item.expect_hit[target] = await self.messenger.notice_ref(notice, target)
            started = time.perf_counter()
            # A trace per query (when traced): report.json names the slowest ones' ids.
            with tracing.span("ncbsim.sim.query", party="sim", root=True):
                trace_id = tracing.current_trace_id()
                try:
                    if item.to == [ALL] or len(item.to) > 1:
                        answers = await client.multi_query(item.query, item.to, timeout=timeout)
                    else:
                        answers = [await client.query(item.query, item.to[0], timeout=timeout)]
                except Exception as exc:
                    log.exception("query_crashed", label=item.label)
                    targets = list(item.expect_hit) if item.to == [ALL] else item.to
                    detail = f"simulator error: {type(exc).__name__}"
                    answers = [Answer(b, Outcome.FAILED, None, detail) for b in targets]
            latency = (time.perf_counter() - started) * 1000
            self._record(item.label, item.kind, item.requester, sent_s, latency, answers, trace_id)
            self.result.recorder.queried(item.requester, item.kind, sent_s, latency, answers)
            fetched = None
            if item.fetch and answers[0].outcome == Outcome.HIT:
                planted = item.expect_hit.get(answers[0].bureau)
                step2, step2_kind = second_step(item.query, answers[0], planted)
                fetch_s = self.now_s()
                started = time.perf_counter()
                with tracing.span("ncbsim.sim.query", party="sim", root=True):
                    trace_id = tracing.current_trace_id()
                    fetched = await client.query(step2, answers[0].bureau, timeout=timeout)
                latency = (time.perf_counter() - started) * 1000
                label = f"{item.label}/{step2_kind}"
                self._record(
                    label, step2_kind, item.requester, fetch_s, latency, [fetched], trace_id
                )
                self.result.recorder.queried(
                    item.requester, step2_kind, fetch_s, latency, [fetched]
                )
            self.result.sent.append(Sent(item, answers, fetched, sent_s, self.now_s()))
        finally:
            self._in_flight -= 1
            limit.release()

    def _record(  # noqa: PLR0917 - one private call site, reads in order
        self,
        label: str,
        kind: str,
        requester: str,
        sent_s: float,
        latency_ms: float,
        answers: list[Answer],
        trace_id: str = "",
    ) -> None:
        records = tuple(
            AnswerRecord(a.bureau, outcome_of(a), round(a.latency_ms or latency_ms, 2))
            for a in answers
        )
        query = QueryRecord(
            label=label,
            kind=kind,
            requester=requester,
            sent_s=sent_s,
            done_s=self.now_s(),
            latency_ms=round(latency_ms, 2),
            answers=records,
            trace_id=trace_id,
        )
        self.result.queries.append(query)
        self._answers.extend(records)
