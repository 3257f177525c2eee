"""``ncbsim bench``: the encrypted query path measured against a plain gRPC relay.

Locust reports whole milliseconds and competes for the CPU, so this is a pure asyncio
benchmark. In one run it measures two sides, each through two hops over mTLS:

- **ncbsim**: bureau FR's :class:`~ncbsim.client.BureauClient` (in this process) sends
  document checks through a real gateway to a real node for DE (separate processes):
  sealing, signatures, the SQLite lookup and the gateway's audit are all on the path.
- **floor**: a grpc.aio client in this process calls the relay of :mod:`ncbsim.load.floor`,
  which forwards to the floor server, with envelopes of the same size and no work.

Each round runs a sequential batch and a concurrent batch on each side, the sides in
alternating order, after a warm-up of both. It also times the per-query crypto in
process, to say how close to the floor the crypto alone lets ncbsim come. The figures
and tables are made by :mod:`ncbsim.load.bench_report`; see docs/bench.md for how to read them.

This module is imported while the CLI builds its parser: heavy imports stay inside
functions.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ncbsim.load.bench_measure import (
    CALL_TIMEOUT_S,
    REQUESTER,
    RESPONDER,
    FloorSide,
    NcbsimSide,
    Observers,
    Side,
    crypto_costs,
    query_format1,
    run_batch,
)
from ncbsim.load.bench_report import (
    Batch,
    ops_per_query,
    render,
    summarize,
    summarize_observed,
)

if TYPE_CHECKING:
    from ncbsim.client import Answer, BureauClient
    from ncbsim.load.floor import Fields, FloorProcesses
    from ncbsim.pki import PkiDir
    from ncbsim.simulations.network import Network
    from ncbsim.v2 import envelope_pb2, query_pb2

QUERY_POOL = 1000  # distinct document checks, sent in turn
FORMATS = (1, 2)
"""Envelope formats the ncbsim side can speak: 2, the query sessions
:meth:`ncbsim.client.BureauClient.query` uses (protocol.md §15), or 1, a public-key seal
and signature per query (§6), for a comparison on the same build."""
SUITES = ("classic", "hybrid")


@dataclass(frozen=True, kw_only=True, slots=True)
class BenchConfig:
    """How much to measure. The defaults take 70 to 90 seconds on 2 cores."""

    rounds: int = 12
    seq_calls: int = 300  # per side per round
    c32_calls: int = 1200  # per side per round
    concurrency: int = 32
    warmup_calls: int = 200  # per side, sequential, before a concurrent warm-up batch
    hit_ratio: float = 0.2
    documents: int = 20_000  # records per bureau
    crypto_iterations: int = 2000  # per operation and repeat
    observe: bool = False
    """Also measure ncbsim with the operator observing the gateway and DE's node."""
    suite: str = "classic"
    """The network's query session suite (``pki init --suite``): classic or hybrid."""
    envelope_format: int = 2
    """The envelope format of ncbsim's queries (:data:`FORMATS`)."""

    def __post_init__(self) -> None:
        from ncbsim.errors import ConfigError

        counts = (self.rounds, self.seq_calls, self.c32_calls, self.concurrency)
        if min(counts) < 1 or self.warmup_calls < 1 or self.crypto_iterations < 1:
            raise ConfigError("rounds, calls, concurrency and iterations must be at least 1")
        if self.c32_calls < self.concurrency:
            raise ConfigError("--c32-calls must be at least --concurrency")
        if not 0 <= self.hit_ratio <= 1:
            raise ConfigError("--hit-ratio must lie between 0 and 1")
        if self.documents < 10:
            raise ConfigError("--documents must be at least 10")
        if self.suite not in SUITES:
            raise ConfigError(f"--suite must be one of {', '.join(SUITES)}")
        if self.envelope_format not in FORMATS:
            raise ConfigError("--format must be 1 or 2")


QUICK = BenchConfig(
    rounds=2,
    seq_calls=40,
    c32_calls=128,
    warmup_calls=40,
    documents=500,
    crypto_iterations=200,
)


# ----------------------------------------------------------------------------- the run


