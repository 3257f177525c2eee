"""The users' admission rules (gateway/admission.py) as plain functions: a user's rights,
a copy to a user, and a user's own limit, without gRPC (docs/users.md)."""

from __future__ import annotations

from typing import ClassVar

import pytest
from gateway_support import FakeClock, fake_limiter, forged_post, now_ms

from ncbsim import _crypto, envelope, session, users
from ncbsim.errors import (
    ConfigError,
    DirectoryError,
    EnvelopeError,
    IdentityError,
    RevokedError,
    RightsError,
    RoutingError,
)
from ncbsim.gateway import admission
from ncbsim.gateway.limits import LimitExceeded


class _Directory:
    def known(self, bureau: str) -> bool:
        return bureau in {"FR", "DE", "MC"}

    def send_only(self, bureau: str) -> bool:
        return bureau == "MC"


class _Users:
    """FR/border, FR/partner and DE/inv with their roles' rights; FR/gone is revoked."""

    ROLES: ClassVar[dict[str, str]] = {
        "FR/border": "border",
        "FR/partner": "partner",
        "DE/inv": "investigator",
    }

    def user(self, principal: str) -> users.User:
        if principal == "FR/gone":
            raise RevokedError(f"{principal} is revoked by FR")
        role = self.ROLES.get(principal)
        if role is None:
            raise DirectoryError(f"no current entry of {principal}")
        rights = users.Rights.from_proto(users.role_rights(role))
        return _user(principal, role, rights)


def _user(principal: str, role: str, rights: users.Rights) -> users.User:
    signing = _crypto.ed25519_generate()
    encryption = _crypto.x25519_generate()
    bureau, _, name = principal.partition("/")
    return users.User(
        principal=principal,
        bureau=bureau,
        name=name,
        role=role,
        rights=rights,
        verify_key=signing.verify_key,
        encryption_key=encryption.public_key(),
        signing_key_id=b"s" * 8,
        encryption_key_id=b"e" * 8,
        tls_cert_sha256=bytes(32),
        serial=1,
        not_after_ms=now_ms() + 60_000,
    )


@pytest.mark.parametrize("kind", [envelope.QUERY_REQUEST, session.SESSION_OPEN])
def test_a_user_without_query_kinds_sends_no_query_envelope(kind: int) -> None:
    """A partner's query or session opening is RightsError; a border officer's passes."""
    for sender, refused in (("FR/partner", True), ("FR/border", False)):
        item = forged_post(sender=sender, kind=kind, version=1 if kind == 1 else 2)
        if refused:
            with pytest.raises(RightsError, match="may not query"):
                admission.admit_query(sender, item, _Directory(), _Users())
        else:
            assert admission.admit_query(sender, item, _Directory(), _Users()).sender == sender


def test_a_querys_recipient_is_a_bureau_and_the_sender_the_caller() -> None:
    """A query to a user is malformed; a user sending as its bureau is IdentityError."""
    with pytest.raises(EnvelopeError):
        admission.admit_query(
            "FR/border",
            forged_post(sender="FR/border", recipient="DE/inv", kind=envelope.QUERY_REQUEST),
            _Directory(),
            _Users(),
        )
    with pytest.raises(IdentityError, match="does not match"):
        admission.admit_query(
            "FR/border", forged_post(sender="FR", kind=envelope.QUERY_REQUEST), _Directory()
        )


@pytest.mark.parametrize(
    ("sender", "recipient", "kind", "error"),
    [
        ("FR/border", "DE", envelope.MESSAGE, RightsError),  # border sends nothing
        ("FR/partner", "DE", envelope.DIFFUSION, RightsError),  # partner sends messages only
        ("FR", "DE/inv", envelope.NOTICE_REQUEST, ConfigError),  # to GS only
        ("FR", "FR/border", envelope.MESSAGE, RightsError),  # border receives diffusions
        ("FR", "DE/nobody", envelope.MESSAGE, RoutingError),
        ("DE", "FR/gone", envelope.DIFFUSION, DirectoryError),
        ("FR", "MC/x", envelope.MESSAGE, DirectoryError),  # MC runs no node
    ],
)
def test_posts_are_held_to_both_parties_rights(
    sender: str, recipient: str, kind: int, error: type[Exception]
) -> None:
    """A copy's kind must be one its sender may send and its user recipient may receive;
    an unknown user is unknown, a revoked one a directory refusal."""
    item = forged_post(sender=sender, recipient=recipient, kind=kind)
    with pytest.raises(error):
        admission.admit_post(sender, item, now_ms(), _Directory(), _Users())


def test_a_copy_to_a_user_who_may_receive_it_is_admitted() -> None:
    """FR's MESSAGE to DE/inv (an investigator) and FR/partner's MESSAGE to DE pass."""
    to_user = forged_post(sender="FR", recipient="DE/inv", kind=envelope.MESSAGE)
    assert admission.admit_post("FR", to_user, now_ms(), _Directory(), _Users()).recipient == (
        "DE/inv"
    )
    from_user = forged_post(sender="FR/partner", recipient="DE", kind=envelope.MESSAGE)
    header = admission.admit_post("FR/partner", from_user, now_ms(), _Directory(), _Users())
    assert header.sender == "FR/partner"


def test_a_user_is_metered_by_its_own_rights() -> None:
    """A partner (1/s, a burst of 2) is refused its third envelope at once; FR's own bucket
    is untouched by it."""
    clock = FakeClock()
    limiter = fake_limiter(clock)
    items = [forged_post(sender="FR/partner", kind=envelope.MESSAGE)]
    for _ in range(2):
        admission.meter_batch(
            "FR/partner", items, 10, max_bytes=1_000, limiter=limiter, users=_Users()
        )
    with pytest.raises(LimitExceeded, match="FR/partner"):
        admission.meter_batch(
            "FR/partner", items, 10, max_bytes=1_000, limiter=limiter, users=_Users()
        )
    admission.meter_batch("FR", items * 3, 10, max_bytes=1_000, limiter=limiter, users=_Users())
    assert admission.limit_for("FR", _Users()) is None
