"""PKI: private key files are private, certificates name their party and chain to the root."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from support import with_bureaus

from ncbsim import pki
from ncbsim.errors import PkiError

BUREAUS = ["FR", "DE"]
PRIVATE_FILES = {
    "ca.key",
    "gateway/tls.key",
    "operator/tls.key",
    *(
        f"bureaus/{code}/{name}"
        for code in BUREAUS
        for name in ("tls.key", "ca.key", "signing.key", "encryption.key")
    ),
}


@pytest.fixture(scope="module")
def pki_bureaus() -> list[str]:
    return BUREAUS


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _verify_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    """Check the certificate's ECDSA signature with the issuer's public key."""
    key = issuer.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert cert.signature_hash_algorithm is not None
    key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))


def _dns_names(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_private_key_file_is_0600(module_pki: pki.PkiDir) -> None:
    """ca.key, every tls.key, signing.key and encryption.key are written with mode 0600."""
    found = {p.relative_to(module_pki.root).as_posix() for p in module_pki.root.rglob("*.key")}
    assert found == PRIVATE_FILES
    modes = {name: oct(_mode(module_pki.root / name)) for name in sorted(found)}
    assert modes == dict.fromkeys(sorted(found), oct(0o600))


def test_private_keys_are_0600_under_permissive_umask(tmp_path: Path) -> None:
    """Key files stay 0600 even when the process umask would allow everyone to read them."""
    old = os.umask(0)
    try:
        network = pki.init(tmp_path / "pki", ["FR"])
    finally:
        os.umask(old)
    keys = list(network.root.rglob("*.key"))
    assert len(keys) == 7
    assert {_mode(path) for path in keys} == {0o600}


def test_bureau_certificate_names_the_bureau(module_pki: pki.PkiDir) -> None:
    """A bureau certificate has CN = code and DNS SAN xx.bureau.ncbsim, for client and server."""
    for code in BUREAUS:
        cert = _cert(module_pki.party(code) / "tls.crt")
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        assert [a.value for a in cn] == [code]
        assert _dns_names(cert) == [f"{code.lower()}.bureau.ncbsim"]
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(usages) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
        assert pki.bureau_from_dns_name(_dns_names(cert)[0]) == code


@pytest.mark.parametrize(
    ("party", "name", "server"),
    [("gateway", "gateway.ncbsim", True), ("operator", "operator.ncbsim", False)],
)
def test_gateway_and_operator_certificates(
    module_pki: pki.PkiDir, party: str, name: str, server: bool
) -> None:
    """The gateway is named gateway.ncbsim (client and server); the operator is client only."""
    cert = _cert(module_pki.party(party) / "tls.crt")
    assert _dns_names(cert) == [name]
    usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert (ExtendedKeyUsageOID.SERVER_AUTH in usages) is server
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usages


@pytest.mark.parametrize("party", ["gateway", "operator", *BUREAUS])
def test_certificate_chains_to_root(module_pki: pki.PkiDir, party: str) -> None:
    """Each certificate is signed by the root, is not a CA, and holds its tls.key's public key."""
    root = _cert(module_pki.ca_cert)
    cert = _cert(module_pki.party(party) / "tls.crt")
    assert cert.issuer == root.subject
    _verify_issued_by(cert, root)
    _verify_issued_by(root, root)
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key = serialization.load_pem_private_key(
        (module_pki.party(party) / "tls.key").read_bytes(), password=None
    )
    assert key.public_key() == cert.public_key()


def test_certificate_does_not_chain_to_another_root(module_pki: pki.PkiDir, tmp_path: Path) -> None:
    """A bureau certificate fails verification against a different root."""
    other = pki.init(tmp_path / "other", ["FR"])
    with pytest.raises(InvalidSignature):
        _verify_issued_by(_cert(module_pki.party("FR") / "tls.crt"), _cert(other.ca_cert))


def test_refuses_second_init_into_same_directory(tmp_path: Path) -> None:
    """init refuses a directory that already holds a PKI and leaves the root key untouched."""
    network = pki.init(tmp_path / "pki", ["FR"])
    before = network.ca_key.read_bytes()
    with pytest.raises(PkiError, match="already holds a PKI"):
        pki.init(tmp_path / "pki", ["DE"])
    assert network.ca_key.read_bytes() == before
    assert network.bureaus() == ["FR"]


