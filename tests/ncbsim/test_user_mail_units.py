"""Mail to and from a bureau's users without the network: addresses, the node's check of a
copy it cannot open, and receipts signed by the user's bureau."""

from __future__ import annotations

import argparse

import pytest

from ncbsim import _crypto, envelope, posts, receipts
from ncbsim.cli._common import acting_as, principal_text
from ncbsim.errors import ConfigError, EnvelopeError
from ncbsim.identity import Identity

NOW = 1_767_225_600_000


def _identity(principal: str) -> Identity:
    return Identity.from_keys(principal, _crypto.ed25519_generate(), _crypto.x25519_generate())


def test_a_post_may_name_users_with_their_bureau_in_upper_case() -> None:
    """``ng/ngo-x`` is NG's user ngo-x; the name part keeps its case rules."""
    assert posts.addressees("GH", envelope.DIFFUSION, ["ng/ngo-x", " de "]) == ["NG/ngo-x", "DE"]
    assert posts.addressees("FR/cdg-1", envelope.MESSAGE, ["FR"]) == ["FR"]
    with pytest.raises(ConfigError, match="cannot send to itself"):
        posts.addressees("FR/cdg-1", envelope.MESSAGE, ["fr/cdg-1"])
    with pytest.raises(ConfigError, match="not a bureau or user"):
        posts.addressees("GH", envelope.MESSAGE, ["NG/NGO X"])
    with pytest.raises(ConfigError, match="only diffusions and case messages"):
        posts.addressees("GS", envelope.NOTICE, ["NG/ngo-x"])


def test_as_takes_a_user_only_where_the_command_acts_as_one() -> None:
    """--as FR/x passes where users act; elsewhere, and when malformed, one-line errors."""
    assert principal_text(" fr/cdg-border-12") == "FR/cdg-border-12"
    user = argparse.Namespace(as_bureau="FR/cdg-border-12", as_users=True)
    assert acting_as(user) == "FR/cdg-border-12"
    with pytest.raises(ConfigError, match="acts as a bureau; give FR"):
        acting_as(argparse.Namespace(as_bureau="FR/cdg-border-12"))
    with pytest.raises(ConfigError, match=r"^--as: not a bureau or user"):
        acting_as(argparse.Namespace(as_bureau="FR/Bad Name", as_users=True))


def test_a_node_checks_a_users_copy_it_cannot_open_and_signs_for_it() -> None:
    """NG verifies GH's copy to NG/ngo-x against the user's key without opening it, signs
    the receipt as NG for NG/ngo-x; only the user's key opens the copy."""
    gh, ng, user = _identity("GH"), _identity("NG"), _identity("NG/ngo-x")
    peers = {p.bureau: p.as_peer() for p in (gh, ng, user)}
    sealed = envelope.seal_message(
        b"alert",
        sender=gh,
        recipient=peers["NG/ngo-x"],
        kind=envelope.DIFFUSION,
        post_id=b"p" * 16,
        now_ms=NOW,
    )
    header = envelope.check_message(
        sealed,
        recipient="NG/ngo-x",
        recipient_key_id=user.encryption_key_id,
        senders=peers.__getitem__,
        now_ms=NOW,
    )
    assert (header.sender, header.recipient) == ("GH", "NG/ngo-x")
    with pytest.raises(EnvelopeError):  # the node's own key does not open it
        envelope.open_message(sealed, recipient=ng, senders=peers.__getitem__, now_ms=NOW)
    opened = envelope.open_message(sealed, recipient=user, senders=peers.__getitem__, now_ms=NOW)
    assert opened.plaintext == b"alert"
    with pytest.raises(EnvelopeError):  # checked against another user's key: refused
        envelope.check_message(
            sealed,
            recipient="NG/ngo-x",
            recipient_key_id=ng.encryption_key_id,
            senders=peers.__getitem__,
            now_ms=NOW,
        )
    digest = envelope.envelope_digest(sealed)
    signed = receipts.sign(ng, header, digest, NOW)
    receipt = receipts.verify(signed, signer=peers["NG"], now_ms=NOW)
    assert (receipt.sender, receipt.recipient) == ("GH", "NG/ngo-x")
    with pytest.raises(EnvelopeError):  # only the user's own bureau signs for it
        receipts.verify(signed, signer=peers["GH"], now_ms=NOW)
    with pytest.raises(EnvelopeError):  # a user signs no receipts
        receipts.sign(user, header, digest, NOW)
    with pytest.raises(EnvelopeError):  # nor does another bureau for NG's user
        receipts.sign(gh, header, digest, NOW)
