"""The simulated network's PKI: root CA, TLS certificates and E2E keys, and where they live.

``ncbsim pki init --dir DIR --bureaus FR,DE`` writes::

    DIR/ca.crt                       root certificate; every party pins it
    DIR/ca.key                       root key (0600), signs certificates and directory entries
    DIR/gateway/tls.{crt,key}        gateway: server and client auth, SAN gateway.ncbsim
    DIR/operator/tls.{crt,key}       control plane (health checks, ncbsim up), SAN operator.ncbsim
    DIR/bureaus/FR/tls.{crt,key}     bureau FR: SAN fr.bureau.ncbsim, CN FR
    DIR/bureaus/FR/ca.{crt,key}      FR's CA for its users (ncbsim.bureau_ca, docs/users.md)
    DIR/bureaus/FR/signing.key       FR's Ed25519 E2E signing key (0600)
    DIR/bureaus/FR/encryption.key    FR's X25519 E2E encryption key (0600)
    DIR/directory/FR.entry           FR's public E2E keys, signed by the root
    DIR/revocations.list             the root's signed revocation list (after a revoke)
    DIR/suite                        the network's session suite, ``classic`` or ``hybrid``
    DIR/bureaus/FR/previous/*.key    FR's keys replaced by ``pki rotate`` (grace period)
    DIR/bureaus/FR/users/NAME/       user FR/NAME's TLS and E2E keys (``ncbsim user add``)
    DIR/users/FR/NAME.entry          FR/NAME's public entry, signed by FR (ncbsim.users)
    DIR/users/FR/NAME.revoked        FR's signed revocation of FR/NAME (``ncbsim user revoke``)

``ncbsim pki rotate`` and ``ncbsim pki revoke`` are in :mod:`ncbsim.rekey`.

Private key files are written with mode 0600 inside 0700 directories.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ncbsim import _crypto, bureau_ca
from ncbsim import private as private_files
from ncbsim.countries import country
from ncbsim.errors import PkiError, UnknownCountry
from ncbsim.principal import is_user, split
from ncbsim.v2 import directory_pb2

GATEWAY_NAME = "gateway.ncbsim"
OPERATOR_NAME = "operator.ncbsim"
BUREAU_SUFFIX = ".bureau.ncbsim"
DIRECTORY_CONTEXT = b"ncbsim/v1 directory-entry\x00"
CERT_VALIDITY = dt.timedelta(days=365)
ENTRY_VALIDITY = dt.timedelta(days=365)

_BUREAU_CODE = re.compile(r"^[A-Z]{2}$")
SUITES = {"classic": 1, "hybrid": 2}
"""The session suites a network may use, by name (protocol.md §15.1): the ids of
:data:`ncbsim.session.SUITES`, repeated here because the PKI sits below the session code
(a test keeps the two equal)."""
DEFAULT_SUITE = "classic"


def suite_id(name: str) -> int:
    """The id of the suite called ``name``; PkiError naming the choices if there is none."""
    try:
        return SUITES[name]
    except KeyError:
        choices = " or ".join(SUITES)
        raise PkiError(f"unknown suite {name!r}; choose {choices}") from None


def check_bureau_code(code: str) -> str:
    """Return the code if it is two upper-case letters (ISO 3166-1 alpha-2 form)."""
    if not _BUREAU_CODE.match(code):
        raise PkiError(f"not a bureau code: {code!r}")
    return code


def check_country_code(code: str) -> str:
    """Return ``code`` if a bureau may have it: an assigned ISO 3166-1 alpha-2 code (or
    Kosovo's XK), or GS, the General Secretariat. The codes a scenario file accepts."""
    check_bureau_code(code)
    try:
        country(code)
    except UnknownCountry:
        raise PkiError(f"{code} is not an ISO 3166 country code") from None
    return code


def _is_country(code: str) -> bool:
    try:
        check_country_code(code)
    except PkiError:
        return False
    return True


def bureau_dns_name(code: str) -> str:
    """The DNS SAN that names bureau ``code`` in its TLS certificate."""
    return check_bureau_code(code).lower() + BUREAU_SUFFIX


def bureau_from_dns_name(name: str) -> str | None:
    """Inverse of :func:`bureau_dns_name`; None if ``name`` does not name a bureau."""
    if not name.endswith(BUREAU_SUFFIX):
        return None
    code = name[: -len(BUREAU_SUFFIX)].upper()
    return code if _BUREAU_CODE.match(code) else None


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A party's TLS certificate and key, as PEM bytes, plus the pinned root."""

    root: bytes
    cert: bytes
    key: bytes


@dataclass(frozen=True, slots=True)
class PkiDir:
    """Paths inside a PKI directory. Knows the layout; reads files on request."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def directory(self) -> Path:
        return self.root / "directory"

    def party(self, name: str) -> Path:
        """Folder of 'gateway', 'operator', a bureau code or a user ``FR/name``."""
        if name in ("gateway", "operator"):
            return self.root / name
        if is_user(name):
            bureau, user = split(name)
            return self.root / "bureaus" / bureau / "users" / user
        return self.root / "bureaus" / check_bureau_code(name)

    def bureau_ca(self, bureau: str) -> tuple[Path, Path]:
        """Paths of bureau ``bureau``'s CA certificate and key (they certify its users)."""
        folder = self.party(check_bureau_code(bureau))
        return folder / "ca.crt", folder / "ca.key"

    @property
    def users_dir(self) -> Path:
        """The users' part of the directory: ``users/FR/NAME.{entry,revoked}``."""
        return self.root / "users"

    def user_entry_path(self, user: str) -> Path:
        """The SignedUserEntry file of user ``FR/name``."""
        bureau, name = split(user)
        if not name:
            raise PkiError(f"not a user: {user!r} (write FR/cdg-border-12)")
        return self.users_dir / bureau / f"{name}.entry"

    def user_revocation_path(self, user: str) -> Path:
        """The SignedUserRevocation file of user ``FR/name`` (absent unless revoked)."""
        return self.user_entry_path(user).with_suffix(".revoked")

    def users(self, bureau: str | None = None) -> list[str]:
        """Principals of every user with an entry on disk (of ``bureau`` only, if given),
        sorted."""
        pattern = f"{check_bureau_code(bureau)}/*.entry" if bureau else "*/*.entry"
        return sorted(f"{p.parent.name}/{p.stem}" for p in self.users_dir.glob(pattern))

    def signed_users(self, users: list[str] | None = None) -> list[bytes]:
        """Serialized SignedUserEntry files, for every user or the named ones."""
        found = []
        for user in self.users() if users is None else users:
            try:
                found.append(self.user_entry_path(user).read_bytes())
            except FileNotFoundError:
                continue
        return found

    def signed_user_revocations(self) -> list[bytes]:
        """Serialized SignedUserRevocation files, every one on disk."""
        return [p.read_bytes() for p in sorted(self.users_dir.glob("*/*.revoked"))]

    def entry_path(self, bureau: str) -> Path:
        return self.directory / f"{check_bureau_code(bureau)}.entry"

    @property
    def revocations(self) -> Path:
        """The root's signed revocation list; absent until the first revocation."""
        return self.root / "revocations.list"

    @property
    def suite_file(self) -> Path:
        """The network's session suite by name; absent in a PKI older than sessions."""
        return self.root / "suite"

    @property
    def suite(self) -> int:
        """The id of the network's session suite (protocol.md §15.1): the one ``pki/suite``
        names, classic if the file is absent (a PKI made before sessions). PkiError if it
        names no suite."""
        try:
            name = self.suite_file.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return SUITES[DEFAULT_SUITE]
        except (OSError, UnicodeDecodeError) as exc:
            raise PkiError(f"cannot read the suite of the PKI at {self.root}: {exc}") from exc
        return suite_id(name)

    @property
    def suite_name(self) -> str:
        """The network's session suite by name (``classic`` or ``hybrid``)."""
        return next(name for name, number in SUITES.items() if number == self.suite)

    def revocation_list(self) -> bytes | None:
        """The SignedRevocationList on disk, or None if nothing was ever revoked."""
        try:
            return self.revocations.read_bytes()
        except FileNotFoundError:
            return None

    def bureaus(self) -> list[str]:
        """Bureau codes that have a directory entry, sorted."""
        return sorted(p.stem for p in self.directory.glob("*.entry"))

    def require_bureau(self, code: str) -> str:
        """Return ``code`` if this PKI holds keys for that bureau; otherwise a PkiError
        that says what the PKI holds (or that there is no PKI) and what to do."""
        check_country_code(code)
        if not self.ca_cert.exists():
            raise PkiError(
                f"no PKI at {self.root}; create one with "
                f"`ncbsim pki init --dir {self.root} --bureaus {code},...`"
            )
        if (self.party(code) / "tls.key").exists() and self.entry_path(code).exists():
            return code
        held = self.bureaus()
        raise PkiError(
            f"{code} is not in the PKI at {self.root} (it holds {', '.join(held) or 'none'}); "
            "no `ncbsim pki` command adds a bureau to an existing PKI; create a new one with "
            f"`ncbsim pki init --dir NEWDIR --bureaus {','.join(sorted([*held, code]))}`"
        )

    def tls(self, name: str) -> TlsFiles:
        """TLS material for 'gateway', 'operator', a bureau code or a user ``FR/name``
        (whose ``cert`` is its chain: its own certificate, then its bureau CA's)."""
        folder = self.party(name)
        try:
            return TlsFiles(
                root=self.ca_cert.read_bytes(),
                cert=(folder / "tls.crt").read_bytes(),
                key=(folder / "tls.key").read_bytes(),
            )
        except FileNotFoundError as exc:
            raise PkiError(f"missing TLS material for {name} under {self.root}") from exc

    def root_public_key(self) -> ec.EllipticCurvePublicKey:
        """The pinned root's public key."""
        try:
            cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        except FileNotFoundError as exc:
            raise PkiError(f"no root certificate at {self.ca_cert}") from exc
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise PkiError("root certificate does not hold a P-256 key")
        return key

    def signed_entries(self, bureaus: list[str] | None = None) -> list[bytes]:
        """Serialized SignedDirectoryEntry files, for every bureau or the named ones (users
        named among them are left to :meth:`signed_users`)."""
        codes = [c for c in bureaus if not is_user(c)] if bureaus else self.bureaus()
        return [self.entry_path(c).read_bytes() for c in codes if self.entry_path(c).exists()]


def write_file(path: Path, data: bytes, *, private: bool, atomic: bool = False) -> None:
    """Write ``data`` to ``path`` with mode 0600 (``private``) or 0644.

    Only public material is 0644: the root certificate, directory entries and the
    revocation list. Everything in a party's folder is private, its certificate included
    (docs/files.md). Missing folders are created 0700.

    ``atomic`` writes a temporary file beside ``path`` and renames it over ``path``, so a
    reader (the gateway serving directory entries) sees the old file or the new one,
    never half of one.
    """
    if not path.parent.exists():
        private_files.make_parents(path)
    mode = private_files.FILE_MODE if private else 0o644
    target = path.with_name(f".{path.name}.{os.getpid()}.tmp") if atomic else path
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        if atomic:
            target.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.chmod(target, mode)
    if atomic:
        os.replace(target, path)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ncbsim"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def issue_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    *,
    common_name: str,
    dns_name: str,
    server: bool,
    now: dt.datetime,
) -> tuple[bytes, bytes]:
    key = _crypto.ecdsa_generate()
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    sans: list[x509.GeneralName] = [x509.DNSName(dns_name)]
    if server:
        sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        _crypto.private_key_to_pem(key),
    )


