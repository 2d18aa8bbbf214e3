"""What training the backbone's top layers buys the default recipe (stdlib tuning set only).

``bench_default_encoder --explore`` scores a head over cached backbone vectors, which
cannot show a variant that trains backbone layers; this trains each variant of the
default recipe on the default's pairs and encodes the stdlib subset through it.

    PYTHONPATH=$PWD python -m bench.explore_backbone_layers '[{"train_layers": 0}, {"train_layers": 2}]'

Prints exhaustive MaxSim MRR@10 on ``--subset 3000 --dense`` (341 queries), with the
fit and encoding times (about 2-13 min and 3 min per variant on 2 cores).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace

import numpy as np
import torch

from bench import backbone_cache
from bench.bench_default_encoder import saved_pairs, top
from bench.metrics import metrics


def main() -> None:
    from indexer.training.default_encoder import RECIPE
    from indexer.training.loop import fit
    from indexer.training.model import maxsim

    pairs, _ = saved_pairs(100)
    ps, queries, key = backbone_cache.load_set("stdlib", 3000, True)
    texts, qtexts = [p["text"] for p in ps], [q["text"] for q in queries]
    spans = [(p["path"], p["start"], p["end"]) for p in ps]
    print(f"{len(pairs)} pairs; {key}: {len(texts)} passages, {len(qtexts)} queries", flush=True)
    for overrides in json.loads(sys.argv[1]):
        t = time.perf_counter()
        model, stats = fit(replace(RECIPE, **overrides), pairs)
        t_fit = time.perf_counter() - t
        with torch.no_grad():
            q, qm = model.encode_queries(qtexts)
            scores = np.concatenate([maxsim(q, qm, *model.encode_documents(texts[i:i + 64])).numpy()
                                     for i in range(0, len(texts), 64)], 1)
        mrr = metrics([[spans[i] for i, _ in r] for r in top(scores, 10)], queries)["MRR@10"]
        print(f"{json.dumps(overrides)}: MRR@10 {mrr:.4f}; fit {t_fit:.0f} s (loss "
              f"{stats['first_loss']:.3f} -> {stats['last_loss']:.3f}), encode "
              f"{time.perf_counter() - t - t_fit:.0f} s", flush=True)


if __name__ == "__main__":
    main()
