"""Key rotation with a grace period, and revocation by the root's signed list."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ncbsim import envelope, pki, rekey
from ncbsim.directory import Directory
from ncbsim.errors import DirectoryError, EnvelopeError, PkiError
from ncbsim.identity import Identity
from ncbsim.revocation import verify_list
from ncbsim.v2 import directory_pb2

HOUR_MS = 3_600_000


def _now() -> int:
    return int(time.time() * 1000)


def _identity(pki_dir: pki.PkiDir, bureau: str) -> Identity:
    return Identity.load(pki_dir, bureau, now_ms=_now())


def _request(sender: Identity, recipient: Identity | Directory, bureau: str) -> envelope.Envelope:
    """A request from ``sender`` to ``bureau``, sealed to the key ``recipient`` certifies.

    It lives two hours, longer than the grace periods below, so that only the grace
    period can be why it is refused.
    """
    peer = recipient.get(bureau) if isinstance(recipient, Directory) else recipient.as_peer()
    key, public = envelope.new_response_key()
    return envelope.seal_request(
        b"query " + public, sender=sender, recipient=peer, response_key=key, ttl_ms=2 * HOUR_MS
    ).envelope


def _open(pki_dir: pki.PkiDir, request: envelope.Envelope, *, at_ms: int | None = None) -> bytes:
    """Open ``request`` as its recipient would now: keys and directory freshly loaded."""
    header = envelope.unverified_header(request)
    directory = Directory.from_pki(pki_dir)
    recipient = Identity.load(pki_dir, header.recipient, now_ms=at_ms or _now())
    return envelope.open_request(
        request, recipient=recipient, senders=directory.get, now_ms=at_ms
    ).plaintext


# ----------------------------------------------------------------------------- rotation


def test_rotate_issues_new_keys_under_a_higher_serial(pki_dir: pki.PkiDir) -> None:
    """After rotation the bureau's identity and directory entry hold new keys, serial + 1."""
    before = _identity(pki_dir, "DE")
    rotated = rekey.rotate(pki_dir, "DE", grace_ms=HOUR_MS)
    after = _identity(pki_dir, "DE")
    peer = Directory.from_pki(pki_dir).get("DE")
    assert rotated.serial == peer.serial == 2
    assert after.signing_key_id != before.signing_key_id
    assert after.encryption_key_id != before.encryption_key_id
    assert (peer.signing_key_id, peer.encryption_key_id) == (
        after.signing_key_id,
        after.encryption_key_id,
    )
    assert peer.previous_signing_key_id == before.signing_key_id
    assert after.previous_encryption_key_id == before.encryption_key_id
    assert not rotated.new_tls_certificate


@pytest.mark.attack(
    "an envelope under keys rotated out is used after the grace period",
    adversary="leaked key",
    expect="refused: envelope rejected (within the grace period: accepted)",
)
def test_old_encryption_key_is_accepted_within_grace_then_refused(pki_dir: pki.PkiDir) -> None:
    """A request sealed to DE's old key opens during the grace period, not after it."""
    old_directory = Directory.from_pki(pki_dir)
    request = _request(_identity(pki_dir, "FR"), old_directory, "DE")
    rotated = rekey.rotate(pki_dir, "DE", grace_ms=HOUR_MS)
    assert _open(pki_dir, request).startswith(b"query ")
    assert _open(pki_dir, request, at_ms=rotated.previous_until_ms - 1000)
    with pytest.raises(EnvelopeError):
        _open(pki_dir, request, at_ms=rotated.previous_until_ms + 1)


def test_old_signing_key_is_accepted_within_grace_then_refused(pki_dir: pki.PkiDir) -> None:
    """A request FR signed before rotating verifies during the grace period, not after it."""
    request = _request(_identity(pki_dir, "FR"), Directory.from_pki(pki_dir), "DE")
    rotated = rekey.rotate(pki_dir, "FR", grace_ms=HOUR_MS)
    assert _open(pki_dir, request).startswith(b"query ")
    assert _open(pki_dir, request, at_ms=rotated.previous_until_ms - 1000)
    with pytest.raises(EnvelopeError):
        _open(pki_dir, request, at_ms=rotated.previous_until_ms + 1)


