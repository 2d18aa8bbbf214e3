"""Fail when a hot kernel, as dispatched on this machine, is far slower than plain float32.

    python -m bench.cliff_guard [--limit 5] [--encoder] [--no-torch-onednn]

Each kernel is timed against a float32 product of the same shape, interleaved in the
same process (best of ``--repeats``), and the run exits 1 when one takes more than
``--limit`` times its baseline. Only ratios: it holds on any CPU, loaded or not, and
it is what caught nothing when ``torch._int_mm`` ran 60x slower than float32 on an
AVX2-only EPYC. Seconds, not minutes; ``scripts/test.sh`` runs it before the tests.

Kernels: nearest-centroid assignment and compression (the kernel ``kernels.pick``
chose, or ``MEMEX_FORCE_KERNEL``), the int8 score product when it is the one
dispatched, one k-means run, the search's centroid product (``search.dot_t``),
and with ``--encoder`` the encoder runtime on a tiny batch against torch fp32.
``--no-torch-onednn`` turns torch's oneDNN off, so that a forced ``assign=int8``
runs torch's generic int8 loop: the cliff, reproduced on a VNNI machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

ROWS, DIM, CENTROIDS = 4096, 384, 1024  # one compression's worth of tokens, a small corpus's codec


def ratio(kernel: Callable[[], object], baseline: Callable[[], object], repeats: int,
          limit: float) -> tuple[float, float, float]:
    """(kernel seconds, baseline seconds, ratio): best of ``repeats``, interleaved; a
    kernel already past ``limit`` x 4 on its first run is not run again (a cliff is plain)."""
    times = []
    for fn in (baseline, kernel):  # warm-up: first-call allocations, lazy library loads
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    if times[1] > 4 * limit * times[0]:
        return times[1], times[0], times[1] / times[0]
    k = b = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        baseline()
        b = min(b, time.perf_counter() - t)
        t = time.perf_counter()
        kernel()
        k = min(k, time.perf_counter() - t)
        if k > 4 * limit * b:
            break
    return k, b, k / b


def checks(encoder: bool) -> list[tuple[str, Callable[[], object], Callable[[], object]]]:
    """(name, kernel as dispatched, float32 baseline of the same shape)."""
    from indexer.index.plaid.codec import (
        Codec,
        Nearest,
        _int8_centroids,
        _int8_rows,
        _int8_scores,
        assign_kernel,
        kmeans_kernel,
        train_centroids,
    )
    from indexer.index.plaid.search import dot_t

    g = torch.Generator().manual_seed(0)
    v = torch.nn.functional.normalize(torch.randn(ROWS, DIM, generator=g), dim=1)
    c = torch.nn.functional.normalize(v[:CENTROIDS] + 0.1 * torch.randn(CENTROIDS, DIM, generator=g), dim=1)
    ct = c.T.contiguous()
    product = lambda: v @ ct  # noqa: E731  the float32 baseline of every [ROWS, DIM] x [DIM, C] kernel
    kind = assign_kernel()
    codec = Codec(c.numpy(), np.array([-0.01, 0, 0.01], np.float32), np.array([-0.02, -0.005, 0.005, 0.02],
                                                                              np.float32), 2, 1.0)
    out = [(f"assign ({kind})", lambda: Nearest(c)(v), product),
           (f"compress ({kind})", lambda: codec.compress(v.numpy()), product)]
    if kind == "int8":
        v8, c8 = _int8_rows(v, torch.full((ROWS, 1), 127.0)), _int8_centroids(c)
        out.append(("int8 scores (torch._int_mm)", lambda: _int8_scores(v8, c8), product))
    # k-means: two Lloyd iterations on the rows, against two float products
    import indexer.index.plaid.codec as codec_mod

    def kmeans() -> object:
        saved, codec_mod.KMEANS_SCHEDULE = codec_mod.KMEANS_SCHEDULE, ((1, 2),)
        try:
            return train_centroids(v, 256, seed=0)
        finally:
            codec_mod.KMEANS_SCHEDULE = saved

    c256 = c[:256].T.contiguous()
    out.append((f"k-means ({kmeans_kernel()})", kmeans, lambda: (v @ c256, v @ c256)))
    q = v[:32].contiguous()
    out.append(("search centroid scores (dot_t)", lambda: dot_t(c, q), lambda: c @ q.T))
    if encoder:
        out.append(encoder_check())
    return out


def encoder_check() -> tuple[str, Callable[[], object], Callable[[], object]]:
    """The encoder as ``configure`` picks it here, against torch fp32 (another instance)."""
    from indexer.encoding.encoder import ColBERTEncoder
    from indexer.encoding.runtime import configure

    texts = [f"def f{i}(x):\n    return x * {i} + sum(range({i}))  # line {i}" for i in range(8)]
    fast, ref = ColBERTEncoder.load(), ColBERTEncoder.load()
    configure(fast)
    configure(ref, "torch", "fp32")
    return (f"encoder ({fast.runtime}/{fast.precision})", lambda: fast.encode_documents(texts),
            lambda: ref.encode_documents(texts))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=float, default=5.0, help="largest allowed kernel / baseline ratio")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--encoder", action="store_true", help="also the encoder runtime (loads the model)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch/faiss threads (1: ratios hold on a loaded CI host; 0: leave as is)")
    ap.add_argument("--no-torch-onednn", action="store_true")
    args = ap.parse_args()
    if args.threads:
        import faiss

        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
        os.environ["MEMEX_ENCODER_THREADS"] = str(args.threads)
    if args.no_torch_onednn:
        torch.backends.mkldnn.enabled = False
    t0 = time.perf_counter()
    failed = []
    print(f"cliff guard: torch {torch.backends.cpu.get_cpu_capability()}, "
          f"oneDNN {'on' if torch.backends.mkldnn.enabled else 'off'}, threads {torch.get_num_threads()}")
    for name, kernel, baseline in checks(args.encoder):
        k, b, r = ratio(kernel, baseline, args.repeats, args.limit)
        bad = r > args.limit
        failed += [name] if bad else []
        print(f"  {'FAIL' if bad else 'ok  '} {name:34s} {k * 1e3:9.2f} ms vs float32 "
              f"{b * 1e3:8.2f} ms = {r:6.2f}x")
    print(f"cliff guard: {'FAILED: ' + ', '.join(failed) if failed else 'ok'} "
          f"(limit {args.limit}x, {time.perf_counter() - t0:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
