"""The synthetic biometric model: stable templates, score distributions, wire form, thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from ncbsim import biometrics
from ncbsim.biometrics import (
    DIMS,
    ENROLMENT_QUALITY,
    FACE,
    FINGERPRINT,
    MODALITIES,
    QUALITIES,
    THRESHOLDS,
    decode,
    derive_thresholds,
    encode,
    from_wire,
    impostor_scores,
    sample,
    samples,
    similarity,
    subject_template,
    to_wire,
)
from ncbsim.errors import QueryError
from ncbsim.v2 import query_pb2

# The genuine means the model is tuned to (docs/biometrics.md): probe against enrolled record.
GENUINE_MEANS = {
    "rolled": 0.85,
    "plain": 0.70,
    "latent": 0.45,
    "enrolment": 0.85,
    "border": 0.65,
    "cctv": 0.45,
}


@pytest.mark.parametrize("modality", MODALITIES)
def test_subject_template_is_stable_and_unit(modality: str) -> None:
    """A subject's template is the same unit vector on every call; another subject's differs."""
    first = subject_template(7, "DE-P-000123", modality)
    again = subject_template(7, "DE-P-000123", modality)
    assert first.shape == (DIMS[modality],)
    assert first.dtype == np.float32
    assert np.array_equal(first, again)
    assert float(np.linalg.norm(first)) == pytest.approx(1.0, abs=1e-5)
    assert similarity(first, subject_template(7, "DE-P-000124", modality)) < 0.5
    assert similarity(first, subject_template(8, "DE-P-000123", modality)) < 0.5


def test_modalities_of_one_subject_are_unrelated() -> None:
    """A subject's fingerprint and face templates differ in size and are drawn apart."""
    finger = subject_template(1, "X", FINGERPRINT)
    face = subject_template(1, "X", FACE)
    assert finger.shape == (256,)
    assert face.shape == (512,)


@pytest.mark.parametrize("modality", MODALITIES)
def test_genuine_scores_are_far_above_impostors(modality: str) -> None:
    """Per quality, genuine scores have their tuned mean and lie far above impostor scores."""
    rng = np.random.default_rng(3)
    templates = np.stack([subject_template(5, f"s{i}", modality) for i in range(1500)])
    records = samples(templates, ENROLMENT_QUALITY[modality], rng)
    impostors = impostor_scores(modality, seed=5, subjects=800)
    assert 0.0 < float(impostors.mean()) < 0.05
    assert 0.05 < float(impostors.std()) < 0.1
    for quality in QUALITIES[modality]:
        genuine = (records * samples(templates, quality, rng)).sum(axis=1)
        assert float(genuine.mean()) == pytest.approx(GENUINE_MEANS[quality], abs=0.02)
        assert float(genuine.mean()) - float(impostors.mean()) > 5 * float(impostors.std())


def test_sample_matches_samples_and_checks_its_input() -> None:
    """One capture scores like the batch form; a wrong size or an unknown quality is refused."""
    template = subject_template(2, "A", FACE)
    rng = np.random.default_rng(0)
    scores = [similarity(template, sample(template, "border", rng)) for _ in range(300)]
    batch = samples(np.tile(template, (300, 1)), "border", rng) @ template
    assert np.mean(scores) == pytest.approx(float(batch.mean()), abs=0.02)
    with pytest.raises(QueryError, match="512 components"):
        sample(template[:256], "border", rng)
    with pytest.raises(QueryError, match="quality"):
        sample(template, "blurry", rng)


@pytest.mark.parametrize("modality", MODALITIES)
def test_encode_decode_round_trip(modality: str) -> None:
    """The int8 wire form is DIMS bytes and decodes to a unit vector within 0.002 cosine."""
    rng = np.random.default_rng(1)
    template = sample(subject_template(9, "B", modality), QUALITIES[modality][1], rng)
    wire = encode(template)
    assert isinstance(wire, bytes)
    assert len(wire) == DIMS[modality]
    back = decode(wire, modality)
    assert back.dtype == np.float32
    assert float(np.linalg.norm(back)) == pytest.approx(1.0, abs=1e-5)
    assert similarity(template, back) > 0.998
    assert encode(back) == wire


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (bytes(256), "all zero"),
        (b"\x01" * 255, "256 bytes, got 255"),
        (b"\x01" * 257, "256 bytes, got 257"),
        (b"", "256 bytes, got 0"),
        (bytearray(b"\x01" * 256), "must be bytes"),
        ("a" * 256, "must be bytes"),
        (None, "must be bytes"),
    ],
)
def test_decode_refuses_malformed_templates(data: object, match: str) -> None:
    """Wrong length, all zero or not bytes: QueryError, whose message holds no template byte."""
    with pytest.raises(QueryError, match=match) as caught:
        decode(data, FINGERPRINT)
    assert "\\x01" not in str(caught.value)
    assert "aaaa" not in str(caught.value)


def test_decode_and_encode_refuse_unknown_shapes() -> None:
    """An unknown modality, or a vector of no template's size, is a QueryError."""
    with pytest.raises(QueryError, match="modality"):
        decode(b"\x01" * 256, "iris")
    with pytest.raises(QueryError, match="components"):
        encode(np.ones(100, dtype=np.float32))
    with pytest.raises(QueryError, match="non-zero"):
        encode(np.zeros(512, dtype=np.float32))


def test_wire_modalities() -> None:
    """Names map to the proto enum and back; unspecified or unknown values are refused."""
    assert to_wire(FINGERPRINT) == query_pb2.MODALITY_FINGERPRINT
    assert to_wire(FACE) == query_pb2.MODALITY_FACE
    assert [from_wire(to_wire(m)) for m in MODALITIES] == list(MODALITIES)
    for bad in (query_pb2.MODALITY_UNSPECIFIED, 99):
        with pytest.raises(QueryError, match="modality"):
            from_wire(bad)
    with pytest.raises(QueryError):
        to_wire("iris")


def test_caps() -> None:
    """The requester's default stays within the owner's cap."""
    assert 1 <= biometrics.DEFAULT_CANDIDATES <= biometrics.MAX_CANDIDATES == 10


@pytest.mark.parametrize("modality", MODALITIES)
def test_thresholds_are_the_derived_ones(modality: str) -> None:
    """THRESHOLDS are what derive_thresholds gives at its defaults; confirm is stricter."""
    assert derive_thresholds(modality) == dict(THRESHOLDS[modality])
    assert THRESHOLDS[modality]["confirm"] > THRESHOLDS[modality]["search"]


@pytest.mark.parametrize("modality", MODALITIES)
def test_thresholds_hold_their_false_match_rates(modality: str) -> None:
    """On fresh subjects (another seed, 25 million pairs): FMR ~1e-4 at search, ~1e-6 at confirm."""
    scores = impostor_scores(modality, seed=2024, subjects=5000)
    pairs = len(scores)
    at_search = int((scores >= THRESHOLDS[modality]["search"]).sum())
    at_confirm = int((scores >= THRESHOLDS[modality]["confirm"]).sum())
    assert 0.3e-4 * pairs <= at_search <= 1.5e-4 * pairs
    assert at_confirm <= 3e-6 * pairs
    for quality in QUALITIES[modality][1:]:
        noisy = impostor_scores(modality, seed=2024, subjects=2000, quality=quality)
        assert (noisy >= THRESHOLDS[modality]["search"]).mean() <= 1.5e-4
