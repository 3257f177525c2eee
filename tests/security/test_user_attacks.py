"""A rogue user: a bureau's user holding a valid identity, acting beyond it (docs/users.md,
docs/threat-model.md "A rogue user").

Real processes: the gateway and the FR, DE, IT and NL nodes of the small scenario, over
real mTLS; the users are issued into the running network's PKI by their bureaus, as
``ncbsim user add`` does, and call with their own certificates and keys. Each attack is
refused and audited where the right is enforced (the gateway for what it sees, the
owner's node for what only it sees), gives nothing away in its detail, and leaves the
bureau and its other users working.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

import pytest
from support import document_query, fetch_query, person_query, uncontrolled_documents
from user_net import (
    Code,
    Result,
    admitted,
    as_principal,
    ask,
    assert_discreet,
    gateway_call,
    gateway_rows,
    handle_as_gateway,
    identity,
    issue,
    node_rows,
    now_ms,
    post_as,
    post_envelope,
    sealed_query,
    secrets_of,
    still_served,
    wait_for,
    wait_gateway_rows,
    wait_node_rows,
)

from ncbsim import _crypto, bureau_ca, envelope, users
from ncbsim.client import Outcome
from ncbsim.gateway.audit import AuditRecord
from ncbsim.identity import Identity
from ncbsim.node.records import NO_CONTROL
from ncbsim.node.store import Document, Person, RecordStore
from ncbsim.pki import PkiDir, TlsFiles
from ncbsim.simulations.network import Network
from ncbsim.v2 import envelope_pb2, gateway_pb2, users_pb2
from ncbsim.workdir import Workdir

pytestmark = pytest.mark.integration

BORDER = "FR/pax-border-1"
INVESTIGATOR = "FR/inv-1"
PARTNER = "FR/douane-1"
DE_INVESTIGATOR = "DE/bka-1"
DOOMED = "FR/pax-border-9"
CREW = {BORDER: "border", INVESTIGATOR: "investigator", DE_INVESTIGATOR: "investigator"}


def _rights(role: str, **changes: object) -> users.Rights:
    """``role``'s default rights, with a rate high enough for a test's many calls (the
    rights attacked here are not rates) and ``changes``."""
    rights = users.Rights.from_proto(users.role_rights(role))
    return dataclasses.replace(rights, rate_per_s=100, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def crew(network: Network) -> Network:
    """The network with FR's border officer (hits only: ``user add --hit-only``),
    investigator and partner (whose bureau lets it receive diffusions only) and DE's
    investigator, each admitted by the gateway."""
    for user, role in CREW.items():
        hit_only = {"full_records": False} if user == BORDER else {}
        issue(network, user, role, rights=_rights(role, **hit_only))
    receive = frozenset({envelope.DIFFUSION})
    issue(network, PARTNER, "partner", rights=_rights("partner", receive_kinds=receive))
    for user in (*CREW, PARTNER):
        wait_for(f"the gateway to admit {user}", lambda user=user: admitted(network, user))
    return network


@pytest.fixture(scope="module")
def de_document(network: Network) -> Document:
    """One of DE's documents with no owner control on it."""
    store = RecordStore(Workdir(network.workdir).bureau("DE").records)
    try:
        return uncontrolled_documents(store, 1, sample=40, seed=11)[0]
    finally:
        store.close()


def _refused_at_gateway(
    network: Network, message_id: str, peer: str, status: str
) -> list[AuditRecord]:
    rows = wait_gateway_rows(network, lambda r: r.message_id == message_id)
    assert [(r.peer, r.outcome, r.status) for r in rows] == [(peer, "refused", status)]
    return rows


def _bureau_and_colleagues_work(network: Network, document: Document, *others: str) -> None:
    """FR still gets DE's answer, and FR's (and DE's) other users are still let in."""
    assert ask(network, "FR", "DE", document_query(document.number, "DE")).matches
    still_served(network, others)


# ------------------------------------------------------------------ rights at the gateway


