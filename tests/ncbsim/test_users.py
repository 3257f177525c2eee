"""Users under a bureau: the bureau CA, issued identities, signed entries, revocations, and
the directory that serves them (docs/users.md)."""

from __future__ import annotations

import asyncio
import datetime as dt
import stat
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import verification

from ncbsim import _crypto, bureau_ca, pki, rekey, users
from ncbsim.directory import Directory
from ncbsim.errors import ConfigError, DirectoryError, PkiError
from ncbsim.peers import Peers
from ncbsim.v2 import directory_pb2, envelope_pb2, gateway_pb2, users_pb2

BORDER = "FR/cdg-border-12"


def _now() -> int:
    return int(time.time() * 1000)


@pytest.fixture(scope="module")
def pki_bureaus() -> list[str]:
    return ["FR", "DE"]


def _forge(pki_dir: pki.PkiDir, signer: str, entry: users_pb2.UserEntry) -> bytes:
    """An entry signed with ``signer``'s directory signing key, whatever it says."""
    key = _crypto.signing_key_from_pem((pki_dir.party(signer) / "signing.key").read_bytes())
    entry.issuer_key_id = _crypto.key_id(bytes(key.verify_key))
    body = entry.SerializeToString()
    signature = _crypto.ed25519_sign(key, users.ENTRY_CONTEXT + body)
    return users_pb2.SignedUserEntry(entry=body, signature=signature).SerializeToString()


def _entry(signed: bytes) -> users_pb2.UserEntry:
    return users_pb2.UserEntry.FromString(users_pb2.SignedUserEntry.FromString(signed).entry)


def test_role_defaults_are_the_documented_ones() -> None:
    """Each role's default rights are those docs/users.md lists."""
    border = users.Rights.from_proto(users.role_rights("border"))
    assert border.query_kinds == {"document", "vehicle", "fingerprint", "face"}
    assert border.full_records  # it must be able to confirm a hit before acting on it
    assert border.send_kinds == frozenset()
    assert border.receive_kinds == {envelope_pb2.MESSAGE_KIND_DIFFUSION}
    assert (border.rate_per_s, border.daily_limit) == (5, 5_000)
    investigator = users.Rights.from_proto(users.role_rights("investigator"))
    assert investigator.query_kinds == set(users.QUERY_KINDS)
    assert investigator.full_records
    assert investigator.may_send(envelope_pb2.MESSAGE_KIND_MESSAGE)
    assert investigator.may_receive(envelope_pb2.MESSAGE_KIND_NOTICE)
    assert (investigator.rate_per_s, investigator.daily_limit) == (10, 20_000)
    partner = users.Rights.from_proto(users.role_rights("partner"))
    assert not partner.query_kinds
    assert not partner.may_query("document")
    assert partner.may_send(envelope_pb2.MESSAGE_KIND_MESSAGE)
    assert not partner.may_send(envelope_pb2.MESSAGE_KIND_DIFFUSION)
    assert (partner.rate_per_s, partner.daily_limit) == (1, 500)
    with pytest.raises(ConfigError, match="choose from border, investigator, partner"):
        users.role_rights("chief")


def test_rights_round_trip_through_the_wire_form() -> None:
    """Rights survive to_proto/from_proto unchanged, and the same rights give the same bytes."""
    rights = users.Rights(
        query_kinds=frozenset({"face", "document"}),
        full_records=True,
        receive_kinds=frozenset(
            {envelope_pb2.MESSAGE_KIND_NOTICE, envelope_pb2.MESSAGE_KIND_DIFFUSION}
        ),
        send_kinds=frozenset({envelope_pb2.MESSAGE_KIND_MESSAGE}),
        rate_per_s=7,
        daily_limit=0,
    )
    wire = rights.to_proto()
    assert users.Rights.from_proto(wire) == rights
    assert list(wire.query_kinds) == ["document", "face"]
    assert (
        users.Rights.from_proto(users_pb2.UserRights.FromString(wire.SerializeToString())) == rights
    )
    assert rights.describe()["receive"] == ["diffusion", "notice"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"query_kinds": frozenset({"dna"})}, "unknown query kind dna"),
        ({"send_kinds": frozenset({envelope_pb2.MESSAGE_KIND_QUERY_REQUEST})}, "not a one-way"),
        ({"rate_per_s": 0}, "rate must be"),
    ],
)
def test_rights_refuse_what_no_party_understands(change: dict[str, object], message: str) -> None:
    """Rights naming an unknown query kind, a two-way kind or no rate are refused."""
    fields: dict[str, object] = {
        "query_kinds": frozenset(),
        "full_records": False,
        "receive_kinds": frozenset(),
        "send_kinds": frozenset(),
        "rate_per_s": 1,
        "daily_limit": 0,
        **change,
    }
    with pytest.raises(ConfigError, match=message):
        users.Rights(**fields)  # type: ignore[arg-type]


