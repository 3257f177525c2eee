"""``ncbsim classroom``: a live web view of a network, for trainers (docs/classroom.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parsers", "cmd_classroom"]


def cmd_classroom(args: argparse.Namespace) -> int:
    from ncbsim.simulations.classroom.run import ClassroomConfig, run

    return run(
        ClassroomConfig(
            scenario=args.scenario,
            workdir=args.workdir,
            listen=args.listen,
            port=args.port,
            allow_remote=args.allow_remote,
            log_level=args.child_log_level,
        )
    )


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``classroom`` on the ``ncbsim`` subparsers."""
    from ncbsim.simulations.classroom import DEFAULT_PORT, DEFAULT_SCENARIO

    room = sub.add_parser(
        "classroom",
        help="trainer mode: a live web page of a network, for a room",
        description="Bring up a small network (or attach to one with --workdir) and serve a "
        "page a trainer projects: envelopes crossing a sequence diagram live, each party's "
        "view of a query, queries, notices, faults and attacks on a click, and a guided "
        "lesson. See docs/classroom.md.",
    )
    room.add_argument(
        "scenario",
        nargs="?",
        default=DEFAULT_SCENARIO,
        help=f"the network to bring up (default {DEFAULT_SCENARIO}: FR, DE, IT, ES, NL and GS)",
    )
    room.add_argument(
        "--workdir",
        type=Path,
        help="attach to the network up in this folder (ncbsim up); if none is up there, "
        "bring one up in it and keep its files",
    )
    room.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"the page's TCP port (default {DEFAULT_PORT}; 0: any free port)",
    )
    room.add_argument(
        "--listen",
        default="127.0.0.1",
        help="the address to serve on (default 127.0.0.1; another takes --allow-remote)",
    )
    room.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --listen address beyond this machine: the page shows the bureaus' "
        "plaintext and acts as any bureau, so only on a network you trust",
    )
    room.set_defaults(func=cmd_classroom, server=False)
