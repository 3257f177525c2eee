"""``ncbsim bench biometrics``: the accuracy and the search speed of the biometric model.

Measures, in one run, with a fixed seed (docs/biometrics.md reads the figures):

- **accuracy**: per modality and probe quality, the false-match and false-non-match rates at
  the configured ``search`` and ``confirm`` thresholds, from ``subjects`` genuine pairs and
  ``subjects * (subjects - 1)`` impostor pairs (every probe against every other record);
- **det.png**: DET curves (FNMR against FMR, log axes), one line per quality, thresholds marked;
- **latency**: one probe's search (k = 10, search threshold) at each collection size, faiss
  and numpy on the same probes; the largest sizes are what INTERPOL publishes for its
  fingerprint (AFIS) and face (IFRS) collections;
- **rank**: at the largest size, the true subject's place in the candidate list, per quality.

Galleries are generated in chunks straight into one float32 matrix, and only one index is
held at a time, so memory stays near twice the gallery (about 0.5 GB at the largest size).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ncbsim.biometrics import (
    DIMS,
    ENROLMENT_QUALITY,
    FACE,
    FINGERPRINT,
    MAX_CANDIDATES,
    MODALITIES,
    QUALITIES,
    THRESHOLDS,
    samples,
    subject_template,
)
from ncbsim.errors import ConfigError

__all__ = ["QUICK", "BioBenchConfig", "add_arguments", "cli", "render", "run"]

# The collections INTERPOL publishes (docs/biometrics.md cites them): AFIS held "more than
# 233,000 fingerprint records" (October 2015); IFRS about 80,000 individuals (November 2020).
INTERPOL_SIZES: Final[Mapping[str, int]] = MappingProxyType({FINGERPRINT: 233_000, FACE: 80_000})
_CHUNK: Final = 20_000  # gallery rows generated at a time
_DET_STEPS: Final = 600  # thresholds on each DET curve


def _default_sizes() -> Mapping[str, tuple[int, ...]]:
    return MappingProxyType({m: (10_000, INTERPOL_SIZES[m]) for m in MODALITIES})


@dataclass(frozen=True, slots=True, kw_only=True)
class BioBenchConfig:
    """What ``ncbsim bench biometrics`` measures (the default, or ``--quick``)."""

    subjects: int = 2000
    """Subjects of the accuracy run: as many genuine pairs, subjects**2 - subjects impostor."""
    probes: int = 200
    """Probes timed at each collection size, and ranked per quality at the largest."""
    sizes: Mapping[str, tuple[int, ...]] = field(default_factory=_default_sizes)
    """Collection sizes searched, per modality, ascending."""
    k: int = MAX_CANDIDATES
    """Candidates asked of each search."""
    seed: int = 20
    """Seed of every template and capture: the same run gives the same accuracy figures."""

    def __post_init__(self) -> None:
        if self.subjects < 10:
            raise ConfigError("biometrics bench: --subjects must be at least 10")
        if self.probes < 1:
            raise ConfigError("biometrics bench: --probes must be at least 1")
        if not 1 <= self.k <= MAX_CANDIDATES:
            raise ConfigError(f"biometrics bench: k must be 1 to {MAX_CANDIDATES}")
        for modality in MODALITIES:
            sizes = self.sizes.get(modality, ())
            if not sizes or list(sizes) != sorted(sizes) or sizes[0] < self.probes:
                raise ConfigError(
                    f"biometrics bench: {modality} sizes must ascend, each at least --probes"
                )


QUICK: Final = BioBenchConfig(
    subjects=300, probes=20, sizes=MappingProxyType({FINGERPRINT: (2000,), FACE: (2000,)})
)

Matrix = npt.NDArray[np.float32]


def _templates(seed: int, names: list[str], modality: str) -> Matrix:
    out = np.empty((len(names), DIMS[modality]), dtype=np.float32)
    for row, name in enumerate(names):
        out[row] = subject_template(seed, name, modality)
    return out


def _rate(count: int, total: int) -> dict[str, float | int]:
    return {"count": count, "of": total, "rate": count / total if total else 0.0}


def _accuracy(config: BioBenchConfig, modality: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """FMR/FNMR at the thresholds per quality, and the DET curve points per quality."""
    rng = np.random.default_rng([config.seed, 1, MODALITIES.index(modality)])
    names = [f"A{i}" for i in range(config.subjects)]
    templates = _templates(config.seed, names, modality)
    records = samples(templates, ENROLMENT_QUALITY[modality], rng)
    off_diagonal = ~np.eye(config.subjects, dtype=bool)
    grid = np.linspace(-0.2, 1.0, _DET_STEPS)
    table: dict[str, Any] = {}
    det: dict[str, Any] = {}
    for quality in QUALITIES[modality]:
        scores = records @ samples(templates, quality, rng).T
        genuine = np.sort(np.diag(scores))
        impostor = np.sort(scores[off_diagonal])
        row: dict[str, Any] = {"genuine_pairs": len(genuine), "impostor_pairs": len(impostor)}
        for name, threshold in THRESHOLDS[modality].items():
            false_matches = len(impostor) - int(np.searchsorted(impostor, threshold, "left"))
            misses = int(np.searchsorted(genuine, threshold, "left"))
            row[name] = {
                "threshold": threshold,
                "fmr": _rate(false_matches, len(impostor)),
                "fnmr": _rate(misses, len(genuine)),
            }
        table[quality] = row
        fmr = 1.0 - np.searchsorted(impostor, grid, "left") / len(impostor)
        fnmr = np.searchsorted(genuine, grid, "left") / len(genuine)
        det[quality] = {"fmr": fmr.tolist(), "fnmr": fnmr.tolist()}
    return table, det


def _gallery(config: BioBenchConfig, modality: str, size: int) -> Matrix:
    """``size`` enrolled records (clean captures of subjects G0...), built in chunks."""
    rng = np.random.default_rng([config.seed, 2, MODALITIES.index(modality)])
    gallery = np.empty((size, DIMS[modality]), dtype=np.float32)
    clean = ENROLMENT_QUALITY[modality]
    for start in range(0, size, _CHUNK):
        names = [f"G{i}" for i in range(start, min(size, start + _CHUNK))]
        gallery[start : start + len(names)] = samples(
            _templates(config.seed, names, modality), clean, rng
        )
    return gallery


def _percentiles(values_s: list[float]) -> dict[str, float]:
    values = np.asarray(values_s) * 1000.0
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "mean_ms": float(values.mean()),
    }


def _index(modality: str, backend: str, gallery: Matrix) -> tuple[Any, float]:
    from ncbsim.node.biometric_index import BiometricIndex

    started = time.perf_counter()
    index = BiometricIndex(modality, backend=backend)  # type: ignore[arg-type]
    refs = [f"G{i}" for i in range(len(gallery))]
    for start in range(0, len(gallery), _CHUNK):
        index.add(refs[start : start + _CHUNK], gallery[start : start + _CHUNK])
    return index, time.perf_counter() - started


def _size_run(
    config: BioBenchConfig, modality: str, size: int, *, rank: bool
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Latency of faiss and numpy at one size; the candidate-list ranks if asked."""
    gallery = _gallery(config, modality, size)
    targets = np.linspace(0, size - 1, config.probes).astype(int)
    rng = np.random.default_rng([config.seed, 3, MODALITIES.index(modality), size])
    templates = _templates(config.seed, [f"G{i}" for i in targets], modality)
    probes = {quality: samples(templates, quality, rng) for quality in QUALITIES[modality]}
    timed = probes[QUALITIES[modality][1]]
    threshold = THRESHOLDS[modality]["search"]
    latency: dict[str, Any] = {"size": size, "probes": config.probes, "k": config.k}
    ranks: dict[str, Any] | None = None
    for backend in ("faiss", "numpy"):
        index, build_s = _index(modality, backend, gallery)
        for probe in timed[:3]:
            index.search(probe, config.k, threshold)
        times = []
        for probe in timed:
            started = time.perf_counter()
            index.search(probe, config.k, threshold)
            times.append(time.perf_counter() - started)
        latency[backend] = {**_percentiles(times), "build_s": build_s}
        if rank and backend == "faiss":
            ranks = _ranks(index, probes, targets, threshold)
        del index
    latency["numpy_over_faiss_p50"] = latency["numpy"]["p50_ms"] / latency["faiss"]["p50_ms"]
    return latency, ranks