def test_kind_names_read_as_the_cli_writes_them() -> None:
    """The CLI's kind names map to the one-way kinds, and an unknown one says the choices."""
    assert users.kind_from_name("notice-request") == envelope_pb2.MESSAGE_KIND_NOTICE_REQUEST
    assert users.kind_from_name("Diffusion") == envelope_pb2.MESSAGE_KIND_DIFFUSION
    with pytest.raises(ConfigError, match="choose from diffusion"):
        users.kind_from_name("query_request")


def test_root_and_bureau_ca_carry_the_constraints(module_pki: pki.PkiDir) -> None:
    """The root may certify one level of CAs; FR's CA certifies only fr.user.ncbsim names."""
    root = x509.load_pem_x509_certificate(module_pki.ca_cert.read_bytes())
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 1
    cert_path, key_path = module_pki.bureau_ca("FR")
    ca = x509.load_pem_x509_certificate(cert_path.read_bytes())
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca
    assert basic.path_length == 0
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert constraints.value.permitted_subtrees == [x509.DNSName("fr.user.ncbsim")]
    assert ca.issuer == root.subject
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def _client_verifier(pki_dir: pki.PkiDir) -> verification.ClientVerifier:
    store = verification.Store([x509.load_pem_x509_certificate(pki_dir.ca_cert.read_bytes())])
    return verification.PolicyBuilder().store(store).build_client_verifier()


def test_user_certificate_chains_to_the_root_through_its_bureau(pki_dir: pki.PkiDir) -> None:
    """tls.crt is the user's certificate then FR's CA, and it verifies as a client
    certificate for x.fr.user.ncbsim under the root."""
    users.issue_user(pki_dir, "FR", "cdg-border-12", "border", now_ms=_now())
    tls = pki_dir.tls(BORDER)
    leaf, ca = x509.load_pem_x509_certificates(tls.cert)
    assert ca == x509.load_pem_x509_certificate(pki_dir.bureau_ca("FR")[0].read_bytes())
    verified = _client_verifier(pki_dir).verify(leaf, [ca])
    assert verified.subjects is not None
    assert x509.DNSName("cdg-border-12.fr.user.ncbsim") in verified.subjects


def test_bureau_ca_cannot_mint_a_user_of_another_bureau(pki_dir: pki.PkiDir) -> None:
    """A certificate FR's CA issues for DE/x (or for DE's bureau name) fails verification:
    the name constraint, not ncbsim code, refuses it."""
    cert_path, key_path = pki_dir.bureau_ca("FR")
    ca_key, ca_cert = bureau_ca.load_bureau_ca(cert_path.read_bytes(), key_path.read_bytes())
    now = dt.datetime.now(dt.UTC)
    chain, _ = bureau_ca.issue_user_certificate(ca_key, ca_cert, "DE", "mallory", now=now)
    leaf = x509.load_pem_x509_certificates(chain)[0]
    with pytest.raises(verification.VerificationError):
        _client_verifier(pki_dir).verify(leaf, [ca_cert])
    bureau_cert, _ = pki.issue_certificate(
        ca_key, ca_cert, common_name="DE", dns_name="de.bureau.ncbsim", server=False, now=now
    )
    with pytest.raises(verification.VerificationError):
        _client_verifier(pki_dir).verify(x509.load_pem_x509_certificate(bureau_cert), [ca_cert])


