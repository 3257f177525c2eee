"""A malicious gateway cannot read, alter, forge, replay, reroute or silently drop traffic.

One network serves every attack: the compromised gateway (tests/security/evil_gateway.py,
the real gateway service with its RPCs wrapped), real ``ncbsim node`` processes for DE
and NL, and the real client (``ncbsim.client``, what ``ncbsim query`` runs) as FR and
IT. Each test switches the gateway's behaviour through its mode file, then checks what a
user relies on: the requester never takes a forged, altered, replayed or rerouted answer
for a hit or a no-hit, the node refuses what was tampered with and says so in its audit
log, a substituted key is never used, and nothing the gateway wrote holds a query.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ncbsim import _crypto, auditread, pki, rekey
from ncbsim.client import Answer, BureauClient, Outcome
from ncbsim.gateway.audit import read_all
from ncbsim.node import datagen
from ncbsim.node.store import RecordStore
from ncbsim.pki import PkiDir
from ncbsim.revocation import verify_list
from ncbsim.v2 import directory_pb2, query_pb2

pytestmark = pytest.mark.integration

EVIL = Path(__file__).with_name("evil_gateway.py")
NODES = ("DE", "NL")
REQUESTERS = ("FR", "IT")
READY_TIMEOUT_S = 30.0
# A document number that exists nowhere: the canary the gateway must never see.
CANARY = "CANARY" + os.urandom(4).hex().upper()


@dataclass
class EvilNet:
    workdir: Path
    address: str
    mode_file: Path
    files: Path  # everything the evil gateway writes
    events: Path
    attacker_encryption_key_id: str
    known_document: str  # a document DE holds (a hit)

    def set_mode(self, mode: str = "honest", **fields: Any) -> None:
        """Switch the gateway's behaviour; it reads the file on every call."""
        tmp = self.mode_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"mode": mode, **fields}))
        tmp.replace(self.mode_file)

    def event_lines(self) -> list[dict[str, Any]]:
        if not self.events.exists():
            return []
        return [json.loads(line) for line in self.events.read_text().splitlines() if line]

    def node_log(self, bureau: str) -> str:
        return (self.workdir / "bureaus" / bureau / "node.log").read_text(errors="replace")


def _db(workdir: Path, bureau: str) -> Path:
    return workdir / "bureaus" / bureau / "records.sqlite"


def _wait_ready(proc: subprocess.Popen[bytes], ready: Path, log_path: Path) -> dict[str, str]:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready.exists():
            data: dict[str, str] = json.loads(ready.read_text())
            return data
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").splitlines()[-5:]
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}: {tail}")
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args!r} not ready after {READY_TIMEOUT_S}s")


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process we started, by PID, then SIGKILL what is left."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
        )


@pytest.fixture(scope="module")
def evil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EvilNet]:
    """A compromised gateway, real DE and NL nodes; FR and IT query. Always stopped."""
    workdir = tmp_path_factory.mktemp("evilnet")
    pki.init(workdir, [*REQUESTERS, *NODES])
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
                str(EVIL),
                "--dir",
                str(workdir),
                "--listen",
                "127.0.0.1:0",
                "--audit",
                str(files / "audit.sqlite"),
                "--ready-file",
                str(ready),
                "--mode-file",
                str(mode_file),
                "--events",
                str(files / "events.jsonl"),
                "--capture",
                str(files / "capture.jsonl"),
            ],
            gw_log,
        )
        procs.append(gw)
        info = _wait_ready(gw, ready, gw_log)
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
            events=files / "events.jsonl",
            attacker_encryption_key_id=info["attacker_encryption_key_id"],
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


# --------------------------------------------------------------------------- helpers


def _doc(number: str, issuer: str = "DE") -> query_pb2.Query:
    return query_pb2.Query(document=query_pb2.DocumentQuery(number=number, issuer=issuer))


