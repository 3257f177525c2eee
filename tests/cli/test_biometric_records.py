"""``ncbsim record enrolled`` and ``record probe``: a bureau's templates, and a new capture
of one of its subjects that the owner's index finds first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ncbsim import biometrics
from ncbsim.cli import main
from ncbsim.node import datagen
from ncbsim.node.biometric_index import BiometricIndex
from ncbsim.node.store import RecordStore
from ncbsim.workdir import Workdir


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work directory holding DE's records, 20 of its 30 persons enrolled."""
    root = tmp_path_factory.mktemp("wd")
    path = Workdir(root).bureau("DE").records
    path.parent.mkdir(parents=True)
    datagen.generate(
        path, "DE", seed=3, documents=5, persons=30, vehicles=5, biometrics=20, workers=1
    )
    return root


def test_enrolled_lists_templates_with_their_persons(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--field ref prints one reference a line, of the modality asked."""
    argv = ["record", "enrolled", "--workdir", str(workdir), "--as", "DE", "--modality", "face"]
    assert main([*argv, "--limit", "4", "--field", "ref"]) == 0
    refs = capsys.readouterr().out.split()
    store = RecordStore(Workdir(workdir).bureau("DE").records)
    faces = [ref for ref, _, kind, _ in store.enrolled() if kind == "face"]
    store.close()
    assert refs == faces[:4]


@pytest.mark.parametrize("modality", biometrics.MODALITIES)
def test_a_probe_is_a_capture_its_owner_ranks_first(
    workdir: Path, modality: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The probe has the modality's size; the owner's enrolled templates rank its subject
    first; the same --seed writes the same bytes."""
    store = RecordStore(Workdir(workdir).bureau("DE").records)
    rows = [(ref, t) for ref, _, kind, t in store.enrolled() if kind == modality]
    store.close()
    index = BiometricIndex(modality, backend="numpy")
    index.add([r for r, _ in rows], np.stack([biometrics.decode(t, modality) for _, t in rows]))
    ref = rows[5][0]
    out, again = tmp_path / "p.bin", tmp_path / "q.bin"
    base = ["record", "probe", "--workdir", str(workdir), "--bureau", "DE", "--ref", ref]
    assert main([*base, "--seed", "9", "--out", str(out)]) == 0
    assert main([*base, "--seed", "9", "--out", str(again)]) == 0
    assert out.read_bytes() == again.read_bytes()
    assert len(out.read_bytes()) == biometrics.DIMS[modality]
    found = index.search(biometrics.decode(out.read_bytes(), modality), 3, 0.0)
    assert found[0][0] == ref
    assert f"a {modality} probe" in capsys.readouterr().out


def test_an_unknown_reference_or_quality_is_one_line_and_exit_2(
    workdir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A reference DE never enrolled, or a face captured 'latent': exit 2, one line."""
    out = str(tmp_path / "p.bin")
    base = ["record", "probe", "--workdir", str(workdir), "--bureau", "DE", "--out", out]
    assert main([*base, "--ref", "a" * 20]) == 2
    assert "is no template enrolled at DE" in capsys.readouterr().err
    store = RecordStore(Workdir(workdir).bureau("DE").records)
    face = next(ref for ref, _, kind, _ in store.enrolled() if kind == "face")
    store.close()
    assert main([*base, "--ref", face, "--quality", "latent"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ncbsim: --quality: a face is captured enrolment, border, cctv")
    assert len(err.splitlines()) == 1