def test_rotation_without_grace_refuses_old_keys_at_once(pki_dir: pki.PkiDir) -> None:
    """--grace 0: the old keys are refused straight away and not kept on disk."""
    request = _request(_identity(pki_dir, "FR"), Directory.from_pki(pki_dir), "DE")
    rotated = rekey.rotate(pki_dir, "DE", grace_ms=0)
    assert rotated.previous_until_ms == 0
    assert not (pki_dir.party("DE") / "previous").exists()
    with pytest.raises(EnvelopeError):
        _open(pki_dir, request)


def test_new_keys_are_used_for_new_envelopes(pki_dir: pki.PkiDir) -> None:
    """Senders that fetch the new entry seal to the new key, which the bureau opens."""
    rekey.rotate(pki_dir, "DE", grace_ms=HOUR_MS)
    request = _request(_identity(pki_dir, "FR"), Directory.from_pki(pki_dir), "DE")
    header = envelope.unverified_header(request)
    assert header.recipient_key_id == _identity(pki_dir, "DE").encryption_key_id
    assert _open(pki_dir, request).startswith(b"query ")


@pytest.mark.attack(
    "after a rotation, the gateway serves the replaced (still root-signed) entry",
    adversary="malicious gateway",
    expect="refused: the replaced entry is listed as superseded; a newer entry is never displaced",
)
def test_replaced_entry_cannot_be_served_again(pki_dir: pki.PkiDir) -> None:
    """The pre-rotation entry is refused by a party holding the list, even one that never
    saw the new entry, and never displaces the new one where the list is not held."""
    old = pki_dir.entry_path("DE").read_bytes()
    rekey.rotate(pki_dir, "DE", grace_ms=0)
    never_saw_new = Directory.pinned(pki_dir)
    with pytest.raises(DirectoryError, match="revoked"):
        never_saw_new.add([old])
    without_list = Directory(pki_dir.root_public_key())
    without_list.add([pki_dir.entry_path("DE").read_bytes()])
    without_list.add([old])
    assert without_list.get("DE").serial == 2


def test_rotated_private_keys_are_0600(pki_dir: pki.PkiDir) -> None:
    rekey.rotate(pki_dir, "DE", grace_ms=HOUR_MS)
    for path in (pki_dir.party("DE") / "previous").iterdir():
        assert path.stat().st_mode & 0o777 == 0o600
    for name in ("signing.key", "encryption.key"):
        assert (pki_dir.party("DE") / name).stat().st_mode & 0o777 == 0o600


def test_negative_grace_is_refused(pki_dir: pki.PkiDir) -> None:
    with pytest.raises(PkiError):
        rekey.rotate(pki_dir, "DE", grace_ms=-1)


# ----------------------------------------------------------------------------- revocation