def _ask(
    net: EvilNet,
    query: query_pb2.Query,
    to: str = "DE",
    *,
    as_: str = "FR",
    timeout: float = 5.0,
) -> Answer:
    async def run() -> Answer:
        client = BureauClient.open(PkiDir(net.workdir), as_, net.address)
        async with client:
            # The safety net: a hung call is a failure, never a wait forever.
            return await asyncio.wait_for(client.query(query, to, timeout=timeout), timeout + 30)

    return asyncio.run(run())


def _ask_many(net: EvilNet, query: query_pb2.Query, to: list[str]) -> dict[str, Answer]:
    async def run() -> list[Answer]:
        async with BureauClient.open(PkiDir(net.workdir), "FR", net.address) as client:
            return await asyncio.wait_for(client.multi_query(query, to, timeout=5.0), 35)

    return {a.bureau: a for a in asyncio.run(run())}


def _node_audit(net: EvilNet, bureau: str, message_id: str, count: int = 1) -> list[dict[str, Any]]:
    """The node's audit rows for one message id, waiting for its writer to flush them."""
    path = net.workdir / "bureaus" / bureau / "audit.sqlite"
    deadline = time.monotonic() + 10
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if path.exists():
            columns, found = auditread.search(path, auditread.Query(message_id=message_id))
            rows = [dict(zip(columns, row, strict=True)) for row in found]
            if len(rows) >= count:
                return rows
        time.sleep(0.05)
    return rows


def _node_never_saw(net: EvilNet, bureau: str, message_id: str) -> bool:
    """No audit row for ``message_id`` at ``bureau``, once the node has flushed later rows."""
    # A fresh honest query is written after anything the node handled before it.
    answer = _ask(net, _doc("FLUSH0000"), bureau, as_="IT")
    assert answer.outcome == Outcome.NO_HIT
    assert _node_audit(net, bureau, answer.message_id)
    return not _node_audit(net, bureau, message_id, count=0)


def _new_events(net: EvilNet, before: int) -> list[dict[str, Any]]:
    return net.event_lines()[before:]


def _assert_failed_not_answered(answer: Answer) -> None:
    """What the user relies on: no hit and no no-hit, and no response body to read."""
    assert answer.outcome == Outcome.FAILED, answer
    assert answer.response is None
    assert answer.matches == []


# --------------------------------------------------------------------------- baseline


def test_honest_gateway_relays_a_hit(net: EvilNet) -> None:
    """Baseline: through the compromised gateway in honest mode, queries work normally."""
    hit = _ask(net, _doc(net.known_document))
    assert hit.outcome == Outcome.HIT, hit
    assert hit.matches
    miss = _ask(net, _doc(CANARY))
    assert miss.outcome == Outcome.NO_HIT, miss
    assert _ask(net, _doc(net.known_document), as_="IT").outcome == Outcome.HIT
    rows = _node_audit(net, "DE", hit.message_id)
    assert [(r["outcome"], r["status"]) for r in rows] == [("answered", "OK")]


# --------------------------------------------------------------------------- keys


@pytest.mark.attack(
    "the gateway serves the target bureau's directory entry with a substituted encryption or "
    "signing key: bytes altered under the root's signature, re-signed by a fake root, another "
    "bureau's entry relabelled, or another bureau's valid entry in its place",
    adversary="malicious gateway",
    expect="requester FAILED (no verified directory entry), seals nothing, sends no query",
)
@pytest.mark.parametrize("how", ["altered", "fake-root", "relabel", "substitute"])
@pytest.mark.parametrize("key", ["encryption", "signing"])
def test_swapped_key_is_never_used_by_the_requester(net: EvilNet, key: str, how: str) -> None:
    before = len(net.event_lines())
    net.set_mode("swap-key", swap={"bureau": "DE", "key": key, "how": how, "source": "NL"})
    answer = _ask(net, _doc(CANARY))
    _assert_failed_not_answered(answer)
    assert answer.detail == "no verified directory entry for DE"
    events = _new_events(net, before)
    asked = [e for e in events if e.get("rpc") == "GetDirectory"]
    assert asked
    assert (asked[0]["asked"], asked[0]["swapped"], asked[0]["how"]) == (["DE"], "DE", how)
    # Nothing was sealed, so nothing reached the gateway to relay, let alone under its key.
    assert not [e for e in events if e.get("action") == "received"]
    assert not [e for e in events if e.get("action") == "sealed-to-attacker"]


