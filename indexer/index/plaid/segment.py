"""Immutable segments: one directory of memory-mapped arrays per commit or merge.

A segment never changes after it is written; deletes live in tombstone files
named by the manifest. Arrays are read with ``np.load(mmap_mode="r")`` and
wrapped as torch tensors without copying (CPU) or copied once (CUDA).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from indexer import durable
from indexer.errors import IndexCorrupt
from indexer.index.plaid.originals import SCALES, Int8Rows, quantize

SEGMENT_FORMAT = 2  # 2 added norms.npy; format-1 segments still open (their norms are computed)
FILES = ("codes.npy", "residuals.npy", "doclens.npy", "pids.npy", "ivf.npy", "ivf_offsets.npy")
NORMS = "norms.npy"
VECTORS = "vectors.npy"  # optional: the token vectors as committed (float16 or int8), for re-quantising
VECTOR_BLOCK = 1 << 16  # rows of originals copied at a time


def build_ivf(codes: np.ndarray, doclens: np.ndarray, n_centroids: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverted list centroid -> local passage indexes (each pair once).

    Returns ``ivf`` [n_pairs] sorted by centroid then passage (uint16 when the segment
    has at most 65,536 passages, else int32: 2 bytes saved per pair), and
    ``offsets`` int64 [n_centroids + 1] with list ``c`` at ``ivf[offsets[c]:offsets[c+1]]``.
    """
    owner = np.repeat(np.arange(len(doclens), dtype=np.int64), doclens)
    pairs = np.unique(codes.astype(np.int64) * len(doclens) + owner)
    cent, ivf = np.divmod(pairs, max(len(doclens), 1))
    offsets = np.zeros(n_centroids + 1, dtype=np.int64)
    np.cumsum(np.bincount(cent, minlength=n_centroids), out=offsets[1:])
    return ivf.astype(np.uint16 if len(doclens) <= 65536 else np.int32), offsets