@pytest.mark.attack(
    "a partner user (its bureau granted it no query kinds) sends a query",
    adversary="rogue user",
    expect=(
        "PERMISSION_DENIED at the gateway + gateway audit row (refused); the detail names no "
        "record, no key; FR and its other users unaffected"
    ),
)
def test_a_partner_may_not_query(crew: Network, de_document: Document) -> None:
    """FR/douane-1's query is refused by the gateway before any node sees it."""
    sealed = sealed_query(
        crew, identity(crew, PARTNER), "DE", document_query(de_document.number, "DE")
    )
    done = as_principal(crew, PARTNER, "Query", gateway_pb2.QueryRequest(envelope=sealed.envelope))
    assert done.code == Code.PERMISSION_DENIED
    _refused_at_gateway(crew, sealed.header.message_hex, PARTNER, "PERMISSION_DENIED")
    assert_discreet(done.detail, de_document.number, de_document.ref, *secrets_of(crew, PARTNER))
    _bureau_and_colleagues_work(crew, de_document, INVESTIGATOR, BORDER, PARTNER)
    assert post_as(crew, PARTNER, "DE", envelope.MESSAGE).code == Code.OK  # within its rights


@pytest.mark.attack(
    "a user posts a kind its bureau does not let it send (a border officer's message, a partner's "
    "diffusion)",
    adversary="rogue user",
    expect=(
        "PERMISSION_DENIED at the gateway + gateway audit row (refused); nothing delivered; "
        "the user's other rights intact"
    ),
)
@pytest.mark.parametrize(
    ("sender", "kind"), [(BORDER, envelope.MESSAGE), (PARTNER, envelope.DIFFUSION)]
)
def test_a_user_may_not_post_a_kind_it_may_not_send(
    crew: Network, de_document: Document, sender: str, kind: int
) -> None:
    """The copy is refused whole; the sender is still admitted, its bureau still served."""
    item = post_envelope(crew, identity(crew, sender), "DE", kind)
    done = as_principal(crew, sender, "Post", gateway_pb2.PostRequest(envelopes=[item]))
    assert done.code == Code.PERMISSION_DENIED
    message_id = envelope.unverified_header(item).message_hex
    rows = _refused_at_gateway(crew, message_id, sender, "PERMISSION_DENIED")
    assert rows[0].rpc == "Post"
    assert_discreet(done.detail, *secrets_of(crew, sender))
    assert not gateway_rows(crew, lambda r: r.message_id == message_id and r.outcome != "refused")
    _bureau_and_colleagues_work(crew, de_document, sender, INVESTIGATOR)


@pytest.mark.attack(
    "a user sends another bureau's user (a partner) a copy of a kind that user's bureau does not "
    "let it receive",
    adversary="rogue user",
    expect=(
        "PERMISSION_DENIED at the gateway + gateway audit row naming the recipient; a kind it "
        "may receive still gets through"
    ),
)
def test_a_copy_to_a_user_of_a_kind_it_may_not_receive(
    crew: Network, de_document: Document
) -> None:
    """DE/bka-1 may send messages, but FR/douane-1 receives diffusions only."""
    item = post_envelope(crew, identity(crew, DE_INVESTIGATOR), PARTNER, envelope.MESSAGE)
    done = as_principal(crew, DE_INVESTIGATOR, "Post", gateway_pb2.PostRequest(envelopes=[item]))
    assert done.code == Code.PERMISSION_DENIED
    rows = _refused_at_gateway(
        crew, envelope.unverified_header(item).message_hex, DE_INVESTIGATOR, "PERMISSION_DENIED"
    )
    assert (rows[0].sender, rows[0].recipient) == (DE_INVESTIGATOR, PARTNER)
    assert_discreet(done.detail, *secrets_of(crew, DE_INVESTIGATOR), *secrets_of(crew, PARTNER))
    control = post_as(crew, DE_INVESTIGATOR, PARTNER, envelope.DIFFUSION)
    assert control.code == Code.OK
    assert [r.status for r in control.reply.results] == [gateway_pb2.POST_STATUS_ACCEPTED]
    _bureau_and_colleagues_work(crew, de_document, PARTNER, BORDER)


