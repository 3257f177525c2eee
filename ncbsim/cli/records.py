"""``ncbsim record list``, ``record restrict`` and ``hits``: the owner's side of its records
(``record enrolled`` and ``record probe``, for biometrics, are in
:mod:`ncbsim.cli.biometric_records`).

``record list`` shows records worth querying from the bureau's own record database
(read-only: it never writes), so a user knows what a query will hit.

``record restrict`` writes a record's control (allow- or deny-list, handling code, notify
flag) into the bureau's own record database, ``WORKDIR/bureaus/XX/records.sqlite``,
through :func:`ncbsim.node.admin.restrict`; the change applies to the next query of a
running node, with no restart.

``hits`` lists the bureau's hit notifications (``WORKDIR/bureaus/XX/hits.sqlite``, see
:mod:`ncbsim.node.hits`).
"""

from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import asdict
from datetime import UTC, datetime

from ncbsim.cli import biometric_records
from ncbsim.cli._common import add_bureau_options, principal_text
from ncbsim.countries import INTERPOL_MEMBERS, alpha2_of
from ncbsim.errors import NcbsimError, UnknownCountry
from ncbsim.node.admin import ControlChange, list_hits, list_records, restrict
from ncbsim.node.records import HANDLING_CODES, KINDS, Access, Control, Document, Person, Record
from ncbsim.workdir import Workdir

__all__ = [
    "MAX_LIMIT",
    "add_parsers",
    "cmd_hits",
    "cmd_record_list",
    "cmd_record_restrict",
    "describe",
]

MAX_LIMIT = 100_000
"""The largest --limit of ``record list`` and ``hits``: more rows than a terminal shows."""


def _bureau_codes(text: str, owner: str) -> frozenset[str]:
    codes: set[str] = set()
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            code = alpha2_of(part.strip())
        except UnknownCountry:
            raise NcbsimError(f"{part.strip()!r} is not a country code") from None
        if code not in INTERPOL_MEMBERS:
            raise NcbsimError(f"{code} is not an INTERPOL member")
        if code == owner:
            raise NcbsimError(f"{owner} owns the record and always sees it; do not list it")
        codes.add(code)
    return frozenset(codes)


def _handling(text: str) -> int:
    code = text.strip().upper()
    if code in {"NONE", "-"}:
        return -1
    if code not in HANDLING_CODES:
        raise NcbsimError(f"--handling must be one of {', '.join(HANDLING_CODES)} or none")
    return HANDLING_CODES.index(code)


def describe(control: Control) -> dict[str, object]:
    """A control as plain JSON-ready data."""
    return {
        "access": control.access,
        "bureaus": sorted(control.bureaus),
        "handling": "" if control.handling is None else HANDLING_CODES[control.handling],
        "notify": control.notify,
    }


def _control_text(control: Control) -> str:
    parts = []
    if control.access != "open":
        parts.append(f"{control.access} {','.join(sorted(control.bureaus))}")
    if control.handling is not None:
        parts.append(HANDLING_CODES[control.handling])
    if control.notify:
        parts.append("notify")
    return " ".join(parts)


def _record_fields(kind: str, record: Record) -> dict[str, object]:
    """What ``record list`` shows of a record: what a query for it needs, and its status."""
    if isinstance(record, Document):
        return {
            "number": record.number,
            "issuer": record.issuer,
            "doc_type": record.doc_type,
            "status": record.status,
        }
    if isinstance(record, Person):
        return {
            "surname": record.surname,
            "given_names": record.given_names,
            "date_of_birth": record.date_of_birth,
            "flag": record.flag,
        }
    return {
        "vin": record.vin,
        "plate": record.plate,
        "make": record.make,
        "model": record.model,
        "status": record.status,
    }


_SHOWN = {
    "document": ("number", "issuer", "status"),
    "person": ("surname", "given_names", "date_of_birth", "flag"),
    "vehicle": ("vin", "plate", "status"),
}
"""The columns of the human table (``--json`` has every field)."""
_HEADERS = {"given_names": "given names", "date_of_birth": "born"}
_EXAMPLE = {
    "document": "document --number {number} --issuer {issuer}",
    "person": "person --surname {surname} --given-names {given_names} --dob {date_of_birth}",
    "vehicle": "vehicle --vin {vin}",
}


