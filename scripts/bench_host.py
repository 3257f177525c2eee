"""Measure one ``ncbsim host`` process: seconds until all its bureaus serve, and its memory.

Usage: python scripts/bench_host.py [--sizes 2,20,98] [--workdir DIR]

Makes a PKI and small record databases (200 documents, 50 persons, 50 vehicles each)
for the largest size, starts a gateway, then for each size starts one host of that many
bureaus and reports: the seconds from spawning it to its ready file (every bureau
registered and serving), its resident memory once ready (VmRSS) and its peak (VmHWM),
and whether a query from the first hosted bureau to the last is answered. Every process
it starts is stopped by its pid, on failure too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from ncbsim import log as logsetup
from ncbsim import pki as pkimod
from ncbsim.client import BureauClient
from ncbsim.countries import INTERPOL_MEMBERS
from ncbsim.pki import PkiDir
from ncbsim.v1 import query_pb2
from node import datagen

READY_TIMEOUT_S = 120.0


def _generate(args: tuple[Path, str]) -> None:
    db, code = args
    db.parent.mkdir(parents=True, exist_ok=True)
    datagen.generate(db, code, seed=1, documents=200, persons=50, vehicles=50, workers=1)


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ncbsim", *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
        )


def _wait_ready(proc: subprocess.Popen[bytes], ready: Path) -> dict[str, Any]:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready.exists():
            data: dict[str, Any] = json.loads(ready.read_text())
            return data
        if proc.poll() is not None:
            raise SystemExit(f"process {proc.pid} exited with {proc.returncode}")
        time.sleep(0.02)
    raise SystemExit(f"process {proc.pid} not ready after {READY_TIMEOUT_S:.0f}s")


def _memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def _stop(proc: subprocess.Popen[bytes]) -> float:
    """SIGTERM ``proc``; the seconds it took to exit (SIGKILL after 30 s)."""
    started = time.perf_counter()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return time.perf_counter() - started


async def _query(root: Path, gateway: str, frm: str, to: str) -> str:
    async with BureauClient.open(PkiDir(root), frm, gateway) as client:
        query = query_pb2.QueryRequest(
            document=query_pb2.DocumentQuery(number="X0000000", issuer=to)
        )
        return (await client.query(query, to)).outcome.value


def main() -> int:
    """Run the measurement and print one line per size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2,20,98", help="bureaus per host, comma-separated")
    parser.add_argument("--workdir", type=Path, help="keep the files here (default: temporary)")
    args = parser.parse_args()
    logsetup.configure("warning")
    sizes = [int(s) for s in args.sizes.split(",")]
    codes = [c for c in INTERPOL_MEMBERS if c != "GS"][: max(sizes)]
    with tempfile.TemporaryDirectory(prefix="bench-host-") as tmp:
        root = (args.workdir or Path(tmp) / "net").resolve()
        started = time.perf_counter()
        pkimod.init(root, codes)
        pki_s = time.perf_counter() - started
        started = time.perf_counter()
        dbs = {c: root / "bureaus" / c / "records.sqlite" for c in codes}
        with ProcessPoolExecutor(
            max_workers=os.cpu_count() or 1, mp_context=multiprocessing.get_context("spawn")
        ) as pool:
            list(pool.map(_generate, [(dbs[c], c) for c in codes]))
        data_s = time.perf_counter() - started
        print(f"setup: PKI of {len(codes)} bureaus {pki_s:.1f} s, databases {data_s:.1f} s")
        run = root / "run"
        run.mkdir()
        gateway = _spawn(
            [
                "gateway",
                "--dir",
                str(root),
                "--listen",
                "127.0.0.1:0",
                "--ready-file",
                str(run / "gateway.json"),
            ],
            run / "gateway.log",
        )
        try:
            address = _wait_ready(gateway, run / "gateway.json")["address"]
            print(
                f"{'bureaus':>8} {'ready s':>8} {'RSS MiB':>8} {'peak MiB':>9} "
                f"{'MiB/bureau':>10} {'stop s':>7}  query"
            )
            for size in sizes:
                hosted = codes[:size]
                spec = run / f"host-{size}.spec.json"
                spec.write_text(
                    json.dumps(
                        {
                            "gateway": address,
                            "bureaus": [{"bureau": c, "db": str(dbs[c])} for c in hosted],
                        }
                    )
                )
                ready = run / f"host-{size}.ready.json"
                started = time.perf_counter()
                host = _spawn(
                    ["host", "--dir", str(root), "--spec", str(spec), "--ready-file", str(ready)],
                    run / f"host-{size}.log",
                )
                try:
                    _wait_ready(host, ready)
                    ready_s = time.perf_counter() - started
                    memory = _memory_kib(host.pid)
                    outcome = asyncio.run(_query(root, address, hosted[0], hosted[-1]))
                finally:
                    stop_s = _stop(host)
                rss, peak = memory["VmRSS"] / 1024, memory["VmHWM"] / 1024
                print(
                    f"{size:>8} {ready_s:>8.2f} {rss:>8.1f} {peak:>9.1f} "
                    f"{rss / size:>10.2f} {stop_s:>7.2f}  {hosted[0]}->{hosted[-1]} {outcome}"
                )
        finally:
            _stop(gateway)
    return 0


if __name__ == "__main__":
    sys.exit(main())
