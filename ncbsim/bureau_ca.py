"""A bureau's own certificate authority: issued by the root, it certifies the bureau's users.

``pki.add_bureau`` calls :func:`issue_bureau_ca`; ``ncbsim user add`` calls
:func:`issue_user_certificate`. The bureau CA is an X.509 CA under the root (which has
``pathLenConstraint`` 1 so that it may certify one level of CAs) with ``pathLenConstraint``
0, ``keyCertSign`` and a critical NameConstraints extension that permits only the DNS
subtree ``bu.user.ncbsim`` (``bu`` its code in lower case) and excludes every IP address.
The TLS handshake itself (BoringSSL in gRPC) then refuses a certificate FR's CA minted for
a German user, for a bureau, for the gateway or for an address: no ncbsim code has to
remember to check. See docs/users.md.
"""

from __future__ import annotations

import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ncbsim import _crypto
from ncbsim.errors import PkiError
from ncbsim.principal import principal, user_dns_name, user_namespace

CA_VALIDITY = dt.timedelta(days=365 * 2)
USER_CERT_VALIDITY = dt.timedelta(days=365)

__all__ = [
    "CA_VALIDITY",
    "USER_CERT_VALIDITY",
    "certificate_sha256",
    "check_root_allows_bureau_cas",
    "issue_bureau_ca",
    "issue_user_certificate",
    "load_bureau_ca",
]


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ncbsim"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        key_encipherment=False,
        content_commitment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def check_root_allows_bureau_cas(root_cert: x509.Certificate, where: object) -> None:
    """PkiError unless the root may certify a CA that certifies users (pathlen >= 1).

    A PKI made before users has a root with ``pathLenConstraint`` 0: a certificate a
    bureau CA under it issued would fail every handshake, so say so up front."""
    constraints = root_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    if constraints.path_length is not None and constraints.path_length < 1:
        raise PkiError(
            f"the PKI at {where} predates users (its root cannot certify a bureau CA); "
            "make a new one with `ncbsim pki init`"
        )


def issue_bureau_ca(
    root_key: ec.EllipticCurvePrivateKey,
    root_cert: x509.Certificate,
    code: str,
    *,
    now: dt.datetime,
) -> tuple[bytes, bytes]:
    """PEM certificate and key of bureau ``code``'s CA, signed by the root."""
    key = _crypto.ecdsa_generate()
    constraints = x509.NameConstraints(
        permitted_subtrees=[x509.DNSName(user_namespace(code))],
        excluded_subtrees=[
            x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")),
            x509.IPAddress(ipaddress.ip_network("::/0")),
        ],
    )
    not_after = min(now + CA_VALIDITY, root_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"ncbsim {code} bureau CA"))
        .issuer_name(root_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(constraints, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _crypto.private_key_to_pem(key)


def load_bureau_ca(
    cert_pem: bytes, key_pem: bytes
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The bureau CA's key and certificate from their PEM files."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise PkiError("the bureau CA's certificate or key is malformed") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError("the bureau CA key is not a P-256 key")
    return key, cert


def issue_user_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    bureau: str,
    name: str,
    *,
    now: dt.datetime,
) -> tuple[bytes, bytes]:
    """The PEM chain (the user's certificate, then its bureau CA's: what gRPC sends) and
    the PEM key of user ``name`` of ``bureau``: client authentication only, DNS SAN
    :func:`~ncbsim.principal.user_dns_name`, no address (users serve nothing)."""
    key = _crypto.ecdsa_generate()
    not_after = min(now + USER_CERT_VALIDITY, ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(principal(bureau, name)))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(user_dns_name(bureau, name))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(
        serialization.Encoding.PEM
    )
    return chain, _crypto.private_key_to_pem(key)


def certificate_sha256(pem: bytes) -> bytes:
    """SHA-256 of the DER of the first certificate in ``pem`` (a user's ``tls.crt`` starts
    with its own certificate): what its entry binds and the gateway compares."""
    cert = x509.load_pem_x509_certificates(pem)[0]
    return cert.fingerprint(hashes.SHA256())