_NEW_BUREAUS = {"altered": "ES", "fake-root": "PT", "relabel": "BE", "substitute": "AT"}


@pytest.mark.attack(
    "the gateway makes up a query as a bureau the node has not met yet, signed with its own "
    "key, and serves that bureau's directory entry with its own signing key substituted "
    "(altered, fake root, relabelled or another bureau's entry)",
    adversary="malicious gateway",
    expect="node refuses the entry and the envelope: INVALID_ARGUMENT + audit 'unverified'",
)
@pytest.mark.parametrize("how", sorted(_NEW_BUREAUS))
def test_node_refuses_a_sender_under_a_substituted_signing_key(net: EvilNet, how: str) -> None:
    code = _NEW_BUREAUS[how]
    # The root admits a new bureau while the network runs; DE has never fetched its entry.
    pki.add_bureau(PkiDir(net.workdir), code)
    refused_before = net.node_log("DE").count("directory_entry_refused")
    before = len(net.event_lines())
    net.set_mode(
        "forge-request",
        target="DE",
        swap={"bureau": code, "key": "signing", "how": how, "source": "NL"},
        **{"as": code},
    )
    answer = _ask(net, _doc(CANARY))
    _assert_failed_not_answered(answer)
    assert answer.detail.startswith("INVALID_ARGUMENT"), answer
    [forged] = [e for e in _new_events(net, before) if e.get("action") == "forged-request"]
    assert forged["status"] == "INVALID_ARGUMENT"
    [row] = _node_audit(net, "DE", forged["forged_message_id"])
    assert (row["sender"], row["outcome"], row["reason"], row["status"]) == (
        code,
        "refused",
        "unverified",
        "INVALID_ARGUMENT",
    )
    # The node did fetch the substituted entry from the gateway, and refused it.
    fetched = [
        e
        for e in _new_events(net, before)
        if e.get("rpc") == "GetDirectory" and e.get("peer") == "DE"
    ]
    assert [(e["asked"], e["swapped"], e["how"]) for e in fetched] == [([code], code, how)]
    refused = net.node_log("DE").count("directory_entry_refused") - refused_before
    # Another bureau's valid entry verifies, but for that bureau: the sender stays unknown.
    assert refused == (0 if how == "substitute" else 1)


@pytest.mark.attack(
    "the gateway makes up a query as a bureau the node knows (FR), signed with its own key",
    adversary="malicious gateway",
    expect="node INVALID_ARGUMENT 'envelope rejected' + audit 'unverified'; requester FAILED",
)
def test_node_refuses_a_query_forged_by_the_gateway(net: EvilNet) -> None:
    before = len(net.event_lines())
    net.set_mode("forge-request", target="DE", **{"as": "FR"})
    answer = _ask(net, _doc(CANARY))
    _assert_failed_not_answered(answer)
    [forged] = [e for e in _new_events(net, before) if e.get("action") == "forged-request"]
    [row] = _node_audit(net, "DE", forged["forged_message_id"])
    assert (row["sender"], row["reason"], row["status"]) == ("FR", "unverified", "INVALID_ARGUMENT")


def _encryption_key_id(net: EvilNet, bureau: str) -> tuple[bytes, str]:
    """A bureau's signed entry as the PKI holds it now, and its encryption key id (hex)."""
    signed = PkiDir(net.workdir).entry_path(bureau).read_bytes()
    entry = directory_pb2.DirectoryEntry.FromString(
        directory_pb2.SignedDirectoryEntry.FromString(signed).entry
    )
    return signed, _crypto.key_id(entry.encryption_key).hex()


