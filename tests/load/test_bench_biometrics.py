"""`ncbsim bench biometrics`: its options, and a real quick run with every section and det.png."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ncbsim.cli import build_parser, main
from ncbsim.errors import ConfigError
from ncbsim.load.bench_biometrics import QUICK, BioBenchConfig, config_from_args


def test_bench_keeps_its_own_options_and_gains_biometrics() -> None:
    """Plain `bench` parses as before; `bench biometrics` routes to the biometric bench."""
    parser = build_parser()
    plain = parser.parse_args(["bench", "--quick", "--rounds", "2"])
    assert plain.func.__name__ == "cmd_bench"
    assert (plain.quick, plain.rounds, plain.bench_target) == (True, 2, None)
    bio = parser.parse_args(["bench", "biometrics", "--quick", "--probes", "5"])
    assert bio.func.__name__ == "cmd_bench_biometrics"
    assert config_from_args(bio) == BioBenchConfig(
        subjects=QUICK.subjects, probes=5, sizes=QUICK.sizes
    )


def test_config_refuses_unusable_values() -> None:
    """Too few subjects or probes, or sizes below the probes, are ConfigErrors."""
    with pytest.raises(ConfigError, match="subjects"):
        BioBenchConfig(subjects=2)
    with pytest.raises(ConfigError, match="probes"):
        BioBenchConfig(probes=0)
    with pytest.raises(ConfigError, match="sizes"):
        BioBenchConfig(probes=50, sizes={"fingerprint": (10,), "face": (100,)})


def test_quick_run_prints_every_section_and_writes_det_png(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A quick run prints accuracy, latency and rank; --out holds the JSON and a PNG."""
    out = tmp_path / "bio"
    assert main(["bench", "biometrics", "--quick", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for heading in ("## accuracy", "## latency", "## rank"):
        assert heading in text
    for quality in ("rolled", "plain", "latent", "enrolment", "border", "cctv"):
        assert f" {quality} " in text
    assert (out / "det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "biometrics.json").read_text())
    rolled = report["accuracy"]["fingerprint"]["rolled"]
    assert rolled["impostor_pairs"] == QUICK.subjects * (QUICK.subjects - 1)
    assert rolled["search"]["fnmr"]["count"] == 0
    assert rolled["search"]["fmr"]["rate"] < 1e-3
    latency = report["latency"]["face"][0]
    assert latency["size"] == 2000
    assert latency["faiss"]["p50_ms"] > 0
    assert latency["numpy"]["p50_ms"] > 0
    assert report["rank"]["fingerprint"]["rolled"]["rank1"]["count"] == QUICK.probes


def test_quick_json(capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints one object with the thresholds the nodes use."""
    assert main(["bench", "biometrics", "--quick", "--json", "--probes", "5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"accuracy", "latency", "rank", "thresholds", "parameters"}
    assert report["parameters"]["probes"] == 5
