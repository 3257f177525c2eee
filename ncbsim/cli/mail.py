"""``ncbsim diffuse``, ``notice``, ``message``, ``inbox`` and ``receipts``: one-way messages.

The send commands seal and post through :class:`ncbsim.mail.Mailer` and say, per
recipient, whether the gateway stored the copy. ``inbox`` and ``notice list`` read the
bureau's inbox file read-only (the node may be running); ``receipts`` asks the gateway
and verifies every receipt against the recipient's directory entry. What they print is
drawn by :mod:`ncbsim.cli.mail_views`.

Exit codes: 0 when everything was stored (or every receipt verified), 1 when a copy was
not stored or a receipt did not verify, 2 (raised as NcbsimError) for usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import mimetypes
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import grpc

from ncbsim import envelope, mail, messages, posts
from ncbsim.cli._common import acting_as, add_bureau_options, client_network, principal_text
from ncbsim.cli._events import add_events_option, client_events
from ncbsim.cli._trace import add_trace_file_option, traced
from ncbsim.cli.mail_views import (
    delivered_dict,
    item_dict,
    notice_dict,
    outcome_dict,
    print_inbox,
    print_notices,
    print_outcome,
    print_receipts,
    send_verdict,
)
from ncbsim.client import ALL, BureauClient, failure_detail
from ncbsim.durations import parse_duration
from ncbsim.errors import ConfigError, NcbsimError
from ncbsim.node.inbox import Inbox
from ncbsim.pki import PkiDir
from ncbsim.principal import bureau_of, is_user
from ncbsim.v2 import messages_pb2
from ncbsim.workdir import Workdir, require_pki

__all__ = [
    "INBOX_KINDS",
    "add_parsers",
    "cmd_inbox",
    "cmd_notice_list",
    "cmd_receipts",
    "cmd_send",
    "hex_id",
    "read_attachments",
    "read_person",
    "run_receipts",
    "run_send",
    "show_inbox",
    "show_notices",
    "ttl_ms",
]

INBOX_KINDS = {
    "diffusion": envelope.DIFFUSION,
    "message": envelope.MESSAGE,
    "notice": envelope.NOTICE,
    "notice-request": envelope.NOTICE_REQUEST,
}
"""``ncbsim inbox --kind`` names (notice requests reach GS only)."""


def hex_id(text: str, what: str) -> bytes:
    """A 16-byte id given as 32 hex digits, or ConfigError naming ``what``."""
    try:
        value = bytes.fromhex(text.strip())
    except ValueError:
        value = b""
    if len(value) != envelope.MESSAGE_ID_LEN:
        raise ConfigError(f"{what}: expected {2 * envelope.MESSAGE_ID_LEN} hex digits")
    return value


def ttl_ms(text: str) -> int:
    """``--ttl`` (``90s``, ``10m``, ``24h``) in milliseconds, at most 24 h."""
    seconds = parse_duration(text, option="--ttl", minimum_s=1)
    if seconds * 1000 > envelope.MAX_TTL_MS:
        raise ConfigError("--ttl: at most 24h")
    return seconds * 1000


def read_attachments(paths: Sequence[Path]) -> list[messages_pb2.Attachment]:
    """``--attach`` files as attachments (name, guessed media type, bytes)."""
    out = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"--attach {path}: {exc.strerror or exc}") from None
        media_type = mimetypes.guess_type(path.name)[0] or ""
        out.append(posts.attachment(path.name, data, media_type))
    return out


def read_person(path: Path) -> messages_pb2.NoticeSubject:
    """The notice subject in ``--person-file`` (a JSON object, see messages.subject_from_dict)."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"--person-file {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--person-file {path}: not JSON ({exc})") from None
    return messages.subject_from_dict(data)


# --------------------------------------------------------------------------- sending


async def run_send(args: argparse.Namespace, *, pki: PkiDir, gateway: str) -> int:
    """Run ``diffuse``, ``notice request``, ``notice withdraw`` or ``message send``."""
    ttl = ttl_ms(args.ttl)
    timeout_s = args.timeout
    who = acting_as(args)  # a bureau, or (diffuse, message) one of its users
    async with (
        client_events(args) as bus,
        BureauClient.open(pki, who, gateway, bus=bus) as client,
    ):
        mailer = mail.Mailer(client, strict=True)
        what = args.send
        if what == "diffusion":
            to = [c for c in args.to.split(",") if c.strip()]
            attachments = read_attachments(args.attach)
            outcome = await mailer.diffuse(
                to,
                args.subject,
                args.text,
                attachments,
                ttl_ms=ttl,
                timeout_s=timeout_s,
                copy_gs=not args.no_gs_copy,
            )
        elif what == "notice request":
            body = posts.notice_draft(
                args.color, read_person(args.person_file), args.summary, args.text
            )
            outcome = await mailer.post_notice_request(body, ttl_ms=ttl, timeout_s=timeout_s)
        elif what == "notice withdrawal":
            outcome = await mailer.withdraw_notice(
                hex_id(args.id, "--id"), args.reason, ttl_ms=ttl, timeout_s=timeout_s
            )
        else:
            if "," in args.to or args.to == ALL:
                raise ConfigError("a message goes to one bureau; use `ncbsim diffuse` for more")
            reply_to = hex_id(args.reply_to, "--reply-to") if args.reply_to else b""
            thread = args.thread or (
                _thread_of(args.workdir, args.as_bureau, reply_to) if reply_to else ""
            )
            outcome = await mailer.message(
                args.to,
                args.text,
                thread=thread,
                subject=args.subject,
                in_reply_to=reply_to,
                attachments=read_attachments(args.attach),
                ttl_ms=ttl,
                timeout_s=timeout_s,
            )
    if args.json:
        print(json.dumps(outcome_dict(args.as_bureau, what, outcome), indent=2))
    elif getattr(args, "quiet", False):  # for scripts: NOTICE=$(ncbsim notice request -q ...)
        print(outcome.notice_id.hex() if outcome.notice_id else outcome.post_hex)
    else:
        print_outcome(args.as_bureau, what, outcome)
    return send_verdict(outcome)


def _thread_of(workdir: Path, bureau: str, post_id: bytes) -> str:
    """The thread of the message ``post_id`` that ``bureau`` (or a user) received (for
    --reply-to)."""
    path = Workdir(workdir).bureau(bureau).inbox
    if is_user(bureau):
        from ncbsim.cli.mail_users import user_inbox

        for item in user_inbox(workdir, bureau, envelope.MESSAGE)[0]:
            if item.post_id == post_id and isinstance(item.body, messages_pb2.CaseMessage):
                return item.body.thread
    elif path.is_file():
        inbox = Inbox.read(path)
        try:
            for item in inbox.items(envelope.MESSAGE):
                if item.post_id == post_id and isinstance(item.body, messages_pb2.CaseMessage):
                    return item.body.thread
        finally:
            inbox.close()
    raise ConfigError(
        f"--reply-to: {bureau} received no message with post id {post_id.hex()}; "
        "give its thread with --thread"
    )


# --------------------------------------------------------------------------- receipts


async def run_receipts(args: argparse.Namespace, *, pki: PkiDir, gateway: str) -> int:
    """Run ``ncbsim receipts``: exit 1 if a delivered copy's receipt does not verify."""
    async with BureauClient.open(pki, acting_as(args), gateway) as client:
        try:
            listed = await mail.Mailer(client).receipts(args.after, timeout_s=args.timeout)
        except grpc.aio.AioRpcError as exc:
            print(
                f"ncbsim: the gateway at {gateway} did not answer ({failure_detail(exc)}); "
                "is the network up (ncbsim up)?",
                file=sys.stderr,
            )
            return 1
    if args.json:
        copies = [delivered_dict(d) for d in listed]
        print(json.dumps({"as": args.as_bureau, "copies": copies}, indent=2))
    else:
        print_receipts(args.as_bureau, listed)
    bad = [d for d in listed if d.state == "delivered" and not d.verified]
    if bad:
        print(
            f"ncbsim: {len(bad)} receipts did not verify against the recipients' directory "
            "entries: the gateway altered them, or they were signed with keys no longer valid",
            file=sys.stderr,
        )
        return 1
    return 0


# --------------------------------------------------------------------------- inbox

_Row = TypeVar("_Row")


def show_inbox(args: argparse.Namespace) -> int:
    """Run ``ncbsim inbox``: what the bureau received, decrypted, in processing order."""
    kind = INBOX_KINDS[args.kind] if args.kind else None
    if is_user(acting_as(args)):  # its copies, kept by its bureau's node, opened here
        from ncbsim.cli.mail_users import user_inbox

        items, unopened = user_inbox(args.workdir, args.as_bureau, kind)
        if unopened:
            print(f"ncbsim: {unopened} copies for {args.as_bureau} did not open", file=sys.stderr)
    else:
        items = _read_inbox(args, lambda inbox: inbox.items(kind))
    if args.json:
        return _print_json(args.as_bureau, "items", [item_dict(item) for item in items])
    print_inbox(args.as_bureau, items)
    return 0


def _read_inbox(args: argparse.Namespace, read: Callable[[Inbox], list[_Row]]) -> list[_Row]:
    """What ``read`` finds in the inbox of the bureau ``--as`` (NcbsimError if it has none)."""
    inbox = Inbox.read(_existing_inbox(args.workdir, args.as_bureau))
    try:
        return read(inbox)
    finally:
        inbox.close()


def _print_json(bureau: str, key: str, data: list[dict[str, object]]) -> int:
    """Print an inbox listing as one JSON object; exit status 0."""
    print(json.dumps({"as": bureau, key: data}, indent=2))
    return 0


def _existing_inbox(workdir: Path, bureau: str) -> Path:
    path = Workdir(workdir).bureau(bureau).inbox
    if not path.is_file():
        if not Workdir(workdir).bureau(bureau).root.is_dir():
            raise NcbsimError(
                f"{bureau} runs no node in {workdir}; give --workdir of `ncbsim up` and a "
                "bureau of that network"
            )
        raise NcbsimError(f"{bureau} has received nothing yet (no {path})")
    return path


# --------------------------------------------------------------------------- notices


def show_notices(args: argparse.Namespace) -> int:
    """Run ``ncbsim notice list``: the notices the bureau knows, oldest request first."""
    rows = _read_inbox(args, Inbox.notices)
    if args.json:
        return _print_json(args.as_bureau, "notices", [notice_dict(row) for row in rows])
    print_notices(args.as_bureau, rows)
    return 0


# --------------------------------------------------------------------------- commands


def cmd_send(args: argparse.Namespace) -> int:
    pki, gateway = client_network(args, bureau_of(acting_as(args)))  # a user: its bureau's
    if getattr(args, "reply_to", None) and args.workdir is None:
        raise ConfigError(
            "--reply-to finds the thread in the inbox of --workdir; with --gateway and --pki "
            "give the thread with --thread"
        )
    with traced("client", f"client:{args.as_bureau}", args.trace_file):
        return asyncio.run(run_send(args, pki=pki, gateway=gateway))


def cmd_receipts(args: argparse.Namespace) -> int:
    pki, gateway = client_network(args, bureau_of(acting_as(args)))
    return asyncio.run(run_receipts(args, pki=pki, gateway=gateway))


def cmd_inbox(args: argparse.Namespace) -> int:
    require_pki(args.workdir)
    return show_inbox(args)


def cmd_notice_list(args: argparse.Namespace) -> int:
    require_pki(args.workdir)
    return show_notices(args)


# --------------------------------------------------------------------------- parsers


def _as_bureau(
    parser: argparse.ArgumentParser,
    role: str,
    *,
    send: bool,
    gateway: bool = True,
    users: bool = False,
) -> None:
    """--workdir, --as (a user too, with ``users``) and --json; --ttl to post, --timeout
    to call the gateway."""
    add_bureau_options(parser, role, users=users, remote=gateway)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    if send:
        add_events_option(parser)
        parser.add_argument(
            "--ttl", default="24h", help="expires undelivered after this, e.g. 90s, 2h (max 24h)"
        )
        parser.add_argument(
            "-q",
            "--quiet",
            action="store_true",
            help="print only the post id (a notice request: the notice id), for scripts; "
            "copies not stored are still reported on stderr, with exit 1",
        )
        add_trace_file_option(parser)
    if gateway:
        parser.add_argument(
            "--timeout",
            type=float,
            default=10.0,
            help="seconds to keep retrying an unreachable gateway (default 10)",
        )


def _attach_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--attach",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a file to attach (repeatable; 16 KiB in all)",
    )


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """diffuse, notice, message, inbox, receipts: one-way messages (durable delivery)."""
    diffuse = sub.add_parser(
        "diffuse", help="alert some bureaus or ALL (GS gets a copy); delivered even if down"
    )
    _as_bureau(diffuse, "sender", send=True, users=True)
    diffuse.add_argument(
        "--to", required=True, help="bureaus or users, e.g. NG,GH or NG/ngo-x, or ALL"
    )
    diffuse.add_argument("--subject", required=True)
    diffuse.add_argument("--text", required=True)
    diffuse.add_argument(
        "--no-gs-copy",
        action="store_true",
        help="do not copy GS (sending again to bureaus whose copies were not stored)",
    )
    _attach_option(diffuse)
    diffuse.set_defaults(func=cmd_send, send="diffusion", server=False)

    notice = sub.add_parser("notice", help="request, list or withdraw notices (GS reviews them)")
    notice_sub = notice.add_subparsers(dest="notice_command", required=True, metavar="ACTION")
    request = notice_sub.add_parser("request", help="ask GS to publish a notice; prints its id")
    _as_bureau(request, "requesting bureau", send=True)
    request.add_argument("--color", required=True, help="red, yellow, blue, black, green, ...")
    request.add_argument(
        "--person-file",
        type=Path,
        required=True,
        metavar="PERSON.json",
        help='the subject, e.g. {"surname": "DOE", "given_names": "John", "dob": "1980-02-03"}',
    )
    request.add_argument("--summary", default="", help="the facts or charges, in one line")
    request.add_argument("--text", default="")
    request.set_defaults(func=cmd_send, send="notice request", server=False)
    listing = notice_sub.add_parser("list", help="the notices a bureau knows, from its inbox")
    _as_bureau(listing, "bureau", send=False, gateway=False)
    listing.set_defaults(func=cmd_notice_list, server=False)
    withdraw = notice_sub.add_parser("withdraw", help="ask GS to withdraw a notice you requested")
    _as_bureau(withdraw, "requesting bureau", send=True)
    withdraw.add_argument("--id", required=True, help="notice id (hex, from notice request)")
    withdraw.add_argument("--reason", default="")
    withdraw.set_defaults(func=cmd_send, send="notice withdrawal", server=False)

    message = sub.add_parser("message", help="case messages from one bureau to another")
    message_sub = message.add_subparsers(dest="message_command", required=True, metavar="ACTION")
    send = message_sub.add_parser("send", help="send a message in a case thread")
    _as_bureau(send, "sender", send=True, users=True)
    send.add_argument(
        "--to", required=True, type=principal_text, help="one bureau, or a user (NG/ngo-x)"
    )
    send.add_argument("--text", required=True)
    send.add_argument("--subject", default="")
    send.add_argument("--thread", default="", help="case thread (default: start a new one)")
    send.add_argument("--reply-to", metavar="POSTID", help="post id (hex) of the message answered")
    _attach_option(send)
    send.set_defaults(func=cmd_send, send="message", server=False)

    inbox = sub.add_parser("inbox", help="what a bureau received, decrypted, in order")
    _as_bureau(inbox, "receiver", send=False, gateway=False, users=True)
    inbox.add_argument("--kind", choices=["diffusion", "message", "notice", "notice-request"])
    inbox.set_defaults(func=cmd_inbox, server=False)

    receipts = sub.add_parser(
        "receipts", help="each copy a bureau sent: queued, delivered (signed receipt) or expired"
    )
    _as_bureau(receipts, "sender", send=False, users=True)
    receipts.add_argument("--after", type=int, default=0, help="only sequences above this")
    receipts.set_defaults(func=cmd_receipts, server=False)
