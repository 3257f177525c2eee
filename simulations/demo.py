"""Trainer mode: ``ncbsim demo`` runs a small real network and narrates the lesson.

It starts the scenario's gateway and bureau nodes as real processes (mTLS on loopback),
then walks through the lesson script (ncbsim.simulations.lesson, shared with the
classroom): queries, a border officer's face search and its confirmation, a diffusion, a
red notice that GS reviews and publishes, a border check that hits it and its withdrawal,
each sent by the first bureau of the scenario (or one of its users) through the gateway's
real RPCs. Each step shows what each party sees, taken from what
really happened:

- the asking bureau: the plaintext query (or post) it sealed;
- the gateway: the routing header parsed from the envelope bytes sent, as the gateway
  parses it, and the ciphertext size, confirmed by the gateway's audit row for that
  message id and by the event its stream sent the operator (``Observe``, docs/events.md:
  the same schema as timeline.jsonl and ``ncbsim watch --events``); never any plaintext;
- the answering bureau: the query opened with that bureau's identity from the work
  directory's PKI (what its node does), and the record it matched, read from its
  records database by the reference in the answer;
- the asking bureau again: the verified, opened answer.

Every step checks that things went as narrated and prints PASS or FAIL. A step the
network cannot run is skipped and says why: the notice steps need a GS node (the default
scenario, ``red-notice``, has one), the attacks a classroom-mode gateway (``ncbsim
classroom``), the face search enrolled faces (``records.biometrics``). The command exits
0 only if every step that ran passed. The network is stopped at the end, on Ctrl-C and on
error.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog
from rich.console import Console
from rich.text import Text

from ncbsim.countries import GENERAL_SECRETARIAT
from ncbsim.errors import ConfigError
from ncbsim.processes import sigterm_as_interrupt
from ncbsim.simulations import _demo_views as v
from ncbsim.simulations._demo_record import AttackRunner
from ncbsim.simulations._demo_steps import STEPS, Demo, Step
from ncbsim.simulations.network import Network

log = structlog.get_logger()


@dataclass(frozen=True, kw_only=True, slots=True)
class DemoConfig:
    """What ``ncbsim demo`` runs, and how.

    ``workdir`` keeps the network's files there (else a temporary directory, removed at
    the end). ``deadline_s`` is the multi-bureau query's deadline, ``timeout_s`` that
    of every other query.
    """

    scenario: str = "red-notice"
    auto: bool = False
    workdir: Path | None = None
    deadline_s: float = 2.0
    timeout_s: float = 5.0
    log_level: str = "info"

    def __post_init__(self) -> None:
        if not 0.2 <= self.deadline_s <= self.timeout_s:
            raise ConfigError("the multi-bureau deadline must lie between 0.2 s and the timeout")


def _pauser(config: DemoConfig, console: Console) -> Callable[[str], None]:
    state = {"auto": config.auto}

    def pause(prompt: str) -> None:
        if state["auto"]:
            return
        try:
            console.input(prompt)
        except EOFError:  # stdin closed: carry on without pausing
            state["auto"] = True
        if not sys.stdin.isatty():  # no terminal echoed the Enter
            console.print()

    return pause


async def _open(
    network: Network,
    bureaus: list[str],
    config: DemoConfig,
    console: Console,
    attack_runner: AttackRunner | None,
) -> Demo:
    demo = Demo(network, bureaus, config, console, attack_runner=attack_runner)  # needs the loop
    if not await demo.obs.start_stream():
        console.print("  (not every party's event stream attached; events may be missing)")
    return demo


@contextlib.contextmanager
def session(
    config: DemoConfig, console: Console, *, attack_runner: AttackRunner | None = None
) -> Iterator[tuple[asyncio.Runner, Demo]]:
    """Start the scenario's network and open a :class:`Demo` on it, in an event loop of its
    own (run steps with ``runner.run(demo.run_step(i))`` or ``demo.run``). On leaving,
    the demo is closed, the network stopped, and a temporary work directory removed."""
    from ncbsim.simulations import scenario as scenarios

    scenario = scenarios.load(config.scenario)
    bureaus = list(scenario.bureaus)
    members = [b for b in bureaus if b != GENERAL_SECRETARIAT]
    if len(members) < 3:
        raise ConfigError(
            f"the demo needs at least three bureaus besides GS; {scenario.name} has {len(members)}"
        )
    workdir = config.workdir or Path(tempfile.mkdtemp(prefix="ncbsim-demo-"))
    try:
        console.print(
            Text(
                f"Starting scenario {scenario.name}: a gateway and {len(bureaus)} bureau "
                f"nodes ({', '.join(bureaus)}), each a real process on loopback, mTLS.",
            )
        )
        network = Network.start(workdir, scenario, log_level=config.log_level)
        try:
            for proc in network.procs:
                line = f"  {proc.bureau or proc.role:8} pid {proc.pid:<8} {proc.address}"
                console.print(line, markup=False)
            console.print(f"  files in {network.workdir}", markup=False)
            console.print()
            with asyncio.Runner() as runner:
                demo = runner.run(_open(network, bureaus, config, console, attack_runner))
                try:
                    yield runner, demo
                finally:
                    runner.run(demo.close())
        finally:
            network.stop()
            console.print("Network stopped.")
    finally:
        if config.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def report(steps: list[Step], console: Console) -> int:
    """Print one line per step and the tally; 0 if the whole lesson was gone through and
    every step that ran passed (skipped steps count neither way)."""
    ran = [s for s in steps if s.ran]
    passed = sum(s.passed for s in ran)
    for s in steps:
        console.print(v.check_line(s.passed, s.numbered) if s.ran else v.skip_line(s.numbered))
    skipped = len(steps) - len(ran)
    console.print(
        f"{passed} of {len(ran)} steps behaved as narrated"
        + (f"; {skipped} of {STEPS} skipped." if skipped else ".")
    )
    log.info("demo_done", steps=len(steps), ran=len(ran), passed=passed, skipped=skipped)
    return 0 if ran and passed == len(ran) and len(steps) == STEPS else 1


def run(config: DemoConfig, console: Console | None = None) -> int:
    """Start the network, narrate the lesson, stop everything; 0 if every step that ran
    passed."""
    console = console or v.make_console()
    steps: list[Step] = []
    with sigterm_as_interrupt(), session(config, console) as (runner, demo):
        steps = demo.run(runner, _pauser(config, console))
    return report(steps, console)
