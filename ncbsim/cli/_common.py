"""Option helpers shared by several command groups of the ``ncbsim`` command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from ncbsim import principal
from ncbsim.config import check_address
from ncbsim.errors import ConfigError, PkiError
from ncbsim.pki import PkiDir
from ncbsim.workdir import find_gateway

__all__ = [
    "acting_as",
    "add_bureau_options",
    "add_workdir_option",
    "client_network",
    "codes",
    "principal_text",
    "principals",
]


def codes(text: str) -> list[str]:
    """Bureau codes from a comma-separated option, upper case, blanks dropped."""
    return [c.strip().upper() for c in text.split(",") if c.strip()]


def principal_text(text: str) -> str:
    """A principal as typed, its bureau part in upper case (``fr/cdg-1`` is ``FR/cdg-1``);
    not checked here, so a bad value is refused in one line by :func:`acting_as`."""
    bureau, slash, name = text.strip().partition("/")
    return bureau.upper() + slash + name


def principals(text: str) -> list[str]:
    """Bureaus or users from a comma-separated option (``DE,NG/ngo-x``), each as
    :func:`principal_text`, blanks dropped."""
    return [principal_text(p) for p in text.split(",") if p.strip()]


def acting_as(args: argparse.Namespace) -> str:
    """``--as``, checked: ``FR`` or, where the command takes users, ``FR/cdg-border-12``;
    ConfigError (``ncbsim: --as ...``, exit 2) otherwise."""
    value = str(args.as_bureau)
    try:
        principal.split(value)
    except PkiError as exc:
        raise ConfigError(f"--as: {exc}") from None
    if principal.is_user(value) and not getattr(args, "as_users", False):
        raise ConfigError(
            f"--as {value}: this command acts as a bureau; give {principal.bureau_of(value)}"
        )
    return value


def add_workdir_option(parser: argparse.ArgumentParser) -> None:
    """``--workdir``: the folder of a network brought up by ``ncbsim up`` (required)."""
    parser.add_argument("--workdir", type=Path, required=True, help="workdir of `ncbsim up`")


def add_network_options(parser: argparse.ArgumentParser) -> None:
    """``--workdir`` of a network brought up here, or ``--gateway`` and ``--pki`` of one
    reached from outside (a deployed network); :func:`client_network` checks them."""
    parser.add_argument(
        "--workdir", type=Path, help="workdir of `ncbsim up` (or give --gateway and --pki)"
    )
    parser.add_argument(
        "--gateway",
        metavar="HOST:PORT",
        help="instead of --workdir: the gateway of a network run elsewhere, e.g. a deployed "
        "one (with --pki)",
    )
    parser.add_argument(
        "--pki",
        type=Path,
        metavar="DIR",
        help="with --gateway: the PKI folder holding the acting bureau's keys",
    )


def client_network(args: argparse.Namespace, bureau: str) -> tuple[PkiDir, str]:
    """The PKI and the gateway address a client command acting as ``bureau`` uses:
    ``--workdir``'s (the way ``bureau`` reaches its gateway), or ``--pki`` and
    ``--gateway``. ConfigError (one line, exit 2) unless exactly one of the two is given.
    """
    workdir, pki, gateway = args.workdir, args.pki, args.gateway
    if workdir is not None:
        if pki is not None or gateway is not None:
            raise ConfigError("give --workdir, or --gateway and --pki, not both")
        return PkiDir(workdir), find_gateway(workdir, bureau)
    if pki is None or gateway is None:
        raise ConfigError(
            "give --workdir of `ncbsim up`, or --gateway HOST:PORT and --pki DIR "
            "of a network run elsewhere"
        )
    try:
        check_address(gateway)
    except ConfigError as exc:
        raise ConfigError(f"--gateway: {exc}") from None
    if not PkiDir(pki).ca_cert.is_file():
        raise ConfigError(f"--pki {pki}: no PKI there (no ca.crt)")
    return PkiDir(pki), gateway


def add_bureau_options(
    parser: argparse.ArgumentParser, role: str, *, users: bool = False, remote: bool = False
) -> None:
    """``--workdir`` of a network and ``--as``, the bureau of it acting (``role``: its help).

    With ``users``, ``--as`` may also name one of a bureau's users (``FR/cdg-border-12``,
    docs/users.md): only the bureau part is upper-cased, and the command checks the
    value with :func:`acting_as`. With ``remote`` (a command that only talks to the
    gateway), ``--gateway`` and ``--pki`` may stand for ``--workdir`` (:func:`client_network`).
    """
    if remote:
        add_network_options(parser)
    else:
        add_workdir_option(parser)
    if not users:  # main() refuses a user here in one line (acting_as)
        parser.add_argument("--as", dest="as_bureau", required=True, type=principal_text, help=role)
        parser.set_defaults(as_users=False)
        return
    parser.add_argument(
        "--as",
        dest="as_bureau",
        required=True,
        type=principal_text,
        metavar="BUREAU[/USER]",
        help=f"{role}: a bureau (FR) or one of its users (FR/cdg-border-12)",
    )
    parser.set_defaults(as_users=True)