def _sealed_to(net: EvilNet, before: int, key_id: str) -> list[dict[str, Any]]:
    """Queries the gateway received, since event ``before``, sealed to ``key_id``."""
    return [
        e
        for e in _new_events(net, before)
        if e.get("action") == "received" and e.get("recipient_key_id") == key_id
    ]


@pytest.mark.attack(
    "the root revokes a bureau (its key leaked); the gateway withholds the revocation list "
    "from a requester and keeps serving the revoked, still root-signed entry",
    adversary="malicious gateway",
    expect="requester refuses the entry (it reads the root's list from the PKI folder); "
    "nothing is sealed to the revoked key",
)
def test_requester_refuses_a_revoked_entry_when_the_gateway_withholds_revocations(
    net: EvilNet,
) -> None:
    pkidir = PkiDir(net.workdir)
    pki.add_bureau(pkidir, "LU")
    _, revoked = _encryption_key_id(net, "LU")
    rekey.revoke(pkidir, "LU")
    before = len(net.event_lines())
    net.set_mode("swap-key", withhold_revocations=True)
    answer = _ask(net, _doc(CANARY), "LU")
    assert _sealed_to(net, before, revoked) == []
    _assert_failed_not_answered(answer)


@pytest.mark.attack(
    "after a bureau rotated its keys (no grace period), the gateway serves a requester the "
    "bureau's older entry, still root-signed and within its validity",
    adversary="malicious gateway",
    expect="requester refuses the older entry (listed as superseded); nothing is sealed to "
    "the retired key",
)
def test_requester_refuses_a_superseded_entry_after_rotation(net: EvilNet) -> None:
    pkidir = PkiDir(net.workdir)
    pki.add_bureau(pkidir, "LT")
    stale, old_key = _encryption_key_id(net, "LT")
    rekey.rotate(pkidir, "LT", grace_ms=0)
    _, new_key = _encryption_key_id(net, "LT")
    assert new_key != old_key
    before = len(net.event_lines())
    net.set_mode("swap-key", swap={"bureau": "LT", "how": "stale", "entry": stale.hex()})
    answer = _ask(net, _doc(CANARY), "LT")
    assert _sealed_to(net, before, old_key) == []
    _assert_failed_not_answered(answer)


@pytest.mark.attack(
    "the root revokes a bureau whose keys leaked; the gateway, colluding with the thief, "
    "withholds the revocation list from a node and delivers a query signed with the "
    "revoked key",
    adversary="malicious gateway",
    expect="node INVALID_ARGUMENT 'envelope rejected' + audit reason 'revoked'",
)
def test_node_refuses_a_revoked_sender_when_the_gateway_withholds_revocations(
    net: EvilNet,
) -> None:
    pkidir = PkiDir(net.workdir)
    pki.add_bureau(pkidir, "LV")
    rekey.revoke(pkidir, "LV")
    listed = pkidir.revocation_list()
    assert listed is not None
    sequence = verify_list(pkidir.root_public_key(), listed).sequence
    # The node reads the root's list from the PKI folder within a second of the revocation.
    node_log = net.workdir / "bureaus" / "DE" / "node.log"
    deadline = time.monotonic() + 10
    while not any(
        e.get("event") == "revocations_adopted" and e.get("sequence", 0) >= sequence
        for e in (json.loads(x) for x in node_log.read_text().splitlines() if x.startswith("{"))
    ):
        assert time.monotonic() < deadline, "DE never adopted the revocation list"
        time.sleep(0.05)
    before = len(net.event_lines())
    net.set_mode(
        "forge-request", target="DE", leaked=True, withhold_revocations=True, **{"as": "LV"}
    )
    answer = _ask(net, _doc(CANARY))
    [forged] = [e for e in _new_events(net, before) if e.get("action") == "forged-request"]
    [row] = _node_audit(net, "DE", forged["forged_message_id"])
    assert (row["sender"], row["reason"], row["status"]) == ("LV", "revoked", "INVALID_ARGUMENT")
    _assert_failed_not_answered(answer)


