"""`ncbsim audit prove` and `audit check-proof` on a running network: DE's queries to FR
are provable from FR's proof log, with the root certificate alone, and a tampered proof
or an unknown message is refused in one line."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from support import document_query, run_ncbsim

from ncbsim.client import BureauClient, Outcome
from ncbsim.pki import PkiDir
from ncbsim.simulations.network import Network
from ncbsim.workdir import find_gateway

pytestmark = pytest.mark.integration

COUNT = 40
"""Queries DE sends FR in one session: a checkpoint after 32, the rest at the close."""


async def _send(workdir: Path) -> list[str]:
    """DE's message ids, once its client has closed its sessions (the last checkpoint)."""
    query = document_query("ZPROOF0001", "FR")
    async with BureauClient.open(PkiDir(workdir), "DE", find_gateway(workdir, "DE")) as client:
        answers = [await client.query(query, "FR") for _ in range(COUNT)]
    assert {a.outcome for a in answers} == {Outcome.NO_HIT}
    return [a.message_id for a in answers]


@pytest.fixture(scope="module")
def sent(network: Network) -> list[str]:
    """The ids of DE's queries to FR, each covered by a checkpoint in FR's proof log."""
    ids = asyncio.run(_send(network.workdir))
    assert len(set(ids)) == COUNT
    assert all(ids)
    deadline = time.monotonic() + 30  # the node records checkpoints off the answer's path
    for message_id in (ids[0], ids[-1]):
        while _prove(network.workdir, message_id).returncode != 0:
            assert time.monotonic() < deadline, _prove(network.workdir, message_id).stderr
            time.sleep(0.2)
    return ids


def _prove(workdir: Path, message_id: str, *more: object) -> subprocess.CompletedProcess[str]:
    return run_ncbsim(
        "audit", "prove", "--workdir", workdir, "--as", "FR", "--message-id", message_id, *more
    )


def test_a_query_is_proved_and_the_proof_checks(
    network: Network, sent: list[str], tmp_path: Path
) -> None:
    """`prove --out` writes a proof that `check-proof` accepts: DE sent that query to FR."""
    out = tmp_path / "proof.json"
    made = _prove(network.workdir, sent[5], "--out", out)
    assert made.returncode == 0, made.stderr
    assert made.stdout == f"proof of message {sent[5]} written to {out}\n"
    checked = run_ncbsim("audit", "check-proof", out, "--workdir", network.workdir)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"proof valid: DE sent message {sent[5]} to FR, issued ")
    assert checked.stdout.count("\n") == 1
    printed = _prove(network.workdir, sent[5])
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == json.loads(out.read_text())


def test_every_query_of_the_session_is_provable(network: Network, sent: list[str]) -> None:
    """Those covered mid-session and those covered by the close alike."""
    for message_id in (sent[0], sent[31], sent[32], sent[-1]):
        made = _prove(network.workdir, message_id)
        assert made.returncode == 0, made.stderr
        proof = json.loads(made.stdout)
        assert proof["message_id"] == message_id
        assert proof["seq"] == sent.index(message_id) + 1


def test_the_root_certificate_alone_checks_a_proof(
    network: Network, sent: list[str], tmp_path: Path
) -> None:
    """An auditor holding only ca.crt (no keys, no directory) checks the proof."""
    out = tmp_path / "proof.json"
    assert _prove(network.workdir, sent[7], "--out", out).returncode == 0
    auditor = tmp_path / "auditor"
    auditor.mkdir()
    shutil.copy(network.workdir / "ca.crt", auditor / "ca.crt")
    checked = run_ncbsim("audit", "check-proof", out, "--workdir", auditor)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("proof valid: DE sent message")


def test_a_tampered_proof_is_rejected_in_one_line(
    network: Network, sent: list[str], tmp_path: Path
) -> None:
    """A proof whose ciphertext digest was changed: exit 1, `ncbsim: proof rejected: ...`."""
    made = _prove(network.workdir, sent[3])
    proof = json.loads(made.stdout)
    digest = bytearray(bytes.fromhex(proof["sealed_sha256"]))
    digest[0] ^= 1
    proof["sealed_sha256"] = digest.hex()
    out = tmp_path / "tampered.json"
    out.write_text(json.dumps(proof))
    checked = run_ncbsim("audit", "check-proof", out, "--workdir", network.workdir)
    assert checked.returncode == 1
    assert checked.stdout == ""
    assert checked.stderr.startswith("ncbsim: proof rejected: the checkpoint's leaf for seq 4")
    assert checked.stderr.count("\n") == 1
    out.write_text("not json")
    checked = run_ncbsim("audit", "check-proof", out, "--workdir", network.workdir)
    assert (checked.returncode, checked.stderr) == (
        1,
        "ncbsim: proof rejected: the file is not JSON\n",
    )


def test_an_unknown_message_has_no_proof(network: Network, sent: list[str]) -> None:
    """A message id FR never received, or not hex: one line, exit 2."""
    unknown = "00" * 16
    made = _prove(network.workdir, unknown)
    assert made.returncode == 2
    assert made.stderr.startswith(f"ncbsim: no proof for message {unknown}: no checkpoint in ")
    assert made.stderr.count("\n") == 1
    # The sender's own log holds no proof of what FR received.
    wrong = run_ncbsim(
        "audit", "prove", "--workdir", network.workdir, "--as", "DE", "--message-id", sent[0]
    )
    assert wrong.returncode == 2
    assert wrong.stderr.startswith(f"ncbsim: no proof for message {sent[0]}")
    bad = _prove(network.workdir, "xyz")
    assert (bad.returncode, bad.stderr) == (2, "ncbsim: --message-id: not hex: 'xyz'\n")


def test_the_proof_log_verifies(network: Network, sent: list[str]) -> None:
    """FR's proofs.sqlite is a hash chain `audit verify` finds intact."""
    verified = run_ncbsim("audit", "verify", network.workdir / "bureaus" / "FR" / "proofs.sqlite")
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("intact: ")
