"""Prepare a network's work directory: its PKI, the scenario's users and every bureau's
records.

Records are made once for a scenario's seed and counts, and reused while they match
(``WORKDIR/records.json``); many bureaus' records are made in parallel, one process each.
Each user of the scenario (``[[users]]``) is issued by its bureau (ncbsim.users), and
issued again only if its entry no longer says what the scenario does.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from google.protobuf.message import DecodeError

from ncbsim import pki, private, users
from ncbsim.errors import ConfigError, NetworkError
from ncbsim.node import datagen
from ncbsim.simulations.scenario import Scenario, UserSpec
from ncbsim.v2 import users_pb2
from ncbsim.workdir import STAMP, Workdir

RecordJob = tuple[Path, str, int, int, int, int, int]
"""(database, bureau, seed, documents, persons, vehicles, biometrics): one bureau's records."""


def generate_records(
    todo: list[RecordJob],
    *,
    abort: threading.Event | None = None,
    processes: int | None = None,
) -> None:
    """Make each job's records, in parallel (one process a bureau, up to ``processes``,
    default one per CPU) when there are several; ``processes=1``: here, one after another.

    Setting ``abort`` stops the generation after the bureaus under way (NetworkError).
    """
    if len(todo) == 1 or processes == 1:
        for job in todo:
            _generate(job)
    elif todo:
        # Spawn, never fork: the caller may have gRPC threads running (a test process, a
        # client), and a child forked while one is inside gRPC can hang or crash.
        with ProcessPoolExecutor(
            max_workers=min(len(todo), processes or os.cpu_count() or 1),
            mp_context=multiprocessing.get_context("spawn"),
        ) as pool:
            pending = {pool.submit(_generate, item) for item in todo}
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()  # a generator's error surfaces here
                if abort is not None and abort.is_set():
                    # Those not started never will; those under way finish (datagen
                    # removes a database it could not complete).
                    for future in pending:
                        future.cancel()
                    raise NetworkError("record generation interrupted")


def _generate(args: RecordJob) -> str:
    path, bureau, seed, documents, persons, vehicles, biometrics = args
    datagen.generate(
        path,
        bureau,
        seed=seed,
        documents=documents,
        persons=persons,
        vehicles=vehicles,
        biometrics=biometrics,
        workers=1,  # already one bureau per pool worker
    )
    return bureau


def _stamp(scenario: Scenario) -> dict[str, int]:
    records = scenario.records
    stamp = {
        "seed": scenario.seed,
        "documents": records.documents,
        "persons": records.persons,
        "vehicles": records.vehicles,
    }
    if records.biometrics:  # only then: records made before biometrics still match
        stamp["biometrics"] = records.biometrics
    return stamp


def _check_stamp(workdir: Path, scenario: Scenario) -> None:
    """Refuse records made by another seed or counts: the run would not be the scenario's."""

    path = Workdir(workdir).stamp
    want = _stamp(scenario)
    if not path.exists():
        if any(Workdir(workdir).bureau(b).records.exists() for b in scenario.bureaus):
            raise ConfigError(
                f"{workdir} holds records of unknown origin (no {STAMP}); use a new --workdir"
            )
        path.write_text(json.dumps(want) + "\n")
        return
    have = json.loads(path.read_text())
    if have != want:
        differ = ", ".join(
            f"{k} {have.get(k)} (not {v})" for k, v in want.items() if have.get(k) != v
        )
        raise ConfigError(
            f"{workdir} holds records made with {differ}; use a new --workdir for this scenario"
        )


def _issued(directory: pki.PkiDir, user: UserSpec, now_ms: int) -> bool:
    """Whether ``user`` holds a current entry with the scenario's role and rights (and its
    keys): then it is not issued again."""
    path = directory.user_entry_path(user.principal)
    if not (path.is_file() and (directory.party(user.principal) / "tls.key").is_file()):
        return False
    try:
        signed = users_pb2.SignedUserEntry.FromString(path.read_bytes())
        entry = users_pb2.UserEntry.FromString(signed.entry)
        rights = users.Rights.from_proto(entry.rights)
    except (OSError, DecodeError, ConfigError):
        return False
    revoked = directory.user_revocation_path(user.principal).exists()
    fresh = entry.not_after_ms > now_ms + 3_600_000  # an hour left at least
    return entry.role == user.role and rights == user.rights() and fresh and not revoked


def issue_users(directory: pki.PkiDir, specs: tuple[UserSpec, ...]) -> list[str]:
    """Issue each user its bureau does not already hold as specified; the principals issued."""
    now_ms = int(time.time() * 1000)
    issued = []
    for user in specs:
        if _issued(directory, user, now_ms):
            continue
        users.issue_user(
            directory, user.bureau, user.name, user.role, rights=user.rights(), now_ms=now_ms
        )
        issued.append(user.principal)
    return issued


def prepare(
    workdir: Path,
    scenario: Scenario,
    *,
    abort: threading.Event | None = None,
    suite: str | None = None,
) -> pki.PkiDir:
    """Create the PKI and every bureau's records under ``workdir`` (reused if present).

    ``suite`` names the query session suite of a new PKI (default classic); a PKI already
    there keeps its own, and ConfigError says so if it is not ``suite``.

    Records are reused only if they were made with the scenario's seed and counts
    (``WORKDIR/records.json``), so a scenario always runs on its own data. Setting
    ``abort`` stops the generation after the bureaus under way (NetworkError).
    """
    # Imported here, not above: ncbsim.simulations.network names the work directory's paths
    # and imports this module, to prepare a network before it starts one.

    if suite is not None:
        pki.suite_id(suite)  # an unknown name is refused before anything is written
    workdir.mkdir(parents=True, exist_ok=True)
    directory = pki.PkiDir(workdir)
    if not directory.ca_key.exists():
        # wants an empty folder: first
        pki.init(workdir, list(scenario.bureaus), suite=suite or pki.DEFAULT_SUITE)
    elif suite is not None and directory.suite_name != suite:
        raise ConfigError(
            f"{workdir} holds a PKI of the {directory.suite_name} suite, not {suite}; "
            "use a new --workdir for another suite"
        )
    _check_stamp(workdir, scenario)
    missing = [b for b in scenario.bureaus if b not in directory.bureaus()]
    for code in missing:
        pki.add_bureau(directory, code)
    issue_users(directory, scenario.users)
    # Folders an older version made readable by anyone are tightened, and the
    # certificates it wrote 0644 in them (the other files are, as their owners open them).
    for folder in (
        Workdir(workdir).bureaus,
        Workdir(workdir).gateway.root,
        directory.party("operator"),
        *(directory.party(b) for b in scenario.bureaus),
    ):
        private.private_folder(folder)
        for cert in folder.glob("*.crt"):
            private.tighten(cert)
    todo = [
        (
            Workdir(workdir).bureau(b).records,
            b,
            scenario.seed,
            scenario.records.documents,
            scenario.records.persons,
            scenario.records.vehicles,
            scenario.records.biometrics,
        )
        for b in scenario.bureaus
        if not Workdir(workdir).bureau(b).records.exists()
    ]
    generate_records(todo, abort=abort)
    return directory
