"""Revocation: the root's signed list of revoked bureau keys and certificates.

``ncbsim pki revoke`` appends to one list, ``DIR/revocations.list``, and signs it with
the root key. The list only grows, and each new one has a higher ``sequence``; a
party keeps the highest-sequence list it has verified and never goes back, so a
gateway that serves an old list cannot un-revoke anything a party already knows.

The list reaches parties two ways: the gateway serves it with every directory reply,
and a party that can read the PKI folder (every process of a simulated network can)
reads it from there, the way a CRL distribution point works. A gateway can therefore
delay a revocation for a party that only listens to it, never forge or roll one back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.message import DecodeError

from ncbsim import _crypto
from ncbsim.errors import DirectoryError
from ncbsim.v2 import directory_pb2

REVOCATION_CONTEXT = b"ncbsim/v1 revocation-list\x00"


@dataclass(frozen=True, slots=True)
class Revoked:
    """A verified revocation list, indexed for the checks made on every envelope."""

    sequence: int = 0
    signed: bytes = b""
    """The SignedRevocationList it came from, verbatim, to pass on."""
    serials: dict[str, int] = field(default_factory=dict)
    """Bureau → highest revoked directory-entry serial."""
    key_ids: frozenset[bytes] = frozenset()
    certs: dict[str, frozenset[bytes]] = field(default_factory=dict)
    """Bureau → SHA-256 fingerprints (of the DER encoding) of its revoked TLS certificates."""

    def entry_revoked(self, bureau: str, serial: int) -> bool:
        """Whether directory entry ``serial`` of ``bureau`` is revoked."""
        revoked = self.serials.get(bureau)
        return revoked is not None and serial <= revoked

    def key_revoked(self, key_id: bytes) -> bool:
        """Whether the E2E key with this id is revoked."""
        return key_id in self.key_ids

    def cert_revoked(self, bureau: str, fingerprint: bytes) -> bool:
        """Whether ``bureau``'s TLS certificate with this SHA-256 fingerprint is revoked."""
        return fingerprint in self.certs.get(bureau, ())

    def bureaus(self) -> list[str]:
        """Bureaus with at least one revocation, sorted."""
        return sorted(self.serials)


NONE = Revoked()
"""No revocations: what a party holds before it has seen a list."""


def sign_list(
    ca_key: ec.EllipticCurvePrivateKey, revocations: directory_pb2.RevocationList
) -> bytes:
    """Serialize and sign ``revocations`` with the root key; returns a SignedRevocationList."""
    body = revocations.SerializeToString()
    signature = _crypto.ecdsa_sign(ca_key, REVOCATION_CONTEXT + body)
    return directory_pb2.SignedRevocationList(list=body, signature=signature).SerializeToString()


def parse_list(root: ec.EllipticCurvePublicKey, signed: bytes) -> directory_pb2.RevocationList:
    """The RevocationList inside ``signed``, once its root signature has been checked."""
    try:
        outer = directory_pb2.SignedRevocationList.FromString(signed)
        _crypto.ecdsa_verify(root, REVOCATION_CONTEXT + outer.list, outer.signature)
        revocations = directory_pb2.RevocationList.FromString(outer.list)
    except (DecodeError, _crypto.CryptoFailure) as exc:
        raise DirectoryError("revocation list not signed by the pinned root") from exc
    if revocations.version != 1:
        raise DirectoryError("unsupported revocation list version")
    return revocations


def verify_list(root: ec.EllipticCurvePublicKey, signed: bytes) -> Revoked:
    """Check a SignedRevocationList against the root and index it."""
    revocations = parse_list(root, signed)
    serials: dict[str, int] = {}
    key_ids: set[bytes] = set()
    certs: dict[str, frozenset[bytes]] = {}
    for item in revocations.revocations:
        serials[item.bureau] = max(serials.get(item.bureau, 0), item.entry_serial)
        key_ids.update(item.key_ids)
        if item.tls_cert_sha256:
            certs[item.bureau] = certs.get(item.bureau, frozenset()) | set(item.tls_cert_sha256)
    return Revoked(
        sequence=revocations.sequence,
        signed=signed,
        serials=serials,
        key_ids=frozenset(key_ids),
        certs=certs,
    )
