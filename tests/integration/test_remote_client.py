"""The client commands against a network run elsewhere: ``--gateway HOST:PORT --pki DIR``
instead of ``--workdir``, with a folder that holds only the PKI (no network.json, no
databases, no root key), as an operator holds it for a deployed network."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ncbsim.node.records import Document
from ncbsim.node.store import RecordStore
from ncbsim.simulations.network import Network
from ncbsim.workdir import Workdir

pytestmark = pytest.mark.integration

TIMEOUT_S = 120  # generous: only a hung command needs it


def _ncbsim(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ncbsim", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


@pytest.fixture(scope="module")
def outside(network: Network, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A copy of the network's PKI alone (no root key, no databases, no logs, no
    network.json) and the gateway's address: what a client outside the network holds."""
    pki = tmp_path_factory.mktemp("outside") / "pki"
    shutil.copytree(
        network.workdir,
        pki,
        ignore=shutil.ignore_patterns(
            "*.sqlite*", "*.log", "*.json", "*.jsonl", "*.sock", "ca.key", "run", "hosts"
        ),
    )
    assert not (pki / "network.json").exists()
    gateway = json.loads(Workdir(network.workdir).manifest.read_text())["gateway"]
    return pki, str(gateway)


def _document(network: Network, owner: str) -> Document:
    store = RecordStore(Workdir(network.workdir).bureau(owner).records)
    try:
        found = store.sample("document", 1, random.Random(3))[0]
    finally:
        store.close()
    assert isinstance(found, Document)
    return found


def test_query_with_gateway_and_pki_gets_the_hit(
    network: Network, outside: tuple[Path, str]
) -> None:
    """`ncbsim query --gateway --pki` reaches DE through the gateway and prints its hit."""
    pki, gateway = outside
    doc = _document(network, "DE")
    out = _ncbsim(
        "query", "--gateway", gateway, "--pki", pki, "--as", "FR", "--to", "DE", "--json",
        "document", "--number", doc.number, "--issuer", doc.issuer,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    answers = json.loads(out.stdout)["answers"]
    assert [(a["bureau"], a["outcome"]) for a in answers] == [("DE", "hit")]


def test_message_send_and_receipts_with_gateway_and_pki(
    network: Network, outside: tuple[Path, str]
) -> None:
    """A message sent with --gateway and --pki is accepted, and `receipts` with the same
    options lists the copy."""
    pki, gateway = outside
    where = ["--gateway", gateway, "--pki", pki]
    sent = _ncbsim(
        "message", "send", *where, "--as", "FR", "--to", "IT", "--text", "from outside", "-q"
    )
    assert sent.returncode == 0, sent.stderr
    post_id = sent.stdout.strip()
    listed = _ncbsim("receipts", *where, "--as", "FR", "--json")
    assert listed.returncode == 0, listed.stderr
    assert post_id in listed.stdout
    reply = _ncbsim(
        "message", "send", *where, "--as", "FR", "--to", "IT", "--text", "re", "--reply-to",
        post_id,
    )  # fmt: skip
    assert reply.returncode == 2
    assert reply.stderr.strip().splitlines() == [
        "ncbsim: --reply-to finds the thread in the inbox of --workdir; with --gateway and "
        "--pki give the thread with --thread"
    ]