def _root(now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _crypto.ecdsa_generate()
    name = _name("ncbsim root CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CERT_VALIDITY * 5)
        # path length 1: the root certifies each bureau's CA, which certifies its users
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def sign_entry(ca_key: ec.EllipticCurvePrivateKey, entry: directory_pb2.DirectoryEntry) -> bytes:
    """Serialize ``entry`` and sign it with the root key; returns a SignedDirectoryEntry."""
    body = entry.SerializeToString()
    signature = _crypto.ecdsa_sign(ca_key, DIRECTORY_CONTEXT + body)
    return directory_pb2.SignedDirectoryEntry(entry=body, signature=signature).SerializeToString()


def load_root(pki: PkiDir) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError("root key is not a P-256 key")
    return key, x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())


def add_bureau(pki: PkiDir, code: str, *, serial: int = 1, requester_only: bool = False) -> None:
    """Issue TLS certificate, E2E keys, a root-signed directory entry and the CA that
    certifies its users (:mod:`ncbsim.bureau_ca`) for one bureau.

    ``requester_only`` marks a bureau that sends queries but runs no node (the signed
    entry says so, so a query to ALL leaves it out without asking the gateway).
    Refuses a code that is not a country's (:func:`check_country_code`).
    """
    check_country_code(code)
    ca_key, ca_cert = load_root(pki)
    now = dt.datetime.now(dt.UTC)
    folder = pki.party(code)
    cert, key = issue_certificate(
        ca_key, ca_cert, common_name=code, dns_name=bureau_dns_name(code), server=True, now=now
    )
    write_file(folder / "tls.crt", cert, private=True)
    write_file(folder / "tls.key", key, private=True)
    ca_cert_path, ca_key_path = pki.bureau_ca(code)
    try:
        bureau_ca.check_root_allows_bureau_cas(ca_cert, pki.root)
    except PkiError:
        pass  # a PKI made before users: its bureaus get no CA (``user add`` says why)
    else:
        bureau_cert, bureau_key = bureau_ca.issue_bureau_ca(ca_key, ca_cert, code, now=now)
        write_file(ca_cert_path, bureau_cert, private=True)
        write_file(ca_key_path, bureau_key, private=True)
    signing = _crypto.ed25519_generate()
    encryption = _crypto.x25519_generate()
    write_file(folder / "signing.key", _crypto.private_key_to_pem(signing), private=True)
    write_file(folder / "encryption.key", _crypto.private_key_to_pem(encryption), private=True)
    entry = directory_pb2.DirectoryEntry(
        version=1,
        bureau=code,
        signing_key=bytes(signing.verify_key),
        encryption_key=_crypto.x25519_public_bytes(encryption),
        not_before_ms=int((now - dt.timedelta(minutes=5)).timestamp() * 1000),
        not_after_ms=int((now + ENTRY_VALIDITY).timestamp() * 1000),
        serial=serial,
        requester_only=requester_only,
    )
    write_file(pki.entry_path(code), sign_entry(ca_key, entry), private=False, atomic=True)


def init(directory: Path, bureaus: list[str], *, suite: str = DEFAULT_SUITE) -> PkiDir:
    """Create a complete PKI for a network of ``bureaus`` under ``directory``, whose
    query sessions use ``suite`` (:data:`SUITES`, recorded in ``DIR/suite``).

    Refuses, writing nothing, an unknown suite, an empty list, a repeated code and a code
    that is not a country's (:func:`check_country_code`: the same rule as scenario files).
    """
    suite_id(suite)
    if not bureaus:
        raise PkiError("no bureau codes given; a PKI needs at least one bureau, e.g. FR,DE,IT")
    for code in bureaus:
        check_bureau_code(code)
    unknown = [code for code in bureaus if not _is_country(code)]
    if len(unknown) == 1:
        raise PkiError(f"{unknown[0]} is not an ISO 3166 country code")
    if unknown:
        raise PkiError(f"{', '.join(unknown)} are not ISO 3166 country codes")
    repeated = sorted({code for code in bureaus if bureaus.count(code) > 1})
    if repeated:
        raise PkiError(f"{', '.join(repeated)} listed more than once")
    pki = PkiDir(directory)
    if pki.ca_key.exists():
        raise PkiError(f"{directory} already holds a PKI; choose an empty directory")
    if directory.exists() and any(directory.iterdir()):
        raise PkiError(f"{directory} is not empty; choose a new or empty directory")
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = _root(now)
    if not directory.exists():
        private_files.private_folder(directory)  # holds ca.key
    write_file(pki.ca_key, _crypto.private_key_to_pem(ca_key), private=True)
    write_file(pki.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
    for name, dns in (("gateway", GATEWAY_NAME), ("operator", OPERATOR_NAME)):
        cert, key = issue_certificate(
            ca_key, ca_cert, common_name=name, dns_name=dns, server=name == "gateway", now=now
        )
        write_file(pki.party(name) / "tls.crt", cert, private=True)
        write_file(pki.party(name) / "tls.key", key, private=True)
    write_file(pki.suite_file, f"{suite}\n".encode("ascii"), private=False)
    for code in bureaus:
        add_bureau(pki, code)
    return pki