# --------------------------------------------------------------------------- tampering


@pytest.mark.attack(
    "the gateway flips one bit of a query (sealed body, header or signature) before "
    "forwarding it to the node",
    adversary="malicious gateway",
    expect="node INVALID_ARGUMENT 'envelope rejected' + audit 'unverified'; requester FAILED",
)
@pytest.mark.parametrize("variant", ["body", "header", "signature"])
def test_altered_request_is_refused_by_the_node(net: EvilNet, variant: str) -> None:
    net.set_mode("alter-request", target="DE", variant=variant)
    answer = _ask(net, _doc(net.known_document))
    _assert_failed_not_answered(answer)
    assert answer.detail == "INVALID_ARGUMENT: INVALID_ARGUMENT", answer
    [row] = _node_audit(net, "DE", answer.message_id)
    assert (row["sender"], row["outcome"], row["reason"], row["status"]) == (
        "FR",
        "refused",
        "unverified",
        "INVALID_ARGUMENT",
    )


@pytest.mark.attack(
    "the gateway flips one bit of the node's answer (sealed body, header or signature) "
    "before returning it",
    adversary="malicious gateway",
    expect="requester FAILED 'response did not verify' (never a hit or no-hit)",
)
@pytest.mark.parametrize("variant", ["body", "header", "signature"])
def test_altered_response_is_refused_by_the_requester(net: EvilNet, variant: str) -> None:
    net.set_mode("alter-response", target="DE", variant=variant)
    answer = _ask(net, _doc(net.known_document))  # the genuine answer is a hit
    _assert_failed_not_answered(answer)
    assert answer.detail == "response did not verify"
    [row] = _node_audit(net, "DE", answer.message_id)
    assert (row["outcome"], row["status"]) == ("answered", "OK")


@pytest.mark.attack(
    "in a multi-bureau query the gateway flips a bit of one bureau's answer",
    adversary="malicious gateway",
    expect="that bureau FAILED in the merged reply; the other bureau's genuine answer stands",
)
def test_altered_response_in_a_multi_query_fails_only_that_bureau(net: EvilNet) -> None:
    net.set_mode("alter-response", target="DE", variant="body")
    answers = _ask_many(net, _doc(CANARY), ["DE", "NL"])
    _assert_failed_not_answered(answers["DE"])
    assert answers["DE"].detail == "response did not verify"
    assert answers["NL"].outcome == Outcome.NO_HIT


# --------------------------------------------------------------------------- replay


@pytest.mark.attack(
    "instead of forwarding a query, the gateway returns a response captured earlier: one the "
    "bureau sent the same requester, or one it sent another requester",
    adversary="malicious gateway",
    expect="requester FAILED 'response did not verify'; the query never reaches the node",
)
@pytest.mark.parametrize("variant", ["same", "other"])
def test_replayed_response_is_refused_by_the_requester(net: EvilNet, variant: str) -> None:
    # A genuine hit to capture: FR's own earlier query, or IT's.
    owner = "FR" if variant == "same" else "IT"
    assert _ask(net, _doc(net.known_document), as_=owner).outcome == Outcome.HIT
    before = len(net.event_lines())
    net.set_mode("replay-response", target="DE", variant=variant, source="IT")
    answer = _ask(net, _doc(net.known_document))
    _assert_failed_not_answered(answer)
    assert answer.detail == "response did not verify"
    [replayed] = [e for e in _new_events(net, before) if e.get("action") == "replayed-response"]
    assert replayed["captured_for"] == owner
    net.set_mode("honest")
    assert _node_never_saw(net, "DE", answer.message_id)


