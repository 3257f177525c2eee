"""The lesson's biometric step as ``ncbsim demo`` runs it: a border camera's face search of
another bureau's collection, its candidate list, and the confirmation of candidate 1.

The simulator plays the camera: it captures a new probe of one of the owner's enrolled
subjects at the ``border`` quality (:func:`ncbsim.node.biogen.capture`, from the records
seed, as ``ncbsim record probe`` does). A border officer of the asking bureau
(``FR/cdg-border-12``, issued on first use as ``ncbsim user add`` issues it) sends the
search and then the confirmation through the gateway's real RPCs, with its own keys; on a
PKI that cannot issue users the bureau asks itself.

A probe is biometric data: the views show its size, never its bytes, and the step checks
that none of the gateway's files holds them. The classroom's free-play face search picks
and captures its subject with :func:`pick_subject` and :func:`camera` too.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import numpy as np

from ncbsim import biometrics, biosearch, padding
from ncbsim.errors import NcbsimError
from ncbsim.node import biogen
from ncbsim.node.records import Person
from ncbsim.node.store import RecordStore
from ncbsim.pki import PkiDir
from ncbsim.simulations import _demo_views as v
from ncbsim.simulations._demo_record import Step
from ncbsim.users import issue_user
from ncbsim.v2 import gateway_pb2, query_pb2, records_pb2
from ncbsim.workdir import Workdir

if TYPE_CHECKING:
    from ncbsim.simulations._demo_steps import Demo

__all__ = [
    "BORDER_USER",
    "CAMERA_QUALITY",
    "Subject",
    "border_user",
    "camera",
    "has_faces",
    "in_gateway_files",
    "owner_of",
    "pick_subject",
    "released",
    "step_biometric",
]

BORDER_USER = "cdg-border-12"
"""The asking bureau's border officer who sends the lesson's face search."""
CAMERA_QUALITY = "border"
"""A border kiosk's photo (docs/biometrics.md): the genuine score's mean is 0.65."""
USER_WAIT_S = 10.0
"""How long to wait for the gateway to pick a new user up (it rereads ``users/`` every
250 ms by default)."""


@dataclass(frozen=True, slots=True)
class Subject:
    """An enrolled subject of an owner's collection: who the camera photographs."""

    owner: str
    ref: str
    """The enrolled template's reference (what a correct candidate 1 is)."""
    person_ref: str
    """The owner's person record of the subject."""
    seed: int
    """The owner's records seed (the subject's stable template comes from it)."""
    enrolled: int
    """How many templates of the modality the owner has enrolled."""


def pick_subject(
    store: RecordStore,
    owner: str,
    modality: str = biometrics.FACE,
    rng: random.Random | None = None,
) -> Subject | None:
    """One of ``owner``'s subjects enrolled in ``modality`` (None if it enrolled none):
    ``rng``'s choice, or without one the first whose person is wanted (else the first)."""
    rows = [(ref, person) for ref, person, m, _ in store.enrolled() if m == modality]
    if not rows:
        return None
    seed = int(store.meta().get("seed", "0"))
    if rng is not None:
        ref, person_ref = rng.choice(rows)
    else:
        wanted = (r for r in rows if _flag(store.fetch(r[1])) == "wanted")
        ref, person_ref = next(wanted, rows[0])
    return Subject(owner, ref, person_ref, seed, len(rows))


def owner_of(demo: Demo) -> str:
    """The bureau whose faces the lesson searches."""
    return demo.members[1]


def has_faces(demo: Demo) -> bool:
    """Whether that bureau enrolled any face (the step is skipped otherwise)."""
    store = demo.obs.store(owner_of(demo))
    return any(m == biometrics.FACE for _, _, m, _ in store.enrolled())


def _flag(record: object) -> str:
    return record.flag if isinstance(record, Person) else ""


def camera(
    subject: Subject,
    rng: np.random.Generator,
    *,
    modality: str = biometrics.FACE,
    quality: str = CAMERA_QUALITY,
) -> bytes:
    """A new capture of ``subject`` at ``quality``: the probe bytes a camera would give."""
    return biogen.capture(
        subject.owner,
        subject.seed,
        subject.person_ref,
        modality=modality,
        quality=quality,
        rng=rng,
    )


def _lesson_rng(subject: Subject) -> np.random.Generator:
    """The lesson's capture noise: the same photo at every run of the same network."""
    text = f"lesson-camera:{subject.owner}:{subject.ref}"
    return np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8]))


async def border_user(demo: Demo) -> str:
    """The principal the search is sent as: the asker's border officer (issued on first use,
    and once the gateway admits it), or the asker itself if its PKI cannot issue users."""
    bureau = demo.asker
    principal = f"{bureau}/{BORDER_USER}"
    pki = PkiDir(demo.workdir)
    try:
        if not pki.user_entry_path(principal).exists():  # never re-issued: that would
            # make the certificate of a sender already open worthless
            issue_user(pki, bureau, BORDER_USER, "border", now_ms=int(time.time() * 1000))
        sender = demo.obs.sender(principal)
    except (NcbsimError, OSError):
        return bureau
    deadline = time.monotonic() + USER_WAIT_S
    request = gateway_pb2.GetDirectoryRequest(bureaus=[bureau])
    while True:
        try:
            await sender.stub.GetDirectory(request, timeout=demo.config.timeout_s)
            return principal
        except grpc.aio.AioRpcError as exc:
            refused = exc.code() in (
                grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.UNAUTHENTICATED,
            )
            if not refused or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.3)


