"""``ncbsim inbox --as NG/x``: what one of a bureau's users received, opened with its key.

A copy addressed to a user is sealed to the user's own encryption key; the bureau's node
verified the sender's signature, kept the copy unopened in its inbox (``user_mail``,
node/inbox.py) and signed the receipt (docs/users.md). Here the user opens its copies:
its keys are loaded and checked against its entry (:meth:`ncbsim.identity.Identity.load`),
and each copy is verified again, end to end, against the sender's entry from the
root-pinned files of the network (bureaus' entries, and users' entries signed by their
bureaus), as of the time the node took it. A copy that does not open (sealed to keys the
user no longer holds, or from a sender whose entry is gone) is counted, never shown.
"""

from __future__ import annotations

import time
from pathlib import Path

from google.protobuf.message import DecodeError

from ncbsim import envelope, messages, principal
from ncbsim.directory import Directory
from ncbsim.errors import DirectoryError, EnvelopeError, NcbsimError
from ncbsim.identity import Identity
from ncbsim.node.inbox import Inbox, InboxItem
from ncbsim.pki import PkiDir
from ncbsim.workdir import Workdir

__all__ = ["senders_on_disk", "user_inbox"]


def senders_on_disk(pki: PkiDir) -> Directory:
    """The root-pinned directory of the entries in ``pki``: bureaus, and the users their
    bureaus issued and did not revoke (``pki/users/XX/``)."""
    directory = Directory.from_pki(pki)
    folder = pki.root / "users"
    for bureau in sorted(p for p in folder.glob("*") if p.is_dir()) if folder.is_dir() else []:
        entries = [p.read_bytes() for p in sorted(bureau.glob("*.entry"))]
        revoked = [p.read_bytes() for p in sorted(bureau.glob("*.revoked"))]
        try:
            directory.add_users(entries, revoked)
        except DirectoryError:
            continue  # a bureau left out of the directory, or not issuing as itself
    return directory


def user_inbox(
    workdir: Path, user: str, kind: int | None = None, *, now_ms: int | None = None
) -> tuple[list[InboxItem], int]:
    """What ``user`` (``NG/x``) received (of ``kind``, if given), opened, in the order its
    bureau's node took them; and how many copies did not open."""
    pki = PkiDir(workdir)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    identity = Identity.load(pki, user, now_ms=now_ms)
    bureau = principal.bureau_of(user)
    path = Workdir(workdir).bureau(bureau).inbox
    if not path.is_file():
        raise NcbsimError(f"{user} has received nothing yet ({bureau} has no inbox: {path})")
    inbox = Inbox.read(path)
    try:
        kept = inbox.user_mail(user)
    finally:
        inbox.close()
    senders = senders_on_disk(pki)
    items: list[InboxItem] = []
    unopened = 0
    for sealed, taken_at_ms in kept:
        try:
            opened = envelope.open_message(
                envelope.Envelope.FromString(sealed),
                recipient=identity,
                senders=senders.get,
                now_ms=taken_at_ms,  # valid when its node took it
            )
            body = messages.unpack(opened.header.kind, opened.plaintext)
        except (EnvelopeError, DecodeError):
            unopened += 1
            continue
        header = opened.header
        if kind is None or header.kind == kind:
            items.append(
                InboxItem(
                    header.sender,
                    header.message_id,
                    header.correlation_id,
                    header.kind,
                    header.issued_at_ms,
                    taken_at_ms,
                    body,
                )
            )
    return items, unopened
