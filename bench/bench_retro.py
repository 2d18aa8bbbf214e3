"""RETRO neighbours benchmark: a 2,048-token request (32 chunks, k=2) against a chunk DB.

Two parts, each measured against exact search in the same run:
- ``synthetic``: 1M clustered unit keys (dim 384, no encoder): build time of the
  default approximate index, bytes per chunk, p50/p95 of the key search for the
  32 query chunks, recall@2 against exhaustive search.
- ``stdlib``: the real pipeline (SmolLM2 tokenizer, MiniLM keys) on a subset of
  CPython's stdlib; 2,048-token requests from files outside the DB.

    python -m bench.bench_retro synthetic --chunks 1000000
    python -m bench.bench_retro stdlib --max-chunks 3000
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np

from bench import data
from bench.data import CACHE
from indexer.retro import ChunkDB, ChunkDBConfig, keyindex

K = 2


def pct(ts: list[float]) -> str:
    return f"p50 {np.median(ts) * 1e3:.1f} ms, p95 {np.percentile(ts, 95) * 1e3:.1f} ms"


def recall(approx: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact)]))


def clustered(n: int, centers: np.ndarray, rng, noise: float = 0.9) -> np.ndarray:
    """Unit keys around random centres: noise of norm ~``noise`` around unit-norm centres."""
    d = centers.shape[1]
    x = centers[rng.integers(len(centers), size=n)]
    x += noise * rng.standard_normal((n, d), dtype=np.float32) / np.sqrt(d)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def synthetic(args) -> None:
    rng = np.random.default_rng(0)
    d = 384
    centers = rng.standard_normal((args.clusters, d), dtype=np.float32) / np.sqrt(d)
    t = time.perf_counter()
    keys = np.concatenate(
        [clustered(min(100_000, args.chunks - s), centers, rng).astype(np.float16)
         for s in range(0, args.chunks, 100_000)]
    )
    print(f"generated {len(keys):,} keys in {time.perf_counter() - t:.1f} s")
    requests = [clustered(32, centers, rng) for _ in range(args.requests)]
    no_bans = [[] for _ in range(32)]

    exact_keys = np.asarray(keys, dtype=np.float32)
    ex_t, exact = [], []
    for q in requests[: args.exact_requests]:
        t = time.perf_counter()
        exact.append(keyindex.exact_search(q, exact_keys, K, no_bans)[0])
        ex_t.append(time.perf_counter() - t)
    print(f"exact search (torch, CPU): {pct(ex_t)}")

    factory = args.factory or keyindex.default_factory(len(keys), d)
    ids = np.arange(len(keys), dtype=np.int64)
    t = time.perf_counter()
    index = keyindex.build_faiss(factory, keys, ids)
    build_s = time.perf_counter() - t
    path = CACHE / "synthetic.faiss"
    CACHE.mkdir(exist_ok=True)
    keyindex.save(index, path)
    index_bytes = path.stat().st_size
    path.unlink()
    # a row: index entry + fp16 key + 64 int32 tokens + length, chunk id, document row
    per_chunk = index_bytes / len(keys) + 2 * d + 64 * 4 + 4 + 8 + 4
    print(f"index {factory}: build {build_s:.1f} s, index {index_bytes / len(keys):.1f} B/chunk, "
          f"chunk DB total {per_chunk:.0f} B/chunk")
    keyindex.set_search_params(index, args.nprobe, args.rerank)
    ap_t, ap_cpu, approx = [], [], []
    for q in requests:
        t, c = time.perf_counter(), time.process_time()
        approx.append(keyindex.approx_search(index, lambda a: a, q, keys, K, no_bans, len(keys),
                                             rerank=args.rerank)[0])
        ap_t.append(time.perf_counter() - t)
        ap_cpu.append(time.process_time() - c)
    r = recall(np.concatenate(approx[: len(exact)]), np.concatenate(exact))
    print(f"approx search nprobe={args.nprobe} rerank={args.rerank}: {pct(ap_t)}; "
          f"recall@2 vs exact {r:.3f}; speed-up over exact {np.median(ex_t) / np.median(ap_t):.0f}x")
    print(f"approx search CPU time (all threads) per request: p50 {np.median(ap_cpu) * 1e3:.1f} ms; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def stdlib_files() -> list[Path]:
    tree = data.stdlib() / "tree"
    return sorted(p for p in tree.rglob("*.py") if p.is_file())


def stdlib(args) -> None:
    from indexer.retro.records import cached_encoder, cached_tokenizer

    files = stdlib_files()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(files))
    tok = cached_tokenizer(ChunkDBConfig().tokenizer)
    docs, n_chunks = [], 0
    held_out = []
    for i in order:
        text = files[i].read_text(errors="replace")
        n = -(-len(tok.encode(text)) // 64)
        if n_chunks + n <= args.max_chunks:
            docs.append((str(files[i]), str(files[i].relative_to(files[0].parents[1])), text))
            n_chunks += n
        elif len(tok.encode(text)) >= 2048 and len(held_out) < args.requests:
            held_out.append(tok.hf.decode(tok.encode(text)[:2048].tolist()))
    print(f"stdlib subset: {len(docs)} of {len(files)} files, {n_chunks:,} chunks; "
          f"{len(held_out)} held-out 2,048-token requests")
    root = CACHE / "stdlib-chunkdb"
    if args.keep_db and (root / "CURRENT").exists():
        db = ChunkDB.open(root).update(docs)  # unchanged texts: nothing is embedded again
        print(f"reused chunk DB at {root}: {db.num_chunks:,} chunks")
    else:
        shutil.rmtree(root, ignore_errors=True)
        db = ChunkDB.create(root, ChunkDBConfig())
        t = time.perf_counter()
        db = db.update(docs)
        build_s = time.perf_counter() - t
        print(f"exact chunk DB: build {build_s:.1f} s ({db.num_chunks / build_s:.1f} chunks/s, "
              f"tokenize + MiniLM + write), {db.nbytes() / db.num_chunks:.0f} B/chunk")
    # the approximate index the DB would get past 100k chunks, on these keys (no re-embedding)
    nlist = 2 ** round(np.log2(np.sqrt(db.num_chunks)))
    factory = args.factory or f"IVF{nlist},PQ192x4fs"
    approx_root = root.with_name("stdlib-chunkdb-ivf")
    shutil.rmtree(approx_root, ignore_errors=True)
    shutil.copytree(root, approx_root)
    t = time.perf_counter()
    approx_db = ChunkDB.open(approx_root).reindex(factory, args.nprobe, args.rerank)
    print(f"{factory} chunk DB: index build {time.perf_counter() - t:.1f} s, "
          f"{approx_db.nbytes() / approx_db.num_chunks:.0f} B/chunk")

    for name, target in (("exact", db), (factory, approx_db)):
        target.neighbors(text=held_out[0], k=K)  # warm-up: model load
        ts = []
        for text in held_out:
            t = time.perf_counter()
            res = target.neighbors(text=text, k=K)
            ts.append(time.perf_counter() - t)
        print(f"{name}: request of 2,048 tokens ({len(res)} chunks, k=2), end to end "
              f"(tokenize + MiniLM on 32 chunks + search): {pct(ts)}")

    # key search alone, on the requests' own keys, across nprobe
    enc = cached_encoder(db.config.encoder, db.device)
    requests = []
    for text in held_out:
        ids = tok.encode(text)
        requests.append(enc.encode([tok.decode(ids[s:s + 64]) for s in range(0, len(ids), 64)]))
    no_bans = [[] for _ in range(32)]

    def timed(target) -> tuple[list[np.ndarray], list[float]]:
        rows, ts = [], []
        for q in requests:
            t = time.perf_counter()
            rows.append(target.search_keys(q, K, no_bans)[0])
            ts.append(time.perf_counter() - t)
        return rows, ts

    exact_rows, exact_t = timed(db)
    print(f"exact key search, 32 chunks: {pct(exact_t)}")
    for nprobe in sorted({args.nprobe, 16, 32}):
        keyindex.set_search_params(approx_db.index, nprobe, args.rerank)
        rows, ts = timed(approx_db)
        r = recall(np.concatenate(rows), np.concatenate(exact_rows))
        print(f"{factory} nprobe={nprobe} rerank={args.rerank} key search: {pct(ts)}; "
              f"recall@2 vs exact {r:.3f}; time ratio to exact {np.median(ts) / np.median(exact_t):.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("part", choices=["synthetic", "stdlib"])
    p.add_argument("--chunks", type=int, default=1_000_000)
    p.add_argument("--clusters", type=int, default=2000)
    p.add_argument("--max-chunks", type=int, default=3000)
    p.add_argument("--requests", type=int, default=50)
    p.add_argument("--exact-requests", type=int, default=10)
    p.add_argument("--factory", default=None)
    p.add_argument("--keep-db", action="store_true", help="stdlib: reuse the cached chunk DB")
    p.add_argument("--nprobe", type=int, default=ChunkDBConfig.nprobe)
    p.add_argument("--rerank", type=int, default=ChunkDBConfig.rerank)
    args = p.parse_args()
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    synthetic(args) if args.part == "synthetic" else stdlib(args)


if __name__ == "__main__":
    main()
