"""What the classroom page costs a network of all 196 members, and whether the page keeps up.

``python scripts/bench_classroom.py [--rounds 2] [--duration 30] [--rate 20] [--phases AB]
[--json PATH] [--keep] [--attach W]`` (repository root, its venv) derives a scenario from
``all-members`` with few records (200 documents, 80 persons, 80 vehicles, 4 planted per
bureau: generated in seconds), brings the 196 members and GS up with ``ncbsim up SCEN
--workdir W --detach`` (no ``--faults``: its proxies would add a hop to every query of both
phases, and are not what is measured), and, after a warm-up phase not counted, drives the
same bounded query load (scripts/bench_classroom_load.py, a process of its own: a few
requester bureaus at ``--rate`` queries/s for ``--duration`` s, one to ALL every
``--all-every`` s, kept apart) in alternating phases, ``--rounds`` times:

- A: no page; nothing follows the network but the load.
- B: ``ncbsim classroom --workdir W --port 0`` attached, and Debian's Chromium (headless,
  1280x720, Playwright) on its page, with ``--lanes`` typed into the lane picker as a
  trainer does. After B the classroom gets SIGTERM (by PID) and the browser is closed.
- C (only with ``--phases ABC``): the classroom attached, no browser.

During B the page's ``window.ncbsimStats`` is read every second (fps, events received,
arrows, dropped, lag of the last arrow behind its event), the classroom's CPU and RSS from
/proc, and the browser's CPU (all its processes); in every phase the gateway's CPU.

It prints one line per phase (latency p50/p90/p99 ms of single-bureau queries, their count,
failures, skipped; ALL's p50; for B the page's figures) and a summary per phase kind: median
p50 and p99, their spread (min-max: A's is the noise), the ratio to A, whether B's median
falls inside A's spread, and the page's fps, events/s and CPU (made by
scripts/bench_classroom_report.py). ``--json PATH`` writes every figure. The network is
taken down at the end (``ncbsim down``), on failure and Ctrl-C too; ``--keep`` keeps the
work directory; ``--attach W`` uses a network already up (left up).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import bench_classroom_report as report  # scripts/, beside this file

ROOT = Path(__file__).resolve().parent.parent
NCBSIM = [sys.executable, "-m", "ncbsim"]
CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
VIEWPORT: Any = {"width": 1280, "height": 720}  # playwright ViewportSize
RECORDS = {"documents": 200, "persons": 80, "vehicles": 80, "planted": 4}
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- processes and /proc


def _ticks(pid: int) -> int:
    """User plus system CPU ticks of ``pid`` so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _browser_pids() -> list[int]:
    """Every Chromium process descended from this one (the page's browser)."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            head, tail = (entry / "stat").read_text().rsplit(")", 1)
            parents[int(entry.name)] = int(tail.split()[1])
            names[int(entry.name)] = head.split("(", 1)[1]
    mine = {os.getpid()}
    changed = True
    while changed:
        grown = {pid for pid, parent in parents.items() if parent in mine} | mine
        changed, mine = grown != mine, grown
    return [pid for pid in mine if names.get(pid, "").startswith("chrom")]


class CpuMeter:
    """CPU % of one core used by some processes between :meth:`start` and :meth:`stop`."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.began = time.monotonic()
        self.ticks = sum(_ticks(p) for p in pids)

    def stop(self) -> float:
        wall = time.monotonic() - self.began
        used = sum(_ticks(p) for p in self.pids) - self.ticks
        return 100.0 * used / CLK_TCK / wall if wall > 0 else 0.0


STOP = threading.Event()
"""Set by Ctrl-C or SIGTERM: the run stops at the next :func:`_check`, cleaning up."""


def _check() -> None:
    """Stop here (KeyboardInterrupt) if Ctrl-C or SIGTERM came."""
    if STOP.is_set():
        raise KeyboardInterrupt


def _pause(seconds: float) -> None:
    """Sleep, but stop within a tenth of a second of Ctrl-C or SIGTERM."""
    STOP.wait(seconds)
    _check()


def _run(cmd: list[str], **kw: Any) -> None:
    """Run an ncbsim command from the repository root; raise if it fails."""
    subprocess.run(cmd, check=True, cwd=ROOT, **kw)