def _write_rows(path: Path, rows: Any, form: str = "float16") -> None:
    """Write ``rows`` ([T, dim], read block by block) as a float16 .npy file, fsynced; or
    (``form="int8"``) as int8 with a float16 scale per row in ``vector_scales.npy``."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.int8 if form == "int8" else np.float16,
                                    shape=rows.shape)
    scales = np.empty(len(rows), np.float16)
    for s in range(0, len(rows), VECTOR_BLOCK):
        if form == "int8":
            out[s : s + VECTOR_BLOCK], scales[s : s + VECTOR_BLOCK] = quantize(rows[s : s + VECTOR_BLOCK])
        else:
            out[s : s + VECTOR_BLOCK] = rows[s : s + VECTOR_BLOCK]
    out.flush()
    del out
    durable.fsync_file(path)  # a new file in a new folder: durable.write_npy's fresh=True, by blocks
    if form == "int8":
        durable.write_npy(path.parent / SCALES, scales, fresh=True)


def write_segment(path: Path, codec: str, n_centroids: int, pids: np.ndarray, doclens: np.ndarray,
                  codes: np.ndarray, residuals: np.ndarray, norms: np.ndarray, vectors: Any = None,
                  form: str = "float16") -> None:
    """Write a segment directory, durable (its files, itself and its entry in the parent)
    when this returns; the manifest that names it is written after. ``vectors``: the
    originals of the tokens ([T, dim], sliceable), kept in ``vectors.npy`` in ``form``
    (``originals.FORMS``); or None."""
    durable.make_dirs(path)
    ivf, ivf_offsets = build_ivf(codes, doclens, n_centroids)
    arrays = {"codes.npy": codes, "residuals.npy": residuals, "doclens.npy": doclens.astype(np.int32),
              "pids.npy": pids.astype(np.int64), "ivf.npy": ivf, "ivf_offsets.npy": ivf_offsets,
              NORMS: norms.astype(np.float16)}
    for name, arr in arrays.items():
        durable.write_npy(path / name, np.ascontiguousarray(arr), fresh=True)
    if vectors is not None:
        _write_rows(path / VECTORS, vectors, form)
    meta = {"format": SEGMENT_FORMAT, "codec": codec, "n_passages": len(pids), "n_tokens": int(len(codes))}
    durable.write_json(path / "segment.json", meta, fresh=True)
    durable.fsync_dir(path)


def _tensor(arr: np.ndarray, device: torch.device) -> torch.Tensor:
    with warnings.catch_warnings():  # read-only mmap: torch warns, we never write through it
        warnings.simplefilter("ignore")
        t = torch.from_numpy(arr)
    if device.type == "cpu":
        return t
    return (t.int() if t.dtype == torch.uint16 else t).to(device)  # few uint16 kernels off CPU


@dataclass
class Segment:
    """One opened segment. Tensors share memory with the mmapped files on CPU."""

    name: str
    codec: str
    pids: np.ndarray  # [n] int64 external ids (mmap)
    doclens: np.ndarray  # [n] int32 (mmap)
    offsets: torch.Tensor  # [n + 1] int64 token offset of each passage
    codes: torch.Tensor  # [n_tokens] uint16 or int32
    residuals: torch.Tensor  # [n_tokens, dim * nbits / 8] uint8
    ivf: torch.Tensor  # [n_pairs] uint16 or int32
    ivf_offsets: torch.Tensor  # [C + 1] int64
    norms: torch.Tensor | None  # [n_tokens] float16 |c + r|; None for a format-1 segment until computed
    nbytes: int  # what search reads (originals excluded)
    vectors: np.ndarray | Int8Rows | None = None  # [n_tokens, dim] originals (mmap, never read by search)

    @classmethod
    def open(cls, path: Path, device: torch.device) -> Segment:
        try:
            meta = json.loads((path / "segment.json").read_text())
            files = (*FILES, NORMS) if meta.get("format") == SEGMENT_FORMAT else FILES
            arr = {f[:-4]: np.load(path / f, mmap_mode="r") for f in files}
            size = sum((path / f).stat().st_size for f in (*files, "segment.json"))
        except (OSError, ValueError) as e:
            raise IndexCorrupt(f"unreadable segment {path.name}: {e}") from e
        n, t = meta["n_passages"], meta["n_tokens"]
        if meta.get("format") not in (1, SEGMENT_FORMAT) or arr["pids"].shape != (n,) \
                or arr["codes"].shape != (t,) or int(arr["doclens"].sum()) != t \
                or len(arr["residuals"]) != t or arr.get("norms", np.empty(t)).shape != (t,):
            raise IndexCorrupt(f"segment {path.name} fails its shape checks")
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(arr["doclens"], out=offsets[1:])
        norms = _tensor(arr["norms"], device) if "norms" in arr else None
        vectors = None
        if (path / VECTORS).exists():
            try:
                vectors = np.load(path / VECTORS, mmap_mode="r")
                if vectors.dtype == np.int8:
                    scales = np.load(path / SCALES, mmap_mode="r")
                    if scales.shape != (t,):
                        raise ValueError(f"{scales.shape[0]} scales for {t} rows")
                    vectors = Int8Rows(vectors, scales)
            except (OSError, ValueError) as e:
                raise IndexCorrupt(f"unreadable originals in segment {path.name}: {e}") from e
            if vectors.shape[0] != t:
                raise IndexCorrupt(f"segment {path.name}: originals have {vectors.shape[0]} rows, not {t}")
        return cls(path.name, meta["codec"], arr["pids"], arr["doclens"], _tensor(offsets, device),
                   _tensor(arr["codes"], device), _tensor(arr["residuals"], device),
                   _tensor(arr["ivf"], device), _tensor(arr["ivf_offsets"], device), norms, size, vectors)

    def __len__(self) -> int:
        return len(self.pids)
