"""Scale-out figures on a real local Ray cluster (docs/scale-out.md), and a 10M-passage model.

    python -m bench.bench_ray [--passages 256] [--queries 200]

1. Encode throughput: the same passages (paragraphs of docs/*.md) encoded in-process with
   one thread (the baseline), then on a cluster of one node with one 1-CPU encoder actor,
   then after a second node joins, two actors. Actor start-up (model load) is excluded.
2. Fan-out: p50 latency of one query against the same synthetic corpus as one shard and as
   three shards, both served by Ray actors, and in-process unsharded (the baseline); and how
   long a killed shard actor takes to answer again.
3. A model of 10M passages over 8 nodes, from the measured rates and bytes.

Nodes get 1 CPU each; on a 2-core box shared with other work, expect little from the
second worker: the ratio is what the cluster adds on this machine, not on real nodes.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MEMEX_ENCODER_THREADS", "1")  # the baseline: one core, as one actor

import numpy as np
import torch

from indexer.config import current
from indexer.distributed.cluster import connect, disconnect
from indexer.distributed.encode_pool import RayEncodePool
from indexer.distributed.sharded import ShardedIndex
from indexer.encoding.encoder import ColBERTEncoder
from indexer.errors import Unavailable
from indexer.index.plaid import PlaidIndex
from tests.helpers.ray_cluster import LocalRayCluster
from tests.index.plaid_data import corpus, queries

DOCS = Path(__file__).resolve().parents[1] / "docs"
MODEL_PASSAGES, MODEL_NODES, MODEL_CORES = 10_000_000, 8, 32
# p50 grows as size ** 0.517 in PLAID's synthetic scaling (x100 passages -> x10.8 p50, 10k to
# 1M passages, bench/RESULTS-plaid.md): posting lists grow as sqrt(n) with 2 sqrt(T) centroids.
PLAID_P50_EXPONENT = 0.517


def passages(n: int) -> list[str]:
    """Paragraphs of the docs, joined up to ~600 characters: passage-sized prose and code."""
    out, cur = [], ""
    for doc in sorted(DOCS.glob("*.md")):
        for para in doc.read_text().split("\n\n"):
            cur = f"{cur}\n\n{para}" if cur else para
            if len(cur) > 600:
                out.append(cur)
                cur = ""
    return (out * (n // max(1, len(out)) + 1))[:n]


def encode_rate(pool: RayEncodePool | None, encoder: ColBERTEncoder, texts: list[str]) -> float:
    if pool is not None:
        pool.encode_documents(encoder, "bundled:minilm", texts[:8])  # load the actors' models
    t0 = time.perf_counter()
    if pool is None:
        encoder.encode_documents(texts)
    else:
        pool.encode_documents(encoder, "bundled:minilm", texts)
    return len(texts) / (time.perf_counter() - t0)


def p50_ms(index, qs: list[np.ndarray]) -> float:
    index.search(qs[:5], 10)  # warm
    times = []
    for q in qs:
        t0 = time.perf_counter()
        index.search([q], 10)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def build(path: Path, bags: list[np.ndarray], shards: int) -> ShardedIndex:
    index = ShardedIndex.create(path, bags[0].shape[1], shards=shards)
    ids = np.arange(len(bags), dtype=np.int64)
    index.commit(ids, bags, np.empty(0, np.int64), doc_keys=[f"d{i}" for i in ids])
    return index


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passages", type=int, default=256)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--synthetic", type=int, default=4000, help="passages of the fan-out corpus")
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    encoder = ColBERTEncoder.load("bundled:minilm")
    texts = passages(args.passages)
    vectors = encoder.encode_documents(texts)
    tokens_per_passage = float(np.mean([len(v) for v in vectors]))
    local = encode_rate(None, encoder, texts)
    print(f"encode in-process, 1 thread: {local:.1f} passages/s "
          f"({len(texts)} passages, {tokens_per_passage:.0f} tokens each)")

    real = PlaidIndex.create(work / "real", encoder.dim)
    t0 = time.perf_counter()
    real.commit(np.arange(len(vectors), dtype=np.int64), vectors, np.empty(0, np.int64))
    commit_tokens_s = sum(len(v) for v in vectors) / (time.perf_counter() - t0)
    seg_files = [f for f in (work / "real" / "segments").rglob("*") if f.is_file()]
    n_tokens = sum(len(v) for v in vectors)
    resident = sum(f.stat().st_size for f in seg_files if f.name != "vectors.npy") / n_tokens
    on_disk = sum(f.stat().st_size for f in seg_files) / n_tokens

    with LocalRayCluster(workers=0, cpus_per_node=1) as cluster:
        os.environ["MEMEX_RAY_ADDRESS"] = cluster.address
        os.environ["MEMEX_RAY_SHARD_CPUS"] = "0"
        settings = current()
        connect(cluster.address, settings)
        cluster.wait_for_nodes()
        pool = RayEncodePool(cluster.address, settings)
        one = encode_rate(pool, encoder, texts)
        pool.close()
        cluster.add_worker()
        cluster.wait_for_nodes()
        pool = RayEncodePool(cluster.address, settings)
        two = encode_rate(pool, encoder, texts)
        pool.close()
        print(f"encode on Ray, 1 actor: {one:.1f} passages/s ({one / local:.2f}x in-process)")
        print(f"encode on Ray, 2 actors on 2 nodes: {two:.1f} passages/s ({two / one:.2f}x one actor)")

        bags = corpus(args.synthetic, encoder.dim, seed=0, spread=0.12)
        qs = queries(bags, args.queries, seed=1)
        small = corpus(args.synthetic // 4, encoder.dim, seed=2, spread=0.12)
        build(work / "one", bags, 1)
        build(work / "three", bags, 3)
        build(work / "small", small, 1)
        baseline = PlaidIndex.create(work / "flat", encoder.dim)
        baseline.commit(np.arange(len(bags), dtype=np.int64), bags, np.empty(0, np.int64))
        local_p50 = p50_ms(baseline, qs)
        ray_one = ShardedIndex.open(work / "one")
        ray_three = ShardedIndex.open(work / "three")
        ray_small = ShardedIndex.open(work / "small")
        one_p50, three_p50, small_p50 = (p50_ms(ray_one, qs), p50_ms(ray_three, qs),
                                         p50_ms(ray_small, qs))
        print(f"search p50, {len(bags)} passages, in-process unsharded: {local_p50:.2f} ms")
        print(f"search p50, 1 shard on Ray: {one_p50:.2f} ms; 3 shards on Ray: {three_p50:.2f} ms "
              f"({three_p50 / one_p50:.2f}x one shard); 1 shard of {len(small)}: {small_p50:.2f} ms")
        victim = ray_three.remote.actors[0]
        pid = cluster_pid(victim)
        os.kill(pid, signal.SIGKILL)
        t0 = time.perf_counter()
        while True:
            try:
                ray_three.search(qs[:1], 10)
                break
            except Unavailable:
                time.sleep(0.2)
        reload_s = time.perf_counter() - t0
        print(f"a killed shard actor answers again after {reload_s:.1f} s")
        disconnect()
    model(local, one, tokens_per_passage, resident, on_disk, commit_tokens_s,
          (small_p50, len(small)), (one_p50, len(bags)), three_p50 - one_p50)


def cluster_pid(actor) -> int:
    import ray

    return int(ray.get(actor.pid.remote()))


def model(local: float, one: float, tokens: float, resident: float, on_disk: float,
          commit_tokens_s: float, small: tuple[float, int], big: tuple[float, int],
          two_more_shards_ms: float) -> None:
    """10M passages over 8 nodes of 32 cores like this box's, from the figures above."""
    per_node = MODEL_PASSAGES / MODEL_NODES
    # One 1-CPU actor per core, scaling linearly: actors share nothing but the driver, which
    # only slices texts; the 2-worker ratio measured here is bounded by 2 shared cores.
    encode_h = MODEL_PASSAGES / (one * MODEL_CORES * MODEL_NODES) / 3600
    commit_h = MODEL_PASSAGES * tokens / commit_tokens_s / 3600
    slope = (big[0] - small[0]) / (big[1] - small[1])  # ms per passage of a shard (linear fit)
    linear_ms = big[0] + slope * (per_node - big[1])
    shard_ms = big[0] * (per_node / big[1]) ** PLAID_P50_EXPONENT
    fanout_ms = two_more_shards_ms / 2 * (MODEL_NODES - 1)
    print(f"\nmodel: {MODEL_PASSAGES:,} passages x {tokens:.0f} tokens on {MODEL_NODES} nodes "
          f"x {MODEL_CORES} cores, one shard per node")
    print(f"  memory per node: {per_node * tokens * resident / 2**30:.1f} GiB searched "
          f"({resident:.0f} B/token), {per_node * tokens * on_disk / 2**30:.1f} GiB on disk "
          f"with the originals ({on_disk:.0f} B/token)")
    print(f"  index time: encode {encode_h:.1f} h ({one:.1f} passages/s per core-actor, "
          f"{MODEL_CORES * MODEL_NODES} actors) + commit {commit_h:.1f} h at the writer "
          f"({commit_tokens_s:,.0f} tokens/s on one core, serial; shard commits on their "
          f"nodes in parallel, not built: {commit_h / MODEL_NODES:.1f} h)")
    print(f"  search p50: {shard_ms + fanout_ms:.0f} ms = a {per_node:,.0f}-passage shard "
          f"{shard_ms:.0f} ms (size ** {PLAID_P50_EXPONENT} from {big[1]} passages; linear "
          f"from {small[1]} and {big[1]}, an upper bound: {linear_ms:.0f} ms) + fan-out "
          f"{fanout_ms:.1f} ms")
    print(f"  (vs one machine: {MODEL_PASSAGES / local / 86400:.1f} days to encode in-process "
          f"on one core at {local:.1f} passages/s)")


if __name__ == "__main__":
    main()
