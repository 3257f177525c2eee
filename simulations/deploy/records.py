"""A deployed bureau's records: made once from the deployment's seed and counts, then kept.

A bureau pod owns a volume (``/var/lib/ncbsim``) that outlives the pod. Its records are
made there at the pod's first start and reused at every later start, so a pod that is
killed, moved or upgraded comes back with the same records, audit trail and inbox. The
same function makes the load harness's local copy of the targets' records
(:mod:`ncbsim.load.deployed`): :mod:`ncbsim.node.datagen` gives the same records for the
same bureau, seed and counts, wherever and in however many processes it runs.

Each bureau's folder holds ``records.json``, the seed and counts its records were made
with. A folder whose stamp names other figures is refused (the deployment changed under
a volume that holds another network's data: delete the volume, or render with the old
figures), never silently regenerated: the folder also holds the bureau's audit trail.
A database is written under a temporary name and renamed when complete, so a pod killed
while generating starts over cleanly.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ncbsim import private
from ncbsim.errors import ConfigError
from ncbsim.simulations.prepare import RecordJob, generate_records
from ncbsim.workdir import BureauDir

__all__ = ["RecordCounts", "ensure_records", "holds"]

STAMP = "records.json"


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordCounts:
    """The seed and per-bureau counts a deployment's records are made with."""

    seed: int
    documents: int
    persons: int
    vehicles: int
    biometrics: int = 0


def _partial(folder: Path) -> Path:
    final = BureauDir(folder).records
    return final.with_name(final.name + ".partial")


def _job(folder: Path, bureau: str, counts: RecordCounts) -> RecordJob:
    partial = _partial(folder)
    partial.unlink(missing_ok=True)  # a pod killed while generating left it
    return (partial, bureau, counts.seed, counts.documents, counts.persons, counts.vehicles,
            counts.biometrics)  # fmt: skip


def _complete(folder: Path, bureau: str, counts: RecordCounts) -> None:
    os.replace(_partial(folder), BureauDir(folder).records)
    private.write_text(folder / STAMP, json.dumps({"bureau": bureau, **asdict(counts)}) + "\n")


def _check(folder: Path, bureau: str, counts: RecordCounts) -> bool:
    """Whether ``folder`` already holds ``bureau``'s records made with ``counts``."""
    stamp = folder / STAMP
    records = BureauDir(folder).records
    if not stamp.exists():
        if records.exists():
            raise ConfigError(f"{records} has no {STAMP}: records of unknown origin")
        return False
    try:
        have = json.loads(stamp.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{stamp}: unreadable ({exc})") from None
    want = {"bureau": bureau, **asdict(counts)}
    if have != want:
        differ = ", ".join(
            f"{k} {have.get(k)} (not {v})" for k, v in want.items() if have.get(k) != v
        )
        raise ConfigError(f"{folder} holds records made with {differ}; delete the volume first")
    if not records.exists():
        raise ConfigError(f"{stamp} is there but {records} is not; delete the volume first")
    return True


def holds(folder: Path, bureau: str, counts: RecordCounts) -> bool | None:
    """Whether ``folder`` holds ``bureau``'s complete records made with ``counts``: True,
    False if it holds nothing yet, None if it holds something else (other figures, or
    records of unknown origin), which :func:`ensure_records` would refuse."""
    try:
        return _check(folder, bureau, counts)
    except ConfigError:
        return None


def ensure_records(
    folders: dict[str, Path], counts: RecordCounts, *, processes: int | None = None
) -> dict[str, str]:
    """Make each bureau's records in its folder unless they are there already.

    ``folders`` maps a bureau code to its folder. Returns, per bureau, ``"generated"`` or
    ``"reused"``. Several bureaus are generated in parallel, one spawned process each, up
    to ``processes`` (default one per CPU; 1: one after another, in this process).
    """
    todo: dict[str, Path] = {}
    done: dict[str, str] = {}
    for bureau, folder in sorted(folders.items()):
        private.private_folder(folder)  # makes it, 0700
        if _check(folder, bureau, counts):
            done[bureau] = "reused"
        else:
            todo[bureau] = folder
    jobs = [_job(folder, bureau, counts) for bureau, folder in todo.items()]
    generate_records(jobs, processes=processes)
    for bureau, folder in todo.items():
        _complete(folder, bureau, counts)
        done[bureau] = "generated"
    return dict(sorted(done.items()))
