"""memex's PLAID engine side by side with colbert-ai's reference PLAID, same checkpoint.

    python -m bench.bench_colbert_ai all [--passages 2500 --work DIR]   # or one stage at a time:
    python -m bench.bench_colbert_ai prepare | index-memex | index-colbert | search
    python -m bench.bench_colbert_ai search --sweep 4:768:160 4:128:32   # memex settings to time

Stages cache their output under ``--work`` (default ``bench/.cache/peer/``; one folder
per ``--passages``); ``all`` runs those whose output is missing, then ``search``,
which times both engines' queries in one run and prints the table with the ratios,
then memex's ``nprobe:candidates:decompress`` settings against the same oracle.
colbert-ai runs in its own venv
(``--colbert-python``, default ``/work/peers/colbert-venv/bin/python``; recipe in
``shared/PEERS.md`` beside the checkout) through ``bench/peers/colbert_ai_side.py``, under
``CUDA_VISIBLE_DEVICES=""``, index ``ColBERTConfig(nbits=2)``, ``Searcher`` defaults.

Checkpoint: all-MiniLM-L6-v2 with a 128-d PCA head (``pca_head``), colbert-ai's
conventions on (markers, [MASK] query augmentation, punctuation skipped, 32/256
tokens), saved as a memex checkpoint and exported with ``export_colbert_ai`` so
both engines index the same token vectors (checked: the run prints the largest
difference between the two encoders' vectors). Oracle: exhaustive MaxSim over
memex's float32 vectors of that checkpoint. Both sides run on one thread; run the
whole script under ``/work/wt/notes/cpu`` to pin them to one core.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from bench import stdlib_vectors
from bench.data import CACHE, stdlib, stdlib_queries
from bench.metrics import metrics
from bench.metrics import overlap as id_overlap
from bench.oracle import top_k
from indexer.encoding.encoder import ColBERTEncoder, EncoderConfig
from indexer.index.plaid import PlaidIndex
from indexer.index.plaid import refit as plaid_refit

WORK = CACHE / "peer"
SIDE = Path(__file__).resolve().parent / "peers" / "colbert_ai_side.py"
DIM, NBITS, K = 128, 2, 10


def choose_passages(n_passages: int, target_share: float = 0.75, seed: int = 0) -> tuple[list, list]:
    """Whole target files, densest in queries first (to get a few hundred queries into a
    small collection), up to ``target_share`` of the passages; the rest: seeded other files."""
    queries = stdlib_queries()
    per_file = Counter(q["path"] for q in queries)
    windows = {path: stdlib_vectors.windows(path) for path in per_file}
    targets = sorted(per_file, key=lambda p: (-per_file[p] / len(windows[p]), p))
    tree = stdlib() / "tree"
    others = sorted(str(p.relative_to(tree)) for p in tree.rglob("*.py") if
                    str(p.relative_to(tree)) not in per_file)
    random.Random(seed).shuffle(others)
    passages: list[dict] = []
    chosen: set[str] = set()
    for pool, budget in ((targets, int(n_passages * target_share)), (others, n_passages)):
        for path in pool:
            w = windows[path] if path in windows else stdlib_vectors.windows(path)
            if len(passages) + len(w) <= budget:
                passages += w
                chosen.add(path)
    for i, p in enumerate(passages):
        p["id"] = i
    return passages, [q for q in queries if q["path"] in chosen]


def stage_prepare(args) -> None:
    from indexer.training.checkpoint import export_colbert_ai, save_checkpoint
    from indexer.training.model import pca_head

    WORK.mkdir(parents=True, exist_ok=True)
    passages, queries = choose_passages(args.passages)
    texts = [p["text"] for p in passages]
    encoder = ColBERTEncoder.load("bundled:minilm", runtime="torch")
    encoder.config = EncoderConfig(query_max_tokens=32, doc_max_tokens=256, markers=True,
                                   query_augmentation=True, skip_punctuation=True)
    sample = random.Random(0).sample(texts, args.pca_passages)
    encoder.projection = pca_head(encoder, sample, DIM)
    encoder.dim = DIM
    save_checkpoint(encoder, WORK / "memex-ckpt")
    export_colbert_ai(WORK / "memex-ckpt", WORK / "colbert-ckpt")
    # BERT's tokenizer treats newlines and tabs as spaces, so a one-line TSV row gives
    # colbert-ai the same token ids memex gets from the original text.
    with (WORK / "collection.tsv").open("w") as f:
        for p in passages:
            f.write(f"{p['id']}\t{' '.join(p['text'].split())}\n")
    (WORK / "queries.json").write_text(json.dumps([q["text"] for q in queries]))
    (WORK / "subset.json").write_text(json.dumps({
        "passages": [{k: p[k] for k in ("id", "path", "start", "end")} for p in passages],
        "queries": queries}))
    print(f"{len(passages)} passages from {len({p['path'] for p in passages})} files, "
          f"{len(queries)} queries; checkpoints in {WORK}")


def memex_name(args) -> str:
    return f"memex-index-c{args.centroids}" if args.centroids else "memex-index"


def memex_bags() -> list[np.ndarray]:
    flat, off = np.load(WORK / "memex-doc.npy"), np.load(WORK / "memex-doc-offsets.npy")
    return [flat[off[i]:off[i + 1]] for i in range(len(off) - 1)]


def stage_index_memex(args) -> None:
    """Encode (once: later builds reuse the vectors and report the first encoding time) and build."""
    if args.centroids:  # the engine has no knob for it: codec.n_centroids_for fixes 2*sqrt(T)
        plaid_refit.n_centroids_for = lambda n_tokens: args.centroids
    if (WORK / "memex-doc.npy").exists():
        bags, encode_s = memex_bags(), json.loads((WORK / "memex-index.json").read_text())["encode_s"]
    else:
        subset = json.loads((WORK / "subset.json").read_text())
        texts = [p["text"] for p in choose_passages(args.passages)[0]]
        assert len(texts) == len(subset["passages"]), "subset changed: rerun prepare"
        encoder = ColBERTEncoder.load(str(WORK / "memex-ckpt"), runtime="torch")
        t0 = time.perf_counter()
        bags = encoder.encode_documents(texts)
        encode_s = time.perf_counter() - t0
        np.save(WORK / "memex-doc.npy", np.concatenate(bags))
        np.save(WORK / "memex-doc-offsets.npy", np.r_[0, np.cumsum([len(b) for b in bags])])
    t1 = time.perf_counter()
    index = PlaidIndex.create(WORK / memex_name(args), DIM, nbits=NBITS)
    index.commit(np.arange(len(bags), dtype=np.int64), bags, np.empty(0, dtype=np.int64))
    build_s = time.perf_counter() - t1
    stats = {"encode_s": encode_s, "build_s": build_s, "index_s": encode_s + build_s,
             "index_bytes": index.nbytes(), "n_embeddings": sum(len(b) for b in bags),
             "n_centroids": int(index._snap.codecs[index._snap.segments[0].codec].centroids.shape[0])}
    (WORK / f"{memex_name(args)}.json").write_text(json.dumps(stats))
    print(json.dumps(stats))


def run_colbert(mode: str, python: str) -> dict:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run([python, str(SIDE), mode, str(WORK)], env=env, check=True, timeout=6 * 3600)
    return json.loads((WORK / f"colbert-{mode}.json").read_text())


def stage_index_colbert(args) -> None:
    stats = run_colbert("index", args.colbert_python)
    print(json.dumps({k: v for k, v in stats.items() if k != "files"}))


def memex_search(queries: list[str], name: str) -> dict:
    encoder = ColBERTEncoder.load(str(WORK / "memex-ckpt"), runtime="torch")
    index = PlaidIndex.open(WORK / name)
    index.search(encoder.encode_queries(queries[:1]), K)  # warm-up, not timed
    encode_s, search_s, total_s, hits, vectors = [], [], [], [], []
    for text in queries:
        t0 = time.perf_counter()
        q = encoder.encode_queries([text])
        t1 = time.perf_counter()
        found = index.search(q, K)[0]
        t2 = time.perf_counter()
        encode_s.append(t1 - t0)
        search_s.append(t2 - t1)
        hits.append([s.passage_id for s in found])
        vectors.append(q[0])
    for text in queries:
        t0 = time.perf_counter()
        index.search(encoder.encode_queries([text]), K)
        total_s.append(time.perf_counter() - t0)
    return {"encode_s": encode_s, "search_s": search_s, "total_s": total_s, "hits": hits,
            "vectors": vectors, "encoder": encoder}


def quality(hits: list[list[int]], subset: dict) -> tuple[float, float]:
    """MRR@10 and R@10 of rankings of ``subset["passages"]`` ids (bench/metrics.py)."""
    m = metrics([[(p["path"], p["start"], p["end"]) for p in (subset["passages"][i] for i in ids)]
                 for ids in hits], subset["queries"], K)
    return m[f"MRR@{K}"], m[f"R@{K}"]


def overlap(hits: list[list[int]], oracle: list[list[int]]) -> float:
    return id_overlap(hits, oracle, K)


def vector_gap(memex: dict, subset_texts: list[str]) -> dict:
    """Largest |difference| between the two encoders' vectors: queries, and 50 passages."""
    theirs = np.load(WORK / "colbert-vectors.npz")
    q_gap = max(float(np.abs(m - c).max()) for m, c in zip(memex["vectors"], theirs["queries"]))
    ours = memex["encoder"].encode_documents(subset_texts[:50])
    same_len = [len(o) for o in ours] == theirs["doc_lens"].tolist()
    d_gap = float(np.abs(np.concatenate(ours) - theirs["docs"]).max()) if same_len else float("nan")
    return {"query_max_abs": q_gap, "doc_token_counts_equal": same_len, "doc_max_abs": d_gap}


