"""Rotation and revocation of a bureau's keys: ``ncbsim pki rotate`` and ``pki revoke``.

``rotate`` issues a bureau new E2E keys under a new directory entry (serial + 1) that
names the old keys and how long they stay acceptable (the grace period), and lists the
replaced entry as superseded. ``revoke`` adds the bureau's current entry, keys and TLS
certificate to the root's signed revocation list. Both run under the PKI folder's lock
and take effect on running processes without a restart (docs/protocol.md §8.3, §8.4).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ncbsim import _crypto, users
from ncbsim.directory import parse_entry
from ncbsim.errors import PkiError
from ncbsim.pki import (
    ENTRY_VALIDITY,
    PkiDir,
    bureau_dns_name,
    issue_certificate,
    load_root,
    sign_entry,
    write_file,
)
from ncbsim.revocation import parse_list, sign_list
from ncbsim.v2 import directory_pb2


def _entry(pki: PkiDir, code: str) -> directory_pb2.DirectoryEntry:
    """``code``'s current entry, checked against the root (it is re-signed from it)."""
    try:
        signed = pki.entry_path(code).read_bytes()
    except FileNotFoundError:
        raise PkiError(f"{code} has no directory entry in {pki.root}") from None
    return parse_entry(pki.root_public_key(), signed)


def _cert_fingerprint(pem: bytes) -> bytes:
    cert = x509.load_pem_x509_certificate(pem)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()


def _current_list(pki: PkiDir) -> directory_pb2.RevocationList:
    signed = pki.revocation_list()
    if signed is None:
        return directory_pb2.RevocationList(version=1, sequence=0)
    return parse_list(pki.root_public_key(), signed)


