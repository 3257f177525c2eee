"""The classroom's six attacks, run against a real network started in classroom mode: each
is caught where ATTACKS says, read from the real parties, and the gateway is honest again
afterwards. A normal network has no attacks: its gateway runs without the flag, and
run_attack refuses."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from ncbsim.client import Outcome
from ncbsim.errors import ConfigError
from ncbsim.simulations import manifest
from ncbsim.simulations import scenario as scenarios
from ncbsim.simulations._demo_observer import Observer
from ncbsim.simulations.classroom.attacks import (
    ATTACKS,
    WHERE,
    AttackOutcome,
    attacks_enabled,
    run_attack,
    set_mode,
)
from ncbsim.simulations.network import Network
from ncbsim.v2 import gateway_pb2, query_pb2
from ncbsim.workdir import Workdir

pytestmark = pytest.mark.integration

SMALL = Path(__file__).parents[1] / "scenarios" / "small.toml"
ASKER, TO = "FR", "DE"
T = TypeVar("T")


@pytest.fixture(scope="module")
def classroom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """The small scenario with the classroom-mode gateway; always stopped."""
    net = Network.start(
        tmp_path_factory.mktemp("classroom"), scenarios.load(str(SMALL)), attacks=True
    )
    try:
        yield net
    finally:
        net.stop()


def _observe(net: Network, work: Callable[[Observer], Awaitable[T]]) -> T:
    """Run ``work`` with an observer acting as FR that follows every party's events."""

    async def main() -> T:
        obs = Observer(net.workdir, ASKER, net.gateway.address, timeout_s=5.0)
        try:
            assert await obs.start_stream()
            return await work(obs)
        finally:
            await obs.close()

    return asyncio.run(asyncio.wait_for(main(), 90))