def _check_limit(limit: int) -> None:
    """Refuse a --limit outside 1..MAX_LIMIT (a number past SQLite's integers overflowed)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise NcbsimError(f"--limit must be between 1 and {MAX_LIMIT}")


def cmd_record_list(args: argparse.Namespace) -> int:
    """``ncbsim record list``: records worth querying, from the owner's own database."""
    _check_limit(args.limit)
    owner = str(args.as_bureau).upper()
    kinds = (args.kind,) if args.kind else KINDS
    if args.field is not None and args.json:
        raise NcbsimError("--field and --json: pick one")
    listed = list_records(args.workdir, owner, kinds, args.limit)
    if args.field is not None:  # one value a line, for scripts: NUMBER=$(... --field number)
        fielded = [
            (kind, {"ref": record.ref, **_record_fields(kind, record)})
            for kind, record, _ in listed
        ]
        for kind, values in fielded:
            if args.field not in values:
                raise NcbsimError(
                    f"--field {args.field}: a {kind} has {', '.join(values)} (pass --kind)"
                )
        for _, values in fielded:
            print(values[args.field])
        return 0
    if args.json:
        for kind, record, control in listed:
            data = {"kind": kind, "ref": record.ref, **_record_fields(kind, record)}
            print(json.dumps({**data, "control": describe(control)}))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for kind in kinds:
        rows = [(record, control) for k, record, control in listed if k == kind]
        if not rows:
            continue
        table = Table(header_style="bold", title=f"{owner} {kind}s")
        shown = _SHOWN[kind]
        for column in ("ref", *shown, "control"):
            # Identifiers never wrap or shrink: they are copied into queries.
            keep = column in {"ref", "number", "vin", "date_of_birth"}
            table.add_column(_HEADERS.get(column, column), no_wrap=keep)
        for record, control in rows:
            values = _record_fields(kind, record)
            cells = [str(values[column]) for column in shown]
            table.add_row(record.ref, *cells, _control_text(control))
        console.print(table)
        fields = _record_fields(kind, rows[0][0])
        example = _EXAMPLE[kind].format(**{k: shlex.quote(str(v)) for k, v in fields.items()})
        console.print(
            f"query one: ncbsim query --workdir {args.workdir} --as XX --to {owner} {example}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    console.print(
        f"{len(listed)} records; control: who may see it (allow/deny), handling code, "
        "notify (hits show in `ncbsim hits`)"
    )
    return 0


def cmd_record_restrict(args: argparse.Namespace) -> int:
    """``ncbsim record restrict``: change a record's control, print the result."""
    owner = str(args.as_bureau).upper()
    access: Access | None = None
    bureaus: frozenset[str] = frozenset()
    if args.allow is not None:
        access, bureaus = "allow", _bureau_codes(args.allow, owner)
    elif args.deny is not None:
        access, bureaus = "deny", _bureau_codes(args.deny, owner)
        if not bureaus:
            raise NcbsimError("--deny needs at least one bureau (use --open to lift a restriction)")
    elif args.open:
        access = "open"
    change = ControlChange(
        access=access,
        bureaus=bureaus,
        handling=None if args.handling is None else _handling(args.handling),
        notify=args.notify,
    )
    control = restrict(Workdir(args.workdir).bureau(owner.upper()).records, args.ref, change)
    data = {"bureau": owner, "ref": args.ref.strip(), **describe(control)}
    if args.json:
        print(json.dumps(data))
    else:
        who = {
            "open": "every bureau",
            "allow": "only " + ", ".join(sorted(control.bureaus)),
            "deny": "every bureau except " + ", ".join(sorted(control.bureaus)),
        }[control.access]
        print(f"{owner} record {data['ref']}: visible to {who}")
        print(f"  handling code: {data['handling'] or 'none'}")
        print(f"  notify on hit: {'yes' if control.notify else 'no'}")
    return 0


