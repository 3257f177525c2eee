"""The 1:N biometric index: ranked, thresholded, capped search; faiss and numpy agree."""

from __future__ import annotations

import numpy as np
import pytest

from ncbsim.biometrics import (
    ENROLMENT_QUALITY,
    FACE,
    FINGERPRINT,
    MODALITIES,
    THRESHOLDS,
    sample,
    samples,
    subject_template,
)
from ncbsim.node import biometric_index
from ncbsim.node.biometric_index import BiometricIndex

BACKENDS = ("faiss", "numpy")


def _gallery(modality: str, count: int, seed: int = 11) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    templates = np.stack([subject_template(seed, f"P{i}", modality) for i in range(count)])
    return [f"P{i}" for i in range(count)], samples(templates, ENROLMENT_QUALITY[modality], rng)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("modality", MODALITIES)
def test_search_finds_the_subject_first(backend: str, modality: str) -> None:
    """A probe of an enrolled subject ranks it first; results are capped, sorted, thresholded."""
    refs, matrix = _gallery(modality, 500)
    index = BiometricIndex(modality, backend=backend)  # type: ignore[arg-type]
    index.add(refs, matrix)
    assert len(index) == 500
    rng = np.random.default_rng(4)
    probe = sample(subject_template(11, "P42", modality), ENROLMENT_QUALITY[modality], rng)
    found = index.search(probe, 10, THRESHOLDS[modality]["search"])
    assert found[0][0] == "P42"
    assert found[0][1] > 0.6
    everything = index.search(probe, 10, -1.0)
    assert len(everything) == 10
    scores = [score for _, score in everything]
    assert scores == sorted(scores, reverse=True)
    assert index.search(probe, 3, -1.0) == everything[:3]
    assert all(score >= 0.5 for _, score in index.search(probe, 10, 0.5))


@pytest.mark.parametrize("modality", MODALITIES)
def test_backends_return_identical_results(modality: str) -> None:
    """faiss and numpy give the same references in the same order, scores within 1e-5."""
    refs, matrix = _gallery(modality, 3000)
    indexes = {name: BiometricIndex(modality, backend=name) for name in BACKENDS}  # type: ignore[arg-type]
    for index in indexes.values():
        index.add(refs[:1000], matrix[:1000])
        index.add(refs[1000:], matrix[1000:])
    rng = np.random.default_rng(8)
    for subject in range(0, 3000, 97):
        probe = sample(
            subject_template(11, f"P{subject}", modality),
            "plain" if modality == FINGERPRINT else "border",
            rng,
        )
        for k, threshold in ((10, -1.0), (5, THRESHOLDS[modality]["search"]), (1, 0.0)):
            fast = indexes["faiss"].search(probe, k, threshold)
            plain = indexes["numpy"].search(probe, k, threshold)
            assert [ref for ref, _ in fast] == [ref for ref, _ in plain]
            assert np.allclose([s for _, s in fast], [s for _, s in plain], atol=1e-5)


def test_numpy_blocks_across_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows added one by one across numpy blocks are searched and returned as enrolled."""
    monkeypatch.setattr(biometric_index, "BLOCK_ROWS", 7)
    refs, matrix = _gallery(FINGERPRINT, 40)
    index = BiometricIndex(FINGERPRINT, backend="numpy")
    for ref, row in zip(refs[:23], matrix[:23], strict=True):
        index.add([ref], row.reshape(1, -1))
    index.add(refs[23:], matrix[23:])
    reference = BiometricIndex(FINGERPRINT, backend="faiss")
    reference.add(refs, matrix)
    assert len(index) == 40
    for row in range(40):
        assert np.array_equal(index.template(refs[row]), matrix[row])
        assert index.search(matrix[row], 5, -1.0)[0] == (refs[row], pytest.approx(1.0, abs=1e-5))
        assert [r for r, _ in index.search(matrix[row], 12, -1.0)] == [
            r for r, _ in reference.search(matrix[row], 12, -1.0)
        ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_template_and_empty_index(backend: str) -> None:
    """template() returns the enrolled row or None; an empty index finds nothing."""
    index = BiometricIndex(FACE, backend=backend)  # type: ignore[arg-type]
    probe = subject_template(1, "Q", FACE)
    assert index.search(probe, 5, -1.0) == []
    assert index.template("Q") is None
    index.add(["Q"], probe.reshape(1, -1))
    held = index.template("Q")
    assert held is not None
    assert np.array_equal(held, probe)
    assert "Q" in index
    assert index.search(probe, 5, -1.0) == [("Q", pytest.approx(1.0, abs=1e-5))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_add_and_search_refuse_bad_input(backend: str) -> None:
    """Wrong shapes, duplicate references, non-finite rows and k < 1 are ValueErrors."""
    index = BiometricIndex(FINGERPRINT, backend=backend)  # type: ignore[arg-type]
    refs, matrix = _gallery(FINGERPRINT, 3)
    with pytest.raises(ValueError, match="got"):
        index.add(refs, matrix[:, :100])
    with pytest.raises(ValueError, match="got"):
        index.add(refs[:2], matrix)
    with pytest.raises(ValueError, match="twice"):
        index.add(["A", "A"], matrix[:2])
    bad = matrix.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        index.add(refs, bad)
    assert len(index) == 0
    index.add(refs, matrix)
    with pytest.raises(ValueError, match="twice"):
        index.add(refs[:1], matrix[:1])
    with pytest.raises(ValueError, match="256 components"):
        index.search(matrix[0][:100], 5, 0.0)
    with pytest.raises(ValueError, match="k must"):
        index.search(matrix[0], 0, 0.0)
    with pytest.raises(ValueError, match="backend"):
        BiometricIndex(FACE, backend="annoy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="modality"):
        BiometricIndex("iris")
