"""Proofs of origin (ncbsim.proof): a proof built from real checkpoints checks with the
root alone, and every tampering of it is rejected, naming the check that failed."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from session_traffic import Traffic, traffic

from ncbsim import pki, proof, rekey
from ncbsim.errors import NcbsimError
from ncbsim.identity import Identity
from ncbsim.proof import LoggedRequest
from ncbsim.session import Covered, CoveredRequest
from ncbsim.v2 import envelope_pb2, session_pb2

Proof = dict[str, Any]


@pytest.fixture(scope="module")
def sent(module_pki: pki.PkiDir) -> Traffic:
    """DE's 40 requests to FR in one session (checkpoints at 32 and at the close)."""
    return traffic(module_pki)


def _logged(covered: Covered, request: CoveredRequest) -> LoggedRequest:
    return LoggedRequest(
        recorded_at_ms=0,
        sender=covered.sender,
        session_id=covered.session_id,
        first_seq=covered.first_seq,
        last_seq=covered.last_seq,
        signed_checkpoint=covered.signed_checkpoint,
        request=request,
    )


def _proof(pki_dir: pki.PkiDir, sent: Traffic, index: int = 5) -> Proof:
    """The proof of the ``index``-th request FR received, as JSON would carry it."""
    covered = next(c for c in sent.covered if any(r.seq == index + 1 for r in c.requests))
    request = next(r for r in covered.requests if r.seq == index + 1)
    made = proof.build(_logged(covered, request), pki_dir.entry_path("DE").read_bytes())
    parsed: Proof = json.loads(json.dumps(made))
    return parsed


def _rejected(made: object, root: pki.PkiDir, check: str) -> None:
    with pytest.raises(NcbsimError, match=f"^proof rejected: .*(?:{check})"):
        proof.check(made, root.root_public_key())


def test_the_traffic_was_covered_by_two_checkpoints(sent: Traffic) -> None:
    """The fixture is what a node records: 40 requests, covered at 32 and at the close."""
    assert [(c.first_seq, c.last_seq) for c in sent.covered] == [(1, 32), (33, 40)]
    assert [r.seq for r in sent.requests()] == list(range(1, 41))


def test_every_covered_request_has_a_proof_that_checks(
    module_pki: pki.PkiDir, sent: Traffic
) -> None:
    """Each request's proof shows DE sent it to FR, with its id, seq, session and times."""
    root = module_pki.root_public_key()
    for request in sent.requests():
        made = _proof(module_pki, sent, request.seq - 1)
        checked = proof.check(made, root)
        header = envelope_pb2.Header.FromString(request.header)
        assert (checked.sender, checked.recipient) == ("DE", "FR")
        assert checked.message_id == request.message_id == header.message_id
        assert checked.seq == request.seq
        assert checked.session_id == sent.covered[0].session_id
        assert checked.issued_at_ms == header.issued_at_ms
        assert checked.key_id == header.sender_key_id
        assert checked.describe().startswith(
            f"proof valid: DE sent message {request.message_id.hex()} to FR"
        )


def test_a_proof_is_self_contained_json(module_pki: pki.PkiDir, sent: Traffic) -> None:
    """A proof holds the header, the digest, the checkpoint and the entry, nothing secret."""
    made = _proof(module_pki, sent)
    assert set(made) == {
        "format",
        "message_id",
        "seq",
        "header",
        "sealed_sha256",
        "signed_checkpoint",
        "sender_entry",
    }
    assert made["format"] == proof.FORMAT


def _flip(hex_text: str, at: int) -> str:
    raw = bytearray(bytes.fromhex(hex_text))
    raw[at % len(raw)] ^= 0x01
    return raw.hex()


def _signed(made: Proof) -> session_pb2.SignedCheckpoint:
    return session_pb2.SignedCheckpoint.FromString(bytes.fromhex(made["signed_checkpoint"]))


def _with_checkpoint(made: Proof, edit: Callable[[session_pb2.Checkpoint], None]) -> None:
    """Edit the checkpoint inside the proof and keep the sender's signature as it was."""
    signed = _signed(made)
    checkpoint = session_pb2.Checkpoint.FromString(signed.checkpoint)
    edit(checkpoint)
    signed.checkpoint = checkpoint.SerializeToString()
    made["signed_checkpoint"] = signed.SerializeToString().hex()


