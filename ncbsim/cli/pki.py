"""``ncbsim pki``: create the network's PKI, revoke a bureau, rotate its keys."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from ncbsim.cli._common import codes
from ncbsim.durations import parse_duration
from ncbsim.pki import PkiDir

__all__ = ["add_parsers", "cmd_pki_init", "cmd_pki_revoke", "cmd_pki_rotate"]


def cmd_pki_init(args: argparse.Namespace) -> int:
    from ncbsim import pki

    directory = pki.init(args.dir, codes(args.bureaus), suite=args.suite)
    print(
        f"PKI for {', '.join(directory.bureaus())} written to {args.dir} "
        f"(query sessions: {args.suite} suite)"
    )
    return 0


def cmd_pki_revoke(args: argparse.Namespace) -> int:
    from ncbsim import rekey

    item = rekey.revoke(PkiDir(args.dir), args.bureau)
    print(
        f"revoked {args.bureau}: directory entries up to serial {item.entry_serial}, "
        f"{len(item.key_ids)} E2E keys and its TLS certificate "
        f"(list {args.dir / 'revocations.list'})"
    )
    print(
        f"issue new keys and a new certificate with: ncbsim pki rotate --dir {args.dir} "
        f"--bureau {args.bureau}"
    )
    return 0


def cmd_pki_rotate(args: argparse.Namespace) -> int:
    from ncbsim import rekey

    grace_s = parse_duration(args.grace, option="--grace", minimum_s=0)
    rotated = rekey.rotate(
        PkiDir(args.dir), args.bureau, grace_ms=grace_s * 1000, tls=args.tls, force=args.force
    )
    print(f"{args.bureau}: new E2E keys under directory entry serial {rotated.serial}")
    if rotated.previous_until_ms:
        until = dt.datetime.fromtimestamp(rotated.previous_until_ms / 1000, dt.UTC)
        print(f"the old keys stay acceptable until {until:%Y-%m-%dT%H:%M:%SZ} ({args.grace})")
    else:
        print("the old keys are refused from now on (no grace period)")
    if rotated.new_tls_certificate:
        print(
            f"new TLS certificate: restart {args.bureau}'s node to present it (a network of "
            f"`ncbsim up`: ncbsim restart --workdir {args.dir} --bureau {args.bureau})"
        )
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``pki init``, ``pki revoke`` and ``pki rotate`` on the ``ncbsim`` subparsers."""
    pki = sub.add_parser("pki", help="create and manage the network's PKI")
    pki_sub = pki.add_subparsers(dest="pki_command", required=True, metavar="ACTION")
    init = pki_sub.add_parser("init", help="root CA, TLS certificates, E2E keys, directory")
    init.add_argument("--dir", type=Path, required=True, help="directory to create")
    init.add_argument("--bureaus", required=True, help="comma-separated codes, e.g. FR,DE,IT")
    init.add_argument(
        "--suite",
        default="classic",
        help="the network's query session cryptography: classic (X25519) or hybrid "
        "(post-quantum X-Wing, MLKEM768-X25519); default classic (docs/protocol.md §15.1)",
    )
    init.set_defaults(func=cmd_pki_init, server=False)
    revoke = pki_sub.add_parser(
        "revoke", help="revoke a bureau's keys and certificate; running parties refuse them"
    )
    revoke.add_argument("--dir", type=Path, required=True, help="PKI directory (from pki init)")
    revoke.add_argument("--bureau", required=True, type=str.upper, help="bureau code, e.g. FR")
    revoke.set_defaults(func=cmd_pki_revoke, server=False)
    rotate = pki_sub.add_parser("rotate", help="issue a bureau new E2E keys; old ones get a grace")
    rotate.add_argument("--dir", type=Path, required=True, help="PKI directory (from pki init)")
    rotate.add_argument("--bureau", required=True, type=str.upper, help="bureau code, e.g. FR")
    rotate.add_argument(
        "--grace",
        default="1h",
        help="how long envelopes under the old keys stay acceptable, e.g. 0, 90s, 10m, 24h "
        "(default 1h; none if the old keys were revoked)",
    )
    rotate.add_argument(
        "--tls", action="store_true", help="issue a new TLS certificate too (always after revoke)"
    )
    rotate.add_argument(
        "--force",
        action="store_true",
        help="rotate even while the last rotation's grace period runs (cuts it short)",
    )
    rotate.set_defaults(func=cmd_pki_rotate, server=False)
