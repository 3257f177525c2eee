"""Who sends: a bureau (``FR``) or one of the people it answers for (``FR/cdg-border-12``).

A bureau issues identities to its own people, the way X-Road names subsystems under a
member (docs/users.md). Such a *principal* is written ``BUREAU/NAME``: the bureau's
ISO 3166-1 alpha-2 code, a slash, and a name the bureau chose (lower-case letters,
digits and hyphens, at most 32, starting with a letter or digit). A bare code is the
bureau itself. The envelope header's ``sender`` and ``recipient`` carry principals, so
every party can tell which bureau answers for a user: the part before the slash.

A user's TLS certificate names it by the DNS SAN ``NAME.bu.user.ncbsim`` (``bu`` the
bureau code in lower case), issued by its bureau's certificate authority, whose name
constraints permit only ``bu.user.ncbsim``.
"""

from __future__ import annotations

import re

from ncbsim.errors import PkiError

__all__ = [
    "USER_SUFFIX",
    "bureau_of",
    "check_principal",
    "check_user_name",
    "is_user",
    "principal",
    "principal_from_dns_name",
    "split",
    "user_dns_name",
    "user_namespace",
]

USER_SUFFIX = ".user.ncbsim"
_CODE = re.compile(r"^[A-Z]{2}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


def check_user_name(name: str) -> str:
    """Return ``name`` if a bureau may give it to a user, else PkiError saying the rule."""
    if not _NAME.match(name):
        raise PkiError(
            f"not a user name: {name!r} (lower-case letters, digits and hyphens, "
            "at most 32, starting with a letter or digit)"
        )
    return name


def split(text: str) -> tuple[str, str]:
    """``(bureau, name)`` of a principal; name is empty for a bureau itself. PkiError if
    ``text`` is neither ``XX`` nor ``XX/name``."""
    bureau, slash, name = text.partition("/")
    if not _CODE.match(bureau) or (slash and not _NAME.match(name)):
        raise PkiError(f"not a bureau or user: {text!r} (write FR or FR/cdg-border-12)")
    return bureau, name


def check_principal(text: str) -> str:
    """Return ``text`` if it is a well-formed principal (:func:`split`)."""
    split(text)
    return text


def principal(bureau: str, name: str = "") -> str:
    """The principal of ``name`` under ``bureau`` (the bureau itself if ``name`` is empty)."""
    return f"{bureau}/{name}" if name else bureau


def bureau_of(text: str) -> str:
    """The bureau that answers for a principal: ``FR`` for ``FR/cdg-border-12`` and ``FR``.
    No check: call it on a principal already checked."""
    return text.partition("/")[0]


def is_user(text: str) -> bool:
    """Whether a principal names a user (not a bureau itself)."""
    return "/" in text


def user_namespace(bureau: str) -> str:
    """The DNS subtree a bureau's certificate authority may name users in."""
    return bureau.lower() + USER_SUFFIX


def user_dns_name(bureau: str, name: str) -> str:
    """The DNS SAN of user ``name`` of ``bureau`` in its TLS certificate."""
    split(principal(bureau, check_user_name(name)))
    return f"{name}.{user_namespace(bureau)}"


def principal_from_dns_name(dns: str) -> str | None:
    """Inverse of :func:`user_dns_name`: ``FR/name``, or None if ``dns`` names no user."""
    if not dns.endswith(USER_SUFFIX):
        return None
    name, dot, code = dns[: -len(USER_SUFFIX)].rpartition(".")
    if not dot:
        return None
    text = principal(code.upper(), name)
    try:
        return check_principal(text)
    except PkiError:
        return None
