"""``ncbsim record enrolled`` and ``record probe``: a bureau's enrolled biometrics, and a
new capture of one of its subjects (the simulator playing the camera).

``record enrolled`` lists the owner's enrolled templates (reference, modality, the person
they belong to), read-only, from ``WORKDIR/bureaus/XX/records.sqlite``. ``record probe``
stands in for a capture device: it reads which person a template was enrolled for and the
records seed, draws a fresh sample of that subject at the quality asked
(:func:`ncbsim.node.biogen.capture`) and writes its int8 bytes, the probe ``ncbsim query
face|fingerprint --probe`` sends. A real border post would photograph the traveller; the
simulator can only re-sample the synthetic subject (docs/biometrics.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ncbsim import biometrics
from ncbsim.cli._common import add_bureau_options, add_workdir_option
from ncbsim.errors import NcbsimError, cannot_write
from ncbsim.node import biogen
from ncbsim.node.records import Person
from ncbsim.node.store import RecordStore
from ncbsim.workdir import Workdir, require_pki

__all__ = ["add_parsers", "cmd_enrolled", "cmd_probe"]


def _open(workdir: Path, bureau: str) -> RecordStore:
    path = Workdir(Path(workdir)).bureau(bureau.upper()).records
    if not path.is_file():
        require_pki(workdir)
        raise NcbsimError(f"no record database at {path}; is {bureau} a bureau of {workdir}?")
    try:
        return RecordStore(path)
    except ValueError as exc:
        raise NcbsimError(str(exc)) from None


def cmd_enrolled(args: argparse.Namespace) -> int:
    """``ncbsim record enrolled``: the owner's enrolled templates, with their persons."""
    if not 1 <= args.limit <= 100_000:
        raise NcbsimError("--limit must be between 1 and 100000")
    store = _open(args.workdir, args.as_bureau)
    try:
        rows = [r for r in store.enrolled() if args.modality in (None, r[2])][: args.limit]
        people = {ref: store.fetch(ref) for _, ref, _, _ in rows}
    finally:
        store.close()
    listed = []
    for ref, person_ref, modality, _ in rows:
        person = people[person_ref]
        name = f"{person.surname}, {person.given_names}" if isinstance(person, Person) else ""
        listed.append({"ref": ref, "modality": modality, "person": person_ref, "name": name})
    if args.field is not None:
        if args.field not in ("ref", "modality", "person", "name"):
            raise NcbsimError(f"--field {args.field}: one of ref, modality, person, name")
        for item in listed:
            print(item[args.field])
    elif args.json:
        for item in listed:
            print(json.dumps(item))
    else:
        for item in listed:
            print(f"{item['ref']}  {item['modality']:<11}  person {item['person']}  {item['name']}")
        print(
            f"{len(listed)} templates; capture one again: ncbsim record probe --workdir "
            f"{args.workdir} --bureau {args.as_bureau} --ref REF --out probe.bin"
        )
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    """``ncbsim record probe``: sample a new capture of an enrolled subject, write its bytes."""
    store = _open(args.workdir, args.bureau)
    try:
        rows = {ref: (person, modality) for ref, person, modality, _ in store.enrolled()}
        seed = int(store.meta().get("seed", "0"))
    finally:
        store.close()
    if args.ref not in rows:
        raise NcbsimError(
            f"--ref: {args.ref!r} is no template enrolled at {args.bureau} "
            f"(see `ncbsim record enrolled --workdir {args.workdir} --as {args.bureau}`)"
        )
    person_ref, modality = rows[args.ref]
    quality = args.quality or biometrics.QUALITIES[modality][1]
    if quality not in biometrics.QUALITIES[modality]:
        raise NcbsimError(
            f"--quality: a {modality} is captured {', '.join(biometrics.QUALITIES[modality])}, "
            f"not {quality}"
        )
    rng = np.random.default_rng(args.seed)
    probe = biogen.capture(
        args.bureau.upper(), seed, person_ref, modality=modality, quality=quality, rng=rng
    )
    try:
        args.out.write_bytes(probe)
    except OSError as exc:
        raise cannot_write(args.out, exc) from None
    print(f"{args.out}: a {modality} probe ({quality}, {len(probe)} bytes) of {args.ref}")
    return 0


def add_parsers(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``record enrolled`` and ``record probe`` on ``record``'s actions."""
    enrolled = actions.add_parser(
        "enrolled",
        help="the bureau's enrolled fingerprints and faces (read-only)",
        description="List the templates a bureau enrolled: reference, modality and the "
        "person each belongs to. Reads WORKDIR/bureaus/XX/records.sqlite only.",
    )
    add_bureau_options(enrolled, "owner")
    enrolled.add_argument("--modality", choices=biometrics.MODALITIES, help="only this one")
    enrolled.add_argument("--limit", type=int, default=10, help="at most N (default 10)")
    enrolled.add_argument("--json", action="store_true", help="one JSON object per line")
    enrolled.add_argument(
        "--field", metavar="NAME", help="only this field a line: ref, modality, person, name"
    )
    enrolled.set_defaults(func=cmd_enrolled, server=False)
    probe = actions.add_parser(
        "probe",
        help="the simulator playing the camera: a new capture of an enrolled subject",
        description="Stand in for a fingerprint scanner or a camera: sample a new capture "
        "of the subject a bureau enrolled under REF, at a capture quality, and write it as "
        "a probe (int8 bytes) for `ncbsim query fingerprint|face --probe`. There are no "
        "real images: the simulator re-samples the synthetic subject (docs/biometrics.md).",
    )
    add_workdir_option(probe)
    probe.add_argument(
        "--bureau", required=True, type=str.upper, help="the bureau that enrolled the subject"
    )
    probe.add_argument("--ref", required=True, help="an enrolled template's reference")
    probe.add_argument(
        "--quality",
        help="fingerprint: rolled, plain or latent; face: enrolment, border or cctv "
        "(default plain / border)",
    )
    probe.add_argument("--out", type=Path, required=True, help="where to write the probe")
    probe.add_argument("--seed", type=int, help="seed of the capture noise (default: random)")
    probe.set_defaults(func=cmd_probe, server=False)