def _time(at_ms: int) -> str:
    moment = datetime.fromtimestamp(at_ms / 1000, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def cmd_hits(args: argparse.Namespace) -> int:
    """``ncbsim hits``: the bureau's hit notifications, oldest first."""
    if args.limit is not None:
        _check_limit(args.limit)
    events = list_hits(
        args.workdir,
        str(args.as_bureau).upper(),
        ref=args.ref or "",
        requester=args.requester or "",
        limit=args.limit,
    )
    if args.json:
        for event in events:
            print(json.dumps(asdict(event)))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=True, header_style="bold")
    for column in ("time (UTC)", "requester", "ref", "record", "query", "outcome", "message_id"):
        table.add_column(column)
    for e in events:
        table.add_row(
            _time(e.at_ms),
            e.requester,
            e.ref,
            e.record_kind,
            e.query_kind,
            e.outcome,
            e.message_id[:12],
        )
    console = Console()
    console.print(table)
    by_users = sum("/" in e.requester for e in events)
    console.print(f"{len(events)} hit notifications", end="")
    # A requester BUREAU/USER is the user of that bureau who asked (docs/users.md).
    console.print(f" ({by_users} by a bureau's user, shown as BUREAU/USER)" if by_users else "")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``hits``, ``record list`` and ``record restrict`` on the ``ncbsim`` subparsers."""
    hits = sub.add_parser("hits", help="list hit notifications on a bureau's flagged records")
    add_bureau_options(hits, "owner")
    hits.add_argument("--ref", help="only hits on this reference")
    hits.add_argument(
        "--requester",
        type=principal_text,
        help="only hits by this bureau and its users (FR), or by one user (FR/cdg-border-12)",
    )
    hits.add_argument(
        "--limit", type=int, help=f"at most this many, 1 to {MAX_LIMIT} (oldest first)"
    )
    hits.add_argument("--json", action="store_true", help="one JSON object per line")
    hits.set_defaults(func=cmd_hits, server=False)

    record = sub.add_parser("record", help="a bureau's own records: list them, control them")
    actions = record.add_subparsers(dest="record_command", required=True, metavar="ACTION")
    rl = actions.add_parser(
        "list",
        help="records worth querying (read-only, from the bureau's own database)",
        description="List records of a bureau's own database to query: for documents the "
        "number, issuer and status, for persons the names and date of birth, for vehicles "
        "the VIN and plate. Records flagged for hit notification come first, records "
        "restricted to some bureaus last (the control column says who may see each). "
        "Reads WORKDIR/bureaus/XX/records.sqlite only; never writes.",
    )
    add_bureau_options(rl, "owner")
    rl.add_argument("--kind", choices=KINDS, help="only this kind (default: all three)")
    rl.add_argument(
        "--limit",
        type=int,
        default=10,
        help=f"at most N of each kind, 1 to {MAX_LIMIT} (default 10)",
    )
    rl.add_argument("--json", action="store_true", help="one JSON object per line")
    rl.add_argument(
        "--field",
        metavar="NAME",
        help="print only this field, one record a line, for scripts: ref; number, issuer, "
        "doc_type, status (documents); surname, given_names, date_of_birth, flag (persons); "
        "vin, plate, make, model, status (vehicles)",
    )
    rl.set_defaults(func=cmd_record_list, server=False)
    rs = actions.add_parser(
        "restrict",
        help="set who may see a record, its handling code and hit notification",
        description="Options not given leave that part of the control unchanged. "
        "Takes effect on the next query of a running node.",
    )
    add_bureau_options(rs, "owner")
    rs.add_argument("--ref", required=True, help="the record's reference")
    who = rs.add_mutually_exclusive_group()
    who.add_argument("--allow", metavar="CODES", help="only these bureaus may see it (DE,NL)")
    who.add_argument("--deny", metavar="CODES", help="every bureau but these may see it (RU)")
    who.add_argument("--open", action="store_true", help="every bureau may see it")
    rs.add_argument("--handling", metavar="CODE", help="H0, H1, H2, H3, or none")
    rs.add_argument(
        "--notify",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="record a hit notification when another bureau hits it",
    )
    rs.add_argument("--json", action="store_true", help="print the result as JSON")
    rs.set_defaults(func=cmd_record_restrict, server=False)
    biometric_records.add_parsers(actions)
