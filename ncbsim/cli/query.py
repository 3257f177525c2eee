"""``ncbsim query``: query a running network as one bureau (step 1, and step 2 ``fetch``;
biometric searches ``fingerprint`` and ``face``, and their step 2 ``confirm``).

Every value is checked by :mod:`ncbsim.simulations.query_input` before anything is sent; the
query itself runs in :func:`ncbsim.console.run_query`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from pathlib import Path

from ncbsim.cli._common import acting_as, add_bureau_options, client_network
from ncbsim.cli._events import add_events_option, client_events
from ncbsim.cli._trace import add_trace_file_option, traced

__all__ = ["add_parsers", "cmd_query"]


def cmd_query(args: argparse.Namespace) -> int:
    from ncbsim.console import run_query
    from ncbsim.simulations import query_input

    # Formats first: a query that cannot be right is refused before anything is read or sent.
    who = acting_as(args)  # a bureau, or one of its users (docs/users.md)
    to = query_input.recipients(args.to)
    request = query_input.request(args, today=dt.date.today())
    pki, gateway = client_network(args, who.partition("/")[0])  # a user: its bureau's link

    async def run() -> int:
        async with client_events(args) as bus:
            return await run_query(args, request, to, pki=pki, gateway=gateway, bus=bus)

    with traced("client", f"client:{who}", args.trace_file):
        return asyncio.run(run())


def _output_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """--fetch, --json and --timeout; without defaults they only override when given."""
    parser.add_argument(
        "--fetch",
        action="store_true",
        default=False if defaults else argparse.SUPPRESS,
        help="run step 2 on every hit",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if defaults else argparse.SUPPRESS,
        help="machine-readable output",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0 if defaults else argparse.SUPPRESS,
        help="deadline in seconds (default 5)",
    )
    add_trace_file_option(parser, default=None if defaults else argparse.SUPPRESS)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``query`` and its kinds (document, person, vehicle, fetch, fingerprint,
    face, confirm)."""
    query = sub.add_parser(
        "query",
        help="query a running network as one bureau",
        description="Query a running network as one bureau. Every value is checked before "
        "anything is sent; a value that cannot be right exits 2 saying what is expected.",
    )
    add_bureau_options(query, "requester", users=True, remote=True)
    query.add_argument(
        "--to",
        required=True,
        type=str.upper,
        help="bureau codes, comma-separated (DE or DE,IT; GS is the General Secretariat), "
        "or ALL: every bureau of the root-signed directory but the requester",
    )
    add_events_option(query)
    # Output options are accepted before or after KIND, as users type them either way.
    _output_options(query, defaults=True)
    output = argparse.ArgumentParser(add_help=False)
    _output_options(output, defaults=False)
    kinds = query.add_subparsers(dest="kind", required=True, metavar="KIND")
    doc = kinds.add_parser(
        "document", parents=[output], help="travel document by number and issuer (SLTD)"
    )
    doc.add_argument(
        "--number",
        required=True,
        help="document number: letters A-Z and digits, at most 20 (spaces and - . / < are ignored)",
    )
    doc.add_argument(
        "--issuer",
        required=True,
        type=str.upper,
        help="issuing state: ISO 3166 alpha-2, e.g. FR (alpha-3 FRA and ICAO codes such as "
        "D are accepted); GS for INTERPOL travel documents",
    )
    person = kinds.add_parser(
        "person", parents=[output], help="person by name (fuzzy) and date of birth"
    )
    person.add_argument("--surname", required=True, help="family name, in any script")
    person.add_argument("--given-names", default="", help="given names (optional)")
    person.add_argument(
        "--dob", required=True, help="date of birth, YYYY-MM-DD: a real date, not in the future"
    )
    vehicle = kinds.add_parser(
        "vehicle", parents=[output], help="vehicle by VIN or plate (give at least one)"
    )
    vehicle.add_argument(
        "--vin",
        default="",
        help="17 characters, digits and letters except I, O and Q (ISO 3779). The check "
        "digit (position 9) is checked only for North American VINs (first character 1 to "
        "5), the only ones whose standard requires it",
    )
    vehicle.add_argument("--plate", default="", help="registration plate, e.g. 'AB-123-CD'")
    fetch = kinds.add_parser("fetch", parents=[output], help="step 2: full record for a reference")
    fetch.add_argument(
        "--ref",
        required=True,
        help="a reference from a step-1 hit: 20 characters a-z and 2-7 (N and 32 hex "
        "digits for the person record of a notice)",
    )
    _biometric_parsers(kinds, output)
    query.set_defaults(func=cmd_query, server=False)


def _biometric_parsers(
    kinds: argparse._SubParsersAction[argparse.ArgumentParser], output: argparse.ArgumentParser
) -> None:
    """``fingerprint``, ``face`` (a 1:N search: a candidate list) and ``confirm`` (step 2)."""
    from ncbsim import biometrics

    for modality in biometrics.MODALITIES:
        search = kinds.add_parser(
            modality,
            parents=[output],
            help=f"1:N {modality} search with a probe: a ranked candidate list (--fetch "
            "confirms each candidate)",
        )
        search.add_argument(
            "--probe",
            type=Path,
            required=True,
            help=f"the probe: {biometrics.DIMS[modality]} int8 bytes, as `ncbsim record "
            "probe` writes them",
        )
        search.add_argument(
            "--max",
            type=int,
            default=0,
            help=f"candidates wanted, 1 to {biometrics.MAX_CANDIDATES} (the owner's cap); "
            f"default the owner's {biometrics.DEFAULT_CANDIDATES}",
        )
    confirm = kinds.add_parser(
        "confirm",
        parents=[output],
        help="step 2 of a biometric hit: the owner compares the probe with one candidate "
        "and, if it holds, releases the person",
    )
    confirm.add_argument("--ref", required=True, help="a candidate's reference from step 1")
    confirm.add_argument("--modality", required=True, choices=biometrics.MODALITIES)
    confirm.add_argument("--probe", type=Path, required=True, help="the probe searched with")