def _fingerprint(pki_dir: pki.PkiDir, bureau: str) -> bytes:
    cert = x509.load_pem_x509_certificate((pki_dir.party(bureau) / "tls.crt").read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()


def test_revoke_lists_entry_keys_and_certificate(pki_dir: pki.PkiDir) -> None:
    """The signed list names FR's entry serial, both E2E keys and its TLS certificate."""
    fr = _identity(pki_dir, "FR")
    rekey.revoke(pki_dir, "FR")
    listed = pki_dir.revocation_list()
    assert listed is not None
    revoked = verify_list(pki_dir.root_public_key(), listed)
    assert revoked.sequence == 1
    assert revoked.entry_revoked("FR", 1)
    assert not revoked.entry_revoked("DE", 1)
    assert revoked.key_revoked(fr.signing_key_id)
    assert revoked.key_revoked(fr.encryption_key_id)
    assert revoked.cert_revoked("FR", _fingerprint(pki_dir, "FR"))
    assert not revoked.cert_revoked("DE", _fingerprint(pki_dir, "FR"))


@pytest.mark.attack(
    "a bureau whose key leaked keeps signing after it was revoked",
    adversary="leaked key",
    expect="refused: envelope rejected by every bureau",
)
def test_envelopes_signed_with_revoked_keys_are_refused(pki_dir: pki.PkiDir) -> None:
    """Once FR is revoked, a request FR signed (before or after) no longer opens."""
    request = _request(_identity(pki_dir, "FR"), Directory.from_pki(pki_dir), "DE")
    assert _open(pki_dir, request)
    rekey.revoke(pki_dir, "FR")
    with pytest.raises(EnvelopeError):
        _open(pki_dir, request)


def test_a_held_peer_is_dropped_when_a_newer_list_arrives(pki_dir: pki.PkiDir) -> None:
    """A directory that already verified FR forgets it on adopting the list."""
    directory = Directory.from_pki(pki_dir)
    assert "FR" in directory
    rekey.revoke(pki_dir, "FR")
    listed = pki_dir.revocation_list()
    assert listed is not None
    assert directory.apply_revocations(listed)
    assert "FR" not in directory
    with pytest.raises(DirectoryError):
        directory.add([pki_dir.entry_path("FR").read_bytes()])
    assert "DE" in directory


@pytest.mark.attack(
    "the gateway serves an older revocation list to un-revoke a bureau",
    adversary="malicious gateway",
    expect="ignored: a party never adopts a list older than the one it holds",
)
def test_an_older_list_never_replaces_a_newer_one(pki_dir: pki.PkiDir) -> None:
    """Rollback: after FR and DE are revoked, the list revoking only FR is ignored."""
    rekey.revoke(pki_dir, "FR")
    first = pki_dir.revocation_list()
    rekey.revoke(pki_dir, "DE")
    second = pki_dir.revocation_list()
    assert first is not None
    assert second is not None
    directory = Directory(pki_dir.root_public_key())
    assert directory.apply_revocations(second)
    assert not directory.apply_revocations(first)
    assert directory.revoked.entry_revoked("DE", 1)


@pytest.mark.attack(
    "the gateway forges or alters a revocation list",
    adversary="malicious gateway",
    expect="refused: list not signed by the pinned root",
)
@pytest.mark.parametrize("forgery", ["other_root", "flipped_byte"])
def test_a_list_the_root_did_not_sign_is_refused(
    pki_dir: pki.PkiDir, tmp_path: Path, forgery: str
) -> None:
    other = pki.init(tmp_path / "other", ["FR"])  # another root CA, for "other_root"
    if forgery == "other_root":
        rekey.revoke(other, "FR")
        listed = other.revocation_list()
    else:
        rekey.revoke(pki_dir, "FR")
        listed = pki_dir.revocation_list()
        assert listed is not None
        outer = directory_pb2.SignedRevocationList.FromString(listed)
        body = bytearray(outer.list)
        body[-1] ^= 1
        listed = directory_pb2.SignedRevocationList(
            list=bytes(body), signature=outer.signature
        ).SerializeToString()
    assert listed is not None
    directory = Directory(pki_dir.root_public_key())
    with pytest.raises(DirectoryError):
        directory.apply_revocations(listed)
    assert directory.revoked.sequence == 0


def test_rotate_after_revoke_restores_the_bureau_without_grace(pki_dir: pki.PkiDir) -> None:
    """Re-keying a revoked bureau: new keys, new TLS certificate, no grace for the old."""
    old_cert = _fingerprint(pki_dir, "FR")
    rekey.revoke(pki_dir, "FR")
    rotated = rekey.rotate(pki_dir, "FR", grace_ms=HOUR_MS)
    assert rotated.new_tls_certificate
    assert rotated.previous_until_ms == 0
    assert _fingerprint(pki_dir, "FR") != old_cert
    directory = Directory.from_pki(pki_dir)
    assert directory.get("FR").serial == rotated.serial
    request = _request(_identity(pki_dir, "FR"), directory, "DE")
    assert _open(pki_dir, request).startswith(b"query ")


def test_revoking_an_unknown_bureau_is_a_clear_error(pki_dir: pki.PkiDir) -> None:
    with pytest.raises(PkiError, match="no directory entry"):
        rekey.revoke(pki_dir, "ES")


# ----------------------------------------------------------------------------- follow-ups


def test_a_running_identity_stops_opening_with_the_old_key_when_the_grace_ends(
    pki_dir: pki.PkiDir,
) -> None:
    """A node that loaded its keys during the grace keeps the old key, but only uses it
    until the grace ends (Identity.decryption_key checks the time on every envelope)."""
    old = _identity(pki_dir, "DE")
    rotated = rekey.rotate(pki_dir, "DE", grace_ms=HOUR_MS)
    running = _identity(pki_dir, "DE")
    assert running.decryption_key(old.encryption_key_id, rotated.previous_until_ms - 1)
    assert running.decryption_key(old.encryption_key_id, rotated.previous_until_ms) is None
    assert running.decryption_key(running.encryption_key_id, rotated.previous_until_ms)


def test_a_second_rotation_during_the_grace_needs_force(pki_dir: pki.PkiDir) -> None:
    """Rotating again while the last grace runs would cut it short: refused, unless forced."""
    rekey.rotate(pki_dir, "DE", grace_ms=HOUR_MS)
    with pytest.raises(PkiError, match="grace period"):
        rekey.rotate(pki_dir, "DE", grace_ms=HOUR_MS)
    assert rekey.rotate(pki_dir, "DE", grace_ms=HOUR_MS, force=True).serial == 3


def test_a_certificate_replaced_by_rotate_tls_is_listed(pki_dir: pki.PkiDir) -> None:
    """rotate --tls lists the replaced certificate, so it no longer opens the gateway."""
    old = _fingerprint(pki_dir, "FR")
    rekey.rotate(pki_dir, "FR", grace_ms=HOUR_MS, tls=True)
    listed = pki_dir.revocation_list()
    assert listed is not None
    revoked = verify_list(pki_dir.root_public_key(), listed)
    assert revoked.cert_revoked("FR", old)
    assert not revoked.cert_revoked("FR", _fingerprint(pki_dir, "FR"))
    assert not revoked.key_revoked(_identity(pki_dir, "FR").previous_encryption_key_id)


def test_revoke_waits_for_the_pki_lock(pki_dir: pki.PkiDir) -> None:
    """The list is rewritten under the PKI folder's lock: a revoke started while another
    command holds it waits, then appends under the next sequence."""
    done = threading.Event()

    def revoke() -> None:
        rekey.revoke(pki_dir, "DE")
        done.set()

    with rekey._locked(pki_dir):
        worker = threading.Thread(target=revoke)
        worker.start()
        assert not done.wait(0.3)
    worker.join(10)
    assert done.is_set()
    listed = pki_dir.revocation_list()
    assert listed is not None
    assert verify_list(pki_dir.root_public_key(), listed).sequence == 1


class _Gateway:
    """What Peers asks of the gateway: directory entries, served from the PKI folder."""

    def __init__(self, pki_dir: pki.PkiDir) -> None:
        self.pki_dir = pki_dir
        self.calls = 0

    async def GetDirectory(self, request: object, timeout: float) -> object:  # noqa: N802
        from ncbsim.v2 import gateway_pb2

        self.calls += 1
        return gateway_pb2.GetDirectoryResponse(
            entries=[
                directory_pb2.SignedDirectoryEntry.FromString(e)
                for e in self.pki_dir.signed_entries()
            ]
        )


def test_peers_fetch_again_an_entry_held_longer_than_max_age(pki_dir: pki.PkiDir) -> None:
    """A long-running party that cannot read the PKI folder still follows a rotation: an
    entry older than max_age_s is fetched again before it is used."""
    import asyncio

    from ncbsim.peers import Peers

    gateway = _Gateway(pki_dir)
    peers = Peers(Directory(pki_dir.root_public_key()), gateway, max_age_s=0.2)  # type: ignore[arg-type]
    asyncio.run(peers.resolve(["DE"]))
    first = peers.get("DE").encryption_key_id
    rekey.rotate(pki_dir, "DE", grace_ms=HOUR_MS)
    asyncio.run(peers.resolve(["DE"]))
    assert peers.get("DE").encryption_key_id == first  # still fresh: not fetched again
    time.sleep(0.25)
    asyncio.run(peers.resolve(["DE"]))
    assert peers.get("DE").encryption_key_id != first
    assert gateway.calls == 2