def _header_field(made: Proof, **fields: Any) -> None:
    header = envelope_pb2.Header.FromString(bytes.fromhex(made["header"]))
    for name, value in fields.items():
        setattr(header, name, value)
    made["header"] = header.SerializeToString().hex()


def _with_signature(made: Proof, edit: Callable[[bytes], bytes]) -> None:
    signed = _signed(made)
    signed.signature = edit(signed.signature)
    made["signed_checkpoint"] = signed.SerializeToString().hex()


def _signed_by_it(made: Proof, pki_dir: pki.PkiDir) -> None:
    """Re-sign the checkpoint with IT's key: a valid signature, by the wrong bureau."""
    signed = _signed(made)
    it = Identity.load(pki_dir, "IT", now_ms=int(time.time() * 1000))
    message = b"ncbsim/v2 checkpoint\x00" + signed.checkpoint
    _with_signature(made, lambda _: it.signing_key.sign(message).signature)


def _both_seqs(made: Proof, seq: int) -> None:
    """The proof's seq and its header's, both changed alike."""
    made["seq"] = seq
    _header_field(made, seq=seq)


Tamper = Callable[[Proof, pki.PkiDir], object]
TAMPERINGS: dict[str, tuple[Tamper, str]] = {
    "header byte": (lambda p, _: p.update(header=_flip(p["header"], 40)), ""),
    "header recipient": (lambda p, _: _header_field(p, recipient="IT"), "recipient"),
    "header issued time": (lambda p, _: _header_field(p, issued_at_ms=1), "leaf"),
    "header sender": (lambda p, _: _header_field(p, sender="IT"), "sender 'IT'"),
    "header kind": (lambda p, _: _header_field(p, kind=2), "format-2 query request"),
    "header key id": (lambda p, _: _header_field(p, sender_key_id=bytes(8)), "certify the key"),
    "digest byte": (lambda p, _: p.update(sealed_sha256=_flip(p["sealed_sha256"], 3)), "leaf"),
    "digest length": (lambda p, _: p.update(sealed_sha256=p["sealed_sha256"][:-2]), "digest"),
    "seq": (lambda p, _: p.update(seq=p["seq"] + 1), "seq 7 is not the header's"),
    "seq and header seq": (lambda p, _: _both_seqs(p, p["seq"] + 1), "leaf for seq 7"),
    "seq beyond the checkpoint": (lambda p, _: _both_seqs(p, 33), "does not cover seq 33"),
    "message id": (lambda p, _: p.update(message_id=_flip(p["message_id"], 0)), "message id"),
    "checkpoint byte": (
        lambda p, _: p.update(signed_checkpoint=_flip(p["signed_checkpoint"], 60)),
        "signature",
    ),
    "checkpoint leaf": (
        lambda p, _: _with_checkpoint(p, lambda c: c.leaves.__setitem__(5, bytes(32))),
        "signature",
    ),
    "checkpoint first seq": (
        lambda p, _: _with_checkpoint(p, lambda c: setattr(c, "first_seq", 2)),
        "signature",
    ),
    "signature byte": (
        lambda p, _: _with_signature(p, lambda s: bytes([s[0] ^ 1]) + s[1:]),
        "signature",
    ),
    "signature missing": (lambda p, _: _with_signature(p, lambda s: b""), "signature"),
    "signature by another bureau": (_signed_by_it, "signature does not verify with DE's key"),
    "format": (lambda p, _: p.update(format="something else"), "not a proof"),
    "a field missing": (lambda p, _: p.pop("sender_entry"), "'sender_entry' is missing"),
    "a field not hex": (lambda p, _: p.update(header="zz"), "'header' is not hex"),
    "seq not a number": (lambda p, _: p.update(seq="6"), "'seq'"),
}


@pytest.mark.parametrize("name", sorted(TAMPERINGS))
def test_every_tampering_is_rejected(module_pki: pki.PkiDir, sent: Traffic, name: str) -> None:
    """A proof with any of its parts changed is rejected, naming the failed check."""
    made = _proof(module_pki, sent)
    proof.check(copy.deepcopy(made), module_pki.root_public_key())  # intact, it checks
    tamper, check = TAMPERINGS[name]
    tamper(made, module_pki)
    _rejected(made, module_pki, check)


