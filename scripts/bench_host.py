"""Measure one ``ncbsim host`` process: seconds until all its bureaus serve, and its memory.

Usage: python scripts/bench_host.py [--sizes 2,20,98] [--workdir DIR]

For each size, brings up a network of that many bureaus (200 documents, 50 persons and
50 vehicles each) whose bureaus all live in ONE host process, with
ncbsim.simulations.network.Network, and reports: the seconds from spawning the gateway to every
bureau registered and serving, the host's resident memory once ready (VmRSS) and its peak
(VmHWM), whether a query from the first hosted bureau to the last is answered, and the
seconds to stop. Records are generated once, in the first size's turn, and reused.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from ncbsim import log as logsetup
from ncbsim.client import BureauClient
from ncbsim.countries import INTERPOL_MEMBERS
from ncbsim.pki import PkiDir
from ncbsim.simulations.network import Network
from ncbsim.simulations.prepare import prepare
from ncbsim.simulations.scenario import Records, Scenario
from ncbsim.v2 import query_pb2

READY_TIMEOUT_S = 120.0
RECORDS = Records(documents=200, persons=50, vehicles=50, planted=1)


def _memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


async def _query(root: Path, gateway: str, frm: str, to: str) -> str:
    async with BureauClient.open(PkiDir(root), frm, gateway) as client:
        query = query_pb2.Query(document=query_pb2.DocumentQuery(number="X0000000", issuer=to))
        return (await client.query(query, to)).outcome.value


def main() -> int:
    """Run the measurement and print one line per size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2,20,98", help="bureaus per host, comma-separated")
    parser.add_argument("--workdir", type=Path, help="keep the files here (default: temporary)")
    args = parser.parse_args()
    logsetup.configure("warning")
    sizes = sorted(int(s) for s in args.sizes.split(","))
    codes = list(INTERPOL_MEMBERS[: max(sizes)])
    with tempfile.TemporaryDirectory(prefix="bench-host-") as tmp:
        root = (args.workdir or Path(tmp) / "net").resolve()
        started = time.perf_counter()
        prepare(root, Scenario(name="bench-host", bureaus=tuple(codes), records=RECORDS))
        setup_s = time.perf_counter() - started
        print(f"setup: PKI and records of {len(codes)} bureaus {setup_s:.1f} s")
        print(
            f"{'bureaus':>8} {'ready s':>8} {'RSS MiB':>8} {'peak MiB':>9} "
            f"{'MiB/bureau':>10} {'stop s':>7}  query"
        )
        for size in sizes:
            hosted = codes[:size]
            scenario = Scenario(name=f"host-{size}", bureaus=tuple(hosted), records=RECORDS)
            started = time.perf_counter()
            network = Network.start(root, scenario, hosts=[hosted], ready_timeout_s=READY_TIMEOUT_S)
            try:
                ready_s = time.perf_counter() - started
                memory = _memory_kib(network.hosts[0].pid)
                gateway = network.gateway.address
                outcome = asyncio.run(_query(root, gateway, hosted[0], hosted[-1]))
            finally:
                stopping = time.perf_counter()
                network.stop()
                stop_s = time.perf_counter() - stopping
            rss, peak = memory["VmRSS"] / 1024, memory["VmHWM"] / 1024
            print(
                f"{size:>8} {ready_s:>8.2f} {rss:>8.1f} {peak:>9.1f} "
                f"{rss / size:>10.2f} {stop_s:>7.2f}  {hosted[0]}->{hosted[-1]} {outcome}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