# ----------------------------------------------------------------------------- claiming another


@pytest.mark.attack(
    "a user's valid certificate with a header claiming another principal: a user of another "
    "bureau (DE/x), a colleague (FR/y), its own bureau (FR)",
    adversary="rogue user",
    expect=(
        "PERMISSION_DENIED at the gateway + gateway audit row (peer the caller, sender the "
        "claim); the claimed principal unaffected"
    ),
)
@pytest.mark.parametrize("claim", [DE_INVESTIGATOR, INVESTIGATOR, "FR"])
def test_a_user_cannot_speak_for_another_principal(
    crew: Network, de_document: Document, claim: str
) -> None:
    """FR/pax-border-1, authenticated by its certificate, signs as ``claim``: refused."""
    mine = identity(crew, BORDER)
    forged = Identity.from_keys(claim, mine.signing_key, mine.encryption_key)
    sealed = sealed_query(crew, forged, "DE", document_query(de_document.number, "DE"))
    done = as_principal(crew, BORDER, "Query", gateway_pb2.QueryRequest(envelope=sealed.envelope))
    assert done.code == Code.PERMISSION_DENIED
    rows = _refused_at_gateway(crew, sealed.header.message_hex, BORDER, "PERMISSION_DENIED")
    assert rows[0].sender == claim
    assert_discreet(done.detail, de_document.number, *secrets_of(crew, BORDER))
    _bureau_and_colleagues_work(crew, de_document, BORDER, INVESTIGATOR, DE_INVESTIGATOR)


# ----------------------------------------------------------------------------- revocation


@pytest.mark.attack(
    "a user its bureau revoked keeps calling with its certificate and keys",
    adversary="rogue user",
    expect=(
        "UNAUTHENTICATED at the gateway (no restart) + gateway audit row; FR and FR's other "
        "users unaffected"
    ),
)
def test_a_revoked_user_is_refused_and_its_colleagues_are_not(
    crew: Network, de_document: Document
) -> None:
    """Once FR revokes FR/pax-border-9, its query is UNAUTHENTICATED and audited."""
    issue(crew, DOOMED, "border", rights=_rights("border"))
    wait_for("the gateway to admit the user", lambda: admitted(crew, DOOMED))
    users.revoke_user(PkiDir(crew.workdir), "FR", DOOMED.partition("/")[2], now_ms=now_ms())
    wait_for("the gateway to drop the user", lambda: not admitted(crew, DOOMED))
    sealed = sealed_query(
        crew, identity(crew, DOOMED), "DE", document_query(de_document.number, "DE")
    )
    done = as_principal(crew, DOOMED, "Query", gateway_pb2.QueryRequest(envelope=sealed.envelope))
    assert done.code == Code.UNAUTHENTICATED
    # Refused before its envelope is read: the row names the caller, not the message.
    rows = wait_gateway_rows(crew, lambda r: r.rpc == "Query" and r.peer == DOOMED)
    assert [(r.outcome, r.status, r.message_id) for r in rows] == [
        ("refused", "UNAUTHENTICATED", "")
    ]
    assert not gateway_rows(crew, lambda r: r.message_id == sealed.header.message_hex)
    assert_discreet(done.detail, de_document.number, *secrets_of(crew, DOOMED))
    _bureau_and_colleagues_work(crew, de_document, BORDER, INVESTIGATOR, PARTNER)


# ------------------------------------------------------------ issuing under another bureau