def _queries(network: Network, config: BenchConfig, seed: int) -> list[tuple[query_pb2.Query, str]]:
    """A shuffled pool of document checks to DE, each with the outcome it must get.

    A share ``hit_ratio`` asks for documents DE holds; the rest for numbers it cannot hold.
    """
    import random

    from ncbsim.client import Outcome
    from ncbsim.node.store import RecordStore
    from ncbsim.v2 import query_pb2
    from ncbsim.workdir import Workdir

    rng = random.Random(seed)
    hits = round(QUERY_POOL * config.hit_ratio)
    store = RecordStore(Workdir(network.workdir).bureau(RESPONDER).records)
    try:
        # Only open records: a restricted one is rightly a no-hit for the requester.
        sampled = store.sample("document", min(hits, QUERY_POOL), rng)
        held = [d for d in sampled if not store.control(d.ref).restricted]
    finally:
        store.close()
    pool: list[tuple[str, str, str]] = [
        (held[i % len(held)].number, held[i % len(held)].issuer, Outcome.HIT.value)
        for i in range(hits)
    ]
    # The generator never writes Q in a document number, so these are certain misses.
    pool += [
        (f"Q{rng.randrange(10**8):08d}", RESPONDER, Outcome.NO_HIT.value)
        for _ in range(QUERY_POOL - hits)
    ]
    rng.shuffle(pool)
    return [
        (query_pb2.Query(document=query_pb2.DocumentQuery(number=n, issuer=i)), outcome)
        for n, i, outcome in pool
    ]


async def _probe(
    client: BureauClient,
    queries: Sequence[tuple[query_pb2.Query, str]],
    envelope_format: int,
) -> tuple[list[envelope_pb2.Envelope], list[envelope_pb2.Envelope]]:
    """Send ``queries`` the way the ncbsim side does (in ``envelope_format``), keeping the
    envelopes to learn their sizes."""
    from ncbsim.errors import NetworkError

    requests, responses = [], []
    for query, expected in queries:
        if envelope_format == 1:
            answer, request, response = await query_format1(client, query)
        else:
            answer, request, response = await _query_in_session(client, query)
        if answer.outcome.value != expected or response is None:
            raise NetworkError(f"warm-up query answered {answer.outcome.value}: {answer.detail}")
        requests.append(request)
        responses.append(response)
    return requests, responses


async def _query_in_session(
    client: BureauClient, query: query_pb2.Query
) -> tuple[Answer, envelope_pb2.Envelope, envelope_pb2.Envelope | None]:
    """One query in FR's session with DE, as ``BureauClient.query`` sends it, with the
    envelopes that went each way."""
    import time

    from ncbsim import padding
    from ncbsim.client import Answer, Outcome, open_session_answer
    from ncbsim.client_sessions import Sent

    def now_ms() -> int:
        return int(time.time() * 1000)

    await client.peers.resolve([RESPONDER], timeout=CALL_TIMEOUT_S)
    sent = await client.sessions.ask(
        client.peers.get(RESPONDER),
        padding.padded(query, padding.REQUEST_BYTES),
        timeout=CALL_TIMEOUT_S,
        now_ms=now_ms,
        sealed=lambda _requests: None,
        returned=lambda sent: sent,
    )
    if not isinstance(sent, Sent):
        raise sent
    if sent.response is None:
        failed = Answer(RESPONDER, Outcome.FAILED, None, sent.status)
        return failed, sent.request.envelope, None
    answer = open_session_answer(sent.request, sent.response, 0.0, now_ms())
    return answer, sent.request.envelope, sent.response


def _observers(network: Network, pki: PkiDir) -> Observers:
    """The operator's streams of the gateway and of the answering node (DE)."""
    from ncbsim.pki import GATEWAY_NAME, bureau_dns_name

    targets = [
        (network.gateway.address, GATEWAY_NAME),
        (network.node(RESPONDER).address, bureau_dns_name(RESPONDER)),
    ]
    return Observers(targets, pki)


def _mean_fields(envelopes: Sequence[envelope_pb2.Envelope]) -> Fields:
    """The rounded mean length of each field over ``envelopes``."""
    from ncbsim.load.floor import Fields

    lengths = [Fields.of(e) for e in envelopes]
    n = len(lengths)
    return Fields(
        round(sum(f.header for f in lengths) / n),
        round(sum(f.sealed for f in lengths) / n),
        round(sum(f.signature for f in lengths) / n),
    )


async def _warm(side: Side, config: BenchConfig) -> None:
    await run_batch(side, "warm", -1, config.warmup_calls, 1)
    await run_batch(side, "warm", -1, config.concurrency * 4, config.concurrency)


