"""The ``ncbsim`` command line: parse arguments, configure logging once, call the library.

This is the top floor: it may import every package below, and nothing below imports it.
One module per command group registers its subcommands with ``add_parsers(sub)`` and
holds their ``cmd_*`` handlers:

- :mod:`~ncbsim.cli.pki`: ``pki init``, ``pki revoke``, ``pki rotate``
- :mod:`~ncbsim.cli.serve`: ``gateway``, ``node``, ``host``
- :mod:`~ncbsim.cli.operate`: ``up``, ``down``, ``status``, ``restart``, ``fault``,
  ``heal``, ``faultd``
- :mod:`~ncbsim.cli.watch`: ``watch``
- :mod:`~ncbsim.cli.query`: ``query``
- :mod:`~ncbsim.cli.mail`: ``diffuse``, ``notice``, ``message``, ``inbox``, ``receipts``
- :mod:`~ncbsim.cli.simulate`: ``simulate``, ``demo``
- :mod:`~ncbsim.cli.classroom`: ``classroom``
- :mod:`~ncbsim.cli.audit`: ``audit verify``, ``audit search``
- :mod:`~ncbsim.cli.load`: ``load``, ``bench``
- :mod:`~ncbsim.cli.records`: ``hits``, ``record list``, ``record restrict``
- :mod:`~ncbsim.cli.deploy`: ``deploy render``, ``apply``, ``status``, ``down``, ``unpack``;
  :mod:`~ncbsim.cli.deploy_run`: ``deploy run`` (a pod's command), ``deploy probe``
"""

from __future__ import annotations

import argparse
import sys

from ncbsim import log as logsetup
from ncbsim import private
from ncbsim.cli import (
    audit,
    classroom,
    deploy,
    deploy_run,
    load,
    mail,
    operate,
    pki,
    query,
    records,
    serve,
    simulate,
    users,
    watch,
)
from ncbsim.cli._common import acting_as
from ncbsim.config import log_level_from_env
from ncbsim.errors import NcbsimError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``ncbsim`` parser; each command's ``func`` and ``server`` are set as defaults."""
    parser = argparse.ArgumentParser(
        prog="ncbsim",
        description="Simulate an I-24/7 style police network: bureaus query each other's "
        "records end-to-end encrypted through an untrusted gateway.",
    )
    parser.add_argument(
        "--log-level",
        choices=logsetup.LEVELS,
        default=None,
        help="log level (default: NCBSIM_LOG_LEVEL or info for servers, warning for tools)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # The order of `ncbsim --help`: the commands a user needs first, the simulator's last.
    pki.add_parsers(sub)
    users.add_parsers(sub)
    serve.add_parsers(sub)
    operate.add_parsers(sub)
    watch.add_parsers(sub)
    query.add_parsers(sub)
    mail.add_parsers(sub)
    simulate.add_parsers(sub)
    audit.add_parsers(sub)
    load.add_parsers(sub)
    simulate.add_demo_parser(sub)
    classroom.add_parsers(sub)
    deploy_run.add_parsers(deploy.add_parsers(sub))
    records.add_parsers(sub)
    serve.add_host_parser(sub)
    operate.add_faultd_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ncbsim`` console script."""
    args = build_parser().parse_args(argv)
    if args.server:  # a bureau's data is as private as its keys (ncbsim.private)
        private.restrict_umask()
    role = args.command if args.server else ""
    if role == "node":
        role = f"node:{args.bureau}"
    # Servers log at info by default; tools stay quiet but start their servers at info.
    args.child_log_level = args.log_level or log_level_from_env("info")
    args.log_level = args.log_level or log_level_from_env("info" if args.server else "warning")
    logsetup.configure(args.log_level, role=role)
    try:
        if getattr(args, "as_users", None) is False:  # a command that acts as a bureau only
            acting_as(args)
        result: int = args.func(args)
    except NcbsimError as exc:
        print(f"ncbsim: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result