@pytest.mark.attack(
    "a bureau's CA mints a TLS certificate for another bureau's user (x.de.user.ncbsim)",
    adversary="rogue user",
    expect=(
        "the TLS handshake fails (the CA's name constraints): UNAVAILABLE; no RPC reaches the "
        "gateway, no audit row"
    ),
)
def test_a_bureau_ca_cannot_mint_another_bureaus_user(crew: Network, de_document: Document) -> None:
    """FR's CA signs a certificate for DE/mallory: BoringSSL refuses the chain."""
    pki = PkiDir(crew.workdir)
    cert_path, key_path = pki.bureau_ca("FR")
    ca_key, ca_cert = bureau_ca.load_bureau_ca(cert_path.read_bytes(), key_path.read_bytes())
    chain, key = bureau_ca.issue_user_certificate(
        ca_key, ca_cert, "DE", "mallory", now=dt.datetime.now(dt.UTC)
    )
    forged = TlsFiles(root=pki.ca_cert.read_bytes(), cert=chain, key=key)
    mine = identity(crew, INVESTIGATOR)  # any keys: the envelope never gets read
    claimed = Identity.from_keys("DE/mallory", mine.signing_key, mine.encryption_key)
    sealed = sealed_query(crew, claimed, "DE", document_query(de_document.number, "DE"))
    done = gateway_call(
        crew, forged, "Query", gateway_pb2.QueryRequest(envelope=sealed.envelope), timeout=5
    )
    assert done.code == Code.UNAVAILABLE
    # A call the gateway does audit, made after: its row is in, so any row of ours would be.
    spoof = sealed_query(crew, claimed, "DE", document_query(de_document.number, "DE"))
    control = as_principal(
        crew, INVESTIGATOR, "Query", gateway_pb2.QueryRequest(envelope=spoof.envelope)
    )
    assert control.code == Code.PERMISSION_DENIED
    wait_gateway_rows(crew, lambda r: r.message_id == spoof.header.message_hex)
    assert not gateway_rows(
        crew, lambda r: r.message_id == sealed.header.message_hex or r.peer == "DE/mallory"
    )
    _bureau_and_colleagues_work(crew, de_document, INVESTIGATOR, DE_INVESTIGATOR)


def _entry_fr_signs_for(pki: PkiDir, user: str) -> tuple[bytes, Identity]:
    """A user entry for ``user`` (of another bureau), with fresh keys FR holds, signed by
    FR's directory signing key; and those keys."""
    signing = _crypto.ed25519_generate()
    encryption = _crypto.x25519_generate()
    template = pki.user_entry_path(INVESTIGATOR).read_bytes()
    entry = users_pb2.UserEntry.FromString(users_pb2.SignedUserEntry.FromString(template).entry)
    entry.bureau, entry.name = user.split("/")
    entry.signing_key = bytes(signing.verify_key)
    entry.encryption_key = _crypto.x25519_public_bytes(encryption)
    fr_key = _crypto.signing_key_from_pem((pki.party("FR") / "signing.key").read_bytes())
    body = entry.SerializeToString()
    signed = users_pb2.SignedUserEntry(
        entry=body, signature=_crypto.ed25519_sign(fr_key, users.ENTRY_CONTEXT + body)
    )
    return signed.SerializeToString(), Identity.from_keys(user, signing, encryption)


