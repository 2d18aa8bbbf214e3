"""Where the PLAID query path loses agreement with the exhaustive oracle, stage by stage.

    python -m bench.stage_ceilings --home bench/.cache/home-plaid \
        --exhaustive-cache bench/.cache/exhaustive200-norms.json [--nprobe 2 4 8 16]

A passage scored exactly gets the oracle's score, so agreement can only be lost by
the stages that drop passages. For each stage this prints the share of the oracle's
top-10 (cached by ``sweep_stdlib.py --exhaustive``) still among the passages that
stage keeps: the probed lists, the best ``c`` by the approximate (probed-centroid)
score, and the best ``d`` of those by centroid interaction, i.e. the top-10
overlap that exact scoring of those ``d`` would reach. One-segment index.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from bench.data import passage_spans, stdlib_queries
from indexer.corpus import Corpora
from indexer.index.plaid.search import centroid_scores, probed_passages, query_tables


def kept(t, seg, ok, nprobe: int, cands: list[int], decomps: list[int]) -> dict[str, torch.Tensor]:
    """Local passages each stage keeps, by stage name."""
    uniq, approx = probed_passages(t, seg, ok, nprobe)
    order = uniq[approx.argsort(descending=True)]
    out = {"probed": uniq}
    for c in cands:
        cand = order[:c]
        out[f"approx top {c}"] = cand
        by_interaction = cand[centroid_scores(t, seg, cand).argsort(descending=True)]
        for d in (d for d in decomps if d < c):
            out[f"approx top {c} -> interaction top {d}"] = by_interaction[:d]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--corpus", default="stdlib")
    ap.add_argument("--exhaustive-cache", type=Path, required=True)
    ap.add_argument("--nprobe", type=int, nargs="+", default=[2, 4, 8, 16])
    ap.add_argument("--candidates", type=int, nargs="+", default=[128, 512, 1024])
    ap.add_argument("--decompress", type=int, nargs="+", default=[32, 64, 128])
    args = ap.parse_args()

    oracle = json.loads(args.exhaustive_cache.read_text())["ranked"]
    queries = stdlib_queries()
    corpora = Corpora(args.home)
    index, spans = corpora.index(args.corpus), passage_spans(corpora)
    vectors = corpora.encoder.encode_queries([q["text"] for q in queries])[: len(oracle)]
    snap = index._snap
    seg, codec, ok = snap.segments[0], snap.codecs[snap.segments[0].codec], ~snap.dead[0]
    local_of = {int(p): i for i, p in enumerate(np.asarray(seg.pids))}
    by_span = {tuple(sp): local_of[pid] for pid, sp in spans.items() if pid in local_of}
    targets = [{by_span[tuple(h)] for h in ranked} for ranked in oracle]
    print(f"{args.home}: {len(seg)} passages, {len(targets)} queries with oracle top-10")
    for nprobe in args.nprobe:
        shares: dict[str, list[float]] = {}
        probed = []
        for qv, target in zip(vectors, targets):
            t = query_tables(torch.from_numpy(np.ascontiguousarray(qv, dtype=np.float32)), codec)
            stages = kept(t, seg, ok, nprobe, args.candidates, args.decompress)
            probed.append(len(stages["probed"]))
            for name, passages in stages.items():
                shares.setdefault(name, []).append(len(target & set(passages.tolist())) / len(target))
        print(f"nprobe {nprobe}: {np.mean(probed):.0f} passages probed")
        for name, v in shares.items():
            print(f"  {name:40s} {np.mean(v):.3f}")


if __name__ == "__main__":
    main()
