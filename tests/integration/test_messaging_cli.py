"""On a network started with `ncbsim up`: diffuse, message, notice, inbox and receipts by CLI.

Real processes throughout: a gateway and four nodes (GS among them) brought up with
``ncbsim up --detach``, every command run as ``python -m ncbsim`` in a subprocess, and
``ncbsim down`` at the end, even on failure. Waiting for delivery reads the inbox files
read-only, as the CLI does, rather than starting a process per poll.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ncbsim.node.inbox import Inbox

pytestmark = pytest.mark.integration

SCENARIO = """
name = "messaging-cli"
description = "Three bureaus and the General Secretariat, for the messaging CLI test."
bureaus = ["FR", "DE", "IT", "GS"]
seed = 11

[records]
documents = 50
persons = 50
vehicles = 20
planted = 2
"""

CANARY = f"canary-{os.urandom(6).hex()}"
"""Text that must reach the recipients and never the gateway's files."""


def _ncbsim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ncbsim", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _json(*args: str) -> dict[str, Any]:
    result = _ncbsim(*args, "--json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def _wait(what: str, check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def _inbox(workdir: Path, bureau: str) -> Inbox | None:
    path = workdir / "bureaus" / bureau / "inbox.sqlite"
    return Inbox.read(path) if path.is_file() else None


def _count(workdir: Path, bureau: str, kind: int | None = None) -> int:
    inbox = _inbox(workdir, bureau)
    if inbox is None:
        return 0
    try:
        return len(inbox.items(kind))
    finally:
        inbox.close()


def _notice_status(workdir: Path, bureau: str, notice_id: str) -> str:
    inbox = _inbox(workdir, bureau)
    if inbox is None:
        return ""
    try:
        row = inbox.notice(bytes.fromhex(notice_id))
    finally:
        inbox.close()
    return "" if row is None else row.status_name


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A network with GS brought up with `ncbsim up --detach`; always brought down."""
    tmp_path = tmp_path_factory.mktemp("messaging")
    scenario = tmp_path / "messaging.toml"
    scenario.write_text(SCENARIO)
    workdir = tmp_path / "net"
    up = _ncbsim("up", str(scenario), "--workdir", str(workdir), "--detach")
    try:
        assert up.returncode == 0, up.stderr
        yield workdir
    finally:
        if (workdir / "network.json").exists():
            _ncbsim("down", "--workdir", str(workdir))


def test_messaging_commands_end_to_end(workdir: Path, tmp_path: Path) -> None:
    """Each command works on a live network; receipts verify; the gateway never sees text."""
    w = str(workdir)
    started = time.perf_counter()

    # A diffusion to DE and IT also reaches GS.
    diffusion = _json(
        "diffuse", "--workdir", w, "--as", "FR", "--to", "DE,IT",
        "--subject", "Armed robbery in Lyon", "--text", f"Suspects fled east {CANARY}",
    )  # fmt: skip
    assert [c["recipient"] for c in diffusion["copies"]] == ["DE", "IT", "GS"]
    assert {c["status"] for c in diffusion["copies"]} == {"accepted"}

    # A case message, and a reply that finds its thread in the replier's inbox.
    attachment = tmp_path / "photo.txt"
    attachment.write_text("not really a photo")
    message = _json(
        "message", "send", "--workdir", w, "--as", "FR", "--to", "DE",
        "--subject", "Case 42", "--text", f"Please check {CANARY}", "--attach", str(attachment),
    )  # fmt: skip
    assert message["stored"] is True
    _wait("DE to process FR's message", lambda: _count(workdir, "DE") >= 2)
    reply = _json(
        "message", "send", "--workdir", w, "--as", "DE", "--to", "FR",
        "--text", "Checked: no trace", "--reply-to", message["post_id"],
    )  # fmt: skip
    assert reply["stored"] is True

    # A red notice: GS publishes it to every bureau.
    person = tmp_path / "person.json"
    person.write_text(json.dumps({"surname": "Doe", "given": "John", "dob": "1975-04-03"}))
    notice = _json(
        "notice", "request", "--workdir", w, "--as", "FR", "--color", "red",
        "--person-file", str(person), "--summary", f"fraud {CANARY}",
    )  # fmt: skip
    notice_id = notice["notice_id"]
    assert [c["recipient"] for c in notice["copies"]] == ["GS"]
    _wait("DE to hold the published notice", lambda: bool(_notice_status(workdir, "DE", notice_id)))
    notices = _json("notice", "list", "--workdir", w, "--as", "DE")["notices"]
    (row,) = [n for n in notices if n["notice_id"] == notice_id]
    assert (row["color"], row["status"], row["requested_by"]) == ("red", "published", "FR")
    assert row["reference"].startswith("RED/")
    assert row["subject"]["surname"] == "Doe"

    # DE's inbox: decrypted, in processing order.
    items = _json("inbox", "--workdir", w, "--as", "DE")["items"]
    kinds = [i["kind"] for i in items]
    assert kinds[:2] == ["diffusion", "message"]
    assert "notice" in kinds
    assert items[0]["body"]["text"] == f"Suspects fled east {CANARY}"
    assert items[0]["body"]["distribution"] == ["DE", "IT", "GS"]
    assert items[1]["body"]["attachments"][0]["name"] == "photo.txt"
    only = _json("inbox", "--workdir", w, "--as", "DE", "--kind", "diffusion")["items"]
    assert [i["kind"] for i in only] == ["diffusion"]
    _wait("FR to receive DE's reply", lambda: _count(workdir, "FR", None) >= 2)
    fr_items = _json("inbox", "--workdir", w, "--as", "FR", "--kind", "message")["items"]
    (answer,) = fr_items
    assert answer["body"]["in_reply_to"] == message["post_id"]
    assert answer["body"]["thread"] == message["post_id"]  # a new thread is named so

    # FR's receipts: every copy delivered, each receipt signed by its recipient.
    def all_delivered() -> bool:
        copies = _json("receipts", "--workdir", w, "--as", "FR")["copies"]
        return len(copies) == 5 and all(c["state"] == "delivered" for c in copies)

    _wait("every copy FR sent to be delivered", all_delivered)
    receipts = _ncbsim("receipts", "--workdir", w, "--as", "FR")
    assert receipts.returncode == 0, receipts.stderr
    assert "5 receipts verified" in receipts.stdout
    copies = _json("receipts", "--workdir", w, "--as", "FR")["copies"]
    assert all(c["receipt_verified"] for c in copies)

    # Withdrawal: GS tells every bureau.
    withdrawn = _ncbsim(
        "notice", "withdraw", "--workdir", w, "--as", "FR", "--id", notice_id,
        "--reason", "arrested",
    )  # fmt: skip
    assert withdrawn.returncode == 0, withdrawn.stderr
    _wait(
        "DE to mark the notice withdrawn",
        lambda: _notice_status(workdir, "DE", notice_id) == "withdrawn",
    )

    # The gateway stored and relayed all of it, and never held the text in clear.
    for path in (workdir / "gateway").rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
    print(f"messaging CLI session: {time.perf_counter() - started:.1f} s")


def test_usage_errors_exit_2_with_advice(workdir: Path, tmp_path: Path) -> None:
    """Misuse exits 2 and says what to do; nothing is posted (IT sends nothing else)."""
    w = str(workdir)
    person = tmp_path / "person.json"
    cases = [
        (["diffuse", "--to", "IT", "--subject", "s", "--text", "t"], "cannot send to itself"),
        (["message", "send", "--to", "DE,IT", "--text", "t"], "ncbsim diffuse"),
        (["notice", "withdraw", "--id", "abc"], "32 hex digits"),
        (
            ["notice", "request", "--color", "mauve", "--person-file", str(person)],
            "unknown notice colour",
        ),
        (["diffuse", "--to", "DE", "--subject", "s", "--text", "t", "--ttl", "48h"], "24h"),
    ]
    person.write_text(json.dumps({"surname": "Doe", "dob": "1975-04-03"}))
    for args, advice in cases:
        if args[0] in ("message", "notice"):
            result = _ncbsim(args[0], args[1], "--workdir", w, "--as", "IT", *args[2:])
        else:
            result = _ncbsim(args[0], "--workdir", w, "--as", "IT", *args[1:])
        assert result.returncode == 2, (args, result.stderr)
        assert advice in result.stderr, (args, result.stderr)
    missing = _ncbsim("inbox", "--workdir", w, "--as", "ZZ")
    assert missing.returncode == 2
    assert "runs no node" in missing.stderr
    copies = _json("receipts", "--workdir", w, "--as", "IT")["copies"]
    assert copies == []


def test_quiet_prints_only_the_id_a_script_needs(workdir: Path, tmp_path: Path) -> None:
    """--quiet prints the post id alone (a notice request: the notice id), so a script can
    use it; it is the id the recipient's inbox and `notice list` know it by."""
    w = str(workdir)
    sent = _ncbsim(
        "message", "send", "--workdir", w, "--as", "FR", "--to", "DE", "--text", "q?", "-q"
    )
    assert sent.returncode == 0, sent.stderr
    post_id = sent.stdout.strip()
    assert len(post_id) == 32
    int(post_id, 16)

    def delivered() -> bool:
        inbox = _inbox(workdir, "DE")
        if inbox is None:
            return False
        try:
            return bytes.fromhex(post_id) in {item.post_id for item in inbox.items()}
        finally:
            inbox.close()

    _wait("the message", delivered)
    person = tmp_path / "quiet-person.json"
    person.write_text(json.dumps({"surname": "Quiet", "given_names": "Q", "dob": "1970-01-02"}))
    asked = _ncbsim(
        "notice", "request", "--workdir", w, "--as", "FR", "--color", "yellow",
        "--person-file", str(person), "--quiet",
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    notice_id = asked.stdout.strip()

    def known() -> bool:
        listed = _json("notice", "list", "--workdir", w, "--as", "FR")
        return notice_id in {n["notice_id"] for n in listed["notices"]}

    _wait("GS's answer to the notice request", known, timeout_s=60)
