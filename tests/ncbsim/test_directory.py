"""Key directory: only entries the pinned root signed, unchanged and in date, are trusted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ncbsim import _crypto, pki
from ncbsim.directory import Directory, verify_entry
from ncbsim.errors import DirectoryError, PkiError
from ncbsim.identity import Identity
from ncbsim.v2 import directory_pb2


def _now() -> int:
    return int(time.time() * 1000)


@pytest.fixture(scope="module")
def pki_bureaus() -> list[str]:
    return ["FR", "DE"]


def _signed(pki_dir: pki.PkiDir, bureau: str) -> bytes:
    return pki_dir.entry_path(bureau).read_bytes()


def _entry(pki_dir: pki.PkiDir, bureau: str) -> directory_pb2.DirectoryEntry:
    outer = directory_pb2.SignedDirectoryEntry.FromString(_signed(pki_dir, bureau))
    return directory_pb2.DirectoryEntry.FromString(outer.entry)


def _root_key(pki_dir: pki.PkiDir) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pki_dir.ca_key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def test_root_signed_entry_verifies(pki_dir: pki.PkiDir) -> None:
    """An entry from pki init verifies against its root and certifies the bureau's own keys."""
    peer = verify_entry(pki_dir.root_public_key(), _signed(pki_dir, "FR"), now_ms=_now())
    identity = Identity.load(pki_dir, "FR", now_ms=_now())
    assert peer.bureau == "FR"
    assert bytes(peer.verify_key) == bytes(identity.signing_key.verify_key)
    assert _crypto.x25519_public_bytes(peer.encryption_key) == _crypto.x25519_public_bytes(
        identity.encryption_key
    )
    assert (peer.signing_key_id, peer.encryption_key_id) == (
        identity.signing_key_id,
        identity.encryption_key_id,
    )
    assert peer.serial == 1


def test_directory_from_pki_holds_every_bureau(pki_dir: pki.PkiDir) -> None:
    """A directory loaded from disk knows each bureau and raises DirectoryError for others."""
    directory = Directory.from_pki(pki_dir)
    assert directory.bureaus() == ["DE", "FR"]
    assert directory.get("DE").bureau == "DE"
    assert "IT" not in directory
    with pytest.raises(DirectoryError):
        directory.get("IT")


def test_entry_signed_by_another_root_refused(pki_dir: pki.PkiDir, tmp_path: Path) -> None:
    """An entry signed by a different root CA is refused, alone and in a directory."""
    other = pki.init(tmp_path / "other", ["FR"])
    foreign = _signed(other, "FR")
    assert verify_entry(other.root_public_key(), foreign, now_ms=_now()).bureau == "FR"
    with pytest.raises(DirectoryError):
        verify_entry(pki_dir.root_public_key(), foreign, now_ms=_now())
    directory = Directory(pki_dir.root_public_key())
    with pytest.raises(DirectoryError):
        directory.add([foreign])
    assert "FR" not in directory


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("encryption_key", b"\x09" * 32),
        ("signing_key", b"\x2a" * 32),
        ("bureau", "IT"),
        ("not_after_ms", 2**62),
        ("serial", 2),
    ],
    ids=["encryption-key", "signing-key", "bureau", "not-after", "serial"],
)
def test_field_changed_under_root_signature_refused(
    pki_dir: pki.PkiDir, field: str, value: object
) -> None:
    """A gateway that changes any field of a root-signed entry (e.g. swaps a key) is caught."""
    outer = directory_pb2.SignedDirectoryEntry.FromString(_signed(pki_dir, "FR"))
    entry = directory_pb2.DirectoryEntry.FromString(outer.entry)
    setattr(entry, field, value)
    forged = directory_pb2.SignedDirectoryEntry(
        entry=entry.SerializeToString(), signature=outer.signature
    ).SerializeToString()
    with pytest.raises(DirectoryError):
        verify_entry(pki_dir.root_public_key(), forged, now_ms=_now())


def test_signature_moved_to_another_entry_refused(pki_dir: pki.PkiDir) -> None:
    """DE's entry body under FR's root signature is refused."""
    fr = directory_pb2.SignedDirectoryEntry.FromString(_signed(pki_dir, "FR"))
    de = directory_pb2.SignedDirectoryEntry.FromString(_signed(pki_dir, "DE"))
    forged = directory_pb2.SignedDirectoryEntry(entry=de.entry, signature=fr.signature)
    with pytest.raises(DirectoryError):
        verify_entry(pki_dir.root_public_key(), forged.SerializeToString(), now_ms=_now())


def test_entry_is_filed_under_the_bureau_it_names(pki_dir: pki.PkiDir) -> None:
    """DE's genuine entry served in place of FR's certifies DE, never FR."""
    directory = Directory(pki_dir.root_public_key())
    (peer,) = directory.add([_signed(pki_dir, "DE")])
    assert peer.bureau == "DE"
    assert directory.bureaus() == ["DE"]