def _stop(proc: subprocess.Popen[Any] | None, timeout: float = 15.0) -> None:
    """SIGTERM a process this script started (by its PID); SIGKILL if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------- phases


def _scenario(folder: Path) -> Path:
    """all-members with few records, as a TOML file in ``folder``."""
    text = (ROOT / "simulations/scenarios/all-members.toml").read_text()
    for key, value in RECORDS.items():
        text, n = re.subn(rf"(?m)^{key} = \d+$", f"{key} = {value}", text, count=1)
        if n != 1:
            raise SystemExit(f"bench: no '{key} = N' line in all-members.toml")
    text = text.replace('name = "all-members"', 'name = "bench-classroom"', 1)
    path = folder / "bench-classroom.toml"
    path.write_text(text)
    return path


def _load(
    args: argparse.Namespace, workdir: Path, out: Path, seed: int, duration: float
) -> subprocess.Popen[Any]:
    """Start the phase's load (scripts/bench_classroom_load.py), a process of its own."""
    cmd = [sys.executable, str(Path(__file__).resolve().with_name("bench_classroom_load.py"))]
    cmd += [str(workdir)]
    cmd += ["--out", str(out), "--seed", str(seed), "--duration", str(duration)]
    cmd += ["--rate", str(args.rate), "--requesters", str(args.requesters)]
    cmd += ["--all-every", str(args.all_every), "--lanes", args.lanes]
    cmd += ["--max-in-flight", str(args.max_in_flight), "--timeout", str(args.timeout)]
    return subprocess.Popen(cmd, cwd=ROOT)


