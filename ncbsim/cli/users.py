"""``ncbsim user``: a bureau issues, lists and revokes the identities of its own people.

``user add`` writes the user's keys, a TLS certificate from the bureau's CA and the
entry the bureau signs (docs/users.md); ``user revoke`` writes the bureau's signed
revocation. A running network picks either up without a restart: the gateway rereads
``pki/users/`` within its directory refresh interval, nodes fetch users on demand.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from ncbsim import users
from ncbsim.errors import ConfigError
from ncbsim.pki import PkiDir
from ncbsim.users import QUERY_KINDS, ROLES, Rights

__all__ = ["add_parsers", "cmd_user_add", "cmd_user_list", "cmd_user_revoke"]


def _pki(args: argparse.Namespace) -> PkiDir:
    """The PKI of ``--pki DIR`` or of ``--workdir W`` (a network's workdir holds its PKI)."""
    from ncbsim.workdir import require_pki

    if args.pki is not None:
        return PkiDir(args.pki)
    if args.workdir is None:
        raise ConfigError("give --workdir W (a network of `ncbsim up`) or --pki DIR")
    return require_pki(args.workdir)


def _kinds(text: str | None, option: str) -> frozenset[int] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip() and n.strip() != "none"]
    try:
        return frozenset(users.kind_from_name(n) for n in names)
    except ConfigError as exc:
        raise ConfigError(f"{option}: {exc}") from None


def _rights(args: argparse.Namespace) -> Rights:
    """The role's default rights with the options given laid over them."""
    rights = Rights.from_proto(users.role_rights(users.check_role(args.role)))
    changes: dict[str, object] = {}
    if args.kinds is not None:
        kinds = frozenset(k.strip().lower() for k in args.kinds.split(",") if k.strip())
        changes["query_kinds"] = kinds - {"none"}
    for option, field, text in (
        ("--receive", "receive_kinds", args.receive),
        ("--send", "send_kinds", args.send),
    ):
        kinds_ = _kinds(text, option)
        if kinds_ is not None:
            changes[field] = kinds_
    if args.rate is not None:
        changes["rate_per_s"] = _whole(args.rate, "--rate")
    if args.daily is not None:
        changes["daily_limit"] = _whole(args.daily, "--daily")
    if args.full_records is not None:
        changes["full_records"] = args.full_records
    return dataclasses.replace(rights, **changes)  # type: ignore[arg-type]


def cmd_user_add(args: argparse.Namespace) -> int:
    pki = _pki(args)
    rights = _rights(args)
    user = users.issue_user(
        pki, args.bureau, args.name, args.role, rights=rights, now_ms=int(time.time() * 1000)
    )
    print(
        f"{user.principal}: {user.role}, serial {user.serial}; keys and TLS certificate in "
        f"{pki.party(user.principal)}, entry signed by {user.bureau} in "
        f"{pki.user_entry_path(user.principal)}"
    )
    print(f"rights: {_describe(user.rights)}")
    return 0


def _names(kinds: frozenset[int]) -> str:
    return ",".join(sorted(users.message_kind_name(k) for k in kinds)) or "none"


def _describe(rights: Rights) -> str:
    kinds = ",".join(q for q in QUERY_KINDS if q in rights.query_kinds) or "none"
    receive, send = _names(rights.receive_kinds), _names(rights.send_kinds)
    records = "full records" if rights.full_records else "hit only"
    daily = f"{rights.daily_limit}/day" if rights.daily_limit else "no daily limit"
    return (
        f"query {kinds} ({records}); receive {receive}; send {send}; {rights.rate_per_s}/s, {daily}"
    )


