"""The evil-gateway network, started once for the whole session (every attack runs against
the same processes, as they would in the field), and its per-test reset to honest.

Its gateway is the product's classroom-mode gateway (ncbsim.gateway.attacks), started
through the real CLI: ``ncbsim gateway --classroom-attacks MODE_FILE``."""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Iterator

import pytest
from evil_net import (
    NODES,
    REQUESTERS,
    EvilNet,
    _db,
    _spawn,
    _stop,
    _wait_ready,
)

from ncbsim import pki
from ncbsim.gateway.attacks import attack_files
from ncbsim.node import datagen
from ncbsim.node.store import RecordStore


@pytest.fixture(scope="session")
def evil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EvilNet]:
    """A compromised gateway, real DE and NL nodes; FR and IT query. Always stopped."""
    workdir = tmp_path_factory.mktemp("evilnet")
    pki.init(workdir, [*REQUESTERS, *NODES])  # the evil network's own work dir is its PKI
    for code in NODES:
        datagen.generate(
            _db(workdir, code), code, seed=7, documents=40, persons=10, vehicles=10, workers=1
        )
    store = RecordStore(_db(workdir, "DE"))
    try:
        known = store.sample("document", 1, random.Random(3))[0].number
    finally:
        store.close()
    files = workdir / "evil"
    files.mkdir()
    run = workdir / "run"
    run.mkdir()
    mode_file = files / "mode.json"
    mode_file.write_text(json.dumps({"mode": "honest"}))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ready = run / "gateway.json"
        gw_log = files / "gateway.log"
        gw = _spawn(
            [
                "-m",
                "ncbsim",
                "gateway",
                "--dir",
                str(workdir),
                "--listen",
                "127.0.0.1:0",
                "--audit",
                str(files / "audit.sqlite"),
                "--ready-file",
                str(ready),
                "--metrics-listen",
                "off",
                "--classroom-attacks",
                str(mode_file),
            ],
            gw_log,
        )
        procs.append(gw)
        info = _wait_ready(gw, ready, gw_log)
        events, capture = attack_files(mode_file)
        pending = []
        for code in NODES:
            node_ready = run / f"node-{code}.json"
            node_log = workdir / "bureaus" / code / "node.log"
            node = _spawn(
                [
                    "-m",
                    "ncbsim",
                    "node",
                    "--dir",
                    str(workdir),
                    "--bureau",
                    code,
                    "--gateway",
                    info["address"],
                    "--db",
                    str(_db(workdir, code)),
                    "--ready-file",
                    str(node_ready),
                ],
                node_log,
            )
            procs.append(node)
            pending.append((node, node_ready, node_log))
        for node, node_ready, node_log in pending:
            _wait_ready(node, node_ready, node_log)
        yield EvilNet(
            workdir=workdir,
            address=info["address"],
            mode_file=mode_file,
            files=files,
            events=events,
            capture=capture,
            known_document=known,
        )
    finally:
        _stop(procs)


@pytest.fixture
def net(evil: EvilNet) -> Iterator[EvilNet]:
    """The shared network, honest again after each test whatever happened."""
    evil.set_mode("honest")
    yield evil
    evil.set_mode("honest")