def _finish_load(proc: subprocess.Popen[Any], out: Path, deadline: float) -> dict[str, Any]:
    """Wait for the load process; its figures."""
    try:
        code = proc.wait(deadline)
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise RuntimeError("the load process overran its deadline") from None
    if code != 0:
        raise RuntimeError(f"the load process exited with {code}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _open_classroom(workdir: Path, log: Path) -> tuple[subprocess.Popen[Any], str]:
    """``ncbsim classroom --workdir W --port 0``; its URL from its 'Classroom:' line."""
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [*NCBSIM, "classroom", "--workdir", str(workdir), "--port", "0"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    assert proc.stdout is not None
    for line in proc.stdout:
        found = re.search(r"Classroom: (http://\S+)", line)
        if found:  # go on reading its stdout, so it never blocks on a full pipe
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, found.group(1)
    _stop(proc)
    raise RuntimeError(f"ncbsim classroom printed no 'Classroom:' line (log: {log})")


def _open_page(stack: contextlib.ExitStack, url: str, lanes: str) -> tuple[Any, dict[str, Any]]:
    """Debian's Chromium on the page at 1280x720 with ``lanes`` picked; closed by ``stack``."""
    from playwright.sync_api import sync_playwright

    play = stack.enter_context(sync_playwright())
    browser = play.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
    stack.callback(browser.close)
    # bypass_csp: only for Playwright's own evaluations (the page's policy refuses eval)
    tab = browser.new_context(viewport=VIEWPORT, bypass_csp=True).new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    began = time.monotonic()
    tab.goto(url)
    tab.wait_for_selector("#conn[data-state=open]", timeout=60_000)
    opened = round(time.monotonic() - began, 2)
    tab.fill("#picker-codes", lanes)  # as a trainer picks lanes: type the codes, Enter
    tab.press("#picker-codes", "Enter")
    _pause(2)  # the page settles: the hello state drawn, the ring laid out
    return tab, {"page_open_s": opened, "page_errors": errors}


def _phase(
    args: argparse.Namespace, *, workdir: Path, tmp: Path, index: int, kind: str, gateway_pid: int
) -> dict[str, Any]:
    """One phase of the load: A without the classroom, B with it and its page open in the
    browser, C with the classroom but no browser."""
    samples: list[dict[str, Any]] = []
    result: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        tab = None
        meters: dict[str, CpuMeter] = {}
        if kind in "BC":
            classroom, url = _open_classroom(workdir, tmp / "classroom.log")
            stack.callback(_stop, classroom)
            if kind == "B":
                tab, extra = _open_page(stack, url, args.lanes)
                result |= extra
                meters["browser_cpu_pct"] = CpuMeter(_browser_pids())
            else:
                _pause(2)
            meters["classroom_cpu_pct"] = CpuMeter([classroom.pid])
        meters["gateway_cpu_pct"] = CpuMeter([gateway_pid])
        out = tmp / f"load-{index}.json"
        load = _load(args, workdir, out, args.seed + index, args.duration)
        stack.callback(_stop, load)
        before: dict[str, Any] | None = None
        while load.poll() is None:
            _pause(1.0)
            now: dict[str, Any] = {}
            if tab is not None:
                now = tab.evaluate("() => ({...window.ncbsimStats, t: performance.now()})")
                if before is not None:
                    elapsed = max(1.0, now["t"] - before["t"])
                    now["events_per_s"] = (now["events"] - before["events"]) * 1000 / elapsed
            if kind in "BC":
                now["rss_mib"] = _rss_mib(classroom.pid)
                if before is not None:
                    samples.append(now)
                before = now
        result |= _finish_load(load, out, deadline=args.duration + 120)
        result |= {name: meter.stop() for name, meter in meters.items()}
        result["samples"] = samples
    result["phase"] = kind
    return result


# ---------------------------------------------------------------- main


def _bench(args: argparse.Namespace) -> int:
    from ncbsim.simulations.network import Network

    if not CHROMIUM.exists():
        print("bench: Debian's chromium is not installed (apt-get install chromium)")
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="ncbsim-bench-classroom-"))
    workdir = Path(args.attach).resolve() if args.attach else tmp / "work"
    figs: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []
    up = False
    try:
        if not args.attach:
            scenario = _scenario(tmp)
            began = time.monotonic()
            up = True  # from here on, take it down whatever happens
            with (tmp / "up.log").open("wb") as log:  # its table of 197 rows: not here
                _run(
                    [*NCBSIM, "up", str(scenario), "--workdir", str(workdir), "--detach"],
                    stdout=log,
                )
            print(f"network up in {time.monotonic() - began:.0f} s ({workdir})", flush=True)
        gateway_pid = Network.load(workdir).gateway.pid
        warm = _phase(
            argparse.Namespace(**(vars(args) | {"duration": args.warmup})),
            workdir=workdir,
            tmp=tmp,
            index=0,
            kind="A",
            gateway_pid=gateway_pid,
        )
        print(f"warm-up: {len(warm['single_ms'])} queries (not counted)", flush=True)
        for i, kind in enumerate(args.phases * args.rounds):
            _check()
            result = _phase(
                args, workdir=workdir, tmp=tmp, index=i + 1, kind=kind, gateway_pid=gateway_pid
            )
            raw.append(result)
            figs.append(report.figures(result))
            print(report.line(i + 1, figs[-1]), flush=True)
        summary = report.summary(figs)
        report.print_summary(summary)
        if args.json:
            settings = {k: v for k, v in vars(args).items() if k != "json"}
            Path(args.json).write_text(
                json.dumps(
                    {
                        "settings": settings,
                        "records": RECORDS,
                        "phases": figs,
                        "summary": summary,
                        "raw": raw,
                    },
                    indent=1,
                )
            )
            print(f"figures in {args.json}")
        return 0
    except KeyboardInterrupt:
        print("bench: interrupted; taking the network down", file=sys.stderr)
        return 130
    finally:
        if up:
            subprocess.run([*NCBSIM, "down", "--workdir", str(workdir)], cwd=ROOT, check=False)
        if args.keep:
            print(f"work directory kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rounds", type=int, default=2, help="rounds of the phases (default 2)")
    p.add_argument(
        "--phases",
        default="AB",
        help="one round's phases, in order (default AB; ABC adds C: the classroom, no browser)",
    )
    p.add_argument("--duration", type=float, default=30.0, help="seconds per phase")
    p.add_argument("--rate", type=float, default=20.0, help="queries per second")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds of uncounted load first")
    p.add_argument("--all-every", type=float, default=10.0, help="one query to ALL every S s")
    p.add_argument("--requesters", type=int, default=6, help="requester bureaus")
    p.add_argument("--lanes", default="FR DE NG", help="lanes picked on the page")
    p.add_argument("--max-in-flight", type=int, default=64)
    p.add_argument("--timeout", type=float, default=5.0, help="a query's deadline, seconds")
    p.add_argument("--seed", type=int, default=18)
    p.add_argument("--json", help="write every figure to this file")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument(
        "--attach", metavar="W", help="use the network already up in W (left up afterwards)"
    )
    return p


def main() -> int:
    args = _parser().parse_args()
    if args.rounds < 1 or args.duration <= 0 or args.rate <= 0:
        print("bench: --rounds, --duration and --rate must be positive")
        return 2
    if not args.phases or set(args.phases) - set("ABC") or "A" not in args.phases:
        print("bench: --phases is a string of A, B and C with at least one A (e.g. AB, ABC)")
        return 2

    def interrupt(signum: int, frame: object) -> None:
        STOP.set()

    # Ctrl-C and SIGTERM only raise a flag, checked at safe points (_check): an exception
    # raised inside a Playwright call leaves its driver hung, and nothing gets cleaned up.
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    return _bench(args)


if __name__ == "__main__":
    sys.exit(main())