def test_another_bureaus_entry_is_rejected(module_pki: pki.PkiDir, sent: Traffic) -> None:
    """The entry of another bureau, though root-signed, does not stand for the sender."""
    made = _proof(module_pki, sent)
    made["sender_entry"] = module_pki.entry_path("IT").read_bytes().hex()
    _rejected(made, module_pki, "sender 'DE' is not the directory entry's IT")


def test_an_entry_not_signed_by_the_root_is_rejected(
    module_pki: pki.PkiDir, sent: Traffic, tmp_path: Path
) -> None:
    """DE's entry signed by another root, or with its root signature broken, is rejected."""
    other = pki.init(tmp_path / "other", ["DE"])
    made = _proof(module_pki, sent)
    made["sender_entry"] = other.entry_path("DE").read_bytes().hex()
    _rejected(made, module_pki, "directory entry.*not signed by the pinned root")
    made = _proof(module_pki, sent)
    made["sender_entry"] = _flip(made["sender_entry"], -3)
    _rejected(made, module_pki, "directory entry.*not signed by the pinned root")


def test_a_proof_checked_against_another_root_is_rejected(
    module_pki: pki.PkiDir, sent: Traffic, tmp_path: Path
) -> None:
    """Only the root of the proof's network accepts it."""
    other = pki.init(tmp_path / "other", ["DE"])
    _rejected(_proof(module_pki, sent), other, "not signed by the pinned root")


def test_a_checkpoint_of_another_batch_is_rejected(module_pki: pki.PkiDir, sent: Traffic) -> None:
    """The close's checkpoint, genuine but over other requests, does not cover seq 6."""
    made = _proof(module_pki, sent)
    made["signed_checkpoint"] = sent.covered[1].signed_checkpoint.hex()
    _rejected(made, module_pki, "does not cover seq 6")


def test_a_checkpoint_of_another_session_is_rejected(module_pki: pki.PkiDir, sent: Traffic) -> None:
    """A checkpoint of another session of the same pair, same seqs, is not this one's."""
    again = traffic(module_pki)
    made = _proof(module_pki, sent)
    made["signed_checkpoint"] = again.covered[0].signed_checkpoint.hex()
    _rejected(made, module_pki, "session")


def test_non_object_is_rejected(module_pki: pki.PkiDir) -> None:
    """JSON that is not a proof object is rejected as such."""
    things: list[object] = [[], "proof", 3, None, {}]
    for thing in things:
        _rejected(thing, module_pki, "not a proof")


def test_requests_the_recipient_never_got_have_no_leaf_mixup(pki_dir: pki.PkiDir) -> None:
    """When FR missed seq 3, the checkpoint still covers it and the others still prove."""
    sent = traffic(pki_dir, count=10, skip=frozenset({3}))
    assert [r.seq for r in sent.requests()] == [1, 2, 4, 5, 6, 7, 8, 9, 10]
    assert (sent.covered[-1].first_seq, sent.covered[-1].last_seq) == (1, 10)
    for request in sent.requests():
        checked = proof.check(_proof(pki_dir, sent, request.seq - 1), pki_dir.root_public_key())
        assert checked.seq == request.seq


def test_a_rotated_out_key_proves_what_it_signed_before_its_retirement(
    pki_dir: pki.PkiDir,
) -> None:
    """DE's new entry names its old key: a checkpoint the old key signed before the grace
    period ended proves; one dated after it does not."""
    before = traffic(pki_dir)
    after = traffic(pki_dir, now_ms=before.now_ms + 3_600_000)  # the old key, an hour on
    rekey.rotate(pki_dir, "DE", grace_ms=60_000)
    checked = proof.check(_proof(pki_dir, before), pki_dir.root_public_key())
    assert checked.sender == "DE"
    _rejected(_proof(pki_dir, after), pki_dir, "after DE's rotated-out key was retired")


def test_a_key_rotated_out_twice_is_not_certified(pki_dir: pki.PkiDir) -> None:
    """Two rotations later DE's entry no longer names the key that signed."""
    sent = traffic(pki_dir)
    rekey.rotate(pki_dir, "DE", grace_ms=0)
    rekey.rotate(pki_dir, "DE", grace_ms=0, force=True)
    _rejected(_proof(pki_dir, sent), pki_dir, "does not certify the key the header names")