async def _rounds(
    sides: Sequence[Side],
    config: BenchConfig,
    progress: Callable[[str], None],
    observers: Observers | None = None,
) -> tuple[list[Batch], list[tuple[str, ...]]]:
    """Every round: on each side a sequential then a concurrent batch; the order rotates
    (with two sides, it alternates). The ``observed`` side's batches run with
    ``observers`` attached, the others with no subscriber at all."""
    batches: list[Batch] = []
    orders: list[tuple[str, ...]] = []
    for index in range(config.rounds):
        shift = index % len(sides)
        order = (*sides[shift:], *sides[:shift])
        orders.append(tuple(side.name for side in order))
        for side in order:
            progress(f"round {index + 1}/{config.rounds}: {side.name}")
            watching = observers if side.name == "observed" else None
            if watching is not None:
                await watching.attach(side)
            try:
                batches.append(await run_batch(side, "seq", index, config.seq_calls, 1))
                batches.append(
                    await run_batch(side, "c32", index, config.c32_calls, config.concurrency)
                )
            finally:
                if watching is not None:
                    await watching.detach()
    return batches, orders


async def measure(
    network: Network, config: BenchConfig, *, log_level: str, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Warm both sides, run the interleaved rounds and time the crypto; return the figures."""
    from ncbsim.client import BureauClient
    from ncbsim.errors import NetworkError
    from ncbsim.load.floor import FloorProcesses
    from ncbsim.pki import PkiDir

    pki = PkiDir(network.workdir)
    queries = _queries(network, config, seed=1)
    client = BureauClient.open(pki, REQUESTER, network.gateway.address)
    floor: FloorProcesses | None = None
    floor_side: FloorSide | None = None
    observers: Observers | None = None
    observed_side: NcbsimSide | None = None
    try:
        progress("warming up ncbsim and measuring its envelopes")
        fmt = config.envelope_format
        requests, responses = await _probe(client, queries[: config.warmup_calls], fmt)
        pids = {"client": os.getpid(), "relay": network.gateway.pid}
        ncbsim_side = NcbsimSide(
            client, queries, {**pids, "server": network.node(RESPONDER).pid}, envelope_format=fmt
        )
        await _warm(ncbsim_side, config)
        if ncbsim_side.outcomes.keys() - {"hit", "no_hit"}:
            raise NetworkError(f"ncbsim warm-up failed: {ncbsim_side.outcomes}")
        ncbsim_side.outcomes.clear()

        progress("starting and warming up the floor")
        request_fields = _mean_fields(requests)
        floor = await FloorProcesses.start(
            pki, network.workdir / "floor", _mean_fields(responses), log_level=log_level
        )
        floor_side = await FloorSide.connect(floor, pki, request_fields.canned())
        await _warm(floor_side, config)

        sides: list[Side] = [ncbsim_side, floor_side]
        if config.observe:
            observed_side = NcbsimSide(
                client, queries, ncbsim_side.pids, name="observed", envelope_format=fmt
            )
            observers = _observers(network, pki)
            sides.append(observed_side)
        batches, orders = await _rounds(sides, config, progress, observers)
    finally:
        if floor_side is not None:
            await floor_side.channel.close()
        await client.close()
        if floor is not None:
            floor.stop()
    progress("timing the crypto in process")
    fmt = config.envelope_format
    crypto_us = crypto_costs(requests[0], config.crypto_iterations, ops_per_query(fmt))
    report = summarize(batches, crypto_us=crypto_us, orders=orders, protocol=fmt)
    report["ncbsim"]["outcomes"] = dict(sorted(ncbsim_side.outcomes.items()))
    if observers is not None and observed_side is not None:
        report["observe"] = summarize_observed(
            batches, report["ncbsim"], events=observers.events, dropped=observers.dropped
        )
        report["observe"]["outcomes"] = dict(sorted(observed_side.outcomes.items()))
    report["payload"] = {
        "ncbsim": {
            "request_bytes": round(sum(e.ByteSize() for e in requests) / len(requests), 2),
            "response_bytes": round(sum(e.ByteSize() for e in responses) / len(responses), 2),
        },
        "floor": {
            "request_bytes": floor_side.request.ByteSize(),
            "response_bytes": floor_side.response.ByteSize(),
        },
        "fields": {
            "request": dataclasses.asdict(request_fields),
            "response": dataclasses.asdict(_mean_fields(responses)),
        },
    }
    return report


def run(
    config: BenchConfig,
    *,
    workdir: Path | None,
    log_level: str = "info",
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Start a network of FR and DE, benchmark it against the floor, stop everything.

    ``workdir`` is kept if given; otherwise a temporary one is made and removed.
    """
    import asyncio
    import platform
    import shutil
    import tempfile

    import grpc

    from ncbsim.simulations.network import Network
    from ncbsim.simulations.scenario import Records, Scenario

    folder = workdir or Path(tempfile.mkdtemp(prefix="ncbsim-bench-"))
    try:
        progress("starting the network (gateway, FR and DE nodes)")
        scenario = Scenario(
            name="bench",
            description="Document checks from FR to DE for ncbsim bench.",
            bureaus=(REQUESTER, RESPONDER),
            records=Records(documents=config.documents, persons=50, vehicles=50),
        )
        network = Network.start(folder, scenario, log_level=log_level, suite=config.suite)
        try:
            report = asyncio.run(measure(network, config, log_level=log_level, progress=progress))
        finally:
            network.stop()
    finally:
        if workdir is None:
            shutil.rmtree(folder, ignore_errors=True)
    report["parameters"] = {
        **dataclasses.asdict(config),
        "requester": REQUESTER,
        "responder": RESPONDER,
        "query": "document",
    }
    report["environment"] = {
        "python": platform.python_version(),
        "grpc": grpc.__version__,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    return report


# ----------------------------------------------------------------------------- the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ncbsim bench``."""
    default = BenchConfig()
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--quick", action="store_true", help="a few seconds of measuring (for tests; noisy)"
    )
    for name, help_text in (
        ("rounds", "rounds, each side in turn"),
        ("seq-calls", "sequential calls per side per round"),
        ("c32-calls", "concurrent calls per side per round"),
        ("concurrency", "callers in the concurrent batches"),
        ("warmup-calls", "sequential warm-up calls per side"),
        ("documents", "documents per bureau"),
        ("crypto-iterations", "iterations per crypto operation and repeat"),
    ):
        value = getattr(default, name.replace("-", "_"))
        parser.add_argument(
            f"--{name}", type=int, default=None, help=f"{help_text} (default {value})"
        )
    parser.add_argument(
        "--hit-ratio",
        type=float,
        default=None,
        help=f"share of queries for documents DE holds (default {default.hit_ratio})",
    )
    parser.add_argument(
        "--observe",
        action="store_true",
        default=None,
        help="also measure ncbsim with the operator observing the gateway and DE's node "
        "(Observe, every event read): the report gives observed / plain ncbsim",
    )
    parser.add_argument(
        "--suite",
        choices=SUITES,
        default=None,
        help=f"the network's query session suite (default {default.suite})",
    )
    parser.add_argument(
        "--format",
        dest="envelope_format",
        type=int,
        choices=FORMATS,
        default=None,
        help="envelope format of ncbsim's queries: 2, query sessions (protocol.md §15), or "
        f"1, a public-key seal and signature per query (default {default.envelope_format})",
    )
    parser.add_argument("--workdir", type=Path, help="keep the network's files here")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The preset (default or ``--quick``) with the options given on the command line."""
    base = QUICK if args.quick else BenchConfig()
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(BenchConfig)
        if getattr(args, f.name, None) is not None
    }
    return dataclasses.replace(base, **given)


def cli(args: argparse.Namespace) -> int:
    """Run ``ncbsim bench``: 0 once measured (goals met or not), 1 if calls failed."""
    import json
    import sys

    from rich.console import Console

    from ncbsim.processes import sigterm_as_interrupt

    config = config_from_args(args)
    status = Console(stderr=True)
    # SIGTERM stops the run as Ctrl-C does, so everything started is stopped and removed.
    with sigterm_as_interrupt():
        if args.json:
            report = run(config, workdir=args.workdir, log_level=args.child_log_level)
        else:
            with status.status("ncbsim bench") as spinner:
                report = run(
                    config,
                    workdir=args.workdir,
                    log_level=args.child_log_level,
                    progress=lambda text: spinner.update(f"ncbsim bench: {text}"),
                )
    report["parameters"]["quick"] = bool(args.quick)
    if args.json:
        print(json.dumps(report))
    else:
        render(report, Console())
    failed = report["ncbsim"]["seq"]["failures"] + report["ncbsim"]["c32"]["failures"]
    failed += report["floor"]["seq"]["failures"] + report["floor"]["c32"]["failures"]
    if "observe" in report:
        failed += report["observe"]["seq"]["failures"] + report["observe"]["c32"]["failures"]
    if failed:
        print(f"ncbsim bench: {failed} calls failed; the figures are not valid", file=sys.stderr)
        return 1
    return 0