def _argv(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def _mode(net: Network) -> dict[str, object]:
    return dict(json.loads(Workdir(net.workdir).gateway.attack_mode.read_text()))


def test_the_catalogue_names_six_attacks_and_where_each_is_caught() -> None:
    """ATTACKS holds exactly the six names the page and the contract use, each caught at
    one of the four places."""
    assert list(ATTACKS) == [
        "flip-bit",
        "replay",
        "swap-key",
        "redirect",
        "drop-answer",
        "spoof-sender",
    ]
    for name, attack in ATTACKS.items():
        assert attack.name == name
        assert attack.caught_at in WHERE
        assert attack.title
        assert attack.caption


def test_the_classroom_network_runs_the_classroom_mode_gateway(classroom: Network) -> None:
    """network.json records classroom mode, and the gateway process got the flag with the
    work directory's mode file."""
    assert attacks_enabled(classroom.workdir)
    assert manifest.read(classroom.workdir).data["classroom_attacks"] is True
    argv = _argv(classroom.gateway.pid)
    flag = argv.index("--classroom-attacks")
    assert argv[flag + 1] == str(Workdir(classroom.workdir).gateway.attack_mode)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_each_attack_is_caught_where_it_should_be(classroom: Network, name: str) -> None:
    """The attack is caught where ATTACKS says, by the party's own record; every check
    holds; the gateway is honest again, so the same query then hits."""

    async def work(obs: Observer) -> tuple[AttackOutcome, Outcome, str | None]:
        outcome = await run_attack(obs, classroom.workdir, name, ASKER, TO)
        applied = None
        if outcome.exchange is not None and name != "spoof-sender":
            mid = outcome.exchange.sealed.header.message_hex
            event = await obs.attack_event(mid)
            applied = str(event.view["attack"]) if event is not None else ""
        again = await obs.exchange(outcome.query, TO)  # the gateway is honest again
        hit = outcome.ref in {m.ref for m in again.answer.matches}
        return outcome, again.answer.outcome if hit else Outcome.NO_HIT, applied

    outcome, honest, applied = _observe(classroom, work)
    assert outcome.passed, (outcome.caught, outcome.checks)
    assert outcome.caught is not None
    assert outcome.caught.where == ATTACKS[name].caught_at
    assert outcome.caught.reason
    assert outcome.caught.text.endswith(".")
    assert (outcome.name, outcome.asker, outcome.to) == (name, ASKER, TO)
    expected = {
        "flip-bit": ("recipient", TO, "unverified"),
        "replay": ("recipient", TO, "replay"),
        "swap-key": ("requester", ASKER, "root_signature"),
        "drop-answer": ("requester", ASKER, "no_answer"),
        "spoof-sender": ("gateway", "gateway", "identity_mismatch"),
    }
    if name in expected:
        caught = outcome.caught
        assert (caught.where, caught.party, caught.reason) == expected[name]
    else:  # redirect: a third bureau refuses what was sealed to DE
        assert outcome.caught.party not in {ASKER, TO}
        assert outcome.caught.reason == "unverified"
    assert (outcome.exchange is None) == (name == "swap-key")
    kinds = {
        "flip-bit": "alter-request",
        "replay": "replay-request",
        "redirect": "reroute",
        "drop-answer": "drop",
    }
    if name in kinds:  # the gateway's own event names the envelope it attacked
        assert applied == kinds[name]
    assert _mode(classroom) == {"mode": "honest"}
    assert honest == Outcome.HIT


def test_a_malformed_mode_file_leaves_the_gateway_honest_and_is_logged(
    classroom: Network,
) -> None:
    """`ncbsim gateway --classroom-attacks FILE` with FILE not JSON (or an unknown mode)
    relays honestly, and its log says the file was ignored."""
    mode_file = Workdir(classroom.workdir).gateway.attack_mode

    async def work(obs: Observer) -> list[Outcome]:
        rows = obs.pick(TO, "SELECT number, issuer FROM documents ORDER BY id LIMIT 1")
        number, issuer = rows[0]
        query = query_pb2.Query(document=query_pb2.DocumentQuery(number=number, issuer=issuer))
        outcomes = []
        for text in ("{not json", json.dumps({"mode": "melt-down", "target": TO})):
            mode_file.write_text(text)
            ex = await obs.exchange(query, TO)
            outcomes.append(ex.answer.outcome)
        return outcomes

    try:
        outcomes = _observe(classroom, work)
    finally:
        set_mode(classroom.workdir, {"mode": "honest"})
    assert outcomes == [Outcome.HIT, Outcome.HIT]
    log = Path(classroom.gateway.log).read_text()
    ignored = [json.loads(line) for line in log.splitlines() if "attack_mode_ignored" in line]
    problems = {entry["problem"] for entry in ignored}
    assert any(p.startswith("not JSON") for p in problems), problems
    assert "unknown mode 'melt-down'" in problems


def test_a_restarted_gateway_keeps_classroom_mode(classroom: Network) -> None:
    """After a crash, Network.restart_gateway starts the classroom-mode gateway again, and
    network.json still says so."""
    classroom.kill_gateway()
    classroom.restart_gateway()
    assert "--classroom-attacks" in _argv(classroom.gateway.pid)
    assert Network.load(classroom.workdir).attacks
    assert attacks_enabled(classroom.workdir)

    async def work(obs: Observer) -> AttackOutcome:
        # The nodes register with the new process on their own schedule (every few s).
        deadline = time.monotonic() + 60
        while TO not in (await obs.stub.Routes(gateway_pb2.RoutesRequest())).bureaus:
            assert time.monotonic() < deadline, f"{TO} never registered again"
            await asyncio.sleep(0.2)
        return await run_attack(obs, classroom.workdir, "flip-bit", ASKER, TO)

    outcome = _observe(classroom, work)
    assert outcome.passed, outcome.checks  # the new process attacks too


# ------------------------------------------------------------------ a normal network


def test_a_normal_network_has_no_attacks(network: Network) -> None:
    """`ncbsim up`'s network: its gateway runs without the flag, network.json says no
    classroom mode, and run_attack refuses with a ConfigError naming `ncbsim classroom`."""
    assert "--classroom-attacks" not in _argv(network.gateway.pid)
    assert "classroom_attacks" not in manifest.read(network.workdir).data
    assert not attacks_enabled(network.workdir)
    assert not Workdir(network.workdir).gateway.attack_mode.exists()

    async def work(obs: Observer) -> None:
        with pytest.raises(ConfigError, match="ncbsim classroom"):
            await run_attack(obs, network.workdir, "flip-bit", ASKER, TO)

    _observe(network, work)
    assert not Workdir(network.workdir).gateway.attack_mode.exists()  # nothing was set


def test_attacks_enabled_is_false_where_no_network_runs(tmp_path: Path) -> None:
    """No network.json: no attacks (and no error)."""
    assert not attacks_enabled(tmp_path)
