"""Codec build on stdlib token vectors: the previous recipe against today's, same run.

    python -m bench.bench_codec_build [--vectors PATH] [--heldout 200000]

``--vectors`` is a float16 [n, dim] ``.npy`` of token vectors (default: the exact-engine
stdlib home's segment, ``bench/.cache/home-auto``). The training sample is drawn as
``PlaidIndex`` draws it (64 tokens per centroid, C from ``n_centroids_for``); the held-out
tokens are others. Baseline = 8 Lloyd iterations on the whole sample with 16k-row
assignment blocks, and the previous ``compress`` (``tests/index/test_codec_build.py``).
Prints seconds, held-out residual MSE (to the nearest centroid, and after 2-bit
decoding), and the ratios.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from bench.data import CACHE
from indexer.index.plaid import codec as codec_mod
from indexer.index.plaid.codec import Codec, assign, decompress, n_centroids_for
from tests.index.test_codec_build import reference_compress

HOME_VECTORS = CACHE / "home-auto/corpora/stdlib/index/seg-1.vectors.npy"


def heldout_mse(codec: Codec, x: np.ndarray) -> tuple[float, float]:
    """Mean squared norm of ``x - centroid`` and of ``x - decoded`` (unit rows)."""
    c = torch.from_numpy(codec.centroids)
    v = torch.from_numpy(x.astype(np.float32))
    near = float(((v - c[assign(c, v)]) ** 2).sum(1).mean())
    codes, packed = codec.compress(x)
    rec = decompress(torch.from_numpy(codes.astype(np.int64)), torch.from_numpy(packed), c,
                     torch.from_numpy(codec.decode_table()))
    return near, float(((v - rec) ** 2).sum(1).mean())


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vectors", type=Path, default=HOME_VECTORS)
    ap.add_argument("--heldout", type=int, default=200_000)
    ap.add_argument("--nbits", type=int, default=2)
    args = ap.parse_args()
    flat = np.load(args.vectors, mmap_mode="r")
    n_centroids = n_centroids_for(len(flat))
    rng = np.random.default_rng(1)
    picked = np.sort(rng.choice(len(flat), 64 * n_centroids + args.heldout, replace=False))
    is_train = np.zeros(len(picked), bool)
    is_train[rng.choice(len(picked), 64 * n_centroids, replace=False)] = True
    sample = np.asarray(flat[picked[is_train]], dtype=np.float32)
    held = np.asarray(flat[picked[~is_train]])
    print(f"{len(flat)} token vectors, C = {n_centroids}, sample {len(sample)}, held-out {len(held)}")

    schedule, budget = codec_mod.KMEANS_SCHEDULE, codec_mod.SCORE_BUDGET
    codec_mod.KMEANS_SCHEDULE, codec_mod.SCORE_BUDGET = ((1, 8),), (1 << 14) * n_centroids
    old, t_old = timed(lambda: Codec.train(sample, args.nbits, n_centroids))
    codec_mod.KMEANS_SCHEDULE, codec_mod.SCORE_BUDGET = schedule, budget
    new, t_new = timed(lambda: Codec.train(sample, args.nbits, n_centroids))
    print(f"train: previous {t_old:.1f} s, now {t_new:.1f} s ({t_old / t_new:.2f}x)")

    (ref, t_ref) = timed(lambda: reference_compress(new, held, codec_mod.assign_kernel()))
    (out, t_out) = timed(lambda: new.compress(held))
    same = np.array_equal(ref[0], out[0]) and np.array_equal(ref[1], out[1])
    print(f"compress {len(held)}: previous {t_ref:.2f} s, now {t_out:.2f} s "
          f"({t_ref / t_out:.2f}x), bit-identical: {same}")

    (o_near, o_rec), (n_near, n_rec) = heldout_mse(old, held), heldout_mse(new, held)
    print(f"held-out residual MSE to centroid: previous {o_near:.5f}, now {n_near:.5f} "
          f"({(n_near / o_near - 1) * 100:+.2f}%)")
    print(f"held-out MSE after {args.nbits}-bit decoding: previous {o_rec:.5f}, now {n_rec:.5f} "
          f"({(n_rec / o_rec - 1) * 100:+.2f}%)")


if __name__ == "__main__":
    main()
