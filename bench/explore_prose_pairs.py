"""Does the default head gain on prose from README training pairs? (Not kept: no.)

Trains the default recipe on the docstring pairs (minus ``--explore``'s held-out
packages) plus ``indexer/training/prose_data.py``'s README pairs repeated 0, 1 or 3
times, and prints MRR@10 of exhaustive MaxSim on the prose tuning set (``faq``), on
the stdlib subset and on the held-out docstring pairs.

    PYTHONPATH=$PWD python -m bench.explore_prose_pairs '[[0, {}], [1, {}], [3, {}]]'

Needs ``bench/.cache/default-frozen-100.0of1.pt`` (``bench_default_encoder --shard 0/1``).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace

import numpy as np
import torch

from bench import backbone_cache
from bench.bench_default_encoder import (
    HOLDOUT,
    load_shards,
    reuse_pca_heads,
    saved_pairs,
    stdlib_mrr,
    stdlib_vectors,
    top,
)
from bench.metrics import metrics


def main() -> None:
    from indexer.encoding.encoder import ColBERTEncoder
    from indexer.line_windows import chunk_lines
    from indexer.training.data import Example
    from indexer.training.default_data import PACKAGES
    from indexer.training.default_encoder import RECIPE
    from indexer.training.loop import fit
    from indexer.training.model import maxsim
    from indexer.training.prose_data import mine

    enc = ColBERTEncoder.load("bundled:minilm", runtime="torch", precision="fp32")

    def passage(lines: list[str]) -> str:
        ps = chunk_lines("\n".join(lines), max_tokens=enc.config.doc_max_tokens - 8,
                         count_tokens=enc.count_tokens)
        return ps[0].text if ps else ""

    prose = [Example(query=p.query, positive=p.positive) for p in mine(PACKAGES, 100, 0, passage)[0]]
    code, _ = saved_pairs(100)
    held = [e for e in code if e.positive.split("/", 1)[0] in HOLDOUT]
    train_code = [e for e in code if e.positive.split("/", 1)[0] not in HOLDOUT]
    print(f"{len(prose)} prose pairs, {len(train_code)} docstring pairs", flush=True)
    cache = load_shards(100, 1)
    reuse_pca_heads()
    stdlib = stdlib_vectors()
    faq_passages, faq_queries, _ = backbone_cache.load_set("faq")
    spans = [(p["path"], p["start"], p["end"]) for p in faq_passages]

    def scores(model, queries: list[str], docs: list[str]) -> np.ndarray:
        with torch.no_grad():
            q, qm = model.encode_queries(queries)
            d, dm = model.encode_documents(docs)
            return maxsim(q, qm, d, dm).numpy()

    for repeat, overrides in json.loads(sys.argv[1]):
        t = time.perf_counter()
        model, stats = fit(replace(RECIPE, **overrides), train_code + prose * repeat,
                           pca_passages=[e.positive for e in train_code][:RECIPE.pca_passages],
                           frozen_cache=cache)
        model.cache = cache
        s = scores(model, [e.query for e in held], [e.positive for e in held])
        ranks = (s > np.diag(s)[:, None]).sum(1)
        held_mrr = float(np.mean(np.where(ranks < 10, 1 / (ranks + 1), 0)))
        ranked = top(scores(model, [q["text"] for q in faq_queries],
                            [p["text"] for p in faq_passages]), 10)
        faq = metrics([[spans[i] for i, _ in r] for r in ranked], faq_queries)["MRR@10"]
        weight = model.head.weight.detach().numpy()
        print(f"prose x{repeat} {json.dumps(overrides)}: faq {faq:.4f}  "
              f"stdlib {stdlib_mrr(stdlib, weight, False):.4f}  held-out docstrings {held_mrr:.4f}"
              f"  ({time.perf_counter() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
