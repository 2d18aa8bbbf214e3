"""Codec build and encoder kernels on this CPU and restricted to AVX2, with ratios to float32.

    python -m bench.bench_isa [--isa both|native|avx2] [--centroids 1024] [--heldout 65536]
                              [--no-torch-onednn] [--encoder 64] [--commit 1500] [--threads 1] [--rounds 1]

Each ISA runs in its own process (the switches are read at library load):

- ``avx2`` sets ``ATEN_CPU_CAPABILITY=avx2`` (torch's own kernels), ``ONEDNN_MAX_CPU_ISA=AVX2``
  (oneDNN: torch's int8 product, its linear layers), ``MKL_ENABLE_INSTRUCTIONS=AVX2`` (torch's
  float product), ``OPENBLAS_CORETYPE=Haswell`` (faiss's BLAS) and ``FAISS_SIMD_LEVEL=AVX2``
  (faiss's own kernels). Each process prints what the libraries report they run.
  ONNX Runtime has no such switch (MLAS dispatches on CPUID): its encoder figures are native.
- ``--no-torch-onednn`` turns torch's oneDNN off: ``torch._int_mm`` then runs torch's generic
  loop, the path behind the 60x cliff seen on an AVX2-only EPYC (oneDNN's own AVX2 int8 gemm
  is fast on this host, so ``ONEDNN_MAX_CPU_ISA`` alone does not show it).

Token vectors: ``bench/stdlib_vectors.py``'s cache. The k-means sample is ``64 * C`` of them
(as ``PlaidIndex`` draws it), ``--heldout`` others are assigned, compressed and scored for
held-out MSE. Every stage is timed per kernel and divided by the float32 kernel of the same
stage in the same process; held-out MSE is to the exact (float) nearest centroid and after
``--nbits`` decoding. ``--encoder N``: torch fp32 and ONNX int8 passages/s on N passages;
``--commit N``: a first PLAID commit of N passages' vectors, seconds per stage (the kernels
as ``kernels.pick`` chose them), and its share of the build at the measured encoder rate.
``--threads 1`` (default): on the shared 2-core host, two-thread timings varied 10x.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

VECTORS = Path(__file__).parent / ".cache" / "stdlib-vecs"
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
            "OPENBLAS_CORETYPE": "Haswell", "FAISS_SIMD_LEVEL": "AVX2"}


def ratios(secs: dict[str, float], kinds: list[str]) -> str:
    return ", ".join(f"{k} {secs[k]:.2f} s ({secs[k] / secs['float32']:.2f}x)" for k in kinds)


def timed(fn, repeats: int = 1):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def libraries() -> str:
    """What each library says it runs (proof that the switches took)."""
    import faiss
    import torch

    core = "?"
    for lib in glob.glob(str(Path(faiss.__file__).parents[1] / "faiss_cpu.libs" / "libopenblas*.so")):
        blas = ctypes.CDLL(lib)
        blas.openblas_get_corename.restype = ctypes.c_char_p
        core = blas.openblas_get_corename().decode()
    onednn = "on" if torch.backends.mkldnn.enabled else "off"
    return (f"torch {torch.backends.cpu.get_cpu_capability()} (oneDNN {onednn}), "
            f"faiss {faiss.SIMDConfig.get_level_name()}, faiss BLAS core {core}, "
            f"threads {torch.get_num_threads()}")


def heldout_mse(codec, held) -> tuple[float, float]:
    """Mean squared norm of ``held - exact nearest centroid`` and of ``held - decoded``."""
    import torch

    from indexer.index.plaid.codec import assign, decompress

    c = torch.from_numpy(codec.centroids)
    v = torch.from_numpy(held)
    near = float(((v - c[assign(c, v, kernel="float32")]) ** 2).sum(1).mean())
    codes, packed = codec.compress(held)
    rec = decompress(torch.from_numpy(codes.astype(np.int64)), torch.from_numpy(packed), c,
                     torch.from_numpy(codec.decode_table()))
    return near, float(((v - rec) ** 2).sum(1).mean())


def forcing(value: str):
    os.environ["MEMEX_FORCE_KERNEL"] = value


def run(args) -> None:
    import faiss
    import torch

    if args.no_torch_onednn:
        torch.backends.mkldnn.enabled = False
    if args.threads:
        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
        os.environ["MEMEX_ENCODER_THREADS"] = str(args.threads)
    from indexer import kernels
    from indexer.index.plaid.codec import Codec, Nearest, assign_kernel

    print(f"== ISA {args.isa}{' (torch oneDNN off)' if args.no_torch_onednn else ''}: {libraries()}")
    print(f"   switches: {' '.join(f'{k}={os.environ[k]}' for k in AVX2_ENV if k in os.environ) or 'none'}")
    os.environ.pop("MEMEX_FORCE_KERNEL", None)
    probed = assign_kernel()
    print(f"   probe picks assign={probed}: {kernels.choices()['assign']['seconds']}")

    flat = np.fromfile(VECTORS / "doc.f16", dtype=np.float16).reshape(-1, 384)
    C = args.centroids
    n_train = 64 * C
    rng = np.random.default_rng(1)
    picked = rng.choice(len(flat), n_train + args.heldout, replace=False)
    sample = np.asarray(flat[np.sort(picked[:n_train])], dtype=np.float32)
    held = np.asarray(flat[np.sort(picked[n_train:])], dtype=np.float32)
    print(f"   {len(flat)} stdlib token vectors; k-means sample {len(sample)} x 384, C = {C}; "
          f"held-out {len(held)}")

    int8_ok = not args.no_torch_onednn  # without oneDNN, int8 runs only on a slice (it is the cliff)
    kinds = ["float32", "faiss", "int8"]

    # 1. assignment of the held-out rows to the centroids of one codec
    base_codec = Codec.train(sample, args.nbits, C, seed=0)
    c = torch.from_numpy(base_codec.centroids)
    v = torch.from_numpy(held)
    secs = {}
    for kind in kinds:
        rows = v if (kind != "int8" or int8_ok) else v[:4096]
        _, t = timed(lambda kind=kind, rows=rows: Nearest(c, kind)(rows), repeats=2)
        secs[kind] = t * len(v) / len(rows)
    print("   assignment " + ratios(secs, kinds)
          + ("  [int8 timed on 4,096 rows, scaled]" if not int8_ok else ""))

    # 2. k-means (the codec's schedule), by kernel; held-out quality of each
    variants = [("faiss", "kmeans=faiss"), ("torch/float32", "kmeans=torch,assign=float32"),
                ("torch/faiss", "kmeans=torch,assign=faiss")]
    if int8_ok:
        variants.append(("torch/int8", "kmeans=torch,assign=int8"))
    results, seconds = {}, {}
    for round_ in range(args.rounds):  # interleaved: load from other jobs hits every variant alike
        for name, force in variants:
            forcing(force)
            codec, t = timed(lambda: Codec.train(sample, args.nbits, C, seed=0))
            seconds[name] = min(t, seconds.get(name, t))
            if round_ == 0:
                forcing("assign=float32")
                results[name] = heldout_mse(codec, held)
    results = {name: (seconds[name], *mse) for name, mse in results.items()}
    base = results["torch/float32"]
    for name, (t, near, rec) in results.items():
        print(f"   k-means {name:14s} {t:7.2f} s ({t / base[0]:.2f}x)  held-out MSE {near:.5f} "
              f"({(near / base[1] - 1) * 100:+.2f}%), after {args.nbits}-bit {rec:.5f} "
              f"({(rec / base[2] - 1) * 100:+.2f}%)")

    # 3. compression of the held-out rows, by assignment kernel
    secs = {}
    for kind in kinds:
        forcing(f"assign={kind}")
        rows = held if (kind != "int8" or int8_ok) else held[:4096]
        _, t = timed(lambda rows=rows: base_codec.compress(rows), repeats=2)
        secs[kind] = t * len(held) / len(rows)
    print("   compress   " + ratios(secs, kinds))
    os.environ.pop("MEMEX_FORCE_KERNEL", None)

    rate = encoder_ratio(args.encoder) if args.encoder else None
    if args.commit:
        commit_stages(args.commit, rate)


def encoder_ratio(n: int) -> None:
    """Passages/s of torch fp32 and ONNX int8 on ``n`` stdlib passages (ONNX Runtime: native ISA)."""
    import json

    from indexer.encoding.encoder import ColBERTEncoder
    from indexer.encoding.runtime import configure

    tree = Path(__file__).parent / ".cache" / "stdlib" / "tree"
    rows = [json.loads(line) for line in (VECTORS / "passages.jsonl").open()][:n]
    texts = [r["path"] + "\n" + "\n".join((tree / r["path"]).read_text(errors="replace").splitlines()
                                          [r["start"] - 1 : r["end"]]) for r in rows]
    enc = ColBERTEncoder.load()
    rates: dict[str, float] = {}
    for rt, prec in (("torch", "fp32"), ("onnx", "int8"), ("torch", "fp32"), ("onnx", "int8")):
        configure(enc, rt, prec)
        enc.encode_documents(texts[:8])
        _, t = timed(lambda: enc.encode_documents(texts))
        rates[f"{rt}/{prec}"] = max(rates.get(f"{rt}/{prec}", 0), n / t)
    print(f"   encoder ({n} passages): " + ", ".join(f"{k} {v:.1f}/s" for k, v in rates.items())
          + f"; int8 / torch fp32 = {rates['onnx/int8'] / rates['torch/fp32']:.2f}x")
    return rates["onnx/int8"]


def commit_stages(n_passages: int, rate: float | None) -> None:
    """A first PLAID commit of ``n_passages`` cached stdlib passages, seconds per stage, and
    its share of an index build whose encoder runs at ``rate`` passages/s."""
    import tempfile

    from indexer.index.plaid import PlaidIndex

    flat = np.fromfile(VECTORS / "doc.f16", dtype=np.float16).reshape(-1, 384)
    off = np.load(VECTORS / "doc_offsets.npy")[: n_passages + 1]
    bags = [flat[off[i] : off[i + 1]] for i in range(len(off) - 1)]
    stamps: dict[str, list[float]] = {}

    def progress(stage: str, done: int, total: int) -> None:
        stamps.setdefault(stage, [time.perf_counter()]).append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        index = PlaidIndex.create(Path(tmp) / "i", 384)
        index.progress = progress
        t0 = time.perf_counter()
        index.commit(np.arange(len(bags), dtype=np.int64), bags, np.zeros(0, np.int64))
        total = time.perf_counter() - t0
    starts = sorted((v[0], k) for k, v in stamps.items())
    bounds = [t for t, _ in starts[1:]] + [t0 + total]
    parts = {k: end - t for (t, k), end in zip(starts, bounds)}
    parts["before codec"] = starts[0][0] - t0
    line = ", ".join(f"{k} {v:.1f} s" for k, v in parts.items())
    print(f"   PLAID commit of {len(bags)} passages ({off[-1]} tokens): {total:.1f} s ({line})")
    if rate:
        encode = len(bags) / rate
        print(f"   outside the encoder: {total:.1f} s of {total + encode:.1f} s "
              f"= {100 * total / (total + encode):.1f}% (encoding at {rate:.1f} passages/s)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--isa", choices=("both", "native", "avx2"), default="both")
    ap.add_argument("--centroids", type=int, default=1024)
    ap.add_argument("--heldout", type=int, default=65536)
    ap.add_argument("--nbits", type=int, default=2)
    ap.add_argument("--encoder", type=int, default=0, help="passages for the encoder ratio (0: skip)")
    ap.add_argument("--rounds", type=int, default=1, help="k-means runs per variant (best of)")
    ap.add_argument("--commit", type=int, default=0, help="passages for a timed PLAID commit (0: skip)")
    ap.add_argument("--threads", type=int, default=1, help="torch/faiss/encoder threads (0: library default)")
    ap.add_argument("--no-torch-onednn", action="store_true")
    args = ap.parse_args()
    if os.environ.get("BENCH_ISA_CHILD"):
        return run(args)
    for isa in ("native", "avx2") if args.isa == "both" else (args.isa,):
        env = {k: v for k, v in os.environ.items() if k not in AVX2_ENV}
        env.update(AVX2_ENV if isa == "avx2" else {}, BENCH_ISA_CHILD="1")
        argv = ["--isa", isa, "--centroids", str(args.centroids), "--heldout", str(args.heldout),
                "--nbits", str(args.nbits), "--encoder", str(args.encoder), "--commit", str(args.commit),
                "--threads", str(args.threads), "--rounds", str(args.rounds)]
        argv += ["--no-torch-onednn"] if args.no_torch_onednn else []
        subprocess.run([sys.executable, "-m", "bench.bench_isa", *argv], env=env, check=True)


if __name__ == "__main__":
    main()
