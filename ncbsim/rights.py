"""What a bureau lets one of its users do: roles, their default rights, the rights type.

Pure and dependency-free (the wire form aside), so the gateway's admission, the nodes and
the CLI share one definition (docs/users.md). :mod:`ncbsim.users` re-exports all of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ncbsim.errors import ConfigError
from ncbsim.v2 import envelope_pb2, users_pb2

__all__ = [
    "QUERY_KINDS",
    "ROLES",
    "Rights",
    "check_role",
    "kind_from_name",
    "message_kind_name",
    "role_rights",
]

ROLES = ("border", "investigator", "partner")
QUERY_KINDS = ("document", "person", "vehicle", "fingerprint", "face")

DIFFUSION: int = envelope_pb2.MESSAGE_KIND_DIFFUSION
NOTICE_REQUEST: int = envelope_pb2.MESSAGE_KIND_NOTICE_REQUEST
NOTICE: int = envelope_pb2.MESSAGE_KIND_NOTICE
MESSAGE: int = envelope_pb2.MESSAGE_KIND_MESSAGE
_ONE_WAY: dict[str, int] = {
    "diffusion": DIFFUSION,
    "notice_request": NOTICE_REQUEST,
    "notice": NOTICE,
    "message": MESSAGE,
}
_ONE_WAY_NAMES = {number: name for name, number in _ONE_WAY.items()}


def message_kind_name(kind: int) -> str:
    """``diffusion``, ``notice_request``, ``notice`` or ``message``."""
    return _ONE_WAY_NAMES.get(kind, f"unknown({kind})")


def kind_from_name(name: str) -> int:
    """The one-way message kind called ``name`` (``notice-request`` or ``notice_request``);
    ConfigError naming the choices otherwise."""
    try:
        return _ONE_WAY[name.strip().lower().replace("-", "_")]
    except KeyError:
        raise ConfigError(
            f"unknown message kind {name!r}; choose from {', '.join(_ONE_WAY)}"
        ) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rights:
    """What a bureau lets one of its users do (``UserRights`` in users.proto)."""

    query_kinds: frozenset[str]
    """Query kinds it may ask (:data:`QUERY_KINDS`); empty: it may not query at all."""
    full_records: bool
    """Whether answers may carry references and step 2 may release records; False: hit
    or no hit only."""
    receive_kinds: frozenset[int]
    """One-way message kinds that may be addressed to it."""
    send_kinds: frozenset[int]
    """One-way message kinds it may post."""
    rate_per_s: int
    """Its own rate limit at the gateway, envelopes a second (at least 1)."""
    daily_limit: int
    """Envelopes a UTC day at the gateway; 0: no daily limit."""

    def __post_init__(self) -> None:
        unknown = sorted(self.query_kinds - set(QUERY_KINDS))
        if unknown:
            raise ConfigError(
                f"unknown query kind {', '.join(unknown)}; choose from {', '.join(QUERY_KINDS)}"
            )
        for kinds in (self.receive_kinds, self.send_kinds):
            bad = sorted(k for k in kinds if k not in _ONE_WAY_NAMES)
            if bad:
                raise ConfigError(f"not a one-way message kind: {bad[0]}")
        if not 1 <= self.rate_per_s <= 1_000_000:
            raise ConfigError(f"rate must be 1 to 1000000 a second, not {self.rate_per_s}")
        if not 0 <= self.daily_limit <= 2**32 - 1:
            raise ConfigError(f"daily limit must be 0 (none) or more, not {self.daily_limit}")

    def may_query(self, kind: str) -> bool:
        return kind in self.query_kinds

    def may_receive(self, kind: int) -> bool:
        return kind in self.receive_kinds

    def may_send(self, kind: int) -> bool:
        return kind in self.send_kinds

    @classmethod
    def from_proto(cls, message: users_pb2.UserRights) -> Rights:
        """Rights from their wire form; ConfigError if they name an unknown kind."""
        return cls(
            query_kinds=frozenset(message.query_kinds),
            full_records=message.full_records,
            receive_kinds=frozenset(message.receive_kinds),
            send_kinds=frozenset(message.send_kinds),
            rate_per_s=message.rate_per_s,
            daily_limit=message.daily_limit,
        )

    def to_proto(self) -> users_pb2.UserRights:
        """The wire form, every list sorted (the same rights, the same bytes)."""
        return users_pb2.UserRights(
            query_kinds=sorted(self.query_kinds, key=QUERY_KINDS.index),
            full_records=self.full_records,
            receive_kinds=sorted(self.receive_kinds),  # type: ignore[arg-type]
            send_kinds=sorted(self.send_kinds),  # type: ignore[arg-type]
            rate_per_s=self.rate_per_s,
            daily_limit=self.daily_limit,
        )

    def describe(self) -> dict[str, object]:
        """The rights in words, as ``ncbsim user list --json`` prints them."""
        return {
            "query_kinds": sorted(self.query_kinds, key=QUERY_KINDS.index),
            "full_records": self.full_records,
            "receive": sorted(message_kind_name(k) for k in self.receive_kinds),
            "send": sorted(message_kind_name(k) for k in self.send_kinds),
            "rate_per_s": self.rate_per_s,
            "daily_limit": self.daily_limit,
        }


_DEFAULTS = {
    # A border officer checks documents, vehicles and faces, never names; it sees the
    # owner's reference and may confirm a hit (step 2), since a hit must be confirmed with
    # the owner before anyone acts on it. ``--hit-only`` narrows a post to hit or no-hit.
    "border": Rights(
        query_kinds=frozenset({"document", "vehicle", "fingerprint", "face"}),
        full_records=True,
        receive_kinds=frozenset({DIFFUSION}),
        send_kinds=frozenset(),
        rate_per_s=5,
        daily_limit=5_000,
    ),
    "investigator": Rights(
        query_kinds=frozenset(QUERY_KINDS),
        full_records=True,
        receive_kinds=frozenset({DIFFUSION, MESSAGE, NOTICE}),
        send_kinds=frozenset({MESSAGE, DIFFUSION}),
        rate_per_s=10,
        daily_limit=20_000,
    ),
    "partner": Rights(
        query_kinds=frozenset(),
        full_records=False,
        receive_kinds=frozenset({DIFFUSION, MESSAGE}),
        send_kinds=frozenset({MESSAGE}),
        rate_per_s=1,
        daily_limit=500,
    ),
}


def check_role(role: str) -> str:
    """Return ``role`` if it is one of :data:`ROLES`, else ConfigError naming them."""
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}; choose from {', '.join(ROLES)}")
    return role


def role_rights(role: str) -> users_pb2.UserRights:
    """The rights a user of ``role`` gets unless its bureau says otherwise."""
    return _DEFAULTS[check_role(role)].to_proto()
