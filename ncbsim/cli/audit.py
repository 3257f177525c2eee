"""``ncbsim audit``: verify a gateway's or a node's audit log, or search it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ncbsim.errors import NcbsimError

__all__ = ["add_parsers", "cmd_audit_search", "cmd_audit_verify"]


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


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``audit verify`` and ``audit search`` on the ``ncbsim`` subparsers."""
    audit = sub.add_parser("audit", help="verify or search a gateway's or a node's audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_sub.add_parser(
        "verify", help="check the hash chain; exit 1 naming the first bad entry"
    )
    verify.add_argument("path", type=Path, help="e.g. WORKDIR/gateway/audit.sqlite")
    verify.set_defaults(func=cmd_audit_verify, server=False)
    search = audit_sub.add_parser("search", help="list matching entries, oldest first")
    search.add_argument("path", type=Path, help="e.g. WORKDIR/bureaus/DE/audit.sqlite")
    search.add_argument("--sender", type=str.upper, help="bureau code")
    search.add_argument("--recipient", type=str.upper, help="bureau code")
    search.add_argument("--kind", help="query_request, query_response, or a prefix such as query")
    search.add_argument("--message-id", help="message id (hex)")
    search.add_argument("--since", help="ISO 8601, e.g. 2026-01-31T09:00:00Z (naive is UTC)")
    search.add_argument("--until", help="ISO 8601, exclusive")
    search.add_argument("--limit", type=int, help="at most N entries")
    search.add_argument("--json", action="store_true", help="one JSON object per line")
    search.set_defaults(func=cmd_audit_search, server=False)
