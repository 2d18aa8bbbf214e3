"""How a segment keeps its originals (the token vectors a codec refit re-quantises).

``Manifest.keep_vectors`` says which form new segments write: ``true`` float16
(``dim * 2`` bytes a token), ``"int8"`` one int8 per dimension plus a float16 scale per
token (``dim + 2`` bytes: half), ``false`` none (a refit then re-quantises decoded
vectors, and the loss compounds: ``bench/RESULTS.md``). With ``"int8"`` the index is built
from the vectors as they read back from int8 (``rounded``), first commit included, so a
merge or ``optimize`` re-quantises exactly what a fresh build of those originals would:
the error of int8 (cosine > 0.9999 to the committed vector) is far below the 2-bit codec's.

>>> q, s = quantize(np.array([[0.5, -0.25, 0.0]], np.float32))
>>> q.tolist(), round(float(s[0]) * 127, 3)
([[127, -64, 0]], 0.5)
>>> [round(float(x), 3) for x in Int8Rows(q, s)[0:1][0]]
[0.5, -0.252, 0.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np

SCALES = "vector_scales.npy"  # float16 [T] beside an int8 vectors.npy
FORMS = {True: "float16", "int8": "int8", False: None}


def form_of(keep_vectors: Any) -> str | None:
    """The stored form a manifest's ``keep_vectors`` names; raises ValueError for others."""
    if keep_vectors is not True and keep_vectors is not False and keep_vectors != "int8":
        raise ValueError(f"keep_vectors must be true, false or \"int8\", got {keep_vectors!r}")
    return FORMS[keep_vectors]


def quantize(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 [n, dim] and float16 scales [n]: ``row ~= q * scale``, the largest entry at +-127."""
    x = np.asarray(rows, dtype=np.float32)
    scale = (np.abs(x).max(axis=1, initial=0.0) / 127).astype(np.float16)
    s = scale.astype(np.float32)
    s[s == 0] = 1.0
    return np.clip(np.rint(x / s[:, None]), -127, 127).astype(np.int8), scale


class Int8Rows:
    """Stored int8 originals read as float32 ``[T, dim]`` rows (slices or index arrays)."""

    def __init__(self, q: np.ndarray, scales: np.ndarray) -> None:
        self.q, self.scales = q, scales
        self.shape = q.shape
        self.ndim = 2
        self.dtype = np.dtype(np.float32)

    @property
    def nbytes(self) -> int:
        return int(self.q.nbytes + self.scales.nbytes)

    def __len__(self) -> int:
        return int(self.shape[0])

    def __getitem__(self, rows: slice | np.ndarray) -> np.ndarray:
        return np.asarray(self.q[rows], np.float32) * np.asarray(self.scales[rows], np.float32)[:, None]


class Rounded:
    """Rows (read block by block) as they read back once stored in int8: what an
    ``"int8"`` index compresses and trains on, so a refit from the stored form matches."""

    def __init__(self, rows: Any) -> None:
        self.rows = rows
        self.shape = rows.shape
        self.ndim = 2
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return int(self.shape[0])

    def __getitem__(self, rows: slice | np.ndarray) -> np.ndarray:
        return Int8Rows(*quantize(self.rows[rows]))[:]
