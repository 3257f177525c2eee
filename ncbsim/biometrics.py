"""Synthetic biometric templates: the model that stands in for real fingerprint and face matchers.

No images and no model weights. A template is what a modern matcher compares: a fixed-length
unit vector scored by cosine (face: an ArcFace-like 512-d embedding; fingerprint: a 256-d
fixed-length representation of the minutiae, as DeepPrint-style fingerprint embeddings are).
docs/biometrics.md describes the model, where its numbers come from and where it falls short.

- :func:`subject_template` is a subject's stable vector: a shared population part (a mean
  direction and a low-rank subspace that every subject of the modality shares, so impostor
  scores have a realistic small positive mean and a spread with a tail) plus an individual
  part drawn from a generator seeded by a hash of ``(seed, subject, modality)``.
- :func:`sample` is one capture: the template plus isotropic Gaussian noise whose sigma is
  set per quality (and varies a little from capture to capture, as real capture quality
  does), renormalised. A record is a sample at the clean quality (``rolled``, ``enrolment``).
- :func:`encode` and :func:`decode` are the wire form: int8 components, scale 127, exactly
  ``DIMS[modality]`` bytes.
- :data:`THRESHOLDS` are derived from the model by :func:`derive_thresholds` (fixed seed):
  ``search`` at a false-match rate of about 1e-4 per comparison, ``confirm`` (1:1, step 2)
  at about 1e-6.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt

from ncbsim.errors import QueryError
from ncbsim.v2 import query_pb2

__all__ = [
    "DEFAULT_CANDIDATES",
    "DIMS",
    "ENROLMENT_QUALITY",
    "FACE",
    "FINGERPRINT",
    "MAX_CANDIDATES",
    "MODALITIES",
    "QUALITIES",
    "THRESHOLDS",
    "Vector",
    "decode",
    "derive_thresholds",
    "encode",
    "from_wire",
    "impostor_scores",
    "sample",
    "samples",
    "similarity",
    "subject_template",
    "to_wire",
]

Vector = npt.NDArray[np.float32]

FINGERPRINT: Final = "fingerprint"
FACE: Final = "face"
MODALITIES: Final = (FINGERPRINT, FACE)
DIMS: Final[Mapping[str, int]] = MappingProxyType({FINGERPRINT: 256, FACE: 512})

# Capture qualities per modality, the clean (enrolment) one first.
QUALITIES: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {FINGERPRINT: ("rolled", "plain", "latent"), FACE: ("enrolment", "border", "cctv")}
)
ENROLMENT_QUALITY: Final[Mapping[str, str]] = MappingProxyType(
    {modality: qualities[0] for modality, qualities in QUALITIES.items()}
)

MAX_CANDIDATES: Final = 10  # the owner's cap on a candidate list (Prüm)
DEFAULT_CANDIDATES: Final = 5  # what a requester asks for when it names no number

_SCALE: Final = 127.0  # int8 wire scale: a component of 1.0 is 127


@dataclass(frozen=True, slots=True, kw_only=True)
class _Population:
    """What every subject of a modality shares: the source of the impostor distribution."""

    mean_weight: float
    """Weight of the one shared direction: about the impostor mean score."""
    subspace_weight: float
    """Weight of the shared low-rank subspace: the spread and tail of impostor scores."""
    rank: int
    """Dimension of the shared subspace (fewer: heavier impostor tail)."""


_POPULATION: Final[Mapping[str, _Population]] = MappingProxyType(
    {
        FINGERPRINT: _Population(mean_weight=0.02, subspace_weight=0.30, rank=16),
        FACE: _Population(mean_weight=0.03, subspace_weight=0.30, rank=24),
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Quality:
    """One capture quality: the noise added to the template, relative to its unit norm."""

    sigma: float
    """Median noise norm of a capture (the noise vector's length over the template's)."""
    spread: float
    """Log-normal spread of sigma from capture to capture (a smudge, a turned head)."""


# Tuned so that a probe of this quality against an enrolled record (a sample at the clean
# quality) scores these genuine means: rolled 0.85, plain 0.70, latent 0.45; enrolment
# 0.85, border 0.65, cctv 0.45 (docs/biometrics.md, and tests/ncbsim/test_biometrics.py).
_QUALITY: Final[Mapping[str, _Quality]] = MappingProxyType(
    {
        "rolled": _Quality(sigma=0.40, spread=0.30),
        "plain": _Quality(sigma=0.83, spread=0.30),
        "latent": _Quality(sigma=1.82, spread=0.35),
        "enrolment": _Quality(sigma=0.40, spread=0.30),
        "border": _Quality(sigma=0.98, spread=0.30),
        "cctv": _Quality(sigma=1.82, spread=0.35),
    }
)

# derive_thresholds(modality) at its defaults (seed 20, 6,000 subjects: 36 million impostor
# pairs of clean captures, the worst case), rounded up to 0.01; other seeds give the same or
# 0.01 more. tests/ncbsim/test_biometrics.py re-derives them and checks their FMR.
THRESHOLDS: Final[Mapping[str, Mapping[str, float]]] = MappingProxyType(
    {
        FINGERPRINT: MappingProxyType({"search": 0.33, "confirm": 0.41}),
        FACE: MappingProxyType({"search": 0.27, "confirm": 0.34}),
    }
)

_WIRE: Final[Mapping[str, int]] = MappingProxyType(
    {FINGERPRINT: query_pb2.MODALITY_FINGERPRINT, FACE: query_pb2.MODALITY_FACE}
)


def to_wire(modality: str) -> int:
    """The ``Modality`` enum value of a modality name."""
    return _WIRE[_check_modality(modality)]


def from_wire(value: int) -> str:
    """The modality name of a ``Modality`` enum value; QueryError for unspecified or unknown."""
    for name, wire in _WIRE.items():
        if wire == value:
            return name
    raise QueryError(f"unknown biometric modality {value}")


def _check_modality(modality: str) -> str:
    if modality not in DIMS:
        raise QueryError(f"unknown biometric modality {modality!r}")
    return modality


def _modality_of(quality: str) -> str:
    for modality, qualities in QUALITIES.items():
        if quality in qualities:
            return modality
    raise QueryError(f"unknown capture quality {quality!r}")


def _generator(*parts: object) -> np.random.Generator:
    """A generator seeded by a BLAKE2b hash of the parts (stable across runs and machines)."""
    digest = hashlib.blake2b("\x1f".join(str(part) for part in parts).encode(), digest_size=16)
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest.digest(), "big")))


@lru_cache(maxsize=8)
def _population_basis(seed: int, modality: str) -> tuple[Vector, Vector]:
    """The shared mean direction and an orthonormal basis (rank x dims) of the shared subspace."""
    dims, rank = DIMS[modality], _POPULATION[modality].rank
    rng = _generator(seed, "population", modality)
    raw = rng.standard_normal((dims, rank + 1))
    basis, _ = np.linalg.qr(raw)
    return basis[:, 0].astype(np.float32), basis[:, 1:].T.astype(np.float32)


def subject_template(seed: int, subject: str, modality: str) -> Vector:
    """The subject's stable unit vector for a modality (the same for the same three inputs)."""
    dims = DIMS[_check_modality(modality)]
    population = _POPULATION[modality]
    mean, basis = _population_basis(seed, modality)
    rng = _generator(seed, subject, modality)
    shared = rng.standard_normal(population.rank) / math.sqrt(population.rank)
    individual = rng.standard_normal(dims) / math.sqrt(dims)
    individual_weight = 1.0 - population.mean_weight - population.subspace_weight
    vector = (
        math.sqrt(population.mean_weight) * mean
        + math.sqrt(population.subspace_weight) * (shared @ basis)
        + math.sqrt(individual_weight) * individual
    )
    return _unit(vector)


