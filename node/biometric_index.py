"""A bureau's 1:N biometric index: exact cosine search of one modality's enrolled templates.

Templates are unit vectors (:mod:`ncbsim.biometrics`), so cosine is the inner product and an
exact search is one pass over the collection. Two backends give the same answers:

- ``faiss`` (default): ``faiss.IndexFlatIP``, exact inner product with SIMD and a top-k heap
  in one pass; docs/biometrics.md gives the measured ratio against numpy that chose it.
- ``numpy``: a matrix-vector product per block of rows and ``argpartition``; no extra
  dependency, and the reference the tests compare faiss with.

Rows are kept in float32 (a 512-d face template is 2 KiB). The numpy backend keeps them in
blocks of at most BLOCK_ROWS rows whose capacity doubles, so enrolling one record at a time is
cheap and growth never copies more than one block.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from ncbsim.biometrics import DIMS

__all__ = ["BLOCK_ROWS", "BiometricIndex"]

Backend = Literal["faiss", "numpy"]
BLOCK_ROWS: Final = 65_536  # rows per numpy block: 128 MiB of face templates


class BiometricIndex:
    """The references and templates of one modality, searched by cosine, best first."""

    def __init__(self, modality: str, backend: Backend = "faiss") -> None:
        if modality not in DIMS:
            raise ValueError(f"unknown biometric modality {modality!r}")
        if backend not in ("faiss", "numpy"):
            raise ValueError(f"unknown index backend {backend!r}")
        self.modality = modality
        self.backend: Backend = backend
        self.dims = DIMS[modality]
        self._refs: list[str] = []
        self._rows: dict[str, int] = {}
        self._blocks: list[npt.NDArray[np.float32]] = []
        self._faiss: Any = None
        if backend == "faiss":
            import faiss

            self._faiss = faiss.IndexFlatIP(self.dims)

    def __len__(self) -> int:
        return len(self._refs)

    def __contains__(self, ref: object) -> bool:
        return ref in self._rows

    def add(self, refs: list[str] | tuple[str, ...], matrix: npt.ArrayLike) -> None:
        """Enrol templates (rows of ``matrix``, unit vectors) under their references.

        A reference already held, repeated, or a matrix of the wrong shape is a ValueError
        and adds nothing.
        """
        rows = np.ascontiguousarray(matrix, dtype=np.float32)
        if rows.ndim != 2 or rows.shape != (len(refs), self.dims):
            raise ValueError(
                f"{len(refs)} {self.modality} templates are ({len(refs)}, {self.dims}), "
                f"got {rows.shape}"
            )
        if not np.isfinite(rows).all():
            raise ValueError("templates must be finite")
        fresh = set(refs)
        if len(fresh) != len(refs) or not fresh.isdisjoint(self._rows):
            raise ValueError("a reference is enrolled twice")
        if self._faiss is not None:
            self._faiss.add(rows)
        else:
            self._append_blocks(rows)
        for ref in refs:
            self._rows[ref] = len(self._refs)
            self._refs.append(ref)

    def _append_blocks(self, rows: npt.NDArray[np.float32]) -> None:
        """Copy rows into the blocks; the last one doubles its capacity up to BLOCK_ROWS."""
        held, done = len(self._refs), 0
        while done < len(rows):
            used = held % BLOCK_ROWS
            if used == 0:
                self._blocks.append(np.empty((0, self.dims), dtype=np.float32))
            take = min(BLOCK_ROWS - used, len(rows) - done)
            block = self._blocks[-1]
            if used + take > len(block):
                capacity = min(BLOCK_ROWS, max(used + take, 2 * len(block), 64))
                grown = np.empty((capacity, self.dims), dtype=np.float32)
                grown[:used] = block[:used]
                self._blocks[-1] = block = grown
            block[used : used + take] = rows[done : done + take]
            done += take
            held += take

    def _block_rows(self) -> list[npt.NDArray[np.float32]]:
        """The blocks cut to the rows they hold."""
        full, last = divmod(len(self._refs), BLOCK_ROWS)
        blocks = self._blocks[:full]
        if last:
            blocks = [*blocks, self._blocks[full][:last]]
        return blocks

    def template(self, ref: str) -> npt.NDArray[np.float32] | None:
        """The enrolled template of a reference (a copy), or None if it is not held."""
        row = self._rows.get(ref)
        if row is None:
            return None
        if self._faiss is not None:
            return np.asarray(self._faiss.reconstruct(row), dtype=np.float32)
        held: npt.NDArray[np.float32] = self._blocks[row // BLOCK_ROWS][row % BLOCK_ROWS]
        return held.copy()

    def search(self, probe: npt.ArrayLike, k: int, threshold: float) -> list[tuple[str, float]]:
        """At most ``k`` references scoring at least ``threshold``, best first.

        Ties keep enrolment order, so both backends rank alike.
        """
        query = np.ascontiguousarray(probe, dtype=np.float32).reshape(-1)
        if query.shape != (self.dims,):
            raise ValueError(f"a {self.modality} probe has {self.dims} components")
        if k < 1:
            raise ValueError("k must be at least 1")
        count = min(k, len(self._refs))
        if count == 0:
            return []
        if self._faiss is not None:
            scores, rows = self._faiss.search(query.reshape(1, -1), count)
            hits = [(float(s), int(r)) for s, r in zip(scores[0], rows[0], strict=True) if r >= 0]
        else:
            hits = self._numpy_top(query, count)
        hits.sort(key=lambda hit: (-hit[0], hit[1]))
        return [(self._refs[row], score) for score, row in hits if score >= threshold]

    def _numpy_top(self, query: npt.NDArray[np.float32], count: int) -> list[tuple[float, int]]:
        best: list[tuple[float, int]] = []
        for number, block in enumerate(self._block_rows()):
            scores = block @ query
            take = min(count, len(scores))
            top = np.argpartition(-scores, take - 1)[:take] if take < len(scores) else None
            rows = np.arange(len(scores)) if top is None else top
            base = number * BLOCK_ROWS
            best.extend((float(scores[row]), base + int(row)) for row in rows)
        best.sort(key=lambda hit: (-hit[0], hit[1]))
        return best[:count]