@pytest.mark.attack(
    "a bureau signs a user entry for another bureau's user (DE/x) and drops it into the directory",
    adversary="rogue user",
    expect=(
        "refused at load + gateway audit row user_entry_refused; never served by GetDirectory; "
        "DE/x cannot act (a copy to it NOT_FOUND; its envelopes, even relayed straight to DE's "
        "node, INVALID_ARGUMENT + node audit reason unverified)"
    ),
)
def test_an_entry_fr_signs_for_a_german_user_is_never_served(
    crew: Network, de_document: Document
) -> None:
    """users/DE/mallory.entry signed by FR: audited, not served, useless even relayed."""
    pki = PkiDir(crew.workdir)
    mallory = "DE/mallory"
    signed, keys = _entry_fr_signs_for(pki, mallory)
    pki.user_entry_path(mallory).parent.mkdir(parents=True, exist_ok=True)
    pki.user_entry_path(mallory).write_bytes(signed)
    # The gateway reads users/ again on its next call; GetDirectory makes one.
    asked = as_principal(
        crew, "DE", "GetDirectory", gateway_pb2.GetDirectoryRequest(bureaus=[mallory])
    )
    assert asked.code == Code.OK
    everyone = as_principal(crew, "IT", "GetDirectory", gateway_pb2.GetDirectoryRequest())
    rows = wait_gateway_rows(crew, lambda r: r.outcome == "user_entry_refused")
    assert [(r.rpc, r.sender, r.status) for r in rows] == [
        ("LoadUsers", mallory, "PERMISSION_DENIED")
    ]
    served = [users.entry_principal(u.SerializeToString()) for u in asked.reply.users]
    served += [users.entry_principal(u.SerializeToString()) for u in everyone.reply.users]
    assert mallory not in served
    assert INVESTIGATOR in served  # FR's genuine users are served
    # Nobody can address it...
    to_mallory = post_envelope(crew, identity(crew, INVESTIGATOR), "DE", envelope.MESSAGE)
    readdressed = _readdressed(to_mallory, mallory)
    done = as_principal(
        crew, INVESTIGATOR, "Post", gateway_pb2.PostRequest(envelopes=[readdressed])
    )
    assert done.code == Code.NOT_FOUND, done
    # ...and its envelopes, even relayed to DE's node by a gateway that skips its checks,
    # are refused there: the node finds no entry of DE/mallory it can verify.
    forged = sealed_query(crew, keys, "DE", document_query(de_document.number, "DE"))
    relayed = handle_as_gateway(crew, "DE", forged.envelope)
    assert (relayed.code, relayed.detail) == (Code.INVALID_ARGUMENT, "envelope rejected")
    rows = wait_node_rows(crew, "DE", message_id=forged.header.message_hex)
    assert [(r["sender"], r["outcome"], r["reason"]) for r in rows] == [
        (mallory, "refused", "unverified")
    ]
    _bureau_and_colleagues_work(crew, de_document, INVESTIGATOR, DE_INVESTIGATOR)


def _readdressed(item: envelope.Envelope, recipient: str) -> envelope.Envelope:
    """``item`` with its header's recipient changed (the gateway routes on the header)."""
    header = envelope_pb2.Header.FromString(item.header)
    header.recipient = recipient
    return envelope.Envelope(
        header=header.SerializeToString(), sealed=item.sealed, signature=item.signature
    )


# ------------------------------------------------------------------ rights at the owner's node


@pytest.fixture(scope="module")
def de_person(network: Network) -> Person:
    """One of DE's persons with no owner control on it."""
    store = RecordStore(Workdir(network.workdir).bureau("DE").records)
    try:
        people = store.sample("person", 40, random.Random(5))
        return next(p for p in people if store.control(p.ref) == NO_CONTROL)
    finally:
        store.close()


def _refused_by_owner(crew: Network, sealed: envelope.SealedRequest, done: Result) -> None:
    """Refused PERMISSION_DENIED by DE's node (the gateway let it through), audited
    ``rights`` there."""
    assert done.code == Code.PERMISSION_DENIED, done
    message_id = sealed.header.message_hex
    rows = wait_node_rows(crew, "DE", message_id=message_id)
    assert [(r["outcome"], r["reason"], r["status"]) for r in rows] == [
        ("refused", "rights", "PERMISSION_DENIED")
    ]
    relayed = gateway_rows(crew, lambda r: r.message_id == message_id)
    assert [r.status for r in relayed] == ["PERMISSION_DENIED"]  # relayed, not refused there


@pytest.mark.attack(
    "a border officer (no person queries) searches another bureau's persons",
    adversary="rogue user",
    expect=(
        "PERMISSION_DENIED by the owner's node (the gateway cannot see the kind) + node audit "
        "reason rights; the detail names neither the kind nor the person; FR and FR's "
        "investigator still search persons"
    ),
)
def test_a_border_officer_may_not_search_persons(
    crew: Network, de_document: Document, de_person: Person
) -> None:
    """FR/pax-border-1's person query is sealed, so only DE can refuse it: it does."""
    query = person_query(de_person.surname, date_of_birth=de_person.date_of_birth)
    sealed = sealed_query(crew, identity(crew, BORDER), "DE", query)
    done = as_principal(crew, BORDER, "Query", gateway_pb2.QueryRequest(envelope=sealed.envelope))
    _refused_by_owner(crew, sealed, done)
    assert_discreet(
        done.detail, "person", de_person.surname, de_person.ref, *secrets_of(crew, BORDER)
    )
    for who in ("FR", INVESTIGATOR):
        assert ask(crew, who, "DE", query).matches  # the record is there for those allowed
    assert ask(crew, BORDER, "DE", document_query(de_document.number, "DE")).matches


