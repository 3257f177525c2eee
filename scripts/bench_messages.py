"""Measure one-way messages: sealing per recipient, notice publication, accepted posts a second.

Usage: python scripts/bench_messages.py [--sizes 5,50,196] [--seconds 5] [--workdir DIR]

Prints three things, all on real processes (gateway, hosts, SQLite files, mTLS):

- ``seal``: the CPU time to seal one post for 196 recipients, one copy each
  (protocol.md §14.3), for a short and a long body;
- ``notice``: for each size (that many member bureaus plus GS), the time from a red-notice
  request by the first member until GS has published it, and until every other bureau
  holds it in its inbox (read from each bureau's inbox.sqlite);
- ``accept``: envelopes the gateway accepts a second (stored durably, then answered)
  from senders posting pre-sealed copies for ``--seconds``, with 16 posts in flight;
  one copy per post, then one copy to each other member per post (at most 8), on the
  smallest network. Sealing is done before the clock starts, so the figure is the
  gateway's (and that of one Python client process). Delivery to the recipients runs at
  the same time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ncbsim import _crypto, envelope, messages
from ncbsim import log as logsetup
from ncbsim.client import BureauClient
from ncbsim.countries import GENERAL_SECRETARIAT, INTERPOL_MEMBERS
from ncbsim.identity import Identity
from ncbsim.mail import Mailer
from ncbsim.node.inbox import Inbox
from ncbsim.pki import PkiDir
from ncbsim.simulations.network import Network
from ncbsim.simulations.prepare import prepare
from ncbsim.simulations.scenario import Records, Scenario
from ncbsim.v2 import gateway_pb2, messages_pb2
from ncbsim.workdir import Workdir

READY_TIMEOUT_S = 180.0
PUBLISH_TIMEOUT_S = 120.0
RECORDS = Records(documents=20, persons=20, vehicles=20, planted=1)
IN_FLIGHT = 16


def bench_seal() -> None:
    """Seal one post to 196 fresh recipients, short and long body; median of 7 runs."""
    sender = Identity.from_keys("FR", _crypto.ed25519_generate(), _crypto.x25519_generate())
    peers = [
        Identity.from_keys("DE", _crypto.ed25519_generate(), _crypto.x25519_generate()).as_peer()
        for _ in range(196)
    ]
    for text in (200, 8000):
        body = messages.pack(messages_pb2.Diffusion(subject="s", text="x" * text))
        runs = []
        for _ in range(7):
            started = time.perf_counter()
            for peer in peers:
                envelope.seal_message(
                    body, sender=sender, recipient=peer, kind=envelope.DIFFUSION, post_id=bytes(16)
                )
            runs.append(time.perf_counter() - started)
        median = statistics.median(runs)
        print(
            f"seal: {len(body):>5} B body, 196 copies {median * 1000:6.1f} ms "
            f"({median / 196 * 1e6:.0f} us a copy)"
        )


def _published_everywhere(root: Path, bureaus: list[str], notice_id: bytes) -> list[str]:
    """The bureaus whose inbox does not yet hold ``notice_id`` as published."""
    missing = []
    for code in bureaus:
        path = Workdir(root).bureau(code).inbox
        held = False
        if path.exists():
            reader = Inbox.read(path)
            try:
                held = any(
                    row.notice_id == notice_id
                    and row.status == messages_pb2.NOTICE_STATUS_PUBLISHED
                    for row in reader.notices()
                )
            finally:
                reader.close()
        if not held:
            missing.append(code)
    return missing


async def _notice(
    root: Path, gateway: str, requester: str, others: list[str]
) -> tuple[float, float]:
    """Seconds until GS published the notice, and until every bureau held it."""
    subject = messages_pb2.NoticeSubject(
        surname="Bench", given_names="Subject", date_of_birth="1980-01-01", nationality="FR"
    )
    async with BureauClient.open(PkiDir(root), requester, gateway) as client:
        started = time.perf_counter()
        notice_id = await Mailer(client).request_notice(
            messages.color("red"), subject, summary="benchmark", text=""
        )
    gs_s = all_s = 0.0
    deadline = started + PUBLISH_TIMEOUT_S
    remaining = [*others, requester, GENERAL_SECRETARIAT]
    while remaining and time.perf_counter() < deadline:
        remaining = _published_everywhere(root, remaining, notice_id)
        now = time.perf_counter() - started
        if not gs_s and GENERAL_SECRETARIAT not in remaining:
            gs_s = now
        if not remaining:
            all_s = now
            break
        await asyncio.sleep(0.02)
    if remaining:
        raise SystemExit(f"notice not held by {len(remaining)} bureaus: {remaining[:8]}")
    return gs_s, all_s


async def _accept(
    root: Path, gateway: str, senders: list[str], to: list[str], *, copies: int, seconds: float
) -> tuple[int, float]:
    """Copies accepted in ``seconds`` of posting pre-sealed envelopes, IN_FLIGHT at once."""
    clients = [await BureauClient.open(PkiDir(root), s, gateway).__aenter__() for s in senders]
    try:
        posts: list[tuple[BureauClient, gateway_pb2.PostRequest]] = []
        budget = int(seconds * 4000 / copies) + IN_FLIGHT
        body = messages.pack(messages_pb2.CaseMessage(text="bench " * 20))
        for i in range(budget):
            client = clients[i % len(clients)]
            recipients = [r for r in to if r != client.identity.bureau][:copies]
            await client.peers.resolve(recipients)
            post_id = os.urandom(16)
            request = gateway_pb2.PostRequest(
                envelopes=[
                    envelope.seal_message(
                        body,
                        sender=client.identity,
                        recipient=client.peers.get(r),
                        kind=envelope.MESSAGE,
                        post_id=post_id,
                    )
                    for r in recipients
                ]
            )
            posts.append((client, request))
        accepted = 0
        started = time.perf_counter()
        stop_at = started + seconds
        queue = iter(posts)

        async def worker() -> None:
            nonlocal accepted
            for client, request in queue:
                if time.perf_counter() >= stop_at:
                    return
                reply = await client.stub.Post(request, timeout=10)
                accepted += sum(r.status == gateway_pb2.POST_STATUS_ACCEPTED for r in reply.results)

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        return accepted, time.perf_counter() - started
    finally:
        for client in clients:
            await client.close()


def main() -> int:
    """Run the measurements and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5,50,196", help="member bureaus, comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each accept run")
    parser.add_argument("--workdir", type=Path, help="keep the files here (default: temporary)")
    args = parser.parse_args()
    logsetup.configure("warning")
    bench_seal()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-messages-") as tmp:
        for size in sizes:
            root = (args.workdir or Path(tmp)).resolve() / f"net-{size}"
            codes = [*INTERPOL_MEMBERS[:size], GENERAL_SECRETARIAT]
            scenario = Scenario(name=f"messages-{size}", bureaus=tuple(codes), records=RECORDS)
            prepare(root, scenario)
            started = time.perf_counter()
            network = Network.start(root, scenario, ready_timeout_s=READY_TIMEOUT_S)
            try:
                ready_s = time.perf_counter() - started
                gateway = network.gateway.address
                requester, others = codes[0], codes[1:-1]
                gs_s, all_s = asyncio.run(_notice(root, gateway, requester, others))
                print(
                    f"notice: {size:>3} bureaus + GS (ready in {ready_s:.1f} s): "
                    f"published by GS {gs_s * 1000:7.0f} ms, held by all {all_s * 1000:7.0f} ms"
                )
                if size == sizes[0]:
                    for copies in (1, min(8, size - 1)):
                        n, elapsed = asyncio.run(
                            _accept(
                                root,
                                gateway,
                                codes[:-1],
                                codes[:-1],
                                copies=copies,
                                seconds=args.seconds,
                            )
                        )
                        print(
                            f"accept: {copies} cop{'y' if copies == 1 else 'ies'} a post, "
                            f"{IN_FLIGHT} posts in flight: {n} copies in {elapsed:.1f} s = "
                            f"{n / elapsed:,.0f} accepted/s"
                        )
            finally:
                network.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