def _ranks(
    index: Any, probes: Mapping[str, Matrix], targets: npt.NDArray[np.int_], threshold: float
) -> dict[str, Any]:
    out: dict[str, Any] = {"size": len(index), "cap": MAX_CANDIDATES}
    for quality, matrix in probes.items():
        found = []
        for probe, target in zip(matrix, targets, strict=True):
            refs = [ref for ref, _ in index.search(probe, MAX_CANDIDATES, threshold)]
            found.append(refs.index(f"G{target}") + 1 if f"G{target}" in refs else 0)
        rank1 = sum(1 for place in found if place == 1)
        within = sum(1 for place in found if place > 0)
        out[quality] = {
            "rank1": _rate(rank1, len(found)),
            "within_cap": _rate(within, len(found)),
        }
    return out


def run(config: BioBenchConfig, progress: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Measure everything; the report (JSON-ready) and the DET points for det.png."""
    say = progress or (lambda _text: None)
    report: dict[str, Any] = {
        "parameters": {
            "subjects": config.subjects,
            "probes": config.probes,
            "k": config.k,
            "seed": config.seed,
            "sizes": {m: list(config.sizes[m]) for m in MODALITIES},
            "interpol_sizes": dict(INTERPOL_SIZES),
            "cpus": os.cpu_count(),
            "faiss_threads": _faiss_threads(),
        },
        "thresholds": {m: dict(THRESHOLDS[m]) for m in MODALITIES},
        "accuracy": {},
        "latency": {},
        "rank": {},
    }
    det: dict[str, Any] = {}
    for modality in MODALITIES:
        say(f"{modality}: accuracy")
        report["accuracy"][modality], det[modality] = _accuracy(config, modality)
        report["latency"][modality] = []
        for size in config.sizes[modality]:
            say(f"{modality}: {size:,} records")
            last = size == config.sizes[modality][-1]
            latency, ranks = _size_run(config, modality, size, rank=last)
            report["latency"][modality].append(latency)
            if ranks is not None:
                report["rank"][modality] = ranks
    return report, det


def _faiss_threads() -> int:
    import faiss

    # One thread a search: a node answers many queries at once on its gRPC threads, and on
    # a shared machine OpenMP threads only contend (measured: slower with two on 2 cores).
    faiss.omp_set_num_threads(1)
    return int(faiss.omp_get_max_threads())


def plot_det(report: Mapping[str, Any], det: Mapping[str, Any], path: Path) -> None:
    """det.png: FNMR against FMR per modality, one line per quality, thresholds marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(MODALITIES))
    for ax, modality in zip(axes, MODALITIES, strict=True):
        for quality in QUALITIES[modality]:
            fmr = np.asarray(det[modality][quality]["fmr"])
            fnmr = np.asarray(det[modality][quality]["fnmr"])
            keep = (fmr > 0) & (fnmr > 0)
            (line,) = ax.plot(fmr[keep], fnmr[keep], label=quality)
            row = report["accuracy"][modality][quality]
            for name, marker in (("search", "o"), ("confirm", "s")):
                point = row[name]
                x = max(point["fmr"]["rate"], 0.5 / point["fmr"]["of"])
                y = max(point["fnmr"]["rate"], 0.5 / point["fnmr"]["of"])
                ax.plot([x], [y], marker, color=line.get_color(), markersize=6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("false match rate (FMR)")
        ax.set_ylabel("false non-match rate (FNMR)")
        thresholds = THRESHOLDS[modality]
        ax.set_title(
            f"{modality}: o search {thresholds['search']:.2f}, "
            f"\u25a1 confirm {thresholds['confirm']:.2f}"
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(title="probe quality")
    figure.savefig(path, dpi=110)


def render(report: Mapping[str, Any]) -> str:
    """The report as plain text: accuracy, latency and rank sections."""
    lines = ["## accuracy (FMR: impostor pairs at or above; FNMR: genuine pairs below)"]
    for modality, table in report["accuracy"].items():
        for quality, row in table.items():
            for name in ("search", "confirm"):
                point = row[name]
                fmr, fnmr = point["fmr"], point["fnmr"]
                lines.append(
                    f"{modality:<11} {quality:<9} {name:<7} >= {point['threshold']:.2f}  "
                    f"FMR {fmr['rate']:.2e} ({fmr['count']:,}/{fmr['of']:,})  "
                    f"FNMR {fnmr['rate']:.4f} ({fnmr['count']:,}/{fnmr['of']:,})"
                )
    lines.append("## latency (one probe, k candidates at the search threshold, ms)")
    for modality, rows in report["latency"].items():
        for row in rows:
            faiss_, numpy_ = row["faiss"], row["numpy"]
            lines.append(
                f"{modality:<11} {row['size']:>9,} records  "
                f"faiss p50 {faiss_['p50_ms']:.2f} p99 {faiss_['p99_ms']:.2f}  "
                f"numpy p50 {numpy_['p50_ms']:.2f} p99 {numpy_['p99_ms']:.2f}  "
                f"numpy/faiss {row['numpy_over_faiss_p50']:.2f}  ({row['probes']} probes)"
            )
    lines.append("## rank of the true subject (candidate list capped at 10, search threshold)")
    for modality, table in report["rank"].items():
        for quality in QUALITIES[modality]:
            rank1, within = table[quality]["rank1"], table[quality]["within_cap"]
            lines.append(
                f"{modality:<11} {table['size']:>9,} records  {quality:<9} "
                f"rank-1 {rank1['rate']:.3f} ({rank1['count']}/{rank1['of']})  "
                f"in list {within['rate']:.3f} ({within['count']}/{within['of']})"
            )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ncbsim bench biometrics``."""
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="small sizes (for tests; seconds)")
    parser.add_argument("--out", type=Path, help="write biometrics.json and det.png here")
    parser.add_argument("--subjects", type=int, help="subjects of the accuracy run (default 2000)")
    parser.add_argument("--probes", type=int, help="probes per collection size (default 200)")


def config_from_args(args: argparse.Namespace) -> BioBenchConfig:
    """The preset (default or ``--quick``) with the options given."""
    base = QUICK if args.quick else BioBenchConfig()
    given = {
        name: getattr(args, name)
        for name in ("subjects", "probes")
        if getattr(args, name, None) is not None
    }
    return dataclasses.replace(base, **given)


def cli(args: argparse.Namespace) -> int:
    """Run ``ncbsim bench biometrics``: print the figures, and write them with ``--out``."""
    import sys

    config = config_from_args(args)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    report, det = run(config, progress=lambda text: print(f"... {text}", file=sys.stderr))
    report["parameters"]["quick"] = bool(args.quick)
    if args.out is not None:
        plot_det(report, det, args.out / "det.png")
        (args.out / "biometrics.json").write_text(json.dumps(report, indent=2) + "\n")
        report["det_png"] = str(args.out / "det.png")
    print(json.dumps(report) if args.json else render(report))
    return 0