@pytest.mark.parametrize(
    "bureaus",
    [
        ["fr"], ["FRA"], ["F"], ["F1"], [""], ["../FR"], ["gateway"], ["FR", "DE", "FR"],
        ["XX"], ["FR", "ZZ"], [],
    ],
)  # fmt: skip
def test_refuses_bad_bureau_codes(tmp_path: Path, bureaus: list[str]) -> None:
    """init refuses codes that are not two upper-case letters or no country's, a repeated
    code and an empty list, writing nothing."""
    with pytest.raises(PkiError):
        pki.init(tmp_path / "pki", bureaus)
    assert not (tmp_path / "pki").exists()


def test_add_bureau_refuses_a_code_no_country_has(module_pki: pki.PkiDir) -> None:
    """Adding a bureau to an existing PKI takes the same codes as init: XX gets nothing."""
    with pytest.raises(PkiError, match="XX is not an ISO 3166 country code"):
        pki.add_bureau(module_pki, "XX")
    assert not module_pki.party("XX").exists()
    assert "XX" not in module_pki.bureaus()


def test_require_bureau_names_what_the_pki_holds(module_pki: pki.PkiDir, tmp_path: Path) -> None:
    """A bureau the PKI has no keys for is refused naming the bureaus it holds; a missing
    PKI is refused as such."""
    assert module_pki.require_bureau("FR") == "FR"
    with pytest.raises(PkiError, match=r"ES is not in the PKI at .* \(it holds DE, FR\)"):
        module_pki.require_bureau("ES")
    with pytest.raises(PkiError, match="no PKI at"):
        pki.PkiDir(tmp_path / "none").require_bureau("FR")


@pytest.mark.parametrize(
    "name",
    ["gateway.ncbsim", "operator.ncbsim", "fra.bureau.ncbsim", "fr.bureau.ncbsim.evil", "x"],
)
def test_non_bureau_dns_names_name_no_bureau(name: str) -> None:
    """Only a xx.bureau.ncbsim name maps back to a bureau code."""
    assert pki.bureau_from_dns_name(name) is None


def test_init_refuses_a_non_empty_directory_without_touching_it(tmp_path: Path) -> None:
    """pki init never writes into (or changes the mode of) a directory holding other files."""
    (tmp_path / "theirs.txt").write_text("x")
    mode = tmp_path.stat().st_mode
    with pytest.raises(PkiError, match="not empty"):
        pki.init(tmp_path, ["FR"])
    assert tmp_path.stat().st_mode == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["theirs.txt"]


@with_bureaus("FR")
def test_directory_entry_is_replaced_atomically(pki_dir: pki.PkiDir) -> None:
    """Reissuing an entry renames a complete new file over the old one and leaves no temp file."""
    path = pki_dir.entry_path("FR")
    before = path.stat().st_ino
    pki.add_bureau(pki_dir, "FR", serial=2)
    assert path.stat().st_ino != before  # a new file took the name, not a rewrite in place
    assert _mode(path) == 0o644
    assert sorted(p.name for p in pki_dir.directory.iterdir()) == ["FR.entry"]
    assert pki_dir.signed_entries() == [path.read_bytes()]


@pytest.mark.parametrize("suite", ["classic", "hybrid"])
def test_init_records_the_network_suite(tmp_path: Path, suite: str) -> None:
    """`pki init --suite` writes the suite's name to DIR/suite; PkiDir.suite reads its id."""
    made = pki.init(tmp_path / "p", ["FR"], suite=suite)
    assert (tmp_path / "p" / "suite").read_text() == f"{suite}\n"
    assert made.suite == pki.SUITES[suite]
    assert made.suite_name == suite


def test_a_pki_without_a_suite_file_is_classic(pki_dir: pki.PkiDir) -> None:
    """A PKI made before sessions (no suite file) keeps working, as a classic network."""
    pki_dir.suite_file.unlink()
    assert pki_dir.suite == pki.SUITES["classic"] == 1


def test_an_unknown_suite_is_refused_and_nothing_written(tmp_path: Path) -> None:
    """An unknown suite name is refused before anything is written; so is a suite file
    that names none."""
    with pytest.raises(PkiError, match="unknown suite 'quantum'; choose classic or hybrid"):
        pki.init(tmp_path / "p", ["FR"], suite="quantum")
    assert not (tmp_path / "p").exists()
    made = pki.init(tmp_path / "q", ["FR"])
    made.suite_file.write_text("rot13\n")
    with pytest.raises(PkiError, match="unknown suite 'rot13'"):
        _ = made.suite


def test_the_pki_suites_are_the_session_suites() -> None:
    """The suites `pki init` offers are those of the session protocol, with the same ids."""
    from ncbsim import session

    assert pki.SUITES == session.SUITES
    assert pki.SUITES[pki.DEFAULT_SUITE] == session.DEFAULT_SUITE