@pytest.mark.parametrize("signed", [b"", b"\xff", b"\x0a\x03abc\x12\x02\x30\x00"])
def test_undecodable_entry_refused(pki_dir: pki.PkiDir, signed: bytes) -> None:
    """Bytes that are not a root-signed entry raise DirectoryError, not a decoding error."""
    with pytest.raises(DirectoryError):
        verify_entry(pki_dir.root_public_key(), signed, now_ms=_now())


def test_entry_outside_validity_window_refused(pki_dir: pki.PkiDir) -> None:
    """An entry is valid from not_before_ms up to, not including, not_after_ms."""
    signed, entry, root = _signed(pki_dir, "FR"), _entry(pki_dir, "FR"), pki_dir.root_public_key()
    assert verify_entry(root, signed, now_ms=entry.not_before_ms).bureau == "FR"
    assert verify_entry(root, signed, now_ms=entry.not_after_ms - 1).bureau == "FR"
    with pytest.raises(DirectoryError, match="validity"):
        verify_entry(root, signed, now_ms=entry.not_after_ms)
    with pytest.raises(DirectoryError, match="validity"):
        verify_entry(root, signed, now_ms=entry.not_before_ms - 1)


def test_expired_entry_refused_by_directory(pki_dir: pki.PkiDir) -> None:
    """A root-signed entry that has already expired is refused by Directory.add."""
    entry = _entry(pki_dir, "FR")
    entry.not_before_ms, entry.not_after_ms = _now() - 20_000, _now() - 10_000
    expired = pki.sign_entry(_root_key(pki_dir), entry)
    directory = Directory(pki_dir.root_public_key())
    with pytest.raises(DirectoryError):
        directory.add([expired])
    assert "FR" not in directory


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("version", 2),
        ("bureau", "fr"),
        ("bureau", "FRA"),
        ("signing_key", b"\x01" * 31),
        ("encryption_key", b"\x01" * 33),
    ],
    ids=[
        "version-2",
        "bureau-lowercase",
        "bureau-3-letters",
        "signing-key-31",
        "encryption-key-33",
    ],
)
def test_root_signed_entry_with_unusable_content_refused(
    pki_dir: pki.PkiDir, field: str, value: object
) -> None:
    """Even a root-signed entry is refused with a bad version, bureau code or key length."""
    entry = _entry(pki_dir, "FR")
    setattr(entry, field, value)
    signed = pki.sign_entry(_root_key(pki_dir), entry)
    with pytest.raises(DirectoryError):
        verify_entry(pki_dir.root_public_key(), signed, now_ms=_now())


# ----------------------------------------------------------------------------- Identity.load


def test_identity_load_matches_entry(pki_dir: pki.PkiDir) -> None:
    """A bureau's key files load as an identity whose key ids its directory entry certifies."""
    identity = Identity.load(pki_dir, "DE", now_ms=_now())
    entry = _entry(pki_dir, "DE")
    assert identity.bureau == "DE"
    assert identity.signing_key_id == _crypto.key_id(entry.signing_key)
    assert identity.encryption_key_id == _crypto.key_id(entry.encryption_key)


@pytest.mark.parametrize("name", ["signing.key", "encryption.key"])
def test_identity_load_refuses_keys_not_in_entry(pki_dir: pki.PkiDir, name: str) -> None:
    """Identity.load refuses a signing or encryption key that the entry does not certify."""
    fresh = _crypto.ed25519_generate() if name == "signing.key" else _crypto.x25519_generate()
    (pki_dir.party("FR") / name).write_bytes(_crypto.private_key_to_pem(fresh))
    with pytest.raises(PkiError, match="do not match"):
        Identity.load(pki_dir, "FR", now_ms=_now())


def test_identity_load_refuses_another_bureaus_keys(pki_dir: pki.PkiDir) -> None:
    """FR's entry with DE's key files is refused."""
    for name in ("signing.key", "encryption.key"):
        (pki_dir.party("FR") / name).write_bytes((pki_dir.party("DE") / name).read_bytes())
    with pytest.raises(PkiError):
        Identity.load(pki_dir, "FR", now_ms=_now())


def test_identity_load_refuses_entry_from_another_root(pki_dir: pki.PkiDir, tmp_path: Path) -> None:
    """An entry signed by another root is refused even when the keys match it."""
    other = pki.init(tmp_path / "other", ["FR"])
    for name in ("signing.key", "encryption.key"):
        (pki_dir.party("FR") / name).write_bytes((other.party("FR") / name).read_bytes())
    pki_dir.entry_path("FR").write_bytes(_signed(other, "FR"))
    with pytest.raises(DirectoryError):
        Identity.load(pki_dir, "FR", now_ms=_now())


def test_identity_load_refuses_missing_key_file(pki_dir: pki.PkiDir) -> None:
    """A missing key file raises PkiError."""
    (pki_dir.party("FR") / "encryption.key").unlink()
    with pytest.raises(PkiError):
        Identity.load(pki_dir, "FR", now_ms=_now())
