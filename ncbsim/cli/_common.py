"""Option helpers shared by several command groups of the ``ncbsim`` command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from ncbsim import principal
from ncbsim.errors import ConfigError, PkiError

__all__ = [
    "acting_as",
    "add_bureau_options",
    "add_workdir_option",
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


def add_bureau_options(parser: argparse.ArgumentParser, role: str, *, users: bool = False) -> None:
    """``--workdir`` of a network and ``--as``, the bureau of it acting (``role``: its help).

    With ``users``, ``--as`` may also name one of a bureau's users (``FR/cdg-border-12``,
    docs/users.md): only the bureau part is upper-cased, and the command checks the
    value with :func:`acting_as`.
    """
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