def sample(template: Vector, quality: str, rng: np.random.Generator) -> Vector:
    """One capture of a template at a quality: template plus isotropic noise, renormalised."""
    modality = _modality_of(quality)
    dims = DIMS[modality]
    if template.shape != (dims,):
        raise QueryError(f"a {modality} template has {dims} components, got {template.shape}")
    spec = _QUALITY[quality]
    sigma = spec.sigma * math.exp(spec.spread * float(rng.standard_normal()))
    noise = rng.standard_normal(dims) * (sigma / math.sqrt(dims))
    return _unit(template + noise)


def samples(templates: Vector, quality: str, rng: np.random.Generator) -> Vector:
    """Captures of many templates at once (rows), as :func:`sample` makes one: for benchmarks."""
    count, dims = templates.shape
    spec = _QUALITY[quality]
    sigmas = spec.sigma * np.exp(spec.spread * rng.standard_normal((count, 1)))
    noisy = templates + rng.standard_normal((count, dims)) * (sigmas / math.sqrt(dims))
    norms = np.linalg.norm(noisy, axis=1, keepdims=True)
    return np.asarray(noisy / norms, dtype=np.float32)


def _unit(vector: npt.NDArray[np.floating]) -> Vector:
    norm = float(np.linalg.norm(vector))
    if not math.isfinite(norm) or norm == 0.0:
        raise QueryError("a template must be a finite, non-zero vector")
    return np.asarray(vector / norm, dtype=np.float32)


