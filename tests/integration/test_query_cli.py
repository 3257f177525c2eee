"""`ncbsim query` on a real network: the record step 2 releases is shown, a revoked bureau
fails alone, and a gateway outage still lists every bureau."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import document_query

from ncbsim.client import ALL, BureauClient, Outcome
from ncbsim.node.records import Document
from ncbsim.node.store import RecordStore
from ncbsim.pki import PkiDir
from ncbsim.simulations.network import Network
from ncbsim.workdir import Workdir

pytestmark = pytest.mark.integration


def _query(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`ncbsim query --workdir WORKDIR ARGS` as a user runs it, on an 80-column terminal."""
    return subprocess.run(
        [sys.executable, "-m", "ncbsim", "query", "--workdir", str(workdir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "80"},
    )


def _document(network: Network, owner: str, seed: int) -> Document:
    store = RecordStore(Workdir(network.workdir).bureau(owner).records)
    try:
        found = store.sample("document", 1, random.Random(seed))[0]
    finally:
        store.close()
    assert isinstance(found, Document)
    return found


def test_fetch_prints_the_released_record(network: Network) -> None:
    """Step 2 on its own prints the record DE released: its fields under labels and the
    owner's handling code with its meaning, within 80 columns; IT, which holds no such
    record, gets a row and nothing more."""
    doc = _document(network, "DE", seed=11)
    restrict = subprocess.run(
        [sys.executable, "-m", "ncbsim", "record", "restrict", "--workdir",
         str(network.workdir), "--as", "DE", "--ref", doc.ref, "--handling", "H2"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert restrict.returncode == 0, restrict.stderr
    out = _query(network.workdir, "--as", "FR", "--to", "DE,IT", "fetch", "--ref", doc.ref)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert f"DE released document {doc.ref}" in lines
    text = " ".join(out.stdout.split())
    assert "Handling H2: not to be disseminated without the owner's permission" in text
    assert f"Document number {doc.number}" in text
    assert f"Status {doc.status.replace('_', ' ')}" in text
    for mrz_line in (doc.mrz or "").splitlines():
        assert mrz_line in out.stdout
    assert "IT released" not in out.stdout


def test_step_one_with_fetch_prints_the_record_too(network: Network) -> None:
    """`document ... --fetch` shows the hit, then the record behind it."""
    doc = _document(network, "NL", seed=12)
    out = _query(
        network.workdir, "--as", "IT", "--to", "NL",
        "document", "--number", doc.number, "--issuer", "NL", "--fetch",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"NL released document {doc.ref}" in out.stdout.splitlines()
    assert f"Document number {doc.number}" in " ".join(out.stdout.split())


def test_a_bad_date_never_travels(network: Network) -> None:
    """`--dob 03/02/1980` is refused by the command with exit 2 and what is expected,
    where it used to reach the bureau and come back as an error answer."""
    out = _query(
        network.workdir, "--as", "FR", "--to", "DE", "person", "--surname", "Doe",
        "--dob", "03/02/1980",
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr == ("ncbsim: --dob: expected a date written YYYY-MM-DD, got '03/02/1980'\n")
    assert out.stdout == ""


def test_a_revoked_bureau_fails_only_its_own_row(fresh_network: Network) -> None:
    """After `pki revoke --bureau FR`, DE's query to FR,IT fails FR's row (revoked) and
    IT still answers its hit."""
    net = fresh_network
    doc = _document(net, "IT", seed=13)
    revoked = subprocess.run(
        [sys.executable, "-m", "ncbsim", "pki", "revoke", "--dir", str(net.workdir),
         "--bureau", "FR"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert revoked.returncode == 0, revoked.stderr
    out = _query(
        net.workdir, "--as", "DE", "--to", "FR,IT",
        "document", "--number", doc.number, "--issuer", "IT", "--json",
    )  # fmt: skip
    assert out.returncode == 1, out.stderr  # FR did not answer
    rows = {a["bureau"]: a for a in json.loads(out.stdout)["answers"]}
    assert (rows["FR"]["outcome"], rows["IT"]["outcome"]) == ("failed", "hit")
    assert "revoked" in rows["FR"]["detail"]
    assert [m["ref"] for m in rows["IT"]["matches"]] == [doc.ref]


def test_a_gateway_outage_lists_every_bureau(fresh_network: Network) -> None:
    """With the gateway killed: a client that holds the directory gets one no-answer row
    per bureau for ALL; the command line, which holds none yet, says it cannot tell who
    ALL is and prints no row; an explicit list gets its rows. Once the gateway is back,
    ALL is answered again."""
    net = fresh_network
    doc = _document(net, "DE", seed=14)
    query = document_query(doc.number, "DE")

    async def during_outage() -> tuple[list[Outcome], dict[str, Outcome]]:
        pki = PkiDir(net.workdir)
        async with BureauClient.open(pki, "FR", net.gateway.address) as client:
            before = [a.outcome for a in await client.multi_query(query, [ALL], timeout=5)]
            await asyncio.to_thread(net.kill_gateway)
            answers = await client.multi_query(query, [ALL], timeout=5)
        return before, {a.bureau: a.outcome for a in answers}

    before, during = asyncio.run(during_outage())
    assert sorted(before) == sorted([Outcome.HIT, Outcome.NO_HIT, Outcome.NO_HIT])
    assert during == {b: Outcome.NO_ANSWER for b in ("DE", "IT", "NL")}

    doc_args = ("document", "--number", doc.number, "--issuer", "DE")
    out = _query(net.workdir, "--as", "FR", "--to", "ALL", *doc_args)
    assert out.returncode == 1
    assert "holds no verified directory yet" in out.stderr
    assert out.stdout == ""
    out = _query(net.workdir, "--as", "FR", "--to", "DE,IT", *doc_args, "--json")
    assert out.returncode == 1
    rows = {a["bureau"]: a["outcome"] for a in json.loads(out.stdout)["answers"]}
    assert rows == {"DE": "no_answer", "IT": "no_answer"}

    net.restart_gateway()
    deadline = time.monotonic() + 60  # the nodes register again on their own schedule
    while True:
        out = _query(net.workdir, "--as", "FR", "--to", "ALL", *doc_args, "--json")
        if out.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = {a["bureau"]: a["outcome"] for a in json.loads(out.stdout)["answers"]}
    assert rows == {"DE": "hit", "IT": "no_hit", "NL": "no_hit"}
