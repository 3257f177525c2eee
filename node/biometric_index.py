"""A bureau's 1:N biometric index: exact cosine search of one modality's enrolled templates.

Templates are unit vectors (:mod:`ncbsim.biometrics`), so cosine is the inner product and an
exact search is one pass over the collection. Two backends give the same answers:

- ``faiss`` (default): two passes. A shortlist of the :data:`SHORTLIST` best rows (at least
  8k) by the inner product of the templates' int8 codes, the wire form's (faiss
  ``IndexScalarQuantizer`` ``QT_8bit_direct_signed``: a quarter of the float scan's memory
  traffic, and integer products that float32 holds exactly); then the shortlist scored
  exactly in float32, as numpy scores every row. Impostors score far below any threshold,
  so the true top k is always in the shortlist, and the answers are numpy's (the tests
  compare them). docs/biometrics.md gives the measured ratios that chose it.
- ``numpy``: a matrix-vector product per block of rows and ``argpartition``; no extra
  dependency, and the reference the tests compare faiss with.

Rows are kept in float32 (a 512-d face template is 2 KiB) in blocks of at most BLOCK_ROWS
rows whose capacity doubles, so enrolling one record at a time is cheap and growth never
copies more than one block; the faiss backend keeps their int8 codes besides.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from ncbsim.biometrics import DIMS

__all__ = ["BLOCK_ROWS", "BiometricIndex"]

Backend = Literal["faiss", "numpy"]
BLOCK_ROWS: Final = 65_536  # rows per numpy block: 128 MiB of face templates
SHORTLIST: Final = 64
"""Rows the faiss backend scores exactly, at least (8k for a larger k)."""
_SCALE: Final = 127.0  # the wire form's: ncbsim.biometrics.encode


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
        self._faiss: Any = None  # made on the first add: a node with nothing enrolled
        # never loads faiss (about 15 MiB a process)

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
        if self.backend == "faiss":
            if self._faiss is None:
                import faiss

                self._faiss = faiss.IndexScalarQuantizer(
                    self.dims,
                    faiss.ScalarQuantizer.QT_8bit_direct_signed,
                    faiss.METRIC_INNER_PRODUCT,
                )
            self._faiss.add(_codes(rows))
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
            hits = self._faiss_top(query, count)
        else:
            hits = self._numpy_top(query, count)
        hits.sort(key=lambda hit: (-hit[0], hit[1]))
        return [(self._refs[row], score) for score, row in hits if score >= threshold]

    def _faiss_top(self, query: npt.NDArray[np.float32], count: int) -> list[tuple[float, int]]:
        """The shortlist by int8 codes, then scored as :meth:`_numpy_top` scores rows."""
        depth = min(max(SHORTLIST, 8 * count), len(self._refs))
        _, found = self._faiss.search(_codes(query.reshape(1, -1)), depth)
        rows = [int(r) for r in found[0] if r >= 0]
        exact = [(float(self._blocks[r // BLOCK_ROWS][r % BLOCK_ROWS] @ query), r) for r in rows]
        exact.sort(key=lambda hit: (-hit[0], hit[1]))
        return exact[:count]

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


def _codes(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Unit rows as the int8 codes of their wire form, in the float32 faiss takes."""
    codes: npt.NDArray[np.float32] = np.clip(np.rint(rows * _SCALE), -_SCALE, _SCALE)
    return codes.astype(np.float32)
