"""Option helpers shared by several command groups of the ``ncbsim`` command line."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_bureau_options", "add_workdir_option", "codes"]


def codes(text: str) -> list[str]:
    """Bureau codes from a comma-separated option, upper case, blanks dropped."""
    return [c.strip().upper() for c in text.split(",") if c.strip()]


def add_workdir_option(parser: argparse.ArgumentParser) -> None:
    """``--workdir``: the folder of a network brought up by ``ncbsim up`` (required)."""
    parser.add_argument("--workdir", type=Path, required=True, help="workdir of `ncbsim up`")


def add_bureau_options(parser: argparse.ArgumentParser, role: str) -> None:
    """``--workdir`` of a network and ``--as``, the bureau of it acting (``role``: its help)."""
    add_workdir_option(parser)
    parser.add_argument("--as", dest="as_bureau", required=True, type=str.upper, help=role)
