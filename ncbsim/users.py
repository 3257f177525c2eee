"""The people a bureau answers for: roles, rights, and the entries their bureau signs.

A bureau issues each of its users (a border officer, an investigator, a partner agency)
two things (docs/users.md):

- a TLS certificate from the bureau's own CA (:mod:`ncbsim.bureau_ca`), so the gateway's
  handshake authenticates the person;
- a :class:`~ncbsim.v2.users_pb2.SignedUserEntry`, signed with the bureau's directory
  signing key (the one its root-signed entry certifies): the user's E2E keys, the SHA-256
  of its TLS certificate and the rights the bureau grants. Every party checks it against
  the bureau's entry (:func:`verify_user`), so nobody but the bureau (the gateway
  included) can make a user up or widen its rights.

Files (:class:`~ncbsim.pki.PkiDir`): ``bureaus/FR/users/NAME/{tls.crt,tls.key,signing.key,
encryption.key}`` (0600; ``tls.crt`` is the user's certificate then FR's CA, the chain gRPC
sends), ``users/FR/NAME.entry`` (public) and, once revoked, ``users/FR/NAME.revoked``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.message import DecodeError

from ncbsim import _crypto, bureau_ca
from ncbsim.errors import ConfigError, DirectoryError, PkiError
from ncbsim.pki import PkiDir, check_bureau_code, write_file
from ncbsim.principal import check_user_name, is_user, principal
from ncbsim.rights import (
    QUERY_KINDS,
    ROLES,
    Rights,
    check_role,
    kind_from_name,
    message_kind_name,
    role_rights,
)
from ncbsim.v2 import users_pb2

if TYPE_CHECKING:
    from ncbsim.directory import Peer

__all__ = [
    "ENTRY_CONTEXT",
    "QUERY_KINDS",
    "REVOCATION_CONTEXT",
    "ROLES",
    "Rights",
    "User",
    "UserListing",
    "check_role",
    "entry_principal",
    "issue_user",
    "kind_from_name",
    "list_users",
    "message_kind_name",
    "revocation_principal",
    "revoke_user",
    "role_rights",
    "verify_user",
    "verify_user_revocation",
]

ENTRY_CONTEXT = b"ncbsim/v1 user-entry\x00"
REVOCATION_CONTEXT = b"ncbsim/v1 user-revocation\x00"


@dataclass(frozen=True, slots=True)
class User:
    """A user its bureau vouches for: from an entry :func:`verify_user` checked."""

    principal: str
    bureau: str
    name: str
    role: str
    rights: Rights
    verify_key: _crypto.VerifyKey
    encryption_key: _crypto.X25519PublicKey
    signing_key_id: bytes
    encryption_key_id: bytes
    tls_cert_sha256: bytes
    serial: int
    not_after_ms: int
    issuer_key_id: bytes = field(default=b"")
    """Id of the bureau signing key that signed the entry (a rotation out of its grace
    retires the entry)."""


def entry_principal(signed: bytes) -> str:
    """The principal a SignedUserEntry claims, before any check (to find the bureau to
    check it against); DirectoryError if it is not one."""
    try:
        entry = users_pb2.UserEntry.FromString(users_pb2.SignedUserEntry.FromString(signed).entry)
        check_user_name(entry.name)
        return principal(check_bureau_code(entry.bureau), entry.name)
    except (DecodeError, PkiError) as exc:
        raise DirectoryError("user entry malformed") from exc


def revocation_principal(signed: bytes) -> str:
    """The principal a SignedUserRevocation claims to revoke, before any check."""
    try:
        outer = users_pb2.SignedUserRevocation.FromString(signed)
        revocation = users_pb2.UserRevocation.FromString(outer.revocation)
        check_user_name(revocation.name)
        return principal(check_bureau_code(revocation.bureau), revocation.name)
    except (DecodeError, PkiError) as exc:
        raise DirectoryError("user revocation malformed") from exc


def verify_user(bureau_peer: Peer, signed_entry: bytes, *, now_ms: int) -> User:
    """The user a SignedUserEntry certifies, once checked against its bureau's peer.

    DirectoryError unless the entry is signed by ``bureau_peer``'s current signing key
    (or the previous one within its grace period), names that bureau, and is within its
    validity: a bureau cannot issue a user under another bureau."""
    bureau = bureau_peer.bureau
    if is_user(bureau):
        raise DirectoryError(f"{bureau} is a user; only a bureau signs user entries")
    try:
        outer = users_pb2.SignedUserEntry.FromString(signed_entry)
        entry = users_pb2.UserEntry.FromString(outer.entry)
    except DecodeError as exc:
        raise DirectoryError("user entry malformed") from exc
    if entry.version != 1:
        raise DirectoryError("unsupported user entry version")
    if entry.bureau != bureau:
        raise DirectoryError(
            f"a user entry for {entry.bureau or '?'}/{entry.name} is not {bureau}'s to sign"
        )
    key = bureau_peer.verify_key_for(entry.issuer_key_id, now_ms)
    try:
        if key is None:
            raise _crypto.CryptoFailure
        _crypto.ed25519_verify(key, ENTRY_CONTEXT + outer.entry, outer.signature)
    except _crypto.CryptoFailure:
        raise DirectoryError(
            f"user entry for {bureau}/{entry.name} not signed by {bureau}'s signing key"
        ) from None
    try:
        check_user_name(entry.name)
        check_role(entry.role)
        rights = Rights.from_proto(entry.rights)
        verify_key = _crypto.ed25519_verify_key(entry.signing_key)
        encryption_key = _crypto.x25519_public_from_bytes(entry.encryption_key)
    except (PkiError, ConfigError, _crypto.CryptoFailure) as exc:
        raise DirectoryError(f"user entry for {bureau}/{entry.name} is malformed: {exc}") from exc
    if len(entry.tls_cert_sha256) != 32:
        raise DirectoryError(f"user entry for {bureau}/{entry.name} binds no TLS certificate")
    if not entry.not_before_ms <= now_ms < entry.not_after_ms:
        raise DirectoryError(f"user entry for {bureau}/{entry.name} is outside its validity")
    return User(
        principal=principal(bureau, entry.name),
        bureau=bureau,
        name=entry.name,
        role=entry.role,
        rights=rights,
        verify_key=verify_key,
        encryption_key=encryption_key,
        signing_key_id=_crypto.key_id(entry.signing_key),
        encryption_key_id=_crypto.key_id(entry.encryption_key),
        tls_cert_sha256=entry.tls_cert_sha256,
        serial=entry.serial,
        not_after_ms=entry.not_after_ms,
        issuer_key_id=entry.issuer_key_id,
    )


def verify_user_revocation(bureau_peer: Peer, signed: bytes) -> tuple[str, int]:
    """``(principal, serial)`` of a SignedUserRevocation its bureau signed: every entry of
    that user up to ``serial`` is revoked. DirectoryError otherwise.

    Any signing key the bureau's entry names is accepted, a previous one past its grace
    too: a revocation only takes trust away."""
    bureau = bureau_peer.bureau
    try:
        outer = users_pb2.SignedUserRevocation.FromString(signed)
        revocation = users_pb2.UserRevocation.FromString(outer.revocation)
    except DecodeError as exc:
        raise DirectoryError("user revocation malformed") from exc
    if revocation.bureau != bureau or is_user(bureau):
        raise DirectoryError(
            f"a revocation of {revocation.bureau or '?'}/{revocation.name} is not {bureau}'s"
        )
    key_id = revocation.issuer_key_id
    key = bureau_peer.verify_key if key_id == bureau_peer.signing_key_id else None
    if key is None and bureau_peer.signs_with(key_id):
        key = bureau_peer.previous_verify_key
    try:
        check_user_name(revocation.name)
        if key is None:
            raise _crypto.CryptoFailure
        _crypto.ed25519_verify(key, REVOCATION_CONTEXT + outer.revocation, outer.signature)
    except (PkiError, _crypto.CryptoFailure):
        raise DirectoryError(
            f"revocation of {bureau}/{revocation.name} not signed by {bureau}'s signing key"
        ) from None
    return principal(bureau, revocation.name), revocation.serial


# ----------------------------------------------------------------------------- issuing


@contextlib.contextmanager
def _locked(pki: PkiDir) -> Iterator[None]:
    """Hold the PKI folder's lock (the one ``pki revoke`` takes), so two ``user add`` of
    one name cannot both take the same serial."""
    fd = os.open(pki.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _bureau_signing_key(pki: PkiDir, bureau: str) -> _crypto.SigningKey:
    path = pki.party(bureau) / "signing.key"
    try:
        return _crypto.signing_key_from_pem(path.read_bytes())
    except (FileNotFoundError, ValueError, _crypto.CryptoFailure) as exc:
        raise PkiError(f"cannot load the signing key of {bureau} from {path}") from exc


def _bureau_ca(pki: PkiDir, bureau: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    try:
        root = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    except (FileNotFoundError, ValueError) as exc:
        raise PkiError(f"no root certificate at {pki.ca_cert}") from exc
    bureau_ca.check_root_allows_bureau_cas(root, pki.root)
    cert_path, key_path = pki.bureau_ca(bureau)
    try:
        return bureau_ca.load_bureau_ca(cert_path.read_bytes(), key_path.read_bytes())
    except FileNotFoundError:
        raise PkiError(
            f"{bureau} has no CA for its users in the PKI at {pki.root} (made before users); "
            "make a new one with `ncbsim pki init`"
        ) from None


def _highest_serial(pki: PkiDir, user: str) -> int:
    serial = 0
    for path, kind in (
        (pki.user_entry_path(user), users_pb2.SignedUserEntry),
        (pki.user_revocation_path(user), users_pb2.SignedUserRevocation),
    ):
        try:
            outer = kind.FromString(path.read_bytes())
            if isinstance(outer, users_pb2.SignedUserEntry):
                serial = max(serial, users_pb2.UserEntry.FromString(outer.entry).serial)
            else:
                serial = max(serial, users_pb2.UserRevocation.FromString(outer.revocation).serial)
        except (FileNotFoundError, DecodeError):
            continue
    return serial


def issue_user(
    pki: PkiDir,
    bureau: str,
    name: str,
    role: str,
    *,
    rights: Rights | None = None,
    now_ms: int,
) -> User:
    """Issue user ``name`` of ``bureau``: keys, a TLS certificate from the bureau's CA and
    the entry the bureau signs (``rights``, or the role's defaults). Issuing a name again
    replaces its keys and certificate under the next serial; a revocation of the old
    serial does not touch the new one."""
    check_user_name(name)
    check_role(role)
    pki.require_bureau(bureau)
    user = principal(bureau, name)
    granted = rights if rights is not None else Rights.from_proto(role_rights(role))
    ca_key, ca_cert = _bureau_ca(pki, bureau)
    bureau_key = _bureau_signing_key(pki, bureau)
    now = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    with _locked(pki):
        serial = _highest_serial(pki, user) + 1
        chain, tls_key = bureau_ca.issue_user_certificate(ca_key, ca_cert, bureau, name, now=now)
        signing = _crypto.ed25519_generate()
        encryption = _crypto.x25519_generate()
        leaf = x509.load_pem_x509_certificates(chain)[0]
        entry = users_pb2.UserEntry(
            version=1,
            bureau=bureau,
            name=name,
            role=role,
            rights=granted.to_proto(),
            signing_key=bytes(signing.verify_key),
            encryption_key=_crypto.x25519_public_bytes(encryption),
            tls_cert_sha256=bureau_ca.certificate_sha256(chain),
            not_before_ms=now_ms - 5 * 60_000,
            not_after_ms=int(leaf.not_valid_after_utc.timestamp() * 1000),
            serial=serial,
            issuer_key_id=_crypto.key_id(bytes(bureau_key.verify_key)),
        )
        body = entry.SerializeToString()
        signed = users_pb2.SignedUserEntry(
            entry=body, signature=_crypto.ed25519_sign(bureau_key, ENTRY_CONTEXT + body)
        ).SerializeToString()
        folder = pki.party(user)
        write_file(folder / "tls.crt", chain, private=True)
        write_file(folder / "tls.key", tls_key, private=True)
        write_file(folder / "signing.key", _crypto.private_key_to_pem(signing), private=True)
        write_file(folder / "encryption.key", _crypto.private_key_to_pem(encryption), private=True)
        write_file(pki.user_entry_path(user), signed, private=False, atomic=True)
    return User(
        principal=user,
        bureau=bureau,
        name=name,
        role=role,
        rights=granted,
        verify_key=signing.verify_key,
        encryption_key=encryption.public_key(),
        signing_key_id=_crypto.key_id(entry.signing_key),
        encryption_key_id=_crypto.key_id(entry.encryption_key),
        tls_cert_sha256=entry.tls_cert_sha256,
        serial=serial,
        not_after_ms=entry.not_after_ms,
        issuer_key_id=entry.issuer_key_id,
    )


def revoke_user(pki: PkiDir, bureau: str, name: str, *, now_ms: int) -> int:
    """Revoke user ``name`` of ``bureau`` (its entry's serial and every earlier one): writes
    ``users/FR/NAME.revoked``, signed by the bureau. Returns the serial revoked. The
    bureau and its other users are untouched."""
    user = principal(bureau, check_user_name(name))
    pki.require_bureau(bureau)
    bureau_key = _bureau_signing_key(pki, bureau)
    with _locked(pki):
        try:
            outer = users_pb2.SignedUserEntry.FromString(pki.user_entry_path(user).read_bytes())
            serial = users_pb2.UserEntry.FromString(outer.entry).serial
        except FileNotFoundError:
            raise PkiError(
                f"{user} is not a user in the PKI at {pki.root} (see `ncbsim user list`)"
            ) from None
        except DecodeError as exc:
            raise PkiError(f"the entry of {user} is malformed") from exc
        revocation = users_pb2.UserRevocation(
            bureau=bureau,
            name=name,
            serial=serial,
            revoked_at_ms=now_ms,
            issuer_key_id=_crypto.key_id(bytes(bureau_key.verify_key)),
        )
        body = revocation.SerializeToString()
        signed = users_pb2.SignedUserRevocation(
            revocation=body,
            signature=_crypto.ed25519_sign(bureau_key, REVOCATION_CONTEXT + body),
        ).SerializeToString()
        write_file(pki.user_revocation_path(user), signed, private=False, atomic=True)
    return serial


def resign_users(pki: PkiDir, bureau: str) -> list[str]:
    """Sign every user entry and user revocation of ``bureau`` again with its current
    signing key: ``pki rotate`` calls it, so a rotation carries the bureau's users over
    (their keys, certificates and rights unchanged) instead of leaving their entries to
    lapse with the old key's grace period. A user's new entry takes the next serial; a
    revoked user stays revoked (its revocation is signed again, its entry is not).
    Returns the principals whose entries were signed again."""
    bureau_key = _bureau_signing_key(pki, bureau)
    issuer = _crypto.key_id(bytes(bureau_key.verify_key))
    folder = pki.users_dir / bureau
    resigned = []
    with _locked(pki):
        for path in sorted(folder.glob("*.revoked")):
            outer = users_pb2.SignedUserRevocation.FromString(path.read_bytes())
            revocation = users_pb2.UserRevocation.FromString(outer.revocation)
            revocation.issuer_key_id = issuer
            body = revocation.SerializeToString()
            signature = _crypto.ed25519_sign(bureau_key, REVOCATION_CONTEXT + body)
            signed = users_pb2.SignedUserRevocation(revocation=body, signature=signature)
            write_file(path, signed.SerializeToString(), private=False, atomic=True)
        for path in sorted(folder.glob("*.entry")):
            entry = users_pb2.UserEntry.FromString(
                users_pb2.SignedUserEntry.FromString(path.read_bytes()).entry
            )
            user = principal(bureau, entry.name)
            if _revoked_serial(pki, user) >= entry.serial:
                continue
            entry.serial += 1
            entry.issuer_key_id = issuer
            body = entry.SerializeToString()
            signed_entry = users_pb2.SignedUserEntry(
                entry=body, signature=_crypto.ed25519_sign(bureau_key, ENTRY_CONTEXT + body)
            )
            write_file(path, signed_entry.SerializeToString(), private=False, atomic=True)
            resigned.append(user)
    return resigned


def _revoked_serial(pki: PkiDir, user: str) -> int:
    """The serial up to which ``user`` is revoked on disk (0: not revoked)."""
    try:
        outer = users_pb2.SignedUserRevocation.FromString(
            pki.user_revocation_path(user).read_bytes()
        )
    except FileNotFoundError:
        return 0
    return users_pb2.UserRevocation.FromString(outer.revocation).serial


# ----------------------------------------------------------------------------- listing


@dataclass(frozen=True, slots=True)
class UserListing:
    """One user on disk as ``ncbsim user list`` shows it."""

    principal: str
    role: str
    rights: Rights | None
    serial: int
    state: str
    """``active``, ``revoked``, ``expired``, ``bureau-unknown`` (its bureau is revoked or
    missing) or ``invalid`` (the entry does not verify against its bureau)."""


def _listing(pki: PkiDir, user: str, peer: Peer | None, now_ms: int) -> UserListing:
    raw = pki.user_entry_path(user).read_bytes()
    try:
        entry = users_pb2.UserEntry.FromString(users_pb2.SignedUserEntry.FromString(raw).entry)
        rights: Rights | None = Rights.from_proto(entry.rights)
    except (DecodeError, ConfigError):
        return UserListing(user, "?", None, 0, "invalid")
    base = UserListing(user, entry.role, rights, entry.serial, "active")
    if peer is None:
        return dataclasses.replace(base, state="bureau-unknown")
    try:
        if pki.user_revocation_path(user).exists():
            revoked, serial = verify_user_revocation(
                peer, pki.user_revocation_path(user).read_bytes()
            )
            if revoked == user and serial >= entry.serial:
                return dataclasses.replace(base, state="revoked")
        verify_user(peer, raw, now_ms=now_ms)
    except DirectoryError as exc:
        return dataclasses.replace(base, state="expired" if "validity" in str(exc) else "invalid")
    return base


def list_users(
    pki: PkiDir,
    bureau_peer: Callable[[str], Peer],
    *,
    bureau: str | None = None,
    now_ms: int,
) -> list[UserListing]:
    """Every user on disk (of ``bureau`` only, if given), each checked against its bureau's
    peer (``bureau_peer(code)``, DirectoryError if the bureau is not held)."""
    listings = []
    for user in pki.users(bureau):
        code = user.partition("/")[0]
        try:
            peer: Peer | None = bureau_peer(code)
        except DirectoryError:
            peer = None
        listings.append(_listing(pki, user, peer, now_ms))
    return listings