@contextlib.contextmanager
def _locked(pki: PkiDir) -> Iterator[None]:
    """Hold the PKI folder's lock: the revocation list is read, extended and rewritten
    under it, so two commands run at once cannot both write the same next sequence."""
    fd = os.open(pki.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def revoke(pki: PkiDir, code: str) -> directory_pb2.Revocation:
    """Revoke bureau ``code``: its current directory entry (and every earlier one), its
    E2E keys (the previous ones of a rotation too) and its TLS certificate.

    Running parties pick the new list up without a restart: the gateway within its
    directory refresh interval, nodes within their revocation check interval. Issue
    the bureau new keys and a new certificate with :func:`rotate`.
    """
    with _locked(pki):
        ca_key, _ = load_root(pki)
        entry = _entry(pki, code)
        key_ids = [_crypto.key_id(entry.signing_key), _crypto.key_id(entry.encryption_key)]
        if entry.previous_signing_key:
            key_ids += [
                _crypto.key_id(entry.previous_signing_key),
                _crypto.key_id(entry.previous_encryption_key),
            ]
        item = directory_pb2.Revocation(
            bureau=code,
            entry_serial=entry.serial,
            key_ids=key_ids,
            tls_cert_sha256=[_cert_fingerprint((pki.party(code) / "tls.crt").read_bytes())],
            revoked_at_ms=int(time.time() * 1000),
            reason="revoked",
        )
        _append(pki, ca_key, item)
    return item


def _append(
    pki: PkiDir, ca_key: ec.EllipticCurvePrivateKey, item: directory_pb2.Revocation
) -> None:
    """Add ``item`` to the list on disk under the next sequence (hold :func:`_locked`)."""
    revocations = _current_list(pki)
    revocations.revocations.append(item)
    revocations.sequence += 1
    revocations.issued_at_ms = item.revoked_at_ms
    write_file(pki.revocations, sign_list(ca_key, revocations), private=False, atomic=True)


@dataclass(frozen=True, slots=True)
class Rotated:
    """What :func:`rotate` did."""

    serial: int
    previous_until_ms: int  # 0: the old keys were revoked, so no grace period
    new_tls_certificate: bool


def rotate(
    pki: PkiDir, code: str, *, grace_ms: int, tls: bool = False, force: bool = False
) -> Rotated:
    """Issue bureau ``code`` new E2E keys under a new directory entry (serial + 1).

    The new entry names the old keys, which stay acceptable for ``grace_ms`` so that
    envelopes already sealed or signed under them are not lost; after that they are
    refused. Keys that were revoked get no grace period. A new TLS certificate is
    issued too when ``tls`` is set or the current one is revoked. The replaced entry,
    and a replaced certificate, are listed as superseded. Every file is replaced
    atomically, keys before the entry, so a running node that reloads sees either the
    old identity or the new one.

    A rotation while the previous one's grace period runs would cut that period short
    (its keys are replaced), so it is refused unless ``force``. The bureau's users are
    carried over: their entries and revocations are signed again with the new key
    (:func:`ncbsim.users.resign_users`).
    """
    if grace_ms < 0:
        raise PkiError("the grace period must not be negative")
    with _locked(pki):
        rotated = _rotate(pki, code, grace_ms=grace_ms, tls=tls, force=force)
    users.resign_users(pki, code)  # its users' entries, now under the new key
    return rotated


def _rotate(pki: PkiDir, code: str, *, grace_ms: int, tls: bool, force: bool) -> Rotated:
    ca_key, ca_cert = load_root(pki)
    entry = _entry(pki, code)
    folder = pki.party(code)
    revocations = _current_list(pki)
    revoked_serials = [
        r.entry_serial
        for r in revocations.revocations
        if r.bureau == code and r.reason != "superseded"
    ]
    keys_revoked = bool(revoked_serials) and entry.serial <= max(revoked_serials)
    revoked_certs = {f for r in revocations.revocations for f in r.tls_cert_sha256}
    old_cert = _cert_fingerprint((folder / "tls.crt").read_bytes())
    cert_revoked = old_cert in revoked_certs
    now = dt.datetime.now(dt.UTC)
    now_ms = int(now.timestamp() * 1000)
    if entry.previous_until_ms > now_ms and not keys_revoked and not force:
        ends = dt.datetime.fromtimestamp(entry.previous_until_ms / 1000, dt.UTC)
        raise PkiError(
            f"{code}'s last rotation is in its grace period until {ends:%Y-%m-%dT%H:%M:%SZ}; "
            "rotating now would refuse its old keys at once (use --force to do so)"
        )
    previous = folder / "previous"
    keep_old = grace_ms > 0 and not keys_revoked
    if keep_old:
        for name in ("signing.key", "encryption.key"):
            write_file(previous / name, (folder / name).read_bytes(), private=True, atomic=True)
    else:
        shutil.rmtree(previous, ignore_errors=True)
    new_cert = tls or cert_revoked
    if new_cert:
        cert, key = issue_certificate(
            ca_key, ca_cert, common_name=code, dns_name=bureau_dns_name(code), server=True, now=now
        )
        write_file(folder / "tls.key", key, private=True, atomic=True)
        write_file(folder / "tls.crt", cert, private=True, atomic=True)  # in a private folder
    signing = _crypto.ed25519_generate()
    encryption = _crypto.x25519_generate()
    for name, private in (("signing.key", signing), ("encryption.key", encryption)):
        write_file(folder / name, _crypto.private_key_to_pem(private), private=True, atomic=True)
    serial = max([entry.serial, *revoked_serials]) + 1
    new = directory_pb2.DirectoryEntry(
        version=1,
        bureau=code,
        signing_key=bytes(signing.verify_key),
        encryption_key=_crypto.x25519_public_bytes(encryption),
        not_before_ms=now_ms - 5 * 60 * 1000,
        not_after_ms=int((now + ENTRY_VALIDITY).timestamp() * 1000),
        serial=serial,
        requester_only=entry.requester_only,
    )
    until = 0
    if keep_old:
        until = now_ms + grace_ms
        new.previous_signing_key = entry.signing_key
        new.previous_encryption_key = entry.encryption_key
        new.previous_until_ms = until
    write_file(pki.entry_path(code), sign_entry(ca_key, new), private=False, atomic=True)
    if not keys_revoked:
        # The replaced entry is still root-signed and in date: list it as superseded, so
        # a gateway cannot serve it to a party that never saw the new one. Its keys stay
        # usable through the new entry's grace period (they are not listed here). So is
        # a replaced certificate, which must not keep opening the gateway's door.
        superseded = directory_pb2.Revocation(
            bureau=code,
            entry_serial=entry.serial,
            tls_cert_sha256=[old_cert] if new_cert and not cert_revoked else [],
            revoked_at_ms=now_ms,
            reason="superseded",
        )
        _append(pki, ca_key, superseded)
    return Rotated(serial=serial, previous_until_ms=until, new_tls_certificate=new_cert)