@pytest.mark.attack(
    "the gateway forwards the same query twice to the node",
    adversary="malicious gateway",
    expect="answered once; the second delivery ALREADY_EXISTS + audit 'replay'",
)
def test_request_forwarded_twice_is_answered_once(net: EvilNet) -> None:
    before = len(net.event_lines())
    net.set_mode("replay-request", target="DE")
    answer = _ask(net, _doc(net.known_document))
    assert answer.outcome == Outcome.HIT  # the genuine answer, once
    [event] = [e for e in _new_events(net, before) if e.get("action") == "replayed-request"]
    assert (event["first"], event["second"]) == ("OK", "ALREADY_EXISTS")
    rows = _node_audit(net, "DE", answer.message_id, count=2)
    assert [(r["outcome"], r["reason"], r["status"]) for r in rows] == [
        ("answered", "", "OK"),
        ("refused", "replay", "ALREADY_EXISTS"),
    ]


# --------------------------------------------------------------------------- reroute


@pytest.mark.attack(
    "the gateway delivers a query addressed to DE to NL's node, unchanged or with the "
    "header's recipient rewritten to NL",
    adversary="malicious gateway",
    expect="NL's node INVALID_ARGUMENT + audit 'unverified'; requester FAILED; DE never sees it",
)
@pytest.mark.parametrize("variant", ["forward", "rewrite"])
def test_rerouted_query_is_refused_by_the_wrong_bureau(net: EvilNet, variant: str) -> None:
    net.set_mode("reroute", target="DE", to="NL", variant=variant)
    answer = _ask(net, _doc(net.known_document))
    _assert_failed_not_answered(answer)
    assert answer.detail.startswith("INVALID_ARGUMENT"), answer
    [row] = _node_audit(net, "NL", answer.message_id)
    assert (row["sender"], row["recipient"], row["reason"], row["status"]) == (
        "FR",
        "DE" if variant == "forward" else "NL",
        "unverified",
        "INVALID_ARGUMENT",
    )
    net.set_mode("honest")
    assert _node_never_saw(net, "DE", answer.message_id)


# --------------------------------------------------------------------------- forgery


@pytest.mark.attack(
    "the gateway answers a query itself with a fabricated 'no hit': unsigned, signed with "
    "its own key, a genuine earlier answer with its correlation id rewritten, or the query "
    "reflected back as its answer",
    adversary="malicious gateway",
    expect="requester FAILED 'response did not verify'; the query never reaches the node",
)
@pytest.mark.parametrize("variant", ["unsigned", "own-key", "splice", "reflect"])
def test_forged_response_is_refused_by_the_requester(net: EvilNet, variant: str) -> None:
    assert _ask(net, _doc(net.known_document)).outcome == Outcome.HIT  # one to splice
    net.set_mode("forge", target="DE", variant=variant)
    answer = _ask(net, _doc(net.known_document))
    _assert_failed_not_answered(answer)
    assert answer.detail == "response did not verify"
    net.set_mode("honest")
    assert _node_never_saw(net, "DE", answer.message_id)


# --------------------------------------------------------------------------- drop


@pytest.mark.attack(
    "the gateway drops the answer: holds the call past the caller's deadline (after "
    "forwarding, or without), or replies UNAVAILABLE",
    adversary="malicious gateway",
    expect="requester NO_ANSWER (DEADLINE_EXCEEDED or UNAVAILABLE) by its deadline, never no-hit",
)
@pytest.mark.parametrize("variant", ["hang", "silent", "unavailable"])
def test_dropped_answer_is_no_answer_never_no_hit(net: EvilNet, variant: str) -> None:
    net.set_mode("drop", target="DE", variant=variant)
    answer = _ask(net, _doc(CANARY), timeout=1.0)
    assert answer.outcome == Outcome.NO_ANSWER, answer
    assert answer.response is None
    expected = "UNAVAILABLE" if variant == "unavailable" else "DEADLINE_EXCEEDED"
    assert answer.detail.startswith(expected + ":"), answer