def test_issue_user_writes_private_keys_and_a_public_entry(pki_dir: pki.PkiDir) -> None:
    """Keys and certificate are 0600 under bureaus/FR/users/NAME; the entry is public and
    binds the certificate's SHA-256 and the user's keys."""
    user = users.issue_user(pki_dir, "FR", "cdg-border-12", "border", now_ms=_now())
    folder = pki_dir.party(BORDER)
    assert folder == pki_dir.root / "bureaus" / "FR" / "users" / "cdg-border-12"
    for name in ("tls.crt", "tls.key", "signing.key", "encryption.key"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    entry_path = pki_dir.user_entry_path(BORDER)
    assert entry_path == pki_dir.root / "users" / "FR" / "cdg-border-12.entry"
    assert stat.S_IMODE(entry_path.stat().st_mode) == 0o644
    leaf = x509.load_pem_x509_certificates(pki_dir.tls(BORDER).cert)[0]
    assert user.tls_cert_sha256 == leaf.fingerprint(hashes.SHA256())
    signing = _crypto.signing_key_from_pem((folder / "signing.key").read_bytes())
    assert user.signing_key_id == _crypto.key_id(bytes(signing.verify_key))
    assert pki_dir.users() == [BORDER]
    assert pki_dir.users("DE") == []
    peer = Directory.from_pki(pki_dir).get("FR")
    assert users.verify_user(peer, entry_path.read_bytes(), now_ms=_now()) == user


def test_entry_signed_by_another_bureau_is_refused(pki_dir: pki.PkiDir) -> None:
    """DE cannot vouch for an FR user, and FR cannot issue a user under DE."""
    users.issue_user(pki_dir, "FR", "cdg-border-12", "border", now_ms=_now())
    directory = Directory.from_pki(pki_dir)
    signed = pki_dir.user_entry_path(BORDER).read_bytes()
    with pytest.raises(DirectoryError, match="not DE's to sign"):
        users.verify_user(directory.get("DE"), signed, now_ms=_now())
    by_de = _forge(pki_dir, "DE", _entry(signed))
    with pytest.raises(DirectoryError, match="not signed by FR"):
        users.verify_user(directory.get("FR"), by_de, now_ms=_now())
    under_de = _entry(signed)
    under_de.bureau = "DE"
    forged = _forge(pki_dir, "FR", under_de)
    with pytest.raises(DirectoryError, match="not signed by DE"):
        users.verify_user(directory.get("DE"), forged, now_ms=_now())
    with pytest.raises(DirectoryError, match="not FR's to sign"):
        users.verify_user(directory.get("FR"), forged, now_ms=_now())
    with pytest.raises(DirectoryError):
        directory.add_users([forged])
    assert "DE/cdg-border-12" not in directory


def test_tampered_or_expired_entry_is_refused(pki_dir: pki.PkiDir) -> None:
    """An entry whose rights were widened after signing, or outside its validity, is refused."""
    users.issue_user(pki_dir, "FR", "cdg-border-12", "border", now_ms=_now())
    peer = Directory.from_pki(pki_dir).get("FR")
    signed = pki_dir.user_entry_path(BORDER).read_bytes()
    outer = users_pb2.SignedUserEntry.FromString(signed)
    entry = _entry(signed)
    entry.rights.query_kinds.append("person")  # a border officer searching names
    outer.entry = entry.SerializeToString()
    with pytest.raises(DirectoryError, match="not signed by FR"):
        users.verify_user(peer, outer.SerializeToString(), now_ms=_now())
    late = _entry(signed).not_after_ms
    with pytest.raises(DirectoryError, match="outside its validity"):
        users.verify_user(peer, signed, now_ms=late)
    with pytest.raises(DirectoryError, match="outside its validity"):
        users.verify_user(peer, signed, now_ms=_entry(signed).not_before_ms - 1)


def test_directory_serves_a_user_as_a_peer_with_rights(pki_dir: pki.PkiDir) -> None:
    """get("FR/x") is a Peer named by the principal with the user's keys and rights; the
    bureau itself still has no rights, and users stay out of bureaus()."""
    user = users.issue_user(pki_dir, "FR", "lyon-inv-3", "investigator", now_ms=_now())
    directory = Directory.from_pki(pki_dir)
    peer = directory.get("FR/lyon-inv-3")
    assert peer.bureau == "FR/lyon-inv-3"
    assert peer.rights == user.rights
    assert peer.signing_key_id == user.signing_key_id
    assert not peer.requester_only
    assert directory.get("FR").rights is None
    assert directory.bureaus() == ["DE", "FR"]
    assert directory.users() == ["FR/lyon-inv-3"]
    with pytest.raises(DirectoryError, match="no verified directory entry for FR/nobody"):
        directory.get("FR/nobody")


def test_revoking_a_user_leaves_its_bureau_and_colleagues(pki_dir: pki.PkiDir) -> None:
    """After `user revoke`, the user is refused; FR and FR's other users still resolve; a
    revocation another bureau signs is refused."""
    users.issue_user(pki_dir, "FR", "cdg-border-12", "border", now_ms=_now())
    users.issue_user(pki_dir, "FR", "lyon-inv-3", "investigator", now_ms=_now())
    held = Directory.from_pki(pki_dir)
    serial = users.revoke_user(pki_dir, "FR", "cdg-border-12", now_ms=_now())
    assert serial == 1
    signed = pki_dir.user_revocation_path(BORDER).read_bytes()
    with pytest.raises(DirectoryError, match="not DE's"):
        users.verify_user_revocation(held.get("DE"), signed)
    assert users.verify_user_revocation(held.get("FR"), signed) == (BORDER, 1)
    held.add_users([], [signed])  # a running party learns of it
    for directory in (held, Directory.from_pki(pki_dir)):
        with pytest.raises(DirectoryError, match="revoked"):
            directory.get(BORDER)
        assert directory.get("FR").bureau == "FR"
        assert directory.get("FR/lyon-inv-3").bureau == "FR/lyon-inv-3"
    with pytest.raises(DirectoryError, match="revoked"):
        held.add_users([pki_dir.user_entry_path(BORDER).read_bytes()])
    listing = {
        item.principal: item.state for item in users.list_users(pki_dir, held.get, now_ms=_now())
    }
    assert listing == {BORDER: "revoked", "FR/lyon-inv-3": "active"}


def test_revoking_the_bureau_takes_its_users(pki_dir: pki.PkiDir) -> None:
    """Once the root revokes FR, no FR user resolves, from disk or in a running directory."""
    users.issue_user(pki_dir, "FR", "cdg-border-12", "border", now_ms=_now())
    held = Directory.from_pki(pki_dir)
    rekey.revoke(pki_dir, "FR")
    revocations = pki_dir.revocation_list()
    assert revocations is not None
    held.apply_revocations(revocations)
    for directory in (held, Directory.from_pki(pki_dir)):
        with pytest.raises(DirectoryError, match=r"(the bureau of|entry for) FR/cdg-border-12"):
            directory.get(BORDER)


def test_re_adding_a_user_bumps_its_serial(pki_dir: pki.PkiDir) -> None:
    """A second `user add` of a name issues serial 2 with new keys; the old entry never
    displaces it, and revoking serial 1 before the re-add leaves serial 2 valid."""
    first = users.issue_user(pki_dir, "FR", "cdg-border-12", "border", now_ms=_now())
    old_entry = pki_dir.user_entry_path(BORDER).read_bytes()
    users.revoke_user(pki_dir, "FR", "cdg-border-12", now_ms=_now())
    second = users.issue_user(pki_dir, "FR", "cdg-border-12", "investigator", now_ms=_now())
    assert (first.serial, second.serial) == (1, 2)
    assert second.signing_key_id != first.signing_key_id
    directory = Directory.from_pki(pki_dir)
    assert directory.get(BORDER).serial == 2
    with pytest.raises(DirectoryError, match="revoked"):
        directory.add_users([old_entry])
    assert directory.get(BORDER).rights == second.rights
    third = users.issue_user(pki_dir, "FR", "cdg-border-12", "border", now_ms=_now())
    assert third.serial == 3


def test_revoking_an_unknown_user_says_so(pki_dir: pki.PkiDir) -> None:
    """`user revoke` of a name FR never issued is a PkiError pointing at `user list`."""
    with pytest.raises(PkiError, match=r"FR/ghost is not a user .*ncbsim user list"):
        users.revoke_user(pki_dir, "FR", "ghost", now_ms=_now())


def test_a_pki_from_before_users_cannot_add_one(pki_dir: pki.PkiDir) -> None:
    """A root with path length 0 (a PKI made before users) makes `user add` fail with one
    line saying to make a new PKI."""
    ca_key, _ = pki.load_root(pki_dir)
    old = x509.load_pem_x509_certificate(pki_dir.ca_cert.read_bytes())
    builder = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(old.subject)
        .public_key(old.public_key())  # type: ignore[arg-type]
        .serial_number(old.serial_number)
        .not_valid_before(old.not_valid_before_utc)
        .not_valid_after(old.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    )
    cert = builder.sign(ca_key, hashes.SHA256())
    pki_dir.ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(PkiError, match=r"predates users.*ncbsim pki init") as caught:
        users.issue_user(pki_dir, "FR", "cdg-border-12", "border", now_ms=_now())
    assert "\n" not in str(caught.value)
    pki_dir.bureau_ca("DE")[0].unlink()
    pki_dir.ca_cert.write_bytes(old.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(PkiError, match="DE has no CA for its users"):
        users.issue_user(pki_dir, "DE", "x", "border", now_ms=_now())


def test_party_and_tls_name_a_users_folder(module_pki: pki.PkiDir) -> None:
    """PkiDir knows a user's folder, entry and revocation paths; bad names are refused."""
    assert module_pki.party("DE/bka-7") == module_pki.root / "bureaus" / "DE" / "users" / "bka-7"
    assert module_pki.user_revocation_path("DE/bka-7").name == "bka-7.revoked"
    with pytest.raises(PkiError):
        module_pki.party("DE/Bad_Name")
    with pytest.raises(PkiError, match="not a user"):
        module_pki.user_entry_path("DE")
    with pytest.raises(PkiError, match="missing TLS material for DE/bka-7"):
        module_pki.tls("DE/bka-7")


class _PkiGateway:
    """What Peers asks of the gateway (GetDirectory), served from the PKI folder as the
    real gateway does: entries, users asked for (every one if none), user revocations."""

    def __init__(self, pki_dir: pki.PkiDir) -> None:
        self.pki_dir = pki_dir
        self.asked: list[list[str]] = []

    async def GetDirectory(  # noqa: N802 - gRPC method name
        self, request: gateway_pb2.GetDirectoryRequest, timeout: float
    ) -> gateway_pb2.GetDirectoryResponse:
        asked = list(request.bureaus)
        self.asked.append(asked)
        named = [a for a in asked if "/" in a]
        return gateway_pb2.GetDirectoryResponse(
            entries=[
                directory_pb2.SignedDirectoryEntry.FromString(e)
                for e in self.pki_dir.signed_entries(asked or None)
            ],
            users=[
                users_pb2.SignedUserEntry.FromString(u)
                for u in self.pki_dir.signed_users(named if asked else None)
            ],
            user_revocations=[
                users_pb2.SignedUserRevocation.FromString(r)
                for r in self.pki_dir.signed_user_revocations()
            ],
        )


def test_peers_resolve_a_user_and_its_bureau(pki_dir: pki.PkiDir) -> None:
    """Resolving FR/x with nothing held fetches the user and FR's entry in one call; after
    FR revokes it, the next fetch brings the revocation and the user is refused."""
    users.issue_user(pki_dir, "FR", "cdg-border-12", "border", now_ms=_now())
    gateway = _PkiGateway(pki_dir)
    peers = Peers(Directory(pki_dir.root_public_key()), gateway)  # type: ignore[arg-type]
    (peer,) = asyncio.run(peers.resolve([BORDER]))
    assert peer.bureau == BORDER
    assert peer.rights is not None
    assert gateway.asked == [[BORDER, "FR"]]
    users.revoke_user(pki_dir, "FR", "cdg-border-12", now_ms=_now())
    asyncio.run(peers.load_all())
    with pytest.raises(DirectoryError, match="revoked"):
        peers.get(BORDER)
    assert peers.get("FR").bureau == "FR"


def test_a_rotation_carries_the_bureaus_users_over(pki_dir: pki.PkiDir) -> None:
    """`pki rotate` signs FR's users again with its new key (same keys, same rights, the
    next serial), so they outlive the old key's grace period; a revoked user stays so."""
    kept = users.issue_user(pki_dir, "FR", "cdg-border-12", "border", now_ms=_now())
    users.issue_user(pki_dir, "FR", "gone-1", "partner", now_ms=_now())
    users.revoke_user(pki_dir, "FR", "gone-1", now_ms=_now())
    rekey.rotate(pki_dir, "FR", grace_ms=0)  # the old key is refused at once

    directory = Directory.from_pki(pki_dir)
    peer = directory.get(BORDER)
    assert (peer.signing_key_id, peer.encryption_key_id) == (
        kept.signing_key_id,
        kept.encryption_key_id,
    )
    assert peer.rights == kept.rights
    assert directory.user(BORDER).serial == kept.serial + 1
    with pytest.raises(DirectoryError, match="revoked"):
        directory.get("FR/gone-1")
    revoked = pki_dir.user_revocation_path("FR/gone-1").read_bytes()
    assert users.verify_user_revocation(directory.get("FR"), revoked) == ("FR/gone-1", 1)