def ms(xs: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, p))


def stage_search(args) -> None:
    torch.set_num_threads(1)
    subset = json.loads((WORK / "subset.json").read_text())
    queries = json.loads((WORK / "queries.json").read_text())
    mi = json.loads((WORK / f"{memex_name(args)}.json").read_text())
    ci = json.loads((WORK / "colbert-index.json").read_text())
    mem = memex_search(queries, memex_name(args))
    col = run_colbert("search", args.colbert_python)
    oracle = [[s.passage_id for s in hits] for hits in top_k(mem["vectors"], memex_bags(), K)]
    texts = [p["text"] for p in choose_passages(args.passages)[0]]
    gap = vector_gap(mem, texts)
    col_hits = [[pid for pid, _ in h] for h in col["hits"]]
    rows = {"oracle": oracle, "memex": mem["hits"], "colbert-ai": col_hits}
    result = {"n_passages": len(subset["passages"]), "n_queries": len(queries), "vectors": gap,
              "memex_index": mi, "colbert_index": {k: v for k, v in ci.items() if k != "index_path"},
              "colbert_setup": {"extensions_s": col["extensions_s"],
                                "searcher_load_s": col["searcher_load_s"],
                                "threads": col["threads"]}}
    print(f"{result['n_passages']} passages, {mi['n_embeddings']} token vectors (colbert-ai: "
          f"{ci['n_embeddings']}), {len(queries)} queries, dim {DIM}, nbits {NBITS}, 1 thread each")
    print(f"encoders agree: query vectors max |diff| {gap['query_max_abs']:.2e}; 50 passages: token "
          f"counts equal {gap['doc_token_counts_equal']}, max |diff| {gap['doc_max_abs']:.2e}")
    print(f"\n{'':24}{'memex':>12}{'colbert-ai':>12}{'ratio c/m':>11}")

    def line(name: str, m: float, c: float, fmt: str = "{:12.1f}") -> None:
        result.setdefault("table", {})[name] = {"memex": m, "colbert-ai": c}
        print(f"{name:24}" + fmt.format(m) + fmt.format(c) + f"{c / m:10.2f}x")

    for label, key in (("search", "search_s"), ("encode+search", "total_s"), ("query encoding", "encode_s")):
        for p in (50, 95):
            line(f"{label} p{p} ms", ms(mem[key], p), ms(col[key], p), "{:12.2f}")
    line("index size MB", mi["index_bytes"] / 1e6, ci["index_bytes"] / 1e6, "{:12.2f}")
    line("bytes/token vector", mi["index_bytes"] / mi["n_embeddings"],
         ci["index_bytes"] / ci["n_embeddings"])
    line("indexing s (encode incl)", mi["index_s"], ci["index_s"])
    line("centroids", mi["n_centroids"], ci["n_centroids"], "{:12.0f}")
    print(f"memex indexing: encode {mi['encode_s']:.1f}s + build {mi['build_s']:.1f}s; colbert-ai "
          f"extensions load {col['extensions_s']:.1f}s, Searcher load {col['searcher_load_s']:.1f}s\n")
    print(f"{'':12}{'overlap@10 vs oracle':>22}{'MRR@10':>9}{'R@10':>7}")
    for name, hits in rows.items():
        mrr, rec = quality(hits, subset)
        ov = overlap(hits, oracle)
        result.setdefault("quality", {})[name] = {"overlap": ov, "MRR@10": mrr, "R@10": rec}
        print(f"{name:12}{ov:22.4f}{mrr:9.4f}{rec:7.3f}")
    print("\nmemex search settings (same query vectors; defaults nprobe 4, candidates 768, decompress 160):")
    print(f"{'':24}{'overlap@10':>11}{'MRR@10':>9}{'R@10':>7}{'p50 ms':>9}{'p95 ms':>9}")
    index = PlaidIndex.open(WORK / memex_name(args))
    for setting in [*args.sweep, None]:
        nprobe, candidates, decompress = map(int, setting.split(":")) if setting else (None, None, None)
        hits, seconds = [], []
        for q in mem["vectors"]:
            t0 = time.perf_counter()
            found = index.search([q], K, nprobe=nprobe, candidates=candidates, decompress=decompress,
                                 exhaustive=setting is None)
            seconds.append(time.perf_counter() - t0)
            hits.append([s.passage_id for s in found[0]])
        mrr, rec = quality(hits, subset)
        name = setting or "exhaustive decompressed"
        result.setdefault("memex_sweep", {})[name] = {
            "overlap": overlap(hits, oracle), "MRR@10": mrr, "R@10": rec,
            "p50_ms": ms(seconds, 50), "p95_ms": ms(seconds, 95)}
        print(f"{name:24}{overlap(hits, oracle):11.4f}{mrr:9.4f}{rec:7.3f}"
              f"{ms(seconds, 50):9.2f}{ms(seconds, 95):9.2f}")
    (WORK / f"result-{memex_name(args)}.json").write_text(json.dumps(result, indent=1))


