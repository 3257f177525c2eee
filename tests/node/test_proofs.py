"""The proof log (ncbsim.node.proofs): one chained row per verified checkpoint, what a
proof needs found by message id, and ``prove`` handing out only proofs that check."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path

import pytest
from session_traffic import Traffic, traffic

from ncbsim import pki, proof
from ncbsim.auditread import verify
from ncbsim.errors import NcbsimError
from ncbsim.node.proofs import PROOF_COLUMNS, ProofLog, find_request, prove


@pytest.fixture(scope="module")
def sent(module_pki: pki.PkiDir) -> Traffic:
    """DE's 40 requests to FR: checkpoints over seq 1-32 and, at the close, 33-40."""
    return traffic(module_pki)


def _record(path: Path, sent: Traffic, *, now_ms: int | None = None) -> None:
    """The proof log of ``sent``, its clock at ``now_ms`` (default: the traffic's)."""
    at_ms = sent.now_ms if now_ms is None else now_ms

    async def run() -> None:
        log = ProofLog.open(path, now_ms=lambda: at_ms)
        try:
            await asyncio.gather(*(log.record(c) for c in sent.covered))
        finally:
            log.close()

    asyncio.run(run())


def _rows(path: Path) -> list[dict[str, object]]:
    names = [name for name, _ in PROOF_COLUMNS]
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = conn.execute(f"SELECT {', '.join(names)} FROM audit ORDER BY seq").fetchall()
    return [dict(zip(names, row, strict=True)) for row in rows]


def test_one_chained_row_per_checkpoint(tmp_path: Path, sent: Traffic) -> None:
    """Each checkpoint is one row, and ``audit verify`` finds the chain intact."""
    path = tmp_path / "proofs.sqlite"
    _record(path, sent)
    rows = _rows(path)
    assert len(rows) == len(sent.covered) == 2
    first = rows[0]
    assert first["at_ms"] == sent.now_ms
    assert first["sender"] == "DE"
    assert first["session_id"] == sent.covered[0].session_id.hex()
    assert (first["first_seq"], first["last_seq"]) == (1, 32)
    assert first["checkpoint"] == sent.covered[0].signed_checkpoint.hex()
    requests = json.loads(str(first["requests"]))
    assert [r[0] for r in requests] == list(range(1, 33))
    request = sent.covered[0].requests[4]
    assert requests[4] == [
        request.seq,
        request.message_id.hex(),
        request.header.hex(),
        request.sealed_sha256.hex(),
    ]
    verdict = verify(path)
    assert verdict.intact, verdict.describe()
    assert verdict.entries == 2


def test_the_chain_resumes_after_a_reopen(
    tmp_path: Path, sent: Traffic, module_pki: pki.PkiDir
) -> None:
    """A restarted node appends to the same chain; both sessions' requests are found."""
    path = tmp_path / "proofs.sqlite"
    _record(path, sent)
    again = traffic(module_pki, count=5)
    _record(path, again, now_ms=sent.now_ms + 1)
    assert verify(path).entries == 3
    for request in (*sent.requests(), *again.requests()):
        found = find_request(path, request.message_id)
        assert found is not None
        assert found.request == request


def test_find_returns_the_request_and_its_checkpoint(tmp_path: Path, sent: Traffic) -> None:
    """``find`` gives the covered request with the checkpoint, session and seqs over it."""
    path = tmp_path / "proofs.sqlite"
    _record(path, sent)
    log = ProofLog.open(path)
    try:
        for covered in sent.covered:
            for request in covered.requests:
                found = log.find(request.message_id)
                assert found is not None
                assert found.request == request
                assert found.signed_checkpoint == covered.signed_checkpoint
                assert (found.first_seq, found.last_seq) == (covered.first_seq, covered.last_seq)
                assert (found.sender, found.session_id) == ("DE", covered.session_id)
                assert found.recorded_at_ms > 0
        assert log.find(bytes(16)) is None
        assert log.find(b"") is None
        # A piece of an id (the scan's substring match) is no id.
        assert log.find(sent.requests()[0].message_id[:8]) is None
    finally:
        log.close()


def test_no_file_reads_as_nothing_and_a_foreign_file_is_an_error(tmp_path: Path) -> None:
    """A bureau that never verified a checkpoint has no log; another file is refused."""
    assert find_request(tmp_path / "missing.sqlite", bytes(16)) is None
    other = tmp_path / "other.sqlite"
    with contextlib.closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE audit (seq INTEGER)")
    with pytest.raises(NcbsimError, match="is not a proof log"):
        find_request(other, bytes(16))


def test_the_log_holds_no_plaintext(tmp_path: Path, sent: Traffic) -> None:
    """The queries' plaintexts appear nowhere in the file: only headers and digests."""
    path = tmp_path / "proofs.sqlite"
    _record(path, sent)
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("proofs"))
    assert b"query 5" not in data
    assert b"query 5".hex().encode() not in data


def test_prove_hands_out_a_proof_that_checks(
    tmp_path: Path, sent: Traffic, module_pki: pki.PkiDir
) -> None:
    """``prove`` builds a proof with DE's entry from the PKI; it checks with the root."""
    path = tmp_path / "proofs.sqlite"
    _record(path, sent)
    request = sent.requests()[35]
    made = prove(module_pki, path, request.message_id)
    checked = proof.check(made, module_pki.root_public_key())
    assert (checked.sender, checked.recipient, checked.seq) == ("DE", "FR", 36)
    assert made["sender_entry"] == module_pki.entry_path("DE").read_bytes().hex()


def test_prove_says_why_there_is_no_proof(
    tmp_path: Path, sent: Traffic, pki_dir: pki.PkiDir
) -> None:
    """No log, no checkpoint over the id, or an entry that no longer certifies the key:
    ``no proof for message HEX: WHY``."""
    path = tmp_path / "proofs.sqlite"
    wanted = bytes(16)
    with pytest.raises(
        NcbsimError, match=f"^no proof for message {wanted.hex()}: there is no proof log"
    ):
        prove(pki_dir, path, wanted)
    mine = traffic(pki_dir, count=3)
    _record(path, mine)
    with pytest.raises(NcbsimError, match=r"no checkpoint in \S+ covers it"):
        prove(pki_dir, path, wanted)
    from ncbsim import rekey

    rekey.rotate(pki_dir, "DE", grace_ms=0)
    rekey.rotate(pki_dir, "DE", grace_ms=0, force=True)
    message_id = mine.requests()[0].message_id
    with pytest.raises(NcbsimError, match=r"proof rejected: .*does not certify the key"):
        prove(pki_dir, path, message_id)
