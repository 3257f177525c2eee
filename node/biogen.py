"""Enrol synthetic biometrics: a fingerprint and a face for some of a bureau's persons.

:func:`enrol` adds rows to the ``biometrics`` table (:data:`BIOMETRICS_DDL`) of a record
database :mod:`ncbsim.node.datagen` is writing. The first ``count`` persons, in the order
they were generated, each get one template per modality of :data:`ncbsim.biometrics.MODALITIES`:
a capture at the modality's clean quality (``rolled`` prints, an ``enrolment`` photo) of the
subject ``"XX/" + person_ref``, whose stable template
:func:`ncbsim.biometrics.subject_template` draws from the records seed. So the same bureau,
seed and count always enrol the same templates, and anyone holding the seed (the simulator
playing a camera, ``ncbsim record probe``) can capture the same subject again.

Each template has an opaque reference like the records' (20 base32 characters from a
generator of its own, ``"XX:SEED:biometrics"``) that says nothing about the person it
belongs to; only the owner links it to ``person_ref``. Templates are stored as the int8
bytes of :func:`ncbsim.biometrics.encode`.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3

import numpy as np

from ncbsim import biometrics

__all__ = [
    "BIOMETRICS_DDL",
    "ENROLLED_ON",
    "capture",
    "clean_quality",
    "enrol",
    "stranger",
    "subject_of",
]

BIOMETRICS_DDL = """
CREATE TABLE IF NOT EXISTS biometrics (
    ref         TEXT PRIMARY KEY,
    person_ref  TEXT NOT NULL,
    modality    TEXT NOT NULL CHECK (modality IN ('fingerprint', 'face')),
    template    BLOB NOT NULL,
    quality     TEXT NOT NULL,
    enrolled_on TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS biometrics_person ON biometrics (person_ref, modality);
"""
"""The enrolled templates: one row per person and modality."""

ENROLLED_ON = "2025-06-30"
"""Enrolment date of every synthetic template (``datagen.AS_OF``: no clock involved)."""

_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


def subject_of(bureau: str, person_ref: str) -> str:
    """The stable subject name of a bureau's person: ``"DE/" + person_ref``."""
    return f"{bureau}/{person_ref}"


def clean_quality(modality: str) -> str:
    """The quality an enrolment is captured at: the modality's cleanest one."""
    return biometrics.ENROLMENT_QUALITY[modality]


def _token(rng: random.Random) -> str:
    bits = rng.getrandbits(100)
    return "".join(_BASE32[(bits >> shift) & 31] for shift in range(0, 100, 5))


def _numpy_rng(text: str) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8]))


def enrol(conn: sqlite3.Connection, bureau: str, seed: int, count: int) -> int:
    """Enrol the first ``count`` persons of ``conn`` (alpha-2 ``bureau``); how many were.

    The table (:data:`BIOMETRICS_DDL`) must exist; ValueError if ``count`` is negative or
    more than the persons the database holds. Runs in the caller's transaction.
    """
    if count < 0:
        raise ValueError("the number of enrolled persons cannot be negative")
    refs = [ref for (ref,) in conn.execute("SELECT ref FROM persons ORDER BY id LIMIT ?", (count,))]
    if len(refs) < count:
        raise ValueError(f"cannot enrol {count} persons: the database holds {len(refs)}")
    seed_text = f"{bureau}:{seed}:biometrics"
    tokens = random.Random(seed_text)
    noise = _numpy_rng(seed_text)
    rows = []
    for person_ref in refs:
        subject = subject_of(bureau, person_ref)
        for modality in biometrics.MODALITIES:
            quality = clean_quality(modality)
            capture = biometrics.sample(
                biometrics.subject_template(seed, subject, modality), quality, noise
            )
            rows.append(
                (
                    _token(tokens),
                    person_ref,
                    modality,
                    biometrics.encode(capture),
                    quality,
                    ENROLLED_ON,
                )
            )
    conn.executemany(
        "INSERT INTO biometrics (ref, person_ref, modality, template, quality, enrolled_on) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
    return len(refs)


def capture(
    bureau: str,
    seed: int,
    person_ref: str,
    *,
    modality: str,
    quality: str,
    rng: np.random.Generator,
) -> bytes:
    """A new capture of a bureau's enrolled person at ``quality``, as probe bytes: the
    simulator playing the camera or the scanner (``ncbsim record probe``, traffic)."""
    template = biometrics.subject_template(seed, subject_of(bureau, person_ref), modality)
    return biometrics.encode(biometrics.sample(template, quality, rng))


def stranger(
    seed: int, name: str, *, modality: str, quality: str, rng: np.random.Generator
) -> bytes:
    """A capture of a subject no bureau enrolled (``"nobody/NAME"``): a true no-hit."""
    template = biometrics.subject_template(seed, f"nobody/{name}", modality)
    return biometrics.encode(biometrics.sample(template, quality, rng))