@pytest.mark.attack(
    "in a multi-bureau query the gateway replies UNAVAILABLE for one bureau",
    adversary="malicious gateway",
    expect="that bureau NO_ANSWER in the merged reply; the other's genuine answer stands",
)
def test_dropped_answer_in_a_multi_query_is_no_answer(net: EvilNet) -> None:
    net.set_mode("drop", target="DE", variant="unavailable")
    answers = _ask_many(net, _doc(CANARY), ["DE", "NL"])
    assert answers["DE"].outcome == Outcome.NO_ANSWER
    assert answers["DE"].response is None
    assert answers["NL"].outcome == Outcome.NO_HIT


@pytest.mark.attack(
    "in a multi-bureau query the gateway leaves one bureau out of the merged reply, or swaps "
    "two bureaus' answers (each delivery still labelled with its own bureau)",
    adversary="malicious gateway",
    expect="omitted: NO_ANSWER 'missing from reply'; swapped: both FAILED, neither taken as "
    "an answer",
)
@pytest.mark.parametrize("variant", ["omit", "swap"])
def test_mixed_up_multi_query_reply_is_detected(net: EvilNet, variant: str) -> None:
    net.set_mode("mix-deliveries", target="DE", variant=variant)
    answers = _ask_many(net, _doc(net.known_document), ["DE", "NL"])
    assert sorted(answers) == ["DE", "NL"]  # every recipient is listed, whatever came back
    if variant == "omit":
        assert answers["DE"].outcome == Outcome.NO_ANSWER
        assert answers["DE"].detail == "missing from reply"
        assert answers["NL"].outcome == Outcome.NO_HIT
    else:
        for answer in answers.values():
            _assert_failed_not_answered(answer)
            assert answer.detail == "response did not verify"


@pytest.mark.attack(
    "the gateway leaves a connected bureau out of its Routes reply, so a query to ALL "
    "silently skips that bureau",
    adversary="malicious gateway",
    expect="the requester still asks the hidden bureau: ALL is the root-signed directory, "
    "not the gateway's routes",
)
def test_query_to_all_lists_a_bureau_the_gateway_hides(net: EvilNet) -> None:
    net.set_mode("hide-route", target="DE")
    answers = _ask_many(net, _doc(net.known_document), ["ALL"])
    assert answers["NL"].outcome == Outcome.NO_HIT  # the query did go out
    assert "DE" in answers
    assert answers["DE"].outcome == Outcome.HIT  # hidden from Routes, asked all the same


# --------------------------------------------------------------------------- canary


@pytest.mark.attack(
    "the gateway keeps everything it can (audit, log, event record, captured responses) "
    "while relaying queries for a unique document number",
    adversary="malicious gateway",
    expect="the number appears in none of the files the gateway wrote",
)
def test_gateway_never_holds_a_query_in_clear(net: EvilNet) -> None:
    answer = _ask(net, _doc(CANARY))
    assert answer.outcome == Outcome.NO_HIT
    # The gateway did record this very query (so we are reading the right files)...
    audit = net.files / "audit.sqlite"
    deadline = time.monotonic() + 10
    while answer.message_id not in {r.message_id for r in read_all(audit)}:
        assert time.monotonic() < deadline, "the gateway's audit never recorded the query"
        time.sleep(0.05)
    assert answer.message_id in net.events.read_text()
    assert (net.files / "capture.jsonl").stat().st_size > 0
    # ...and nowhere holds the number, nor the known document's, in any encoding we know.
    written = [p for p in net.files.iterdir() if p.is_file() and p.name != "mode.json"]
    assert {p.name for p in written} >= {"audit.sqlite", "gateway.log", "events.jsonl"}
    for secret in (CANARY, net.known_document):
        needles = [
            secret.encode(),
            secret.encode("utf-16-le"),
            secret.encode().hex().encode(),
        ]
        for path in written:
            data = path.read_bytes()
            assert not [n for n in needles if n in data], f"{secret} found in {path.name}"