STAGES = {"prepare": (stage_prepare, lambda args: "subset.json"),
          "index-memex": (stage_index_memex, lambda args: f"{memex_name(args)}.json"),
          "index-colbert": (stage_index_colbert, lambda args: "colbert-index.json"),
          "search": (stage_search, lambda args: None)}


def main() -> None:
    global WORK
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("stage", choices=[*STAGES, "all"])
    ap.add_argument("--passages", type=int, default=2500)
    ap.add_argument("--pca-passages", type=int, default=256)
    ap.add_argument("--sweep", nargs="*", default=["4:128:32", "4:256:64", "4:512:128", "4:768:160"],
                    help="memex nprobe:candidates:decompress settings to time after the table")
    ap.add_argument("--centroids", type=int, default=0,
                    help="memex codec size instead of its 2*sqrt(tokens) (colbert-ai: 16*sqrt)")
    ap.add_argument("--colbert-python", default="/work/peers/colbert-venv/bin/python")
    ap.add_argument("--work", type=Path, default=WORK,
                    help="cache folder of this run (one per --passages), default .cache/peer")
    args = ap.parse_args()
    WORK = args.work.resolve()
    for name, (run, output) in STAGES.items():
        out = output(args)
        if args.stage == name or (args.stage == "all" and (out is None or not (WORK / out).exists())):
            print(f"== {name}", flush=True)
            run(args)


if __name__ == "__main__":
    main()