def similarity(a: Vector, b: Vector) -> float:
    """Cosine similarity of two templates (the comparison score, in [-1, 1])."""
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def encode(vector: Vector) -> bytes:
    """The wire form of a template: int8 components at scale 127, one byte each."""
    if vector.ndim != 1 or vector.shape[0] not in DIMS.values():
        raise QueryError(f"a template has {sorted(DIMS.values())} components, got {vector.shape}")
    unit = _unit(vector)
    quantised = np.clip(np.rint(unit * _SCALE), -_SCALE, _SCALE).astype(np.int8)
    return bytes(quantised.tobytes())


def decode(data: object, modality: str) -> Vector:
    """A template from its wire form, as a unit vector; QueryError if it is malformed.

    Errors name the modality and the length only, never the bytes.
    """
    dims = DIMS[_check_modality(modality)]
    if not isinstance(data, bytes):
        raise QueryError(f"a {modality} template must be bytes")
    if len(data) != dims:
        raise QueryError(f"a {modality} template is {dims} bytes, got {len(data)}")
    values = np.frombuffer(data, dtype=np.int8).astype(np.float32)
    if not values.any():
        raise QueryError(f"a {modality} template is all zero")
    return _unit(values)


def impostor_scores(
    modality: str, *, seed: int, subjects: int, quality: str | None = None
) -> npt.NDArray[np.float32]:
    """Every cross-subject score of ``subjects`` records against as many probes of others.

    Records are clean captures; probes are captures at ``quality`` (default: the clean one,
    the worst case for false matches: noise only lowers impostor scores). The two sets are
    disjoint subjects, so all ``subjects**2`` scores are impostor comparisons.
    """
    dims = DIMS[_check_modality(modality)]
    quality = quality or ENROLMENT_QUALITY[modality]
    rng = _generator(seed, "impostors", modality, quality)
    gallery = np.empty((subjects, dims), dtype=np.float32)
    probes = np.empty((subjects, dims), dtype=np.float32)
    for index in range(subjects):
        gallery[index] = subject_template(seed, f"gallery-{index}", modality)
        probes[index] = subject_template(seed, f"probe-{index}", modality)
    clean = ENROLMENT_QUALITY[modality]
    return np.asarray(
        samples(gallery, clean, rng) @ samples(probes, quality, rng).T, dtype=np.float32
    ).ravel()


def derive_thresholds(modality: str, *, seed: int = 20, subjects: int = 6000) -> dict[str, float]:
    """The thresholds at FMR 1e-4 (``search``) and 1e-6 (``confirm``), by simulation.

    The score a false match must reach: the impostor quantile at 1 - FMR, rounded up to 0.01.
    At the default 6,000 subjects (36 million pairs) the 1e-6 quantile rests on 36 scores.
    """
    scores = impostor_scores(modality, seed=seed, subjects=subjects)
    return {
        name: math.ceil(float(np.quantile(scores, 1.0 - fmr)) * 100) / 100
        for name, fmr in (("search", 1e-4), ("confirm", 1e-6))
    }
