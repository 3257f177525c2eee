"""``ncbsim audit``: verify a gateway's or a node's audit log, or search it; prove who sent
a format-2 query (``prove``) and check such a proof (``check-proof``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ncbsim.cli._common import add_bureau_options, add_workdir_option, principal_text
from ncbsim.errors import NcbsimError

__all__ = [
    "add_parsers",
    "cmd_audit_check_proof",
    "cmd_audit_prove",
    "cmd_audit_search",
    "cmd_audit_verify",
]


def _parse_time_ms(text: str | None, option: str) -> int | None:
    """Milliseconds since the epoch from ISO 8601 (naive means UTC), or a clear error."""
    if text is None:
        return None
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise NcbsimError(f"{option}: not an ISO 8601 date or time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from ncbsim.auditread import verify

    verdict = verify(args.path)
    for warning in verdict.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if verdict.intact:
        print(verdict.describe())
        return 0
    print(verdict.describe())
    print(
        f"{args.path}: {verdict.entries} entries verified before the first bad one",
        file=sys.stderr,
    )
    return 1


def cmd_audit_search(args: argparse.Namespace) -> int:
    from ncbsim.auditread import Query, search

    if args.limit is not None and args.limit <= 0:
        raise NcbsimError("--limit must be positive")
    columns, rows = search(
        args.path,
        Query(
            sender=args.sender or "",
            recipient=args.recipient or "",
            kind=args.kind or "",
            message_id=args.message_id or "",
            since_ms=_parse_time_ms(args.since, "--since"),
            until_ms=_parse_time_ms(args.until, "--until"),
            limit=args.limit,
        ),
    )
    if args.json:
        for row in rows:
            print(json.dumps(dict(zip(columns, row, strict=True))))
        return 0
    from datetime import UTC, datetime

    from rich.console import Console
    from rich.table import Table

    # The table keeps to what fits a terminal; --json has every column.
    wanted = ("seq", "at_ms", "sender", "recipient", "kind", "message_id", "outcome", "reason")
    shown = [c for c in (*wanted, "status", "elapsed_ms") if c in columns]
    table = Table(show_header=True, header_style="bold")
    for column in shown:
        table.add_column({"at_ms": "time (UTC)", "elapsed_ms": "ms"}.get(column, column))
    for row in rows:
        values = dict(zip(columns, row, strict=True))
        cells = []
        for column in shown:
            value = values[column]
            if column == "at_ms":
                moment = datetime.fromtimestamp(value / 1000, UTC)
                value = moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
            elif column == "message_id":
                value = str(value)[:12]
            cells.append(str(value))
        table.add_row(*cells)
    console = Console()
    console.print(table)
    console.print(f"{len(rows)} entries")
    return 0


def cmd_audit_prove(args: argparse.Namespace) -> int:
    from ncbsim.node.proofs import prove
    from ncbsim.workdir import Workdir, require_pki

    try:
        message_id = bytes.fromhex(args.message_id)
    except ValueError:
        raise NcbsimError(f"--message-id: not hex: {args.message_id!r}") from None
    pki = require_pki(args.workdir)
    bureau = pki.require_bureau(args.as_bureau)
    made = prove(pki, Workdir(args.workdir).bureau(bureau).proofs, message_id)
    text = json.dumps(made, indent=2) + "\n"
    if args.out is None:
        sys.stdout.write(text)
        return 0
    from ncbsim.errors import cannot_write

    try:
        args.out.write_text(text)
    except OSError as exc:
        raise cannot_write(args.out, exc) from None
    print(f"proof of message {message_id.hex()} written to {args.out}")
    return 0


def cmd_audit_check_proof(args: argparse.Namespace) -> int:
    from ncbsim.pki import PkiDir
    from ncbsim.proof import check

    root = PkiDir(args.workdir).root_public_key()  # ca.crt, and nothing else of the PKI
    try:
        text = args.file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise NcbsimError(f"{args.file}: cannot read: {exc}") from None
    try:
        proof = json.loads(text)
    except ValueError:
        print("ncbsim: proof rejected: the file is not JSON", file=sys.stderr)
        return 1
    try:
        checked = check(proof, root)
    except NcbsimError as exc:
        print(f"ncbsim: {exc}", file=sys.stderr)
        return 1
    print(checked.describe())
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``audit verify``, ``search``, ``prove`` and ``check-proof``."""
    audit = sub.add_parser("audit", help="verify or search a gateway's or a node's audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_sub.add_parser(
        "verify", help="check the hash chain; exit 1 naming the first bad entry"
    )
    verify.add_argument("path", type=Path, help="e.g. WORKDIR/gateway/audit.sqlite")
    verify.set_defaults(func=cmd_audit_verify, server=False)
    search = audit_sub.add_parser("search", help="list matching entries, oldest first")
    search.add_argument("path", type=Path, help="e.g. WORKDIR/bureaus/DE/audit.sqlite")
    search.add_argument(
        "--sender", type=principal_text, help="bureau code, or a bureau's user (FR/cdg-border-12)"
    )
    search.add_argument(
        "--recipient", type=principal_text, help="bureau code, or a bureau's user (NG/ngo-x)"
    )
    search.add_argument("--kind", help="query_request, query_response, or a prefix such as query")
    search.add_argument("--message-id", help="message id (hex)")
    search.add_argument("--since", help="ISO 8601, e.g. 2026-01-31T09:00:00Z (naive is UTC)")
    search.add_argument("--until", help="ISO 8601, exclusive")
    search.add_argument("--limit", type=int, help="at most N entries")
    search.add_argument("--json", action="store_true", help="one JSON object per line")
    search.set_defaults(func=cmd_audit_search, server=False)
    prove = audit_sub.add_parser(
        "prove", help="the proof that a format-2 query a bureau received came from its sender"
    )
    add_bureau_options(prove, "the bureau that received the query (its proof log is read)")
    prove.add_argument("--message-id", required=True, help="the query's message id (hex)")
    prove.add_argument("--out", type=Path, help="write the proof (JSON) here, not to stdout")
    prove.set_defaults(func=cmd_audit_prove, server=False)
    check = audit_sub.add_parser(
        "check-proof", help="verify a proof with the root certificate only; exit 1 if rejected"
    )
    check.add_argument("file", type=Path, help="a proof written by `ncbsim audit prove`")
    add_workdir_option(check)
    check.set_defaults(func=cmd_audit_check_proof, server=False)