@pytest.mark.attack(
    "a hit-only user (a kiosk issued --hit-only) fetches a full record (step 2) with a reference "
    "a colleague got",
    adversary="rogue user",
    expect=(
        "its own hits carry no reference; the fetch PERMISSION_DENIED by the owner's node + "
        "node audit reason rights; the detail names no record; the investigator still fetches"
    ),
)
def test_a_hit_only_user_may_not_fetch(crew: Network, de_document: Document) -> None:
    """FR/pax-border-1 gets a hit without a reference, and its fetch of one is refused."""
    own = ask(crew, BORDER, "DE", document_query(de_document.number, "DE"))
    assert [m.ref for m in own.matches] == [""] * len(own.matches)
    assert own.matches
    sealed = sealed_query(crew, identity(crew, BORDER), "DE", fetch_query(de_document.ref))
    done = as_principal(crew, BORDER, "Query", gateway_pb2.QueryRequest(envelope=sealed.envelope))
    _refused_by_owner(crew, sealed, done)
    assert_discreet(done.detail, de_document.ref, de_document.number, *secrets_of(crew, BORDER))
    fetched = ask(crew, INVESTIGATOR, "DE", fetch_query(de_document.ref))
    assert fetched.outcome == Outcome.RECORD


@pytest.mark.attack(
    "a revoked user's envelope handed straight to a node that answered that user before "
    "(a relay that skips the gateway's checks)",
    adversary="rogue user",
    expect=(
        "INVALID_ARGUMENT 'envelope rejected' from the node once it has read the bureau's "
        "revocation (within its check interval) + node audit reason revoked; FR's other "
        "users still answered"
    ),
)
def test_a_node_that_knew_a_revoked_user_refuses_it(crew: Network, de_document: Document) -> None:
    """DE answered FR/pax-border-8; FR revokes it; DE refuses its next envelope."""
    user = "FR/pax-border-8"
    issue(crew, user, "border", rights=_rights("border"))
    wait_for("the gateway to admit the user", lambda: admitted(crew, user))
    assert ask(crew, user, "DE", document_query(de_document.number, "DE")).matches
    users.revoke_user(PkiDir(crew.workdir), "FR", user.partition("/")[2], now_ms=now_ms())
    keys = identity(crew, user)
    outcomes: list[Result] = []

    def refused() -> bool:
        sealed = sealed_query(crew, keys, "DE", document_query(de_document.number, "DE"))
        outcomes.append(handle_as_gateway(crew, "DE", sealed.envelope))
        return outcomes[-1].code != Code.OK

    wait_for("DE to drop the revoked user", refused)
    last = outcomes[-1]
    assert (last.code, last.detail) == (Code.INVALID_ARGUMENT, "envelope rejected")
    # The node no longer holds the user: it cannot verify its envelope (as for a sender
    # it never knew), whatever relayed it.
    rows = node_rows(crew, "DE", sender=user)
    assert [(r["outcome"], r["reason"]) for r in rows[-1:]] == [("refused", "revoked")]
    assert [r["outcome"] for r in rows[:-1]] == ["answered"] * (len(rows) - 1)
    again = sealed_query(crew, keys, "DE", document_query(de_document.number, "DE"))
    assert handle_as_gateway(crew, "DE", again.envelope).code == Code.INVALID_ARGUMENT
    assert ask(crew, BORDER, "DE", document_query(de_document.number, "DE")).matches
    assert ask(crew, INVESTIGATOR, "DE", document_query(de_document.number, "DE")).matches
