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

# 2 added norms.npy (float16), 3 stores them as uint8 steps; 1 (norms computed at open) and 2 still open
SEGMENT_FORMAT = 3
FILES = ("codes.npy", "residuals.npy", "doclens.npy", "pids.npy", "ivf.npy", "ivf_offsets.npy")
NORMS = "norms.npy"
VECTORS = "vectors.npy"  # optional: the token vectors as committed (float16 or int8), for re-quantising
VECTOR_BLOCK = 1 << 16  # rows of originals copied at a time
NORM_SPREAD = 4.0  # how fast norm steps widen away from 1 (quantize_norms)


def quantize_norms(norms: np.ndarray) -> np.ndarray:
    """Token norms in one byte: ``round(128 + 127 tanh(4 (n - 1)))``, within [2, 254].

    One mapping for every segment, so a token scores the same whatever segment holds it,
    and a merge copies a byte by re-quantising its read-back (exact for every byte).
    Steps are finest near 1 (0.002; real segments span |c + r| = 0.78-1.11, where the step
    stays under 0.004), widen towards the tails and saturate outside 0.31-1.69.

    >>> q = quantize_norms(np.array([0.8, 1.0, 1.1, 9.0], np.float32))
    >>> q.tolist(), [round(float(x), 3) for x in dequantize_norms(q)]
    ([44, 128, 176, 254], [0.801, 1.0, 1.1, 1.691])
    >>> every = np.arange(2, 255)
    >>> bool((quantize_norms(dequantize_norms(every)) == every).all())
    True
    """
    steps: np.ndarray = np.round(128 + 127 * np.tanh(NORM_SPREAD * (norms.astype(np.float32) - 1)))
    return np.asarray(np.clip(steps, 2, 254), dtype=np.uint8)


def dequantize_norms(q: np.ndarray) -> np.ndarray:
    """The float16 norms search divides by (the definition, ``FORMAT.md``), by table lookup."""
    return np.asarray(NORM_TABLE[q])


NORM_TABLE = (1 + np.arctanh((np.clip(np.arange(256), 2, 254) - 128) / 127) / NORM_SPREAD).astype(np.float16)


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
              NORMS: quantize_norms(norms)}
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
    norms: torch.Tensor | None  # [n_tokens] |c + r|, float16 (format 3: decoded); format 1: None
    nbytes: int  # what search reads (originals excluded)
    vectors: np.ndarray | Int8Rows | None = None  # [n_tokens, dim] originals (mmap, never read by search)

    @classmethod
    def open(cls, path: Path, device: torch.device) -> Segment:
        try:
            meta = json.loads((path / "segment.json").read_text())
            files = FILES if meta.get("format") == 1 else (*FILES, NORMS)
            arr = {f[:-4]: np.load(path / f, mmap_mode="r") for f in files}
            size = sum((path / f).stat().st_size for f in (*files, "segment.json"))
        except (OSError, ValueError) as e:
            raise IndexCorrupt(f"unreadable segment {path.name}: {e}") from e
        n, t = meta["n_passages"], meta["n_tokens"]
        if meta.get("format") not in (1, 2, SEGMENT_FORMAT) or arr["pids"].shape != (n,) \
                or arr["codes"].shape != (t,) or int(arr["doclens"].sum()) != t \
                or len(arr["residuals"]) != t or arr.get("norms", np.empty(t)).shape != (t,):
            raise IndexCorrupt(f"segment {path.name} fails its shape checks")
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(arr["doclens"], out=offsets[1:])
        norms = None
        if "norms" in arr:
            if arr["norms"].dtype != (np.uint8 if meta["format"] == SEGMENT_FORMAT else np.float16):
                raise IndexCorrupt(f"segment {path.name}: norms of dtype {arr['norms'].dtype}")
            plain = dequantize_norms(arr["norms"]) if meta["format"] == SEGMENT_FORMAT else arr["norms"]
            norms = _tensor(plain, device)
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
