"""The load of ``scripts/bench_classroom.py``: one phase's queries, from a process of its own.

``python scripts/bench_classroom_load.py WORKDIR --out FILE [--rate 20] [--duration 30] ...``
acts as a few requester bureaus of the network up in WORKDIR (``ncbsim.client.BureauClient``,
as the simulator's clients; the ``--lanes`` bureaus first, then random members), fetches and
verifies every directory entry (untimed), then sends single-bureau document queries at a
fixed rate to random members (about a third for a record the recipient holds, from its
planted records; the rest no-hits), plus one query to ALL every ``--all-every`` seconds,
for ``--duration`` seconds, with at most ``--max-in-flight`` out at once (more are skipped
and counted). It writes every query's latency (ms) and outcome to FILE as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import string
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

HIT_SHARE = 0.3
"""Share of single-bureau queries asking for a record the recipient holds."""


async def _requesters(args: argparse.Namespace) -> tuple[list[Any], list[str], dict[str, Any]]:
    """The requesters' clients (directory entries fetched), the members, their planted records."""
    from ncbsim.client import ALL, BureauClient
    from ncbsim.directory import Directory
    from ncbsim.simulations.classroom.planted import planted
    from ncbsim.simulations.network import Network
    from ncbsim.workdir import Workdir

    workdir = Path(args.workdir)
    pki = Workdir(workdir).pki
    network = Network.load(workdir)
    members = sorted(p.bureau for p in network.procs if p.bureau and p.bureau != "GS")
    rng = random.Random(args.seed)
    askers = [c for c in args.lanes.split() if c in members][: args.requesters]
    askers += rng.sample([m for m in members if m not in askers], args.requesters - len(askers))
    directory = Directory.pinned(pki)
    clients = [
        BureauClient.open(pki, code, network.gateway.address, directory=directory)
        for code in askers
    ]
    hits = {
        code: [p for p in planted(workdir, code) if p["kind"] == "document"] for code in members
    }
    for client in clients:  # warm-up: fetch and verify every entry, untimed
        await client.recipients([ALL], timeout=30)
    return clients, members, hits


async def _drive(args: argparse.Namespace) -> dict[str, Any]:
    """Send the phase's queries at a fixed rate; every query's latency and outcome."""
    from ncbsim.client import ALL, Outcome
    from ncbsim.v2 import query_pb2

    clients, members, hits = await _requesters(args)
    rng = random.Random(args.seed)
    single: list[float] = []
    multi: list[float] = []
    outcomes: Counter[str] = Counter()
    restricted = skipped = 0
    in_flight = 0
    all_every = max(1, round(args.all_every * args.rate)) if args.all_every > 0 else 0

    async def one(i: int) -> None:
        nonlocal restricted, in_flight
        client = clients[i % len(clients)]
        asker = client.identity.bureau
        began = time.perf_counter()
        try:
            if all_every and i % all_every == all_every // 2:
                query = query_pb2.Query(
                    document=query_pb2.DocumentQuery(number=_number(rng), issuer=asker)
                )
                answers = await client.multi_query(query, [ALL], timeout=args.timeout)
                multi.append((time.perf_counter() - began) * 1000)
                for answer in answers:
                    outcomes[f"all:{answer.outcome}"] += 1
                return
            target = rng.choice([m for m in members if m != asker])
            item = rng.choice(hits[target]) if hits[target] and rng.random() < HIT_SHARE else None
            number = item["number"] if item else _number(rng)
            issuer = item["issuer"] if item else target
            query = query_pb2.Query(document=query_pb2.DocumentQuery(number=number, issuer=issuer))
            answer = await client.query(query, target, timeout=args.timeout)
            single.append((time.perf_counter() - began) * 1000)
            outcomes[str(answer.outcome)] += 1
            if item is not None and answer.outcome == Outcome.NO_HIT:
                # the page's planted list is read without the records' access controls:
                # a record restricted from this requester is rightly a no-hit
                restricted += 1
        finally:
            in_flight -= 1

    loop = asyncio.get_running_loop()
    count = round(args.rate * args.duration)
    tasks: list[asyncio.Task[None]] = []
    start = loop.time()
    late_ms = 0.0
    for i in range(count):
        await asyncio.sleep(max(0.0, start + i / args.rate - loop.time()))
        late_ms = max(late_ms, (loop.time() - start - i / args.rate) * 1000)
        if in_flight >= args.max_in_flight:
            skipped += 1
            continue
        in_flight += 1
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    wall = loop.time() - start
    for client in clients:
        await client.close()
    return {
        "requesters": [c.identity.bureau for c in clients],
        "single_ms": single,
        "all_ms": multi,
        "outcomes": dict(outcomes),
        "planted_no_hit": restricted,
        "skipped": skipped,
        "max_send_late_ms": late_ms,
        "wall_s": wall,
    }


def _number(rng: random.Random) -> str:
    """A document number no bureau holds (a Z and 8 random characters)."""
    return "Z" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=8))


def _worker(args: argparse.Namespace) -> int:
    from ncbsim import log

    log.configure("warning")
    result = asyncio.run(_drive(args))
    Path(args.out).write_text(json.dumps(result))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("workdir", help="the work directory of a network that is up")
    p.add_argument("--out", required=True, help="write the figures to this JSON file")
    p.add_argument("--rate", type=float, default=20.0, help="queries per second")
    p.add_argument("--duration", type=float, default=30.0, help="seconds")
    p.add_argument("--all-every", type=float, default=10.0, help="one query to ALL every S s")
    p.add_argument("--requesters", type=int, default=6, help="requester bureaus")
    p.add_argument("--lanes", default="FR DE NG", help="bureaus to ask from first")
    p.add_argument("--max-in-flight", type=int, default=64)
    p.add_argument("--timeout", type=float, default=5.0, help="a query's deadline, seconds")
    p.add_argument("--seed", type=int, default=18)
    return p


if __name__ == "__main__":
    sys.exit(_worker(_parser().parse_args()))
