"""A scenario's users: the people under its bureaus, and the rights their bureau grants.

A ``[[users]]`` entry names a bureau of the scenario, a user name and a role
(``border``, ``investigator`` or ``partner``; ncbsim.rights), and may override the role's
query kinds (``kinds``). The network is prepared with each of them issued by its bureau
(ncbsim.users.issue_user). Timeline queries may then come ``from`` a user (``NG/x``) and
posts may go ``to`` users; :func:`check_principal_ref` is the rule a timeline key naming a
party follows. docs/scenarios.md, "Users".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ncbsim.errors import PkiError
from ncbsim.principal import check_user_name, is_user, principal
from ncbsim.rights import QUERY_KINDS, ROLES, Rights, role_rights
from ncbsim.simulations.scenario.values import _choice, _got, _Invalid, _str, _table

if TYPE_CHECKING:
    from ncbsim.simulations.scenario.model import Scenario

__all__ = [
    "USER_KEYS",
    "UserSpec",
    "check_principal_ref",
    "check_users",
    "principals",
    "read_users",
]

USER_KEYS = ("bureau", "name", "role", "kinds")


@dataclass(frozen=True, kw_only=True, slots=True)
class UserSpec:
    """One user a bureau of the scenario issues: ``kinds`` None keeps the role's kinds."""

    bureau: str
    name: str
    role: str
    kinds: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _str("bureau", self.bureau)
        _str("name", self.name)
        try:
            check_user_name(self.name)
        except PkiError as exc:
            raise _Invalid("name", str(exc)) from None
        _choice("role", self.role, ROLES)
        if self.kinds is not None:
            if not isinstance(self.kinds, list | tuple):
                raise _Invalid("kinds", f'expected a list such as ["document"], {_got(self.kinds)}')
            for kind in self.kinds:
                _choice("kinds", kind, QUERY_KINDS)
            if len(set(self.kinds)) != len(self.kinds):
                raise _Invalid("kinds", "a kind appears twice")
            object.__setattr__(self, "kinds", tuple(self.kinds))

    @property
    def principal(self) -> str:
        """``BUREAU/NAME``: how the network names the user."""
        return principal(self.bureau, self.name)

    def rights(self) -> Rights:
        """The rights its bureau signs: the role's defaults, with ``kinds`` if given."""
        granted = Rights.from_proto(role_rights(self.role))
        if self.kinds is None:
            return granted
        return dataclasses.replace(granted, query_kinds=frozenset(self.kinds))


def read_users(value: object) -> tuple[UserSpec, ...]:
    """The ``[[users]]`` array of a scenario file; errors name ``users[i].key``."""
    if not isinstance(value, list):
        raise _Invalid("users", f"expected an array of tables ([[users]]), {_got(value)}")
    found: list[UserSpec] = []
    for i, item in enumerate(value):
        where = f"users[{i}]"
        table: Mapping[str, Any] = _table(where, item, USER_KEYS)
        for required in ("bureau", "name", "role"):
            if required not in table:
                raise _Invalid(f"{where}.{required}", "required")
        try:
            found.append(UserSpec(**table))
        except _Invalid as exc:
            raise _Invalid(f"{where}.{exc.key}", exc.problem) from None
    return tuple(found)


def check_users(s: Scenario) -> None:
    """Each user's bureau is the scenario's, and no principal is declared twice."""
    seen: set[str] = set()
    for i, user in enumerate(s.users):
        if user.bureau not in s.bureaus:
            raise _Invalid(
                f"users[{i}].bureau", f"{user.bureau!r} is not one of the scenario's bureaus"
            )
        if user.principal in seen:
            raise _Invalid(f"users[{i}].name", f"{user.principal!r} is declared twice")
        seen.add(user.principal)


def check_principal_ref(key: str, ref: str, s: Scenario, *, users: bool = True) -> None:
    """``ref`` (a query's ``from``, a post's ``from`` or ``to``) is one of the scenario's
    bureaus or, if ``users``, one of its declared users."""
    if is_user(ref):
        if not users:
            raise _Invalid(key, f"{ref!r} is a user; only bureaus go here")
        if ref not in principals(s):
            declared = ", ".join(principals(s)) or "none"
            raise _Invalid(
                key, f"{ref!r} is not one of the scenario's users ([[users]]: {declared})"
            )
        return
    if ref not in s.bureaus:
        raise _Invalid(key, f"{ref!r} is not one of the scenario's bureaus")


def principals(s: Scenario) -> list[str]:
    """Every declared user's principal, in the file's order."""
    return [u.principal for u in s.users]
