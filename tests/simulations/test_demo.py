"""``ncbsim demo``: the trainer mode, the lesson run end to end against real processes."""

from __future__ import annotations

import io
import os
import re
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from rich.console import Console

from ncbsim import transport
from ncbsim.client import seal_query
from ncbsim.identity import Identity
from ncbsim.node.matching import DEFAULT_THRESHOLD, name_key, name_similarity
from ncbsim.pki import PkiDir
from ncbsim.simulations import lesson
from ncbsim.simulations._demo_observer import Exchange
from ncbsim.simulations._demo_record import AttackRunner, Step
from ncbsim.simulations._demo_steps import Demo, misspell
from ncbsim.simulations.demo import DemoConfig, report, session
from ncbsim.simulations.network import Network
from ncbsim.v2 import gateway_pb2, gateway_pb2_grpc, query_pb2
from ncbsim.workdir import MANIFEST

TITLES = tuple(f"{i}. {step.title}" for i, step in enumerate(lesson.LESSON, 1))
ATTACKS = {step.key for step in lesson.LESSON if step.attack}
# A plaintext value in any panel: the asking bureau's query, or what a node decrypted.
_VALUE = re.compile(r"│ (number|surname|given|ref|name|holder) +(\S[^│]*?) *│")
_PID = re.compile(r"^ {2}(?:gateway|[A-Z]{2}) +pid (\d+) ", re.MULTILINE)


@dataclass(frozen=True)
class Spoofed:
    """What the test's attack runner reports (the AttackOutcome shape)."""

    query: query_pb2.Query | None
    exchange: Exchange | None
    checks: list[tuple[str, bool]]


def spoof_sender(workdir: Path, demo: Demo) -> AttackRunner:
    """A real attack through the honest gateway: IT, over its own TLS connection, sends a
    query whose header names the asker as sender. The gateway must refuse it."""

    async def run(name: str, asker: str, to: str) -> Spoofed:
        assert name == "spoof-sender"
        pki = PkiDir(workdir)
        it = Identity.load(pki, "IT", now_ms=int(time.time() * 1000))
        forged = Identity.from_keys(asker, it.signing_key, it.encryption_key)
        query = query_pb2.Query(document=query_pb2.DocumentQuery(number="X1", issuer=to))
        sealed = seal_query(forged, demo.obs.peers.get(to), query)
        channel = transport.gateway_channel(demo.network.gateway.address, pki.tls("IT"))
        code = grpc.StatusCode.OK
        try:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            await stub.Query(gateway_pb2.QueryRequest(envelope=sealed.envelope), timeout=5)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
        finally:
            await channel.close()
        row = await demo.obs.gateway_row(sealed.header.message_hex)
        return Spoofed(
            query,
            None,
            [
                (
                    "the gateway refused it: PERMISSION_DENIED",
                    code == grpc.StatusCode.PERMISSION_DENIED,
                ),
                ("gateway audit: refused", row is not None and row["outcome"] == "refused"),
            ],
        )

    return run


@dataclass
class DemoRun:
    """One run of the whole lesson on ``red-notice``, as ``ncbsim demo --auto`` runs it."""

    workdir: Path
    code: int
    out: str
    steps: list[Step]
    bad_index: str
    attack: Step
    """The spoof-sender step, run again once the demo has an attack runner."""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    """The lesson run once in 80 plain columns (the default scenario, red-notice), with
    ``Demo.run_step`` also asked for a step past the end."""
    workdir = tmp_path_factory.mktemp("demo") / "net"
    buffer = io.StringIO()
    console = Console(file=buffer, width=80, highlight=False, soft_wrap=False)
    config = DemoConfig(auto=True, workdir=workdir)
    steps: list[Step] = []
    try:
        with session(config, console) as (runner, run):
            steps = run.run(runner, lambda _: None)
            with pytest.raises(IndexError) as bad:
                runner.run(run.run_step(len(lesson.LESSON)))
            run.attack_runner = spoof_sender(workdir, run)
            attack = runner.run(run.run_step(lesson.index_of("attack:spoof-sender")))
        code = report(steps, console)
        yield DemoRun(workdir, code, buffer.getvalue(), steps, str(bad.value), attack)
    finally:
        if (workdir / MANIFEST).exists():  # the demo did not clean up: do it for it
            Network.load(workdir).stop()