def in_gateway_files(workdir: Path, data: bytes) -> bool:
    """Whether ``data`` is in any file of the gateway's folder (its audit log above all)."""
    folder = Workdir(workdir).gateway.audit.parent
    return any(data in p.read_bytes() for p in folder.rglob("*") if p.is_file())


def released(answer_response: query_pb2.Answer | None) -> records_pb2.Person | None:
    """The person a confirmation released, if it did."""
    if answer_response is None or not answer_response.HasField("confirmation"):
        return None
    record = answer_response.confirmation.record
    return record.person if record.HasField("person") else None


def _person_text(person: records_pb2.Person | None) -> str:
    if person is None:
        return "nothing"
    return f"{person.surname}, {person.given_names} ({person.flag or 'no flag'})"


async def step_biometric(demo: Demo, step: Step) -> None:
    """A face search as a border officer; candidate 1 confirmed 1:1, the person released."""
    owner = owner_of(demo)
    modality = biometrics.FACE
    subject = pick_subject(demo.obs.store(owner), owner, modality)
    if not step.check(f"{owner} has enrolled faces to search (records.biometrics)", subject):
        return
    assert subject is not None
    asker = await border_user(demo)
    probe = camera(subject, _lesson_rng(subject))
    search = biosearch.search(modality, probe)
    ex = await demo.obs.exchange(search, owner, asker=asker)
    demo.confirm(
        step, search, ex.sealed.envelope, ex.opened, ex.gateway_row, event=ex.gateway_event
    )
    listed = biosearch.candidates(ex.answer)
    threshold = biometrics.THRESHOLDS[modality]
    scores = [c.score for c in listed]
    step.check(
        f"{owner} listed 1 to {biometrics.DEFAULT_CANDIDATES} candidates, best first, each "
        f"scoring {threshold['search']:.2f} or more",
        1 <= len(listed) <= biometrics.DEFAULT_CANDIDATES
        and [c.rank for c in listed] == list(range(1, len(listed) + 1))
        and scores == sorted(scores, reverse=True)
        and min(scores) >= threshold["search"],
    )
    step.check(
        f"candidate 1 is the traveller's enrolled face {subject.ref}",
        bool(listed) and listed[0].ref == subject.ref,
    )
    shown = demo.exchanged(step, search, ex, subject.person_ref, asker=asker)
    if not listed:
        demo.show(step, demo.views(shown), **_fields(asker, owner, listed, None, None))
        return
    first = listed[0]
    confirm = biosearch.confirm(first.ref, modality, probe)
    ex2 = await demo.obs.exchange(confirm, owner, asker=asker)
    demo.confirm(
        step, confirm, ex2.sealed.envelope, ex2.opened, ex2.gateway_row, event=ex2.gateway_event
    )
    response = ex2.answer.response
    confirmation = response.confirmation if response is not None else None
    person = released(response)
    step.check(
        f"step 2: {owner} confirmed {first.ref}, released the traveller",
        confirmation is not None
        and confirmation.confirmed
        and confirmation.score >= threshold["confirm"]
        and person is not None
        and person.ref == subject.person_ref,
    )
    sizes = {len(e.sealed.envelope.sealed) for e in (ex, ex2)}
    step.check(
        f"search and confirmation are one size on the wire ({max(sizes):,} sealed bytes)",
        len(sizes) == 1 and min(sizes) > padding.BIOMETRIC_REQUEST_BYTES,
    )
    step.check(
        "the probe's bytes are in none of the gateway's files",
        not in_gateway_files(demo.workdir, probe),
    )
    demo.exchanged(step, confirm, ex2, subject.person_ref if person else "", asker=asker)
    record = demo.obs.record(owner, subject.person_ref)
    thresholds = [
        ("threshold", f"{threshold['search']:.2f}; step 2 {threshold['confirm']:.2f}"),
        ("cap", f"{biometrics.DEFAULT_CANDIDATES} asked, {biometrics.MAX_CANDIDATES} at most"),
    ]
    step2 = [
        ("step 2", v.confirmation_text(confirmation)),
        ("released", _person_text(person)),
    ]
    demo.show(
        step,
        (
            v.asker_panel(asker, search, owner, [("step 2", first.ref)]),
            v.gateway_panel(
                ex.sealed.envelope,
                ex.gateway_row,
                [("step 2", f"{len(ex2.sealed.envelope.sealed):,} bytes sealed")],
                event=ex.gateway_event,
            ),
            v.answerer_panel(
                owner, ex.opened, record, [("enrolled", f"{subject.enrolled} faces searched")]
            ),
            v.reply_panel(asker, owner, v.candidate_table(listed), thresholds, step2),
        ),
        **_fields(asker, owner, listed, confirmation, person),
    )


def _fields(
    asker: str,
    owner: str,
    listed: list[query_pb2.Candidate],
    confirmation: query_pb2.Confirmation | None,
    person: records_pb2.Person | None,
) -> dict[str, object]:
    """The caption's fields, from what happened."""
    first = listed[0] if listed else None
    confirmed = confirmation is not None and confirmation.confirmed
    return {
        "asker": asker,
        "owner": owner,
        "count": f"{len(listed)} candidate{'' if len(listed) == 1 else 's'}",
        "ref": first.ref if first else "none",
        "score": f"{first.score:.3f}" if first else "-",
        "confirmed": "confirms it" if confirmed else "does not confirm it",
        "person": _person_text(person),
    }