def cmd_user_list(args: argparse.Namespace) -> int:
    from ncbsim.directory import Directory

    pki = _pki(args)
    listings = users.list_users(
        pki,
        Directory.from_pki(pki).get,
        bureau=args.bureau,
        now_ms=int(time.time() * 1000),
    )
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "principal": item.principal,
                        "role": item.role,
                        "serial": item.serial,
                        "state": item.state,
                        "rights": item.rights.describe() if item.rights else None,
                    }
                    for item in listings
                ],
                indent=2,
            )
        )
        return 0
    if not listings:
        print("no users" + (f" of {args.bureau}" if args.bureau else ""))
        return 0
    width = max(len(item.principal) for item in listings)
    for item in listings:
        rights = _describe(item.rights) if item.rights else "?"
        print(
            f"{item.principal:<{width}}  {item.role:<12} serial {item.serial:<3} "
            f"{item.state:<8} {rights}"
        )
    return 0


def cmd_user_revoke(args: argparse.Namespace) -> int:
    pki = _pki(args)
    serial = users.revoke_user(pki, args.bureau, args.name, now_ms=int(time.time() * 1000))
    principal = f"{args.bureau}/{args.name}"
    print(
        f"revoked {principal} (entries up to serial {serial}), signed by {args.bureau} in "
        f"{pki.user_revocation_path(principal)}; {args.bureau} and its other users are untouched"
    )
    return 0


def _whole(text: str, option: str) -> int:
    """A whole number of 0 or more from an option, or a one-line ConfigError."""
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{option}: not a whole number: {text!r}") from None
    if value < 0:
        raise ConfigError(f"{option}: must be 0 or more, not {value}")
    return value


def _where(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--workdir", type=Path, help="workdir of `ncbsim up` (it holds the PKI)")
    group.add_argument("--pki", type=Path, help="a PKI directory (from `ncbsim pki init`)")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``user add``, ``user list`` and ``user revoke``."""
    user = sub.add_parser(
        "user",
        help="issue, list and revoke a bureau's users (docs/users.md)",
        description="A bureau's users: border officers, investigators, partner agencies. "
        "Each gets keys, a TLS certificate from its bureau's CA and rights its bureau "
        "signs; a running network picks changes up without a restart.",
    )
    user_sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    add = user_sub.add_parser("add", help="issue a user (again: new keys, next serial)")
    _where(add)
    add.add_argument("--bureau", required=True, type=str.upper, help="its bureau, e.g. FR")
    add.add_argument("--name", required=True, help="its name under the bureau: cdg-border-12")
    add.add_argument("--role", required=True, help=f"sets the default rights: {', '.join(ROLES)}")
    add.add_argument(
        "--kinds", help=f"query kinds it may ask, comma-separated ({','.join(QUERY_KINDS)}; none)"
    )
    add.add_argument("--receive", help="message kinds it may receive: diffusion,message,notice")
    add.add_argument("--send", help="message kinds it may send: message,diffusion (or none)")
    add.add_argument("--rate", help="its own rate limit, envelopes a second")
    add.add_argument("--daily", help="envelopes a UTC day (0: no daily limit)")
    records = add.add_mutually_exclusive_group()
    records.add_argument(
        "--full-records",
        dest="full_records",
        action="store_const",
        const=True,
        default=None,
        help="answers carry references; step 2 releases records",
    )
    records.add_argument(
        "--hit-only",
        dest="full_records",
        action="store_const",
        const=False,
        help="hit or no hit only: no references, no step 2",
    )
    add.set_defaults(func=cmd_user_add, server=False)
    listing = user_sub.add_parser("list", help="every user, its rights, serial and state")
    _where(listing)
    listing.add_argument("--bureau", type=str.upper, help="only this bureau's users")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=cmd_user_list, server=False)
    revoke = user_sub.add_parser("revoke", help="revoke a user; its bureau and others stay")
    _where(revoke)
    revoke.add_argument("--bureau", required=True, type=str.upper, help="its bureau, e.g. FR")
    revoke.add_argument("--name", required=True, help="its name under the bureau")
    revoke.set_defaults(func=cmd_user_revoke, server=False)