def _narration(out: str, title: str) -> str:
    """The caption printed under ``title``'s rule, its wrapped lines joined again."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if f" {title} " in line and "─" in line)
    text = []
    for line in lines[start + 1 :]:
        if line.startswith(("╭", "  PASS", "  FAIL")) or not line.strip():
            break
        text.append(line.strip())
    return " ".join(text)


def _pattern(step: lesson.LessonStep) -> re.Pattern[str]:
    """The caption with each field as a group (the same field twice, the same value)."""
    parts, seen = [], set()
    for literal, name, _, _ in string.Formatter().parse(step.caption):
        parts.append(re.escape(literal))
        if name is not None:
            parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>[^{{}}]+?)")
            seen.add(name)
    return re.compile("".join(parts))


def test_misspell_changes_the_typed_name_but_not_beyond_recognition() -> None:
    """The fuzzy step's name loses its accents and case and swaps two letters."""
    typed = misspell("Hölzenbecher")
    assert typed == "holzenebcher"
    assert name_key(typed) != name_key("Hölzenbecher")
    score = name_similarity(name_key(typed), "SILKE", name_key("Hölzenbecher"), "SILKE")
    assert DEFAULT_THRESHOLD < score < 1


@pytest.mark.integration
def test_demo_passes_every_step(demo: DemoRun) -> None:
    """Every step runs against the real network and behaves as narrated, but the attack
    steps, which are skipped with the reason (no classroom-mode gateway); exit is 0."""
    print(demo.out)
    assert demo.code == 0, demo.out
    assert [s.key for s in demo.steps] == [s.key for s in lesson.LESSON]
    for step, title in zip(demo.steps, TITLES, strict=True):
        if step.key in ATTACKS:
            assert step.skipped == lesson.NEEDS["attacks"]
            assert not step.passed
            assert not step.checks
            assert f"SKIP  {title}" in demo.out
        else:
            assert step.passed, step.checks
            assert f"PASS  {title}" in demo.out
    assert "FAIL" not in demo.out
    assert demo.out.count("PASS") >= 45
    assert f"skipped: {lesson.NEEDS['attacks']}" in demo.out
    assert "10 of 10 steps behaved as narrated; 5 of 15 skipped." in demo.out


@pytest.mark.integration
def test_printed_titles_and_captions_are_the_scripts(demo: DemoRun) -> None:
    """Each step that ran printed the script's title, and its caption exactly as the
    script words it, every field filled (the same value where a field repeats)."""
    for step, lesson_step, title in zip(demo.steps, lesson.LESSON, TITLES, strict=True):
        if not step.ran:
            assert step.caption == ""
            continue
        printed = _narration(demo.out, title)
        assert printed == step.caption, (printed, step.caption)
        found = _pattern(lesson_step).fullmatch(printed)
        assert found is not None, (lesson_step.key, printed)
        assert set(found.groupdict()) == lesson.fields(lesson_step)
        assert lesson.caption(lesson_step, **found.groupdict()) == printed
        assert "{" not in printed
        assert len(printed) <= lesson.MAX_CAPTION


@pytest.mark.integration
def test_each_step_records_what_it_showed(demo: DemoRun) -> None:
    """Each step that ran recorded the exchanges (or posts) it drew, enough to draw them
    again without the network: query, what each party saw, the matched record."""
    by = {s.key: s for s in demo.steps}
    first = by["document"].shown[0]
    assert (first.asker, first.to) == ("FR", "DE")
    assert first.exchange is not None
    assert first.query is not None
    assert first.exchange.gateway_row is not None
    assert first.record is not None
    assert len(by["restricted"].shown) == 4  # before, after, the fetch, the unknown ref
    assert sorted(s.to for s in by["down"].shown) == ["DE", "ES", "IT", "NL"]
    diffusion = by["diffusion"].shown
    assert sorted(s.to for s in diffusion) == ["DE", "ES", "GS", "IT", "NL"]
    assert all(s.post is not None and s.gateway_row is not None for s in diffusion)
    assert all(s.extra["reply"] == [("receipt", "verified")] for s in diffusion)
    notice = by["notice"].shown
    assert [s.asker for s in notice[2:]] == ["GS"] * 5  # GS's copy to every bureau
    assert all(s.record is not None for s in notice[2:])
    check = by["border-check"].shown[0]
    assert (check.asker, check.to) == ("ES", "DE")
    assert check.record is not None
    assert all(not s.shown for s in demo.steps if s.key in ATTACKS)
    search, confirm = by["biometric"].shown
    assert (search.asker, search.to) == ("FR/cdg-border-12", "DE")
    assert search.query is not None
    assert search.query.WhichOneof("query") == "biometric"
    assert confirm.query is not None
    assert confirm.query.WhichOneof("query") == "confirm"
    assert search.record is not None
    assert search.record == confirm.record


_CANDIDATE = re.compile(r"│ +(\d+) +([a-z2-7]{20}) +(0\.\d{3}) │")


@pytest.mark.integration
def test_the_face_search_prints_its_candidate_list_and_confirmation(demo: DemoRun) -> None:
    """The biometric step searched DE's faces as FR's border officer, printed the candidate
    list (rank, ref, score) with the threshold and cap, confirmed candidate 1 in step 2 and
    released the traveller; the probe itself was never printed."""
    step = next(s for s in demo.steps if s.key == "biometric")
    assert step.passed, step.checks
    start = demo.out.index(f" {step.numbered} ")
    out = demo.out[start : demo.out.index("  PASS", start)]
    print(out)
    listed = _CANDIDATE.findall(out)
    assert listed, out
    assert [int(rank) for rank, _, _ in listed] == list(range(1, len(listed) + 1))
    scores = [float(score) for _, _, score in listed]
    assert scores == sorted(scores, reverse=True)
    assert min(scores) >= 0.27
    first_ref = listed[0][1]
    assert f"candidate 1 is {first_ref}, score {listed[0][2]}" in step.caption
    assert "DE confirms it and releases" in step.caption
    assert "FR/cdg-border-12 searches DE's faces" in step.caption
    for words in (
        "face search (step 1)",
        "512 bytes, not shown",
        "threshold   0.27; step 2 0.34",
        "cap         5 asked, 10 at most",
        "step 2      confirmed, score 0.",
        "1,072 bytes",
    ):
        assert words in out, words
    [checked] = [text for text, _ in step.checks if text.startswith("step 2:")]
    assert checked == f"step 2: DE confirmed {first_ref}, released the traveller"


@pytest.mark.integration
def test_an_attack_step_runs_through_the_attack_runner(demo: DemoRun) -> None:
    """Given an attack runner, an attack step runs: its checks are the runner's, its
    caption is filled, and what it sent is recorded."""
    step = demo.attack
    assert step.ran, step.skipped
    assert step.passed, step.checks
    assert [text for text, _ in step.checks] == [
        "the gateway refused it: PERMISSION_DENIED",
        "gateway audit: refused",
    ]
    script = lesson.LESSON[lesson.index_of("attack:spoof-sender")]
    assert step.caption == lesson.caption(script, asker="FR", to="DE")
    [shown] = step.shown
    assert (shown.asker, shown.to, shown.exchange) == ("FR", "DE", None)
    assert shown.query is not None


@pytest.mark.integration
def test_run_step_refuses_a_step_past_the_end(demo: DemoRun) -> None:
    """Asking for a step the lesson does not have is an IndexError that says the range."""
    assert demo.bad_index == "the lesson has steps 0 to 14; there is no step 15"


@pytest.mark.integration
def test_demo_shows_what_each_party_sees(demo: DemoRun) -> None:
    """The four views appear, with the outcome each step is about."""
    out = demo.out
    for words in (
        "asks DE (plaintext)",
        "gateway sees",
        "decrypts (as its node)",
        "gets from",
        "ciphertext",
        "expires",
        "answer      hit",
        "score       0.",
        "step 1 no-hit",
        "fetch       not-found",
        "unknown ref not-found",
        "no-answer",
        "SIGSTOP pid",
        "reason unverified",
        "refused: does not verify",
        "INVALID_ARGUMENT",
        "Network stopped.",
        # The one-way steps
        "FR posts to ALL (plaintext)",
        "Deliver delivered, OK",
        "GS reviews (as its node)",
        "RED/2026/",
        "holds the subject",
        "record deleted",
        # The gateway's own event stream, read by the operator (ncbsim.observe)
        "event       query.relayed delivered",
        "the gateway's event stream showed the operator the same metadata",
    ):
        assert words in out, words


@pytest.mark.integration
def test_demo_fits_80_columns(demo: DemoRun) -> None:
    """No line of the output is wider than a plain 80-column terminal."""
    widths = [len(line) for line in demo.out.splitlines()]
    print(f"{len(widths)} lines, widest {max(widths)}")
    assert max(widths) <= 80


@pytest.mark.integration
def test_gateway_files_hold_no_plaintext(demo: DemoRun) -> None:
    """No query value or record field shown by a bureau is in any of the gateway's files."""
    workdir, out = demo.workdir, demo.out
    values = {v.strip() for _, v in _VALUE.findall(out) if len(v.strip()) >= 5}
    print(sorted(values))
    assert len(values) >= 8  # numbers, names and refs of the query steps, the notice's subject
    assert "Marchetti" in values
    records = b"".join(p.read_bytes() for p in (workdir / "bureaus").glob("*/records.sqlite"))
    gateway = b"".join(p.read_bytes() for p in (workdir / "gateway").iterdir() if p.is_file())
    assert gateway
    for value in values:
        for token in value.replace(",", " ").split():
            if len(token) >= 5 and token.encode() in records:
                assert token.encode() not in gateway, token
                assert token.encode().lower() not in gateway.lower(), token


@pytest.mark.integration
def test_demo_leaves_no_process_behind(demo: DemoRun) -> None:
    """Every process the demo started is gone, and its manifest removed."""
    workdir = demo.workdir
    pids = [int(p) for p in _PID.findall(demo.out)]
    assert len(pids) == 7  # the gateway, five bureaus and GS
    alive = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if os.fsencode(str(workdir)) in cmdline:
            alive.append(pid)
    assert alive == []
    assert not (workdir / MANIFEST).exists()
